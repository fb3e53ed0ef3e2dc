"""Short write transactions and row locks for the payment services (refunds use them too)."""

from __future__ import annotations

import contextlib

from sqlalchemy import text

from portal.extensions import db
from portal.models import Checkout


@contextlib.contextmanager
def write_transaction():
    """One short write transaction; on SQLite it takes the write lock up front so concurrent writers queue."""
    db.session.commit()
    if db.session.get_bind().dialect.name == "sqlite":
        db.session.execute(text("BEGIN IMMEDIATE"))
    try:
        yield
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise


def locked_checkout(checkout_id: int) -> Checkout:
    """The checkout row, re-read and locked for this transaction."""
    stmt = db.select(Checkout).where(Checkout.id == checkout_id).execution_options(populate_existing=True)
    if db.session.get_bind().dialect.name != "sqlite":
        stmt = stmt.with_for_update()
    return db.session.execute(stmt).scalar_one()
