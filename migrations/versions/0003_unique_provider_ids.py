"""Provider ids unique in the database (Oen merchant id, MyPay store uid, O'Pay MerchantID).

A duplicate made every callback naming that id answer 503 (MultipleResultsFound). Unique indexes, so that any number
of merchants may have none (NULL); an empty id is made NULL first. A database that already holds a duplicate is
refused with the ids to fix (in the settings page or `flask merchant create`), never silently changed.

Revision ID: 0003
Revises: 0002 (two-factor sign-in)
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

COLUMNS = ("oen_merchant_id", "mypay_store_uid", "opay_merchant_id")


def upgrade():
    conn = op.get_bind()
    merchant = sa.table("merchant", *(sa.column(name, sa.String) for name in COLUMNS))
    duplicates = []
    for name in COLUMNS:
        column = merchant.c[name]
        conn.execute(sa.update(merchant).where(column == "").values({name: None}))
        rows = conn.execute(
            sa.select(column).where(column.is_not(None)).group_by(column).having(sa.func.count() > 1)
        ).scalars()
        duplicates += [f"{name}={value}" for value in rows]
    if duplicates:
        raise RuntimeError(
            "Several merchants share a provider id (" + ", ".join(duplicates) + "); give each its own, then upgrade."
        )
    with op.batch_alter_table("merchant", schema=None) as batch_op:
        batch_op.drop_index("ix_merchant_opay_merchant_id")
        for name in COLUMNS:
            batch_op.create_index(f"ix_merchant_{name}", [name], unique=True)


def downgrade():
    with op.batch_alter_table("merchant", schema=None) as batch_op:
        for name in COLUMNS:
            batch_op.drop_index(f"ix_merchant_{name}")
        batch_op.create_index("ix_merchant_opay_merchant_id", ["opay_merchant_id"], unique=False)
