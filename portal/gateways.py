"""Build a provider client for a merchant from the settings and the merchant's (decrypted) credentials."""

from __future__ import annotations

import threading

import requests
from flask import current_app
from sqlalchemy.exc import IntegrityError

from portal.extensions import db
from portal.models import Merchant, SeenNonce
from portal.providers.base import Provider
from portal.providers.mypay import MyPayProvider
from portal.providers.oen import OenProvider
from portal.providers.opay import OPayProvider
from portal.security import decrypt_secret

_local = threading.local()


def http_session() -> requests.Session:
    """One reused HTTP session per thread (connection pooling without sharing across threads)."""
    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
    return session


def remember_rqid(rqid: str) -> bool:
    """Record an O'Pay RqID; False when it was seen before (a replay)."""
    try:
        with db.session.begin_nested():
            db.session.add(SeenNonce(provider="opay", value=rqid[:128]))
    except IntegrityError:
        return False
    return True


def provider_for(merchant: Merchant, name: str) -> Provider:
    """The named provider's client, configured for this merchant."""
    cfg = current_app.config
    timeout = cfg["PROVIDER_TIMEOUT_S"]
    session = http_session()
    if name == "oen":
        return OenProvider(
            api_url=cfg["OEN_API_URL"],
            checkout_url_template=cfg["OEN_CHECKOUT_URL"],
            merchant_id=merchant.oen_merchant_id or "",
            token=decrypt_secret(merchant.oen_token_enc) or "",
            timeout=timeout,
            session=session,
        )
    if name == "mypay":
        return MyPayProvider(
            api_url=cfg["MYPAY_API_URL"],
            agent_uid=cfg["MYPAY_AGENT_UID"],
            agent_key=cfg["MYPAY_AGENT_KEY"],
            store_uid=merchant.mypay_store_uid or "",
            next_agent_key=cfg.get("MYPAY_AGENT_NEXT_KEY") or "",
            timeout=timeout,
            session=session,
        )
    if name == "opay":
        return OPayProvider(
            api_url=cfg["OPAY_API_URL"],
            merchant_id=merchant.opay_merchant_id or "",
            hash_key=decrypt_secret(merchant.opay_hash_key_enc) or "",
            hash_iv=decrypt_secret(merchant.opay_hash_iv_enc) or "",
            platform_id=cfg.get("OPAY_PLATFORM_ID") or "",
            platform_hash_key=cfg.get("OPAY_PLATFORM_HASH_KEY") or "",
            platform_hash_iv=cfg.get("OPAY_PLATFORM_HASH_IV") or "",
            timeout=timeout,
            session=session,
            rqid_store=remember_rqid,
        )
    raise ValueError(f"unknown provider {name!r}")


# The portal's own (operator) settings a provider needs besides the merchant's: MyPay is reached as the agent.
OPERATOR_SETTINGS = {"mypay": ("MYPAY_AGENT_UID", "MYPAY_AGENT_KEY")}


def operator_configured(name: str) -> bool:
    """Whether the portal itself is set up for the provider (production has no MyPay agent until one is given)."""
    return all(current_app.config.get(setting) for setting in OPERATOR_SETTINGS.get(name, ()))


PROVIDER_CLASSES = {"oen": OenProvider, "mypay": MyPayProvider, "opay": OPayProvider}
