"""SQLite writers wait in the kernel's queue (a flock beside the database), not in SQLite's polling busy handler."""

from __future__ import annotations

import os
import stat
import threading
import time

import pytest
from sqlalchemy import text

from portal.extensions import db
from portal.payments.locking import write_transaction


def _sqlite_path(app) -> str:
    with app.app_context():
        if db.engine.dialect.name != "sqlite":
            pytest.skip("the writers' queue is SQLite's; PostgreSQL has row locks")
        return db.engine.url.database


def test_a_second_writer_waits_for_the_first_and_then_goes_at_once(app, seed):
    path = _sqlite_path(app)
    inside, release, order = threading.Event(), threading.Event(), []

    def first():
        with app.app_context(), write_transaction():
            db.session.execute(text("UPDATE merchant SET name = name"))
            order.append("first in")
            inside.set()
            release.wait(10)
            order.append("first out")

    def second():
        inside.wait(10)
        with app.app_context():
            # No busy handler at all on this connection: it may only wait in the queue, never in SQLite.
            db.session.execute(text("PRAGMA busy_timeout = 0"))
            try:
                with write_transaction():
                    order.append("second in")
            except Exception as exc:  # "database is locked" if it reached SQLite's lock while the first held it
                order.append(f"second failed: {exc.__class__.__name__}")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    inside.wait(10)
    time.sleep(0.3)
    assert order == ["first in"]  # the second is queued while the first holds the write lock
    release.set()
    for thread in threads:
        thread.join(10)
    assert order == ["first in", "first out", "second in"]
    queue_file = path + "-writers"
    assert stat.S_IMODE(os.stat(queue_file).st_mode) == 0o600  # beside the database, as private as it


def test_a_writer_that_fails_leaves_the_queue_to_the_next(app, seed):
    _sqlite_path(app)
    with app.app_context():
        with pytest.raises(RuntimeError), write_transaction():
            raise RuntimeError("boom")
        done = threading.Event()

        def next_writer():
            with app.app_context(), write_transaction():
                done.set()

        thread = threading.Thread(target=next_writer)
        thread.start()
        thread.join(10)
        assert done.is_set()


def test_a_writers_turn_ends_with_its_commit(app, seed):
    """The next writer goes as soon as the first has committed, not after the first session's own bookkeeping that
    follows the commit (expiring what it read, returning its connection): that is no longer the database's business."""
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    _sqlite_path(app)
    first_open, second_in, seen = threading.Event(), threading.Event(), []

    def after_commit(_session):  # after the portal's own after_commit listener, in the committing writer's thread
        if threading.current_thread().name == "first writer" and first_open.is_set():
            seen.append(second_in.wait(5))

    def writer(opened: threading.Event | None, done: threading.Event | None):
        with app.app_context(), write_transaction():
            db.session.execute(text("UPDATE merchant SET name = name"))
            if opened is not None:
                opened.set()
                time.sleep(0.2)
            if done is not None:
                done.set()

    event.listen(Session, "after_commit", after_commit)
    try:
        first = threading.Thread(target=writer, args=(first_open, None), name="first writer")
        second = threading.Thread(target=writer, args=(None, second_in))
        first.start()
        assert first_open.wait(10)
        second.start()
        first.join(10)
        second.join(10)
    finally:
        event.remove(Session, "after_commit", after_commit)
    assert seen == [True]  # the second writer was in while the first was still finishing its commit
