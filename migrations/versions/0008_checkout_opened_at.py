"""When the provider opened an attempt: an attempt the provider refused to make (never opened) leaves its order as it
was. Every attempt past "creating" so far was opened, except those that failed while being made (a failed one whose
provider gave no id or page).

Revision ID: 0008
Revises: 0007 (API and merchant webhooks)
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("checkout", schema=None) as batch_op:
        batch_op.add_column(sa.Column("opened_at", sa.DateTime(), nullable=True))
    op.execute(
        "UPDATE checkout SET opened_at = created_at WHERE state <> 'creating' "
        "AND NOT (state = 'failed' AND provider_url IS NULL AND provider_checkout_id IS NULL)"
    )


def downgrade():
    with op.batch_alter_table("checkout", schema=None) as batch_op:
        batch_op.drop_column("opened_at")
