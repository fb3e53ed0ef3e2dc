"""The outbox: what the portal sends (mails now, the merchant's webhooks later) is written as a row in the same database
transaction as the change that causes it, and sent afterwards by the worker.

Nothing is lost when a process dies: a row is sent until it is marked sent. Nothing is sent twice by two workers: a
worker claims rows under row locks (FOR UPDATE SKIP LOCKED on PostgreSQL; SQLite's write lock), marks them "sending"
with a lease, and only then sends. A worker that dies while sending leaves the row to be claimed again when the lease
ends (the one window in which a mail can go twice; its Message-ID stays the same, so mail clients show it once).
A row is never enqueued twice for one event: its dedupe key is unique.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import bindparam, or_, select, union_all, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert

from portal.extensions import db, execute_core, insert_ignoring_conflicts
from portal.models import OutboxMessage, OutboxState, utcnow
from portal.payments.locking import write_transaction

log = logging.getLogger(__name__)

# A claimed row is the claimer's for this long; longer than a send can take (SMTP and webhook timeouts are 10-30 s).
LEASE = timedelta(minutes=5)


@dataclass(frozen=True)
class RetryPolicy:
    """Growing delays between attempts, and when to give up."""

    first_delay: timedelta
    max_delay: timedelta
    give_up_after: timedelta

    def next_attempt(self, attempts: int, created_at, now) -> object | None:
        """When to try again after `attempts` failed tries; None to give up."""
        delay = min(self.first_delay * (2 ** max(attempts - 1, 0)), self.max_delay)
        if now + delay - created_at > self.give_up_after:
            return None
        return now + delay


# kind: (sender, retry policy). Senders raise to have the row retried; what they raise is kept as last_error.
SENDERS: dict[str, tuple[Callable[[OutboxMessage], None], RetryPolicy]] = {}

MAIL_RETRY = RetryPolicy(timedelta(minutes=1), timedelta(hours=1), timedelta(days=2))


def register(kind: str, sender: Callable[[OutboxMessage], None], policy: RetryPolicy) -> None:
    SENDERS[kind] = (sender, policy)


def enqueue(
    kind: str,
    topic: str,
    *,
    dedupe_key: str,
    merchant_id: int | None,
    order_id: int | None = None,
    payload: dict | None = None,
) -> bool:
    """Add a message in the caller's transaction (nothing is committed here); False when one with this dedupe key
    was enqueued before (the event already has its message). While held (held_messages), the row is kept for the
    caller to write with the change that caused it, and True answered (whether it is new is known only then)."""
    now = utcnow()
    row = {
        "kind": kind,
        "topic": topic,
        "dedupe_key": dedupe_key,
        "merchant_id": merchant_id,
        "order_id": order_id,
        "payload": payload or {},
        "state": OutboxState.PENDING.value,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }
    held = db.session().info.get(_HELD)
    if held is not None:
        held.append(row)
        return True
    stmt = insert_ignoring_conflicts(OutboxMessage, OutboxMessage.id)
    return execute_core(stmt, row).scalar_one_or_none() is not None


_HELD = "portal.outbox_held"  # session info: the rows enqueued while held_messages is open


@contextlib.contextmanager
def held_messages():
    """Messages enqueued in the block are not written but gathered in the list given, for the caller to write with
    the change that caused them (write_with, on PostgreSQL in that change's statement: one round trip less)."""
    info = db.session().info
    outer = info.get(_HELD)
    rows: list[dict] = []
    info[_HELD] = rows
    try:
        yield rows
    finally:
        if outer is None:
            info.pop(_HELD, None)
        else:
            info[_HELD] = outer


def write_with(change, params: dict, rows: list[dict]) -> None:
    """Run `change` (a Core UPDATE built once, with its `params`; None for none) and write the rows held while it was
    decided (held_messages), in the caller's transaction: on PostgreSQL in one statement (the change as a data-modifying
    CTE of the rows' INSERT … ON CONFLICT DO NOTHING), elsewhere one after the other."""
    postgresql = db.session.get_bind().dialect.name == "postgresql"
    if change is not None and rows and postgresql:
        columns = tuple(rows[0])
        numbered = {f"m{i}_{name}": row[name] for i, row in enumerate(rows) for name in columns}
        execute_core(_change_and_insert(change, columns, len(rows)), {**params, **numbered})
        return
    if change is not None:
        execute_core(change, params)
    for row in rows:
        execute_core(insert_ignoring_conflicts(OutboxMessage, OutboxMessage.id), row)


@functools.cache
def _change_and_insert(change, columns: tuple[str, ...], count: int):
    """PostgreSQL, built once per change, columns and number of rows: the change in a CTE, then the rows' INSERT (from
    a SELECT of the rows' parameters: SQLAlchemy caches no multi-row VALUES, which it would compile every time)."""
    table = OutboxMessage.__table__
    rows = [select(*(bindparam(f"m{i}_{name}", type_=table.c[name].type) for name in columns)) for i in range(count)]
    values = rows[0] if count == 1 else union_all(*rows)
    insert = postgresql_insert(table).from_select(columns, values, include_defaults=False)
    return insert.on_conflict_do_nothing().add_cte(change.cte("changed"))


def claim(limit: int = 20, kinds: tuple[str, ...] | None = None) -> list[int]:
    """Claim up to `limit` due messages for this worker; their ids. Due: pending and its time has come, or being sent
    by a worker whose lease has ended."""
    now = utcnow()
    due = or_(
        (OutboxMessage.state == OutboxState.PENDING.value) & (OutboxMessage.next_attempt_at <= now),
        (OutboxMessage.state == OutboxState.SENDING.value) & (OutboxMessage.locked_until < now),
    )
    stmt = db.select(OutboxMessage.id).where(due).order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
    if kinds:
        stmt = stmt.where(OutboxMessage.kind.in_(kinds))
    stmt = stmt.limit(limit)
    with write_transaction():
        if db.session.get_bind().dialect.name != "sqlite":
            stmt = stmt.with_for_update(skip_locked=True)
        ids = list(db.session.execute(stmt).scalars())
        if ids:
            db.session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id.in_(ids))
                .values(state=OutboxState.SENDING.value, locked_until=now + LEASE, attempts=OutboxMessage.attempts + 1)
            )
    return ids


