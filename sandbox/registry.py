"""The sandbox's registry: the merchants each simulated provider knows and the credentials it issued them.

A real provider issues credentials when a merchant signs up (Oen's CRM token, a MyPay store under the agent, O'Pay's
HashKey and HashIV) and keeps the merchant's callback URL in its back office. The simulators authenticate only
against this registry (and the agent / platform of the sandbox's config), never against the portal's database.

Call inside an application context of the sandbox. TEST_ACCOUNTS are published and always present (seeded when the
app is created): they are what the portal's `demo-data` configures, so a newcomer can pay right after `make run`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from sandbox.common import ALNUM, random_string
from sandbox.extensions import db
from sandbox.models import SandboxMypayStore, SandboxOenMerchant, SandboxOpayMerchant


@dataclass(frozen=True)
class TestAccounts:
    oen: tuple[str, str]  # merchantId, CRM bearer token
    mypay: str  # store_uid (the agent comes from the config)
    opay: tuple[str, str, str]  # MerchantID, HashKey, HashIV


TEST_ACCOUNTS = TestAccounts(
    oen=("demo", "sandbox-oen-demo-token"),
    mypay="289151880002",  # the MyPay document's test store
    opay=("2000132", "5294y06JbISpM5x9", "v77hoKGq4kWxNNIS"),  # the O'Pay document's stage merchant
)
# Public test values: shown in full on the console and by the CLI.
PUBLIC_SECRETS = {TEST_ACCOUNTS.oen[1], TEST_ACCOUNTS.opay[1], TEST_ACCOUNTS.opay[2]}


def _upsert(model, key: str, value: str, **fields):
    """Create or update the row whose `key` column is `value`; a concurrent creation becomes an update."""
    for attempt in range(2):
        row = db.session.execute(db.select(model).filter_by(**{key: value})).scalar_one_or_none()
        if row is None:
            row = model(**{key: value})
            db.session.add(row)
        for name, field_value in fields.items():
            setattr(row, name, field_value)
        try:
            db.session.commit()
            return row
        except IntegrityError:
            db.session.rollback()
            if attempt:
                raise
    raise AssertionError("unreachable")


def _check(name: str, value: str | None, length: int | None = None) -> None:
    if not isinstance(value, str) or not value or value != value.strip():
        raise ValueError(f"{name} must be a non-empty string without surrounding spaces")
    if length is not None and len(value) != length:
        raise ValueError(f"{name} must be {length} characters long")


def register_oen_merchant(merchant_id: str, token: str | None = None, webhook_url: str | None = None) -> str:
    """Register (or update) an Oen merchant; returns its CRM token (a new random one when none is given)."""
    _check("merchant_id", merchant_id)
    if token is None:
        existing = db.session.execute(db.select(SandboxOenMerchant).filter_by(merchant_id=merchant_id)).scalar()
        token = existing.token if existing is not None else secrets.token_urlsafe(32)
    _check("token", token)
    _upsert(SandboxOenMerchant, "merchant_id", merchant_id, token=token, webhook_url=webhook_url or None)
    return token


def register_mypay_store(store_uid: str, callback_url: str | None = None) -> str:
    """Register (or update) a MyPay store under the agent; returns its store_uid."""
    _check("store_uid", store_uid)
    _upsert(SandboxMypayStore, "store_uid", store_uid, callback_url=callback_url or None)
    return store_uid


def register_opay_merchant(
    merchant_id: str, hash_key: str | None = None, hash_iv: str | None = None
) -> tuple[str, str]:
    """Register (or update) an O'Pay merchant; returns (HashKey, HashIV), random 16 characters each when not given."""
    _check("merchant_id", merchant_id)
    if hash_key is None or hash_iv is None:
        existing = db.session.execute(db.select(SandboxOpayMerchant).filter_by(merchant_id=merchant_id)).scalar()
        hash_key = hash_key or (existing.hash_key if existing else random_string(16, ALNUM))
        hash_iv = hash_iv or (existing.hash_iv if existing else random_string(16, ALNUM))
    _check("hash_key", hash_key, 16)
    _check("hash_iv", hash_iv, 16)
    _upsert(SandboxOpayMerchant, "merchant_id", merchant_id, hash_key=hash_key, hash_iv=hash_iv)
    return hash_key, hash_iv


def seed_test_accounts() -> None:
    """Make sure the published test accounts exist (leaves a test account's registered callback URL alone)."""
    oen_id, oen_token = TEST_ACCOUNTS.oen
    oen = db.session.execute(db.select(SandboxOenMerchant).filter_by(merchant_id=oen_id)).scalar()
    if oen is None or oen.token != oen_token:
        register_oen_merchant(oen_id, oen_token, oen.webhook_url if oen else None)
    if db.session.execute(db.select(SandboxMypayStore).filter_by(store_uid=TEST_ACCOUNTS.mypay)).scalar() is None:
        register_mypay_store(TEST_ACCOUNTS.mypay)
    opay_id, key, iv = TEST_ACCOUNTS.opay
    opay = db.session.execute(db.select(SandboxOpayMerchant).filter_by(merchant_id=opay_id)).scalar()
    if opay is None or (opay.hash_key, opay.hash_iv) != (key, iv):
        register_opay_merchant(opay_id, key, iv)


# ---------------------------------------------------------------- look-ups for the simulators


def oen_merchant(merchant_id: str) -> SandboxOenMerchant | None:
    return db.session.execute(db.select(SandboxOenMerchant).filter_by(merchant_id=merchant_id)).scalar_one_or_none()


def oen_merchants_of_token(token: str) -> set[str]:
    """The merchantIds whose CRM token this is (compared in constant time)."""
    found = set()
    for merchant in db.session.execute(db.select(SandboxOenMerchant)).scalars():
        if secrets.compare_digest(merchant.token.encode(), token.encode()):
            found.add(merchant.merchant_id)
    return found


def mypay_store(store_uid: str) -> SandboxMypayStore | None:
    return db.session.execute(db.select(SandboxMypayStore).filter_by(store_uid=store_uid)).scalar_one_or_none()


def opay_credentials(merchant_id: str) -> tuple[str, str] | None:
    merchant = db.session.execute(
        db.select(SandboxOpayMerchant).filter_by(merchant_id=merchant_id)
    ).scalar_one_or_none()
    return None if merchant is None else (merchant.hash_key, merchant.hash_iv)


def accounts() -> dict[str, list]:
    """Every registered merchant, per provider, for the console and the CLI."""
    return {
        "oen": list(
            db.session.execute(db.select(SandboxOenMerchant).order_by(SandboxOenMerchant.merchant_id)).scalars()
        ),
        "mypay": list(db.session.execute(db.select(SandboxMypayStore).order_by(SandboxMypayStore.store_uid)).scalars()),
        "opay": list(
            db.session.execute(db.select(SandboxOpayMerchant).order_by(SandboxOpayMerchant.merchant_id)).scalars()
        ),
    }


def is_public(secret: str) -> bool:
    """A secret of the published test accounts (shown in full)."""
    return secret in PUBLIC_SECRETS


def shown(secret: str) -> str:
    """A registered secret as the console shows it: in full for the test accounts, else masked."""
    from sandbox.journal import mask_secret

    return secret if is_public(secret) else mask_secret(secret)
