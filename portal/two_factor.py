"""Two-factor sign-in: TOTP (RFC 6238, pyotp) with ten one-time recovery codes; the secret encrypted at rest."""

from __future__ import annotations

import hmac
import secrets
import time

import pyotp
import segno

from portal.extensions import db
from portal.models import RecoveryCode, User, utcnow
from portal.security import decrypt_secret, encrypt_secret, hash_password, verify_password

ISSUER = "Checkout Portal"
RECOVERY_CODES = 10
# Codes of the step before and after are accepted too (a phone's clock a little off); each step is used once.
VALID_WINDOW = 1
RECOVERY_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read off a printout


def _totp(user: User) -> pyotp.TOTP | None:
    secret = decrypt_secret(user.totp_secret_enc)
    return pyotp.TOTP(secret) if secret else None


def start_enrolment(user: User) -> str:
    """A new secret for the user (replacing an unconfirmed one); returns the otpauth:// URI for the app's QR code."""
    if user.two_factor_enabled:
        raise ValueError("two-factor sign-in is already on")
    secret = pyotp.random_base32()
    user.totp_secret_enc = encrypt_secret(secret)
    user.totp_last_step = None
    return pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=ISSUER)


def enrolment_uri(user: User) -> str | None:
    """The otpauth:// URI of an enrolment in progress, or None."""
    totp = _totp(user)
    if totp is None or user.two_factor_enabled:
        return None
    return totp.provisioning_uri(name=user.email, issuer_name=ISSUER)


def qr_svg(uri: str) -> str:
    """The URI as an inline SVG QR code, made on the server."""
    return segno.make(uri, error="m").svg_inline(scale=4, border=2, dark="#14213d")


def _matching_step(totp: pyotp.TOTP, code: str, now: float) -> int | None:
    """The time step whose code this is (within the window), or None."""
    code = "".join(code.split())
    if not (code.isascii() and code.isdigit() and len(code) == 6):
        return None
    step = int(now) // totp.interval
    for candidate in range(step - VALID_WINDOW, step + VALID_WINDOW + 1):
        if hmac.compare_digest(totp.at(candidate * totp.interval), code):
            return candidate
    return None


def confirm_enrolment(user: User, code: str, now: float | None = None) -> list[str] | None:
    """Turn two-factor sign-in on when the code from the app is right; returns the recovery codes (shown once)."""
    totp = _totp(user)
    if totp is None or user.two_factor_enabled:
        return None
    step = _matching_step(totp, code, time.time() if now is None else now)
    if step is None:
        return None
    user.totp_confirmed_at = utcnow()
    user.totp_last_step = step
    return new_recovery_codes(user)


def new_recovery_codes(user: User) -> list[str]:
    """Ten new one-time codes replacing the old ones; only their hashes are kept."""
    user.recovery_codes.clear()
    codes = ["".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(10)) for _ in range(RECOVERY_CODES)]
    for code in codes:
        user.recovery_codes.append(RecoveryCode(code_hash=hash_password(code)))
    return [f"{code[:5]}-{code[5:]}" for code in codes]


def verify(user: User, code: str, now: float | None = None) -> str | None:
    """Check a sign-in code: "totp" or "recovery" when accepted (each accepted once), None when not."""
    totp = _totp(user)
    if totp is None or not user.two_factor_enabled:
        return None
    step = _matching_step(totp, code, time.time() if now is None else now)
    if step is not None:
        if user.totp_last_step is not None and step <= user.totp_last_step:
            return None  # a code already used (or an older one): replay
        user.totp_last_step = step
        return "totp"
    typed = "".join(ch for ch in code.upper() if ch.isalnum())
    if len(typed) == 10:
        for recovery in user.recovery_codes:
            if recovery.used_at is None and verify_password(recovery.code_hash, typed):
                recovery.used_at = utcnow()
                return "recovery"
    return None


def recovery_codes_left(user: User) -> int:
    return sum(1 for code in user.recovery_codes if code.used_at is None)


def turn_off(user: User) -> None:
    """Two-factor sign-in off (the user's own choice with their password, or an admin's reset): secret and codes go."""
    user.totp_secret_enc = None
    user.totp_confirmed_at = None
    user.totp_last_step = None
    user.recovery_codes.clear()
    db.session.flush()
