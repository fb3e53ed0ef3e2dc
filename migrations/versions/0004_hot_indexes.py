"""Indexes for the order list: by merchant and state, newest first; its search on PostgreSQL (trigram indexes).

The other hot lookups already had theirs: checkout.reference and checkout.public_token (unique),
webhook_event.dedupe_key (unique), the order list without a state filter (ix_order_merchant_created). The search is
lower(column) LIKE '%text%' on the order number, customer name and email: a trigram GIN index on each for PostgreSQL
(the pg_trgm extension, trusted, so the database's owner may create it); SQLite cannot use an index for it.

Revision ID: 0004
Revises: 0003 (unique provider ids)
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

SEARCH_COLUMNS = ("number", "customer_name", "customer_email")


def upgrade():
    with op.batch_alter_table("order", schema=None) as batch_op:
        batch_op.create_index("ix_order_merchant_state_created", ["merchant_id", "state", "created_at"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        for name in SEARCH_COLUMNS:
            op.execute(f'CREATE INDEX ix_order_{name}_trgm ON "order" USING gin (lower({name}) gin_trgm_ops)')


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        for name in SEARCH_COLUMNS:
            op.execute(f"DROP INDEX IF EXISTS ix_order_{name}_trgm")
    with op.batch_alter_table("order", schema=None) as batch_op:
        batch_op.drop_index("ix_order_merchant_state_created")
