"""Merchants, their provider settings and their users: the services the settings pages and the CLI share."""

from __future__ import annotations

import hmac

from flask import current_app
from flask_babel import lazy_gettext as _l
from zxcvbn import zxcvbn
from zxcvbn.frequency_lists import FREQUENCY_LISTS

from portal.extensions import db
from portal.models import ROLES, Merchant, User, UserSession
from portal.providers import NAMES
from portal.security import decrypt_secret, encrypt_secret, hash_password

MIN_PASSWORD_CHARS = 12
# The 30,000 most common passwords of zxcvbn's list (leaked password sets), compared without case.
COMMON_PASSWORDS = frozenset(FREQUENCY_LISTS["passwords"])
PROVIDER_ID_FIELDS = ("oen_merchant_id", "mypay_store_uid", "opay_merchant_id")
PROVIDER_SECRET_FIELDS = ("oen_token", "opay_hash_key", "opay_hash_iv")
# The shop's contact for its customers, the staff notice address (text, empty: none) and the reminder delay (hours).
SHOP_TEXT_FIELDS = ("contact_phone", "contact_email", "contact_note", "notify_email")
MAX_REMINDER_HOURS = 720  # 30 days

# The sandbox server's published test accounts (sandbox/registry.py): Oen's is the sandbox's own, MyPay's and O'Pay's
# are the documents' test store and stage merchant. No credential at any real provider.
DEMO_MERCHANT = {
    "slug": "demo",
    "name": "示範商店 Demo Shop",
    "oen_merchant_id": "demo",
    "oen_token": "sandbox-oen-demo-token",  # nosec B105  # the sandbox's published test token, no real account
    "mypay_store_uid": "289151880002",
    "opay_merchant_id": "2000132",
    "opay_hash_key": "5294y06JbISpM5x9",
    "opay_hash_iv": "v77hoKGq4kWxNNIS",
}
DEMO_USERS = (
    ("admin@demo.example", "admin", "demo-admin-pass"),
    ("staff@demo.example", "staff", "demo-staff-pass"),
)


def upsert_merchant(slug: str, name: str, **provider) -> Merchant:
    """Create the merchant or update its name and the provider settings given."""
    merchant = db.session.execute(db.select(Merchant).filter_by(slug=slug)).scalar_one_or_none()
    if merchant is None:
        merchant = Merchant(slug=slug, name=name)
        db.session.add(merchant)
    merchant.name = name
    plain = {"oen_merchant_id", "mypay_store_uid", "opay_merchant_id"}
    for key, value in provider.items():
        if value is None:
            continue
        if key in plain:
            setattr(merchant, key, value)
        else:
            setattr(merchant, f"{key}_enc", encrypt_secret(value))
    return merchant


def password_problem(password: str, *, user_inputs: tuple[str, ...] = ()) -> str | None:
    """Why a new password is refused (in the reader's language), or None: 12 characters at least, not a common
    password, and not easy to guess (zxcvbn's estimate, given what the user's e-mail and shop say about them)."""
    if len(password) < MIN_PASSWORD_CHARS:
        return str(_l("At least %(min)s characters.", min=MIN_PASSWORD_CHARS))
    if password.lower() in COMMON_PASSWORDS or zxcvbn(password[:72], user_inputs=list(user_inputs))["score"] < 3:
        return str(_l("This password is too easy to guess. A few unrelated words together are easy to remember."))
    return None


def create_user(email: str, merchant: Merchant, role: str, password: str) -> User:
    """A new user; raises ValueError for a bad role, a weak password or an e-mail in use."""
    email = email.strip().lower()
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    problem = password_problem(password, user_inputs=(email, merchant.name or ""))
    if problem:
        raise ValueError(problem)
    if db.session.execute(db.select(User).filter_by(email=email)).scalar_one_or_none():
        raise ValueError(f"{email} is already in use")
    user = User(email=email, merchant=merchant, role=role, password_hash=hash_password(password))
    db.session.add(user)
    return user


def ensure_demo_data() -> list[tuple[str, str, str]]:
    """The demo merchant and users (idempotent); returns the demo logins."""
    spec = dict(DEMO_MERCHANT)
    merchant = db.session.execute(db.select(Merchant).filter_by(slug=spec["slug"])).scalar_one_or_none()
    if merchant is None:
        merchant = upsert_merchant(spec.pop("slug"), spec.pop("name"), **spec)
        db.session.flush()
    for email, role, password in DEMO_USERS:
        if db.session.execute(db.select(User).filter_by(email=email)).scalar_one_or_none() is None:
            create_user(email, merchant, role, password)
    db.session.commit()
    return list(DEMO_USERS)


def save_provider_settings(merchant: Merchant, form) -> list[str]:
    """Apply the form to the merchant; returns the names of the settings that changed (never their values)."""
    changed = []
    for name in PROVIDER_ID_FIELDS:
        value = form[name].data or None
        if value != getattr(merchant, name):
            setattr(merchant, name, value)
            changed.append(name)
    for name in SHOP_TEXT_FIELDS:
        value = form[name].data or None
        if value != getattr(merchant, name):
            setattr(merchant, name, value)
            changed.append(name)
    hours = int(form.reminder_hours.data) if form.reminder_hours.data else merchant.reminder_hours
    if hours != merchant.reminder_hours:
        merchant.reminder_hours = hours
        changed.append("reminder_hours")
    for name in PROVIDER_SECRET_FIELDS:
        column = f"{name}_enc"
        stored = getattr(merchant, column)
        if form[f"clear_{name}"].data:
            if stored is not None:
                setattr(merchant, column, None)
                changed.append(name)
        elif form[name].data and not _same_secret(stored, form[name].data):
            setattr(merchant, column, encrypt_secret(form[name].data))
            changed.append(name)
    return changed


def _same_secret(stored: str | None, plaintext: str) -> bool:
    """Whether the stored (encrypted) secret is this plaintext; an unreadable one never is."""
    try:
        current = decrypt_secret(stored)
    except ValueError:
        return False
    return current is not None and hmac.compare_digest(current.encode(), plaintext.encode())


def callback_urls() -> dict[str, str]:
    """The addresses each merchant registers at Oen (CRM) and MyPay (admin); O'Pay is told per request."""
    base = current_app.config["PORTAL_BASE_URL"].rstrip("/")
    return {provider: f"{base}/webhooks/{provider}" for provider in NAMES}


def set_role(user: User, role: str) -> bool:
    """Give the user a role; False when it already had it."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if user.role == role:
        return False
    user.role = role
    return True


def set_active(user: User, active: bool) -> bool:
    """Let a user log in, or not; deactivating ends every login of theirs at once. False when nothing changed."""
    if user.active == active:
        return False
    user.active = active
    if not active:
        db.session.execute(db.delete(UserSession).where(UserSession.user_id == user.id))
    return True


def change_password(user: User, new_password: str, keep_session_id: str | None) -> None:
    """Set the user's new password and end every other login of theirs (a stolen session ends with it)."""
    user.password_hash = hash_password(new_password)
    ended = db.delete(UserSession).where(UserSession.user_id == user.id)
    if keep_session_id:
        ended = ended.where(UserSession.id != keep_session_id)
    db.session.execute(ended)
