"""Short write transactions and row locks for the payment services (refunds use them too).

On SQLite, writers wait for each other in a queue the kernel keeps (an exclusive flock on a file beside the database)
before they ask SQLite for its write lock. SQLite's own busy handler would poll instead, sleeping up to 100 ms between
tries, so under load a writer could sleep long after the lock was free. Durability is SQLite's (WAL, synchronous as
configured); the queue only decides who goes next. A writer's turn ends with its COMMIT (the session's after_commit),
before the session's own bookkeeping (expiring what it read, returning the connection to the pool), and the connection
is taken from the pool before the writer joins the queue: only the transaction's statements run in its turn.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import threading

from sqlalchemy import bindparam, event, inspect, select
from sqlalchemy.orm import Session, joinedload

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
    _queue.turn = (fd, db.session())
    try:
        yield
    finally:
        _end_turn(None)


@event.listens_for(Session, "after_commit")
def _end_turn(session: Session | None) -> None:
    """The next writer may go: this thread's write transaction committed (or ended otherwise, session None)."""
    turn = getattr(_queue, "turn", None)
    if turn is not None and (session is None or session is turn[1]):
        _queue.turn = None
        fcntl.flock(turn[0], fcntl.LOCK_UN)


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
    session = db.session()
    if session.in_transaction():
        session.commit()
    elif not keep_reads:
        session.expire_all()  # what an empty commit would do, without beginning a transaction to end it
    bind = db.session.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    connection = db.session.connection() if sqlite else None  # from the pool before the queue (no SQL is sent)
    with _writer_queue(bind):
        if connection is not None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            yield
            db.session.commit()
        except BaseException:
            db.session.rollback()
            raise


def locked_checkout(checkout_id: int, *, with_order: bool = False) -> Checkout:
    """The checkout row, re-read and locked for this transaction; with_order: its order's row too, in the same query
    (whoever moves the checkout then derives the order's state, refresh_order, which needs the order locked)."""
    stmt = _locked_checkout(db.session.get_bind().dialect.name, with_order)
    checkout = db.session.execute(stmt, {"checkout_id": checkout_id}).scalar_one()
    if with_order:
        order_locked(checkout.order_id)
    return checkout


@functools.cache
def _locked_checkout(dialect: str, with_order: bool):
    """Built once per database."""
    stmt = db.select(Checkout).where(Checkout.id == bindparam("checkout_id")).execution_options(populate_existing=True)
    if with_order:
        stmt = stmt.options(joinedload(Checkout.order, innerjoin=True))
    return lock_with_order(stmt, dialect, with_order)


def checkout_as_read(checkout: Checkout) -> Checkout:
    """In a write transaction on SQLite: the checkout and its order as read just before it (by the callback's
    verification), if neither has changed since; else both read again (locked_checkout). The ORM's loading, which
    costs several times the query, is then done before the one write lock is taken, and under it only the rows'
    values are read, to compare."""
    row = execute_core(_current_rows(), {"checkout_id": checkout.id}).one_or_none()
    if row is not None and _as_read(checkout, row, 0) and _as_read(checkout.order, row, len(Checkout.__table__.c)):
        return checkout
    return locked_checkout(checkout.id, with_order=True)


@functools.cache
def _current_rows():
    """Built once: every column of a checkout and of its order, by the checkout's id (a Core statement), in the order
    of their tables' columns (_column_keys)."""
    checkouts, orders = Checkout.__table__, Order.__table__
    columns = [c.label(f"c_{c.key}") for c in checkouts.columns] + [c.label(f"o_{c.key}") for c in orders.columns]
    return select(*columns).join_from(checkouts, orders).where(checkouts.c.id == bindparam("checkout_id"))


@functools.cache
def _column_keys(mapper) -> tuple[str, ...]:
    """The mapped attribute of each of the table's columns, in the table's order (as _current_rows reads them)."""
    return tuple(mapper.get_property_by_column(column).key for column in mapper.local_table.columns)


def _as_read(row_object, row, start: int) -> bool:
    """Whether an ORM object, unchanged in this session, holds the values the row has now from column `start` on,
    column by column."""
    state = inspect(row_object)
    if state.modified or state.expired_attributes:
        return False
    keys, loaded = _column_keys(state.mapper), state.dict
    try:
        held = tuple([loaded[key] for key in keys])
    except KeyError:  # a column not loaded
        return False
    return held == tuple(row[start : start + len(keys)])


def lock_with_order(stmt, dialect: str, with_order: bool):
    """FOR UPDATE where the database has row locks (on SQLite the transaction's write lock serializes writers): of the
    checkout, or (with_order: the statement joins the order, inner) of the checkout and its order."""
    if dialect == "sqlite":
        return stmt
    return stmt.with_for_update() if with_order else stmt.with_for_update(of=Checkout)


# An order's state is derived from all its checkouts (refresh_order). On PostgreSQL, two transactions moving two
# checkouts of one order would each read the other's checkout as it was before the other committed, and the later
# commit would write an order state derived from a stale read (a late payment overwritten by the failure of the new
# attempt). Whoever derives it holds the order's row lock first, and reads the checkouts after that.
_LOCKED_ORDERS = "portal.locked_orders"  # session info: (the transaction, ids of the orders it has locked)
LOCK_ORDER = select(Order.__table__.c.id).where(Order.__table__.c.id == bindparam("order_id")).with_for_update()


def order_locked(order_id: int) -> None:
    """Note that this transaction holds the order's row lock (it was read FOR UPDATE)."""
    session = db.session()
    transaction = session.get_transaction()
    kept = session.info.get(_LOCKED_ORDERS)
    if kept is None or kept[0] is not transaction:
        kept = session.info[_LOCKED_ORDERS] = (transaction, set())
    kept[1].add(order_id)


def holds_order_lock(order_id: int) -> bool:
    """Whether this transaction holds the order's row lock (order_locked noted it)."""
    session = db.session()
    kept = session.info.get(_LOCKED_ORDERS)
    return kept is not None and kept[0] is session.get_transaction() and order_id in kept[1]


def lock_order(order: Order) -> None:
    """Hold the order's row lock for the rest of the transaction before its state is derived (PostgreSQL; SQLite's
    write lock already serializes writers). An order read before the lock is read again, unless it has changes of
    this transaction pending, which reading it again would drop: code that changes an order reads it locked first
    (locked_order, locked_checkout(with_order)), so this is only the safety net for a caller that did not."""
    session = db.session()
    if session.get_bind().dialect.name == "sqlite" or inspect(order).transient or order.id is None:
        return
    if holds_order_lock(order.id):
        return
    execute_core(LOCK_ORDER, {"order_id": order.id})
    order_locked(order.id)
    if not inspect(order).modified:
        session.refresh(order)


def lock_for_update(stmt):
    """The statement with FOR UPDATE where the database has row locks (SQLite: the transaction's write lock)."""
    if db.session.get_bind().dialect.name != "sqlite":
        stmt = stmt.with_for_update(of=Checkout)
    return stmt
