"""Short write transactions and row locks for the payment services (refunds use them too).

On SQLite, writers wait for each other in a queue the kernel keeps (an exclusive flock on a file beside the database)
before they ask SQLite for its write lock. SQLite's own busy handler would poll instead, sleeping up to 100 ms between
tries, so under load a writer could sleep long after the lock was free. Durability is SQLite's (WAL, synchronous as
configured); the queue only decides who goes next.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import threading

from sqlalchemy import bindparam, inspect, select
from sqlalchemy.orm import joinedload

from portal.extensions import db, execute_core
from portal.models import Checkout, Order

_queue = threading.local()  # per thread: (pid, path, fd) of its own open lock file


def _sqlite_file(bind) -> str | None:
    database = bind.url.database
    if bind.dialect.name != "sqlite" or not database or database == ":memory:" or database.startswith("file:"):
        return None
    return os.path.abspath(database)


def _queue_fd(database: str) -> int:
    """This thread's descriptor of the database's lock file, opened after any fork (a descriptor shared with another
    process or thread would share its lock too)."""
    path = database + "-writers"
    held = getattr(_queue, "held", None)
    if held and held[0] == os.getpid() and held[1] == path:
        return held[2]
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    _queue.held = (os.getpid(), path, fd)
    return fd


@contextlib.contextmanager
def _writer_queue(bind):
    database = _sqlite_file(bind)
    if database is None:
        yield
        return
    fd = _queue_fd(database)
    fcntl.flock(fd, fcntl.LOCK_EX)  # blocks this thread only (the GIL is released while waiting)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def end_reads() -> None:
    """End the session's read transaction without expiring what it read: rows read just before a write transaction
    (to verify or prepare it) can be used in it without being read again (write_transaction(keep_reads=True))."""
    session = db.session()
    session.expire_on_commit = False
    try:
        session.commit()
    finally:
        session.expire_on_commit = True


@contextlib.contextmanager
def write_transaction(*, keep_reads: bool = False):
    """One short write transaction; on SQLite it queues for the write lock and takes it up front (BEGIN IMMEDIATE).

    What the session read before is expired first, to be read again under the lock; with keep_reads, rows kept by
    end_reads just before are used as they were read (the caller knows none of them decides what it writes)."""
    if not keep_reads or db.session().in_transaction():
        db.session.commit()
    bind = db.session.get_bind()
    with _writer_queue(bind):
        if bind.dialect.name == "sqlite":
            db.session.connection().exec_driver_sql("BEGIN IMMEDIATE")
        try:
            yield
            db.session.commit()
        except BaseException:
            db.session.rollback()
            raise


def locked_checkout(checkout_id: int, *, with_order: bool = False) -> Checkout:
    """The checkout row, re-read and locked for this transaction (with its order in the same query, when asked)."""
    stmt = _locked_checkout(db.session.get_bind().dialect.name, with_order)
    return db.session.execute(stmt, {"checkout_id": checkout_id}).scalar_one()


@functools.cache
def _locked_checkout(dialect: str, with_order: bool):
    """Built once per database."""
    stmt = db.select(Checkout).where(Checkout.id == bindparam("checkout_id")).execution_options(populate_existing=True)
    if with_order:
        stmt = stmt.options(joinedload(Checkout.order, innerjoin=True))
    return stmt.with_for_update(of=Checkout) if dialect != "sqlite" else stmt


def checkout_as_read(checkout: Checkout) -> Checkout:
    """In a write transaction: the checkout and its order read (as ORM objects) before it, if neither has changed
    since; else both read again, locked (locked_checkout). On SQLite the ORM's loading (several times the cost of the
    query) is then done before the one write lock is taken, and only the rows' values are read under it, to compare."""
    row = execute_core(_current_rows(), {"checkout_id": checkout.id}).one_or_none()
    if row is not None and _as_read(checkout, row, "c_") and _as_read(checkout.order, row, "o_"):
        return checkout
    return locked_checkout(checkout.id, with_order=True)


@functools.cache
def _current_rows():
    """Built once: every column of a checkout and of its order, by the checkout's id (a Core statement)."""
    checkouts, orders = Checkout.__table__, Order.__table__
    columns = [c.label(f"c_{c.key}") for c in checkouts.columns] + [c.label(f"o_{c.key}") for c in orders.columns]
    return select(*columns).join_from(checkouts, orders).where(checkouts.c.id == bindparam("checkout_id"))


def _as_read(row_object, row, prefix: str) -> bool:
    """Whether an ORM object, unchanged in this session, holds the values the row has now, column by column."""
    state = inspect(row_object)
    if state.modified or state.expired_attributes:
        return False
    loaded, values = state.dict, row._mapping
    for prop in state.mapper.column_attrs:
        if prop.key not in loaded or loaded[prop.key] != values[prefix + prop.columns[0].key]:
            return False
    return True


def read_checkout(checkout_id: int) -> Checkout:
    """The checkout with its order, read without a lock (to be used in a write transaction through checkout_as_read)."""
    stmt = _locked_checkout(db.session.get_bind().dialect.name, True)
    if db.session.get_bind().dialect.name != "sqlite":
        raise RuntimeError("read_checkout is for SQLite, where reading takes no lock")
    return db.session.execute(stmt, {"checkout_id": checkout_id}).scalar_one()


def lock_for_update(stmt):
    """The statement with FOR UPDATE where the database has row locks (SQLite: the transaction's write lock)."""
    if db.session.get_bind().dialect.name != "sqlite":
        stmt = stmt.with_for_update(of=Checkout)
    return stmt
