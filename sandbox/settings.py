"""Sandbox settings: app config gives the defaults, the console (or a test) overrides them in the database.

| config key | default | meaning |
|---|---|---|
| SANDBOX_LATENCY_MS | 0 | delay before every simulated provider answer |
| SANDBOX_LATENCY_MS_OEN / _MYPAY / _OPAY | SANDBOX_LATENCY_MS | the same, per provider |
| SANDBOX_HANG_S | PROVIDER_TIMEOUT_S + 2 | how long a `hang_next` fault holds the answer |
| SANDBOX_OEN_FULL_CARD_NUMBER | True | Oen answers the whole test card number in cardNum, as its document shows |
| SANDBOX_CALLBACK_SYNC | False | send callbacks (and their resends) inside the request instead of a thread |
| SANDBOX_CALLBACK_RETRY_DELAY_S | 3 | seconds between MyPay callback attempts |
| SANDBOX_CALLBACK_TIMEOUT_S | 10 | timeout of one callback POST |
| SANDBOX_MYPAY_CALLBACK_FORMAT | form | `form` (arrays as JSON text) or `json` |
| SANDBOX_OEN_WEBHOOK_URL | {PORTAL_BASE_URL}/webhooks/oen | set in Oen's CRM in real life |
| SANDBOX_MYPAY_CALLBACK_URL | {PORTAL_BASE_URL}/webhooks/mypay | set in MyPay's admin system in real life |
"""

from __future__ import annotations

from flask import current_app

from portal.extensions import db
from portal.sandbox.models import SandboxSetting


def _stored(name: str) -> str | None:
    row = db.session.get(SandboxSetting, name)
    return None if row is None else row.value


def _store(name: str, value: str | None) -> None:
    row = db.session.get(SandboxSetting, name)
    if value is None:
        if row is not None:
            db.session.delete(row)
    elif row is None:
        db.session.add(SandboxSetting(name=name, value=value))
    else:
        row.value = value
    db.session.commit()


def latency_ms(provider: str) -> int:
    """The delay before the provider's answers: console setting, else per-provider config, else SANDBOX_LATENCY_MS."""
    stored = _stored(f"latency_ms_{provider}")
    if stored is not None:
        return int(stored)
    config = current_app.config
    return int(config.get(f"SANDBOX_LATENCY_MS_{provider.upper()}", config.get("SANDBOX_LATENCY_MS", 0)) or 0)


def set_latency(provider: str, ms: int | None) -> None:
    """Override a provider's latency (None goes back to the config)."""
    _store(f"latency_ms_{provider}", None if ms is None else str(max(int(ms), 0)))


def hang_seconds() -> float:
    """Longer than the portal's provider timeout, so the portal gives up first."""
    config = current_app.config
    return float(config.get("SANDBOX_HANG_S") or int(config.get("PROVIDER_TIMEOUT_S", 10)) + 2)


def oen_full_card_number() -> bool:
    """Whether Oen's cardNum carries the whole test card number (as the document's examples do)."""
    stored = _stored("oen_full_card_number")
    if stored is not None:
        return stored == "1"
    return bool(current_app.config.get("SANDBOX_OEN_FULL_CARD_NUMBER", True))


def set_oen_full_card_number(on: bool | None) -> None:
    """Switch the whole card number in Oen's cardNum on or off (None goes back to the config)."""
    _store("oen_full_card_number", None if on is None else ("1" if on else "0"))


def callback_url(provider: str) -> str:
    """Where the provider posts its callbacks (configured at the provider in real life)."""
    config = current_app.config
    name = {"oen": "SANDBOX_OEN_WEBHOOK_URL", "mypay": "SANDBOX_MYPAY_CALLBACK_URL"}[provider]
    return config.get(name) or f"{config['PORTAL_BASE_URL'].rstrip('/')}/webhooks/{provider}"
