"""Indexes for the dashboard: checkout events by the state they moved to and when (payments, failures, expiries by
day), and a merchant's refunds by when they were made. Without them the dashboard read every event of a large shop.

Revision ID: 0009
Revises: 0008 (checkout opened_at)
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("checkout_event", schema=None) as batch_op:
        batch_op.create_index("ix_checkout_event_to_state_created", ["to_state", "created_at"], unique=False)
    with op.batch_alter_table("refund", schema=None) as batch_op:
        batch_op.create_index("ix_refund_merchant_created", ["merchant_id", "created_at"], unique=False)


def downgrade():
    with op.batch_alter_table("refund", schema=None) as batch_op:
        batch_op.drop_index("ix_refund_merchant_created")
    with op.batch_alter_table("checkout_event", schema=None) as batch_op:
        batch_op.drop_index("ix_checkout_event_to_state_created")
