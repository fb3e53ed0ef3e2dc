"""Secret encryption at rest, password hashing, roles and the audit trail."""

from __future__ import annotations

import base64
import functools
import hashlib
import logging

from Crypto.Cipher import AES
from Crypto.Random import get_random_bytes
from flask import abort, current_app, flash, has_request_context, redirect, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required
from werkzeug.security import check_password_hash, generate_password_hash

from portal.extensions import db

log = logging.getLogger(__name__)

# scrypt with N = 2^16 (werkzeug's default is 2^15).
PASSWORD_METHOD = "scrypt:65536:8:1"  # noqa: S105  # nosec B105  # a hash method, not a password
_VERSION = "v1"


def _data_key() -> bytes:
    """The 256-bit key derived from PORTAL_DATA_KEY."""
    return hashlib.sha256(current_app.config["PORTAL_DATA_KEY"].encode()).digest()


def encrypt_secret(plaintext: str | None) -> str | None:
    """AES-256-GCM under PORTAL_DATA_KEY; the output is "v1:" + base64(nonce ‖ ciphertext ‖ tag)."""
    if not plaintext:
        return None
    nonce = get_random_bytes(12)
    cipher = AES.new(_data_key(), AES.MODE_GCM, nonce=nonce)
    ciphertext, tag = cipher.encrypt_and_digest(plaintext.encode())
    return f"{_VERSION}:" + base64.b64encode(nonce + ciphertext + tag).decode()


def decrypt_secret(token: str | None) -> str | None:
    """The plaintext of encrypt_secret's output; raises ValueError if it was tampered with."""
    if not token:
        return None
    version, _, payload = token.partition(":")
    if version != _VERSION:
        raise ValueError("unknown secret format")
    raw = base64.b64decode(payload)
    nonce, ciphertext, tag = raw[:12], raw[12:-16], raw[-16:]
    cipher = AES.new(_data_key(), AES.MODE_GCM, nonce=nonce)
    return cipher.decrypt_and_verify(ciphertext, tag).decode()


def hash_password(password: str) -> str:
    """A salted scrypt hash."""
    return generate_password_hash(password, method=current_app.config.get("PASSWORD_HASH_METHOD", PASSWORD_METHOD))


def verify_password(password_hash: str, password: str) -> bool:
    """Whether the password matches (constant time)."""
    return check_password_hash(password_hash, password)


# A hash to check against when the account does not exist, so both cases take the same time.
_DUMMY_HASH: str | None = None


def verify_password_or_dummy(password_hash: str | None, password: str) -> bool:
    """Verify against the user's hash, or a dummy one so a missing account costs the same time."""
    global _DUMMY_HASH
    if password_hash is None:
        if _DUMMY_HASH is None:
            _DUMMY_HASH = hash_password("not-a-password")
        check_password_hash(_DUMMY_HASH, password)
        return False
    return check_password_hash(password_hash, password)


def admin_required(view):
    """Only a logged-in admin may pass; staff get 403. Where the merchant asks for it, only with two-factor sign-in on
    (the admin is sent to turn it on first)."""

    @functools.wraps(view)
    @login_required
    def wrapped(*args, **kwargs):
        if not current_user.is_admin:
            abort(403)
        if current_user.merchant.require_admin_two_factor and not current_user.two_factor_enabled:
            flash(_("Your shop asks admins to turn on two-factor sign-in before refunds and settings."), "warning")
            return redirect(url_for("auth.two_factor_setup"))
        return view(*args, **kwargs)

    return wrapped


def audit(action: str, *, merchant_id: int | None = None, user_id: int | None = None, **detail) -> None:
    """Append an audit event to the session (committed with the caller's transaction)."""
    from portal.models import AuditEvent

    if user_id is None and has_request_context() and current_user.is_authenticated:
        user_id = current_user.id
        if merchant_id is None:
            merchant_id = current_user.merchant_id
    ip = request.remote_addr if has_request_context() else None
    db.session.add(AuditEvent(merchant_id=merchant_id, user_id=user_id, action=action, detail=detail, ip=ip))
    log.info("audit %s merchant=%s user=%s", action, merchant_id, user_id)
