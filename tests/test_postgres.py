"""What only PostgreSQL can show: the migrations build the models' schema there, and checkouts are really locked.

These run in `make test`'s PostgreSQL pass (TEST_DATABASE_URL=postgresql+psycopg://...); on SQLite they are skipped.
"""

from __future__ import annotations

import os
import threading

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import upgrade
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from portal.extensions import db
from portal.payments import locked_checkout, write_transaction
from tests.support.apps import make_app
from tests.support.factories import make_checkout, make_order

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        not os.environ.get("TEST_DATABASE_URL", "").startswith("postgresql"),
        reason="needs TEST_DATABASE_URL pointing at PostgreSQL (make test sets it from TEST_POSTGRES_URL)",
    ),
]


def drop_everything() -> None:
    db.drop_all()
    with db.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")


def test_upgrade_from_empty_matches_the_models_on_postgresql(tmp_path):
    app = make_app(tmp_path)
    with app.app_context():
        assert db.engine.dialect.name == "postgresql"
        drop_everything()
        try:
            upgrade()
            with db.engine.connect() as conn:
                diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
            assert diff == [], diff
        finally:
            drop_everything()  # the next test's create_all starts from nothing
            db.session.remove()
            db.engine.dispose()


def test_a_checkout_in_a_write_transaction_is_locked_against_other_writers(app, seed):
    """locked_checkout takes a row lock (SELECT ... FOR UPDATE): a second writer cannot take it meanwhile."""
    with app.app_context():
        checkout_id = make_checkout(make_order(seed.merchant_id)).id
    locked, release, outcome = threading.Event(), threading.Event(), {}

    def holder():
        with app.app_context():
            with write_transaction():
                locked_checkout(checkout_id)
                locked.set()
                release.wait(10)
            db.session.remove()

    thread = threading.Thread(target=holder)
    thread.start()
    other = create_engine(app.config["SQLALCHEMY_DATABASE_URI"])
    try:
        assert locked.wait(10)
        with other.connect() as conn:
            try:
                conn.execute(text("SELECT id FROM checkout WHERE id = :id FOR UPDATE NOWAIT"), {"id": checkout_id})
                outcome["second_writer"] = "got the lock"
            except OperationalError as exc:
                outcome["second_writer"] = type(exc.orig).__name__
    finally:
        release.set()
        thread.join(10)
        other.dispose()
    assert outcome["second_writer"] == "LockNotAvailable"
    with other.connect() as conn:  # released at commit
        conn.execute(text("SELECT id FROM checkout WHERE id = :id FOR UPDATE NOWAIT"), {"id": checkout_id})
    other.dispose()


@pytest.mark.parametrize("with_order", [True, False], ids=["order read with the attempt", "order read after"])
def test_two_attempts_of_one_order_settled_at_once_leave_the_order_paid(app, seed, with_order):
    """A late payment of an expired attempt and the failure of the order's new attempt, applied at the same moment by
    two workers: the order's state is derived from both, not from a read taken before the other committed (each
    transaction locked only its own attempt, so the second derived "failed" from a stale read and overwrote "paid").
    Whether the order was read (and locked) with the attempt or, lazily, after it."""
    from portal.models import Order
    from portal.payments import apply_state

    with app.app_context():
        order = make_order(seed.merchant_id)
        late_id = make_checkout(order, state="expired").id
        new_id = make_checkout(order).id
        order_id, payable = order.id, order.payable
    applied, release, errors = threading.Event(), threading.Event(), []

    def settle(checkout_id, state, hold):
        try:
            with app.app_context():
                with write_transaction():
                    checkout = locked_checkout(checkout_id, with_order=with_order)
                    apply_state(checkout, state, source="query", detail="{}", amount=payable)
                    if hold:
                        applied.set()
                        release.wait(10)
                db.session.remove()
        except Exception as exc:  # noqa: BLE001 (reported by the test below)
            errors.append(exc)

    paying = threading.Thread(target=settle, args=(late_id, "paid", True))
    paying.start()
    assert applied.wait(10)
    failing = threading.Thread(target=settle, args=(new_id, "failed", False))
    failing.start()
    failing.join(1)  # it waits for the paying transaction (for the order's lock, or for its row at the latest)
    release.set()
    paying.join(10)
    failing.join(10)
    assert errors == []
    with app.app_context():
        order = db.session.get(Order, order_id)
        assert (order.state, order.paid_amount) == ("paid", payable)


def count_pings(monkeypatch) -> list[int]:
    """The pings the engine's dialect sends from now on (each a round trip), counted."""
    pings: list[int] = []
    dialect = db.engine.dialect
    ping = dialect.do_ping
    monkeypatch.setattr(dialect, "do_ping", lambda connection: pings.append(1) or ping(connection))
    return pings


def use_the_database() -> int:
    """One request's use of the database: a query, then the connection back to the pool; the server process's id."""
    pid = db.session.execute(text("SELECT pg_backend_pid()")).scalar_one()
    db.session.remove()
    return pid


def test_a_connection_the_server_ended_is_replaced_before_a_request_gets_it(app, monkeypatch):
    """A server restart, a failover or an administrator (here: pg_terminate_backend) ends a connection that sits in
    the pool: the next request gets a live connection, not an error, however recently the ended one was used. The
    server said so on the connection's socket as it ended it; seeing that costs no round trip (a ping is sent only
    then, to read what it said)."""
    with app.app_context():
        first = use_the_database()
        other = create_engine(app.config["SQLALCHEMY_DATABASE_URI"])
        try:
            with other.connect() as conn:
                ended = conn.execute(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": first}).scalar_one()
                assert ended  # waited until the server process was gone, as after a restart
        finally:
            other.dispose()
        pings = count_pings(monkeypatch)
        assert use_the_database() != first
        assert pings == [1]


def test_a_live_connection_is_handed_to_the_next_request_without_a_round_trip(app, monkeypatch):
    """Checking every connection with a ping before each request cost each callback one of its round trips to the
    server: a connection the server has not ended is used as it is, with the same server process."""
    with app.app_context():
        first = use_the_database()
        pings = count_pings(monkeypatch)
        assert use_the_database() == first
        assert use_the_database() == first
        assert pings == []