def send_claimed(message_id: int) -> bool:
    """Send one claimed message and record the outcome; True when it went."""
    message = db.session.get(OutboxMessage, message_id, populate_existing=True)
    sender, policy = SENDERS[message.kind]
    started = time.monotonic()
    try:
        sender(message)
    except Exception as exc:  # every failure is retried: the sender says what went wrong
        db.session.rollback()
        error = f"{type(exc).__name__}: {exc}"[:500]
        log.warning(
            "outbox %s (%s %s) attempt %s failed: %s", message_id, message.kind, message.topic, message.attempts, error
        )
        _after_failure(message_id, error, policy)
        return False
    with write_transaction():
        db.session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == message_id)
            .values(
                state=OutboxState.SENT.value,
                sent_at=utcnow(),
                locked_until=None,
                last_error=None,
                last_duration_ms=int((time.monotonic() - started) * 1000),
            )
        )
    return True


def _after_failure(message_id: int, error: str, policy: RetryPolicy) -> None:
    with write_transaction():
        message = db.session.get(OutboxMessage, message_id, populate_existing=True)
        now = utcnow()
        retry_at = policy.next_attempt(message.attempts, message.created_at, now)
        message.last_error = error
        message.locked_until = None
        if retry_at is None:
            message.state = OutboxState.FAILED.value
        else:
            message.state = OutboxState.PENDING.value
            message.next_attempt_at = retry_at


def deliver_due(limit: int = 20, kinds: tuple[str, ...] | None = None) -> tuple[int, int]:
    """Claim and send what is due (of the given kinds; default every registered kind); (sent, failed)."""
    sent = failed = 0
    for message_id in claim(limit, kinds=kinds or tuple(SENDERS)):
        if send_claimed(message_id):
            sent += 1
        else:
            failed += 1
    return sent, failed
