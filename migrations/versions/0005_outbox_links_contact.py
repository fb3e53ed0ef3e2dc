"""The worker's shared record of its scheduled jobs; the outbox it sends from (mails; later the merchant's webhooks); the customer link as the order's own
(its token, provider or the customer's choice, expiry, end); a checkout's card last four and offline payment code;
the shop's contact for customers, its staff notice address and reminder delay.

Revision ID: 0005
Revises: 0004 (hot indexes)
"""

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "job_run",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("last_started_at", sa.DateTime(), nullable=True),
        sa.Column("locked_until", sa.DateTime(), nullable=True),
        sa.Column("holder", sa.String(length=100), nullable=True),
        sa.Column("last_finished_at", sa.DateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table('outbox_message',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('topic', sa.String(length=32), nullable=False),
    sa.Column('dedupe_key', sa.String(length=200), nullable=False),
    sa.Column('merchant_id', sa.Integer(), nullable=True),
    sa.Column('order_id', sa.Integer(), nullable=True),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(), nullable=False),
    sa.Column('locked_until', sa.DateTime(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('last_duration_ms', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('sent_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchant.id'], ),
    sa.ForeignKeyConstraint(['order_id'], ['order.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('dedupe_key')
    )
    with op.batch_alter_table('outbox_message', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_message_due', ['state', 'next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_outbox_message_merchant_id'), ['merchant_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_outbox_message_order_id'), ['order_id'], unique=False)

    with op.batch_alter_table('checkout', schema=None) as batch_op:
        batch_op.add_column(sa.Column('card_last4', sa.String(length=4), nullable=True))
        batch_op.add_column(sa.Column('payment_code', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('payment_code_expires_at', sa.DateTime(), nullable=True))

    with op.batch_alter_table('merchant', schema=None) as batch_op:
        batch_op.add_column(sa.Column('contact_phone', sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column('contact_email', sa.String(length=254), nullable=True))
        batch_op.add_column(sa.Column('contact_note', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('notify_email', sa.String(length=254), nullable=True))
        batch_op.add_column(sa.Column('reminder_hours', sa.Integer(), server_default=sa.text("24"), nullable=False))

    with op.batch_alter_table('order', schema=None) as batch_op:
        batch_op.add_column(sa.Column('link_token', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('link_provider', sa.String(length=10), nullable=True))
        batch_op.add_column(sa.Column('link_expires_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('link_ended_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('customer_locale', sa.String(length=10), nullable=True))
        batch_op.create_index(batch_op.f('ix_order_link_token'), ['link_token'], unique=True)



def downgrade():
    with op.batch_alter_table('order', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_order_link_token'))
        batch_op.drop_column('customer_locale')
        batch_op.drop_column('link_ended_at')
        batch_op.drop_column('link_expires_at')
        batch_op.drop_column('link_provider')
        batch_op.drop_column('link_token')

    with op.batch_alter_table('merchant', schema=None) as batch_op:
        batch_op.drop_column('reminder_hours')
        batch_op.drop_column('notify_email')
        batch_op.drop_column('contact_note')
        batch_op.drop_column('contact_email')
        batch_op.drop_column('contact_phone')

    with op.batch_alter_table('checkout', schema=None) as batch_op:
        batch_op.drop_column('payment_code_expires_at')
        batch_op.drop_column('payment_code')
        batch_op.drop_column('card_last4')

    with op.batch_alter_table('outbox_message', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_outbox_message_order_id'))
        batch_op.drop_index(batch_op.f('ix_outbox_message_merchant_id'))
        batch_op.drop_index('ix_outbox_message_due')

    op.drop_table('outbox_message')
    op.drop_table('job_run')
