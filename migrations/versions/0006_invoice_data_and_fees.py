"""E-invoice data given at order time (how the customer takes the invoice: paper, mobile barcode, citizen
certificate, a business's tax ID and name, or a donation code), and the provider's fee of a payment where it reports
one.

Revision ID: 0006
Revises: 0005 (outbox, links, contact)
"""

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('checkout', schema=None) as batch_op:
        batch_op.add_column(sa.Column('fee_amount', sa.Integer(), nullable=True))

    with op.batch_alter_table('order', schema=None) as batch_op:
        batch_op.add_column(sa.Column('invoice_kind', sa.String(length=12), nullable=True))
        batch_op.add_column(sa.Column('invoice_carrier', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('invoice_tax_id', sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column('invoice_title', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('invoice_donation_code', sa.String(length=7), nullable=True))



def downgrade():
    with op.batch_alter_table('order', schema=None) as batch_op:
        batch_op.drop_column('invoice_donation_code')
        batch_op.drop_column('invoice_title')
        batch_op.drop_column('invoice_tax_id')
        batch_op.drop_column('invoice_carrier')
        batch_op.drop_column('invoice_kind')

    with op.batch_alter_table('checkout', schema=None) as batch_op:
        batch_op.drop_column('fee_amount')

