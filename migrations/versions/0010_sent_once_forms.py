"""The form that created an API key or a webhook endpoint, by its one-time token: the same form sent again (a reload
of the page that shows the new secret) is recognised instead of creating a second key or endpoint.

Revision ID: 0010
Revises: 0009 (dashboard indexes)
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade():
    for table in ("api_key", "webhook_endpoint"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("form_token", sa.String(length=64), nullable=True))
            batch_op.create_unique_constraint(f"uq_{table}_form_token", ["form_token"])


def downgrade():
    for table in ("api_key", "webhook_endpoint"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(f"uq_{table}_form_token", type_="unique")
            batch_op.drop_column("form_token")
