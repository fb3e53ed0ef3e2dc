"""An attempt's last provider error in Chinese too: staff reading the portal in zh-TW see it in their language.

Revision ID: 0011
Revises: 0010 (sent-once forms)
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("checkout", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_error_zh", sa.Text(), nullable=True))


def downgrade():
    with op.batch_alter_table("checkout", schema=None) as batch_op:
        batch_op.drop_column("last_error_zh")
