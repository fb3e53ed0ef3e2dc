"""Build a provider client for a merchant from the settings and the merchant's (decrypted) credentials."""

from __future__ import annotations

import functools
import os
import threading

import requests
from flask import current_app
from sqlalchemy import Row, bindparam, exists, select

from portal.extensions import db, execute_core, insert_ignoring_conflicts
from portal.models import Merchant, SeenNonce, WebhookEndpoint, utcnow
from portal.providers import Provider, provider_class
from portal.providers.base import NonceStore
from portal.security import decrypt_secret

_local = threading.local()


# Without a proxy in the environment, requests need not read it (and ~/.netrc) again on every call: about a third of
# a provider call's CPU. With one, requests keep honouring it and no_proxy per URL.
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


def http_session() -> requests.Session:
    """One reused HTTP session per thread (connection pooling without sharing across threads)."""
    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
        session.trust_env = any(os.environ.get(name) for name in PROXY_VARIABLES)
    return session


def remember_nonce(provider: str, value: str) -> bool:
    """Record a request id a provider sent (O'Pay RqID), in the caller's transaction; False when it was seen before
    (a replay). A concurrent first sighting waits for the other transaction (PostgreSQL) or its write lock (SQLite)."""
    stmt = insert_ignoring_conflicts(SeenNonce, SeenNonce.id)
    row = {"provider": provider, "value": value[:128], "seen_at": utcnow()}
    return execute_core(stmt, row).scalar_one_or_none() is not None


# Built once, on the tables: a merchant's row, with whether any of its webhook endpoints is enabled (`listening`).
_merchants = Merchant.__table__
_endpoints = WebhookEndpoint.__table__
MERCHANT_ROW = select(
    _merchants,
    exists()
    .where(_endpoints.c.merchant_id == _merchants.c.id, _endpoints.c.enabled)
    .correlate(_merchants)
    .label("listening"),
)


_KEPT = "portal.merchant_rows"  # the session's info key of the rows merchant_row keeps, by merchant id


@functools.cache
def _merchant_row_by(setting: str):
    return MERCHANT_ROW.where(_merchants.c[setting] == bindparam("named"))


def merchant_row(setting: str, named: str) -> Row | None:
    """The merchant whose `setting` (a callback's merchant id) is `named`: its row, read as Merchant's attributes are
    (id, stored settings), and `listening`. Kept on the session for kept_merchant until forget_kept_merchants."""
    row = execute_core(_merchant_row_by(setting), {"named": named}).one_or_none()
    if row is not None:
        db.session().info.setdefault(_KEPT, {})[row.id] = row
    return row


def forget_kept_merchants() -> None:
    """The rows merchant_row kept are not used after the callback that read them (its caller ends with this)."""
    db.session().info.pop(_KEPT, None)


def kept_merchant(merchant_id: int | None) -> Row | None:
    """The merchant's row read by merchant_row earlier in this session (a callback's merchant, read to verify it), or
    None: what its transaction needs of the merchant (the staff's notice address, whether a webhook endpoint listens)
    is then not read again, under SQLite's write lock."""
    return db.session().info.get(_KEPT, {}).get(merchant_id)


def merchant_settings(merchant: Merchant, cls: type[Provider]) -> dict[str, str]:
    """The settings the provider needs from this merchant, secrets decrypted (each stored value once per process: the
    cache is keyed by the ciphertext and the data key, so a changed secret is read anew)."""
    settings = {}
    for name in cls.merchant_settings:
        if hasattr(Merchant, f"{name}_enc"):
            stored = getattr(merchant, f"{name}_enc")
            settings[name] = decrypted(stored)
        else:
            settings[name] = getattr(merchant, name) or ""
    return settings


def decrypted(stored: str | None) -> str:
    """A stored secret's plaintext ("" for none), decrypted once per process: cached by the data key and the
    ciphertext, so a changed secret (or data key) is decrypted anew; a tampered one raises ValueError every time."""
    return _decrypted(current_app.config["PORTAL_DATA_KEY"], stored) if stored else ""


@functools.lru_cache(maxsize=1024)
def _decrypted(_data_key: str, stored: str) -> str:
    return decrypt_secret(stored) or ""


def provider_for(merchant: Merchant, name: str, *, nonce_store: NonceStore | None = None) -> Provider:
    """The named provider's client, configured for this merchant; the request ids it is sent are remembered in the
    caller's transaction unless another `nonce_store` is given."""
    cls = provider_class(name)
    return cls.from_settings(
        current_app.config,
        merchant_settings(merchant, cls),
        session=http_session(),
        nonce_store=nonce_store or (lambda value: remember_nonce(name, value)),
    )


def operator_configured(name: str) -> bool:
    """Whether the portal itself is set up for the provider (production has no MyPay agent until one is given)."""
    return all(current_app.config.get(setting) for setting in provider_class(name).operator_settings)
