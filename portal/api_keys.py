"""API keys of the merchant's systems: made (shown once), stored as a SHA-256 hash, looked up by that hash, revoked.

A key is `ptl_live_` (PROVIDER_ENV production) or `ptl_test_` followed by 32 random bytes (URL-safe base64). So much
randomness needs no slow hash or salt: the SHA-256 of the key is its lookup value (a unique index), and it stays valid
when SECRET_KEY is rotated. Only the first characters (the prefix) are kept to tell keys apart on the settings page.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from sqlalchemy import or_, update

from portal.extensions import db
from portal.models import ApiKey, Merchant, utcnow
from portal.payments.locking import write_transaction
from portal.security import audit

KEY_RANDOM_BYTES = 32
PREFIX_CHARS = 16  # ApiKey.prefix: "ptl_live_" and the first 7 random characters
NAME_MAX_CHARS = 100
KEY_MAX_CHARS = 200  # a longer Bearer token is never a key; not hashed
# last_used_at is written at most once a minute per key, not on every request.
TOUCH_INTERVAL_S = 60.0

_touched: dict[str, float] = {}  # key hash -> monotonic time of this process's last write of last_used_at
_touched_lock = threading.Lock()


@dataclass(frozen=True)
class NewKey:
    """A key just made: `secret` is the whole key, shown once and never stored."""

    api_key: ApiKey
    secret: str


def key_kind() -> str:
    return "live" if current_app.config.get("PROVIDER_ENV") == "production" else "test"


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def create_key(
    merchant: Merchant, name: str, *, can_refund: bool, user_id: int | None, form_token: str | None = None
) -> NewKey:
    """A new key for the merchant, audited (without the key); commits. Returns the key to show once.

    `form_token` (unique) names the form that asked: the same form sent again raises IntegrityError."""
    name = name.strip()
    if not name or len(name) > NAME_MAX_CHARS:
        raise ValueError(f"a key's name is 1 to {NAME_MAX_CHARS} characters")
    secret = f"ptl_{key_kind()}_{secrets.token_urlsafe(KEY_RANDOM_BYTES)}"
    with write_transaction():
        key = ApiKey(
            merchant_id=merchant.id,
            name=name,
            prefix=secret[:PREFIX_CHARS],
            key_hash=hash_key(secret),
            can_refund=can_refund,
            created_by_id=user_id,
            form_token=form_token,
        )
        db.session.add(key)
        db.session.flush()
        audit(
            "api_key_created",
            merchant_id=merchant.id,
            user_id=user_id,
            key_id=key.id,
            name=name,
            prefix=key.prefix,
            refunds=can_refund,
        )
    return NewKey(api_key=key, secret=secret)


def merchant_keys(merchant_id: int) -> list[ApiKey]:
    """The merchant's keys, active first, newest first."""
    stmt = (
        db.select(ApiKey)
        .where(ApiKey.merchant_id == merchant_id)
        .order_by(ApiKey.revoked_at.is_not(None), ApiKey.created_at.desc(), ApiKey.id.desc())
    )
    return list(db.session.execute(stmt).scalars())


def revoke_key(merchant_id: int, key_id: int, *, user_id: int | None) -> ApiKey | None:
    """Revoke the merchant's key (audited); None when it is not the merchant's. A revoked key stays revoked."""
    with write_transaction():
        key = db.session.execute(
            db.select(ApiKey).where(ApiKey.id == key_id, ApiKey.merchant_id == merchant_id)
        ).scalar_one_or_none()
        if key is None:
            return None
        if key.revoked_at is None:
            key.revoked_at = utcnow()
            audit(
                "api_key_revoked",
                merchant_id=merchant_id,
                user_id=user_id,
                key_id=key.id,
                name=key.name,
                prefix=key.prefix,
            )
    return key


def authenticate(secret: str | None) -> ApiKey | None:
    """The active key this secret is, or None (missing, malformed, unknown or revoked)."""
    if not secret or len(secret) > KEY_MAX_CHARS or not secret.isascii() or not secret.startswith("ptl_"):
        return None
    digest = hash_key(secret)
    key = db.session.execute(db.select(ApiKey).where(ApiKey.key_hash == digest)).scalar_one_or_none()
    if key is None or not hmac.compare_digest(key.key_hash, digest) or key.revoked_at is not None:
        return None
    return key


def is_active(key_id: int) -> bool:
    """Whether the key is still not revoked (read afresh)."""
    revoked = db.session.execute(
        db.select(ApiKey.revoked_at).where(ApiKey.id == key_id).execution_options(populate_existing=True)
    ).one_or_none()
    return revoked is not None and revoked[0] is None


def touch(key: ApiKey) -> None:
    """Record the key's use: at most one write a minute per key (per process, and in the database)."""
    now = time.monotonic()
    with _touched_lock:
        last = _touched.get(key.key_hash)
        if last is not None and now - last < TOUCH_INTERVAL_S:
            return
        _touched[key.key_hash] = now
    moment = utcnow()
    cutoff = moment - timedelta(seconds=TOUCH_INTERVAL_S)
    if key.last_used_at is not None and key.last_used_at > cutoff:
        return
    with write_transaction():
        db.session.execute(
            update(ApiKey)
            .where(ApiKey.id == key.id)
            .where(or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < cutoff))
            .values(last_used_at=moment)
            .execution_options(synchronize_session=False)
        )
