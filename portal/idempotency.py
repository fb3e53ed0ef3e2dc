"""Idempotency keys of the JSON API, as Stripe defines them.

A POST with an `Idempotency-Key` header claims a record (api key, idempotency key) before it does any work: the record
is inserted if absent under the database's write lock (SQLite: the writer queue and BEGIN IMMEDIATE; PostgreSQL: the
unique index, a second insert waiting for the first transaction). The request holding the claim (`locked_until`) does
the work and keeps its answer (status and body; every answer but a 5xx) for 24 hours. Another request with the same
key then gets:

- the same method, path and body (the fingerprint): the kept answer again, or, while the first is still at work, a
  brief wait for it and else 409 with Retry-After;
- anything else: 422.

A 5xx answer, or a request that ended without one, frees the key so a retry does the work again (services that must
not run twice, such as a refund, carry their own key derived from this one). Expired records are purged when the
API key claims a new one, and replaced when their key comes back.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete

from portal.extensions import db, insert_ignoring_conflicts
from portal.models import IdempotencyRecord, utcnow
from portal.payments.locking import write_transaction

KEY_MAX_CHARS = 255
KEEP_FOR = timedelta(hours=24)
# How long the first request holds the key; a request that died leaves it free again after this (the longest work
# is a provider call: PROVIDER_TIMEOUT_S, 10 s by default).
HOLD_FOR = timedelta(seconds=60)
WAIT_S = 5.0  # how long a concurrent request with the same key waits for the first answer before 409
POLL_S = 0.05


@dataclass(frozen=True)
class Claim:
    """What begin() decided: "owner" (do the work, then finish()), "replay" (status, body), "mismatch", "busy"."""

    outcome: str
    record_id: int | None = None
    status: int | None = None
    body: str | None = None


def valid_key(key: str) -> bool:
    """1 to 255 visible ASCII characters."""
    return 0 < len(key) <= KEY_MAX_CHARS and key.isascii() and key.isprintable()


def fingerprint(method: str, path: str, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path.encode("utf-8", "surrogateescape"), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def _record(api_key_id: int, key: str) -> IdempotencyRecord | None:
    stmt = (
        db.select(IdempotencyRecord)
        .where(IdempotencyRecord.api_key_id == api_key_id, IdempotencyRecord.key == key)
        .execution_options(populate_existing=True)
    )
    if db.session.get_bind().dialect.name != "sqlite":
        stmt = stmt.with_for_update()
    return db.session.execute(stmt).scalar_one_or_none()


def _try_claim(api_key_id: int, key: str, print_: str, still_valid) -> Claim:
    now = utcnow()
    with write_transaction():
        if still_valid is not None and not still_valid():
            return Claim("revoked")
        inserted = db.session.execute(
            insert_ignoring_conflicts(IdempotencyRecord, returning=IdempotencyRecord.id),
            {
                "api_key_id": api_key_id,
                "key": key,
                "fingerprint": print_,
                "status_code": None,
                "response_body": None,
                "created_at": now,
                "locked_until": now + HOLD_FOR,
                "expires_at": now + KEEP_FOR,
            },
        ).scalar_one_or_none()
        if inserted is not None:
            # Purged as keys are used: the key's records past their 24 hours (the api_key_id index finds them).
            db.session.execute(
                delete(IdempotencyRecord).where(
                    IdempotencyRecord.api_key_id == api_key_id, IdempotencyRecord.expires_at <= now
                )
            )
            return Claim("owner", record_id=inserted)
        record = _record(api_key_id, key)
        if record is None:  # deleted between the insert and the read (a 5xx freed it): try again
            return Claim("retry")
        if record.expires_at <= now:  # an old record not purged yet: the key is new again
            record.fingerprint = print_
            record.status_code = None
            record.response_body = None
            record.created_at = now
            record.locked_until = now + HOLD_FOR
            record.expires_at = now + KEEP_FOR
            return Claim("owner", record_id=record.id)
        if record.fingerprint != print_:
            return Claim("mismatch")
        if record.status_code is not None:
            return Claim("replay", record_id=record.id, status=record.status_code, body=record.response_body)
        if record.locked_until is None or record.locked_until <= now:  # its holder ended without an answer
            record.locked_until = now + HOLD_FOR
            return Claim("owner", record_id=record.id)
        return Claim("busy", record_id=record.id)


def begin(api_key_id: int, key: str, print_: str, *, still_valid=None, wait_s: float = WAIT_S) -> Claim:
    """Claim the key for this request, or say what to answer instead (waiting up to wait_s for a first answer).

    `still_valid`, if given, is called inside the claiming transaction: False answers Claim("revoked").
    """
    deadline = time.monotonic() + wait_s
    while True:
        claim = _try_claim(api_key_id, key, print_, still_valid)
        if claim.outcome not in ("busy", "retry"):
            return claim
        if time.monotonic() >= deadline:
            return Claim("busy")
        time.sleep(POLL_S)


def finish(record_id: int, status: int, body: str) -> None:
    """Keep the answer (not a 5xx: that frees the key for a retry)."""
    db.session.rollback()
    with write_transaction():
        record = db.session.get(IdempotencyRecord, record_id, populate_existing=True)
        if record is None:
            return
        if status >= 500:
            db.session.delete(record)
            return
        now = utcnow()
        record.status_code = status
        record.response_body = body
        record.locked_until = None
        record.expires_at = now + KEEP_FOR


def release(record_id: int) -> None:
    """The request ended without an answer to keep: free the key."""
    finish(record_id, 500, "")


def purge(now=None) -> int:
    """Delete records past their 24 hours; returns how many."""
    now = now or utcnow()
    with write_transaction():
        result = db.session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.expires_at <= now))
    return result.rowcount or 0
