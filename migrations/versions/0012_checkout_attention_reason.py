"""Why an attempt needs attention (another amount, paid after its link ended, paid twice): staff read the reason beside
the flag, and an admin can mark it handled.

Revision ID: 0012
Revises: 0011 (an attempt's error in Chinese)
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("checkout", schema=None) as batch_op:
        batch_op.add_column(sa.Column("attention_reason", sa.String(length=24), nullable=True))


def downgrade():
    with op.batch_alter_table("checkout", schema=None) as batch_op:
        batch_op.drop_column("attention_reason")
