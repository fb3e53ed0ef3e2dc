"""Run-time switches: the app config (sandbox/config.py) gives the defaults, the console (or a test) overrides them in
the database, so that every worker process sees the same; and where a merchant's callbacks go.
"""

from __future__ import annotations

from flask import current_app

from sandbox.extensions import db
from sandbox.models import SandboxSetting


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
    value = config.get(f"SANDBOX_LATENCY_MS_{provider.upper()}")
    if value is None:
        value = config.get("SANDBOX_LATENCY_MS")
    return int(value or 0)


def set_latency(provider: str, ms: int | None) -> None:
    """Override a provider's latency (None goes back to the config)."""
    _store(f"latency_ms_{provider}", None if ms is None else str(max(int(ms), 0)))


def hang_seconds() -> float:
    """How long a hang_next fault holds the answer: meant to outlast the merchant's timeout (it gives up first)."""
    return float(current_app.config.get("SANDBOX_HANG_S") or 12)


def oen_full_card_number() -> bool:
    """Whether Oen's cardNum carries the whole test card number (as the document's examples do)."""
    stored = _stored("oen_full_card_number")
    if stored is not None:
        return stored == "1"
    return bool(current_app.config.get("SANDBOX_OEN_FULL_CARD_NUMBER", True))


def set_oen_full_card_number(on: bool | None) -> None:
    """Switch the whole card number in Oen's cardNum on or off (None goes back to the config)."""
    _store("oen_full_card_number", None if on is None else ("1" if on else "0"))


def callback_url(provider: str, registered: str | None = None) -> str:
    """Where the provider posts a merchant's callbacks: the URL the merchant registered (in Oen's CRM, in MyPay's admin
    system), else the default merchant server's {SANDBOX_PORTAL_URL}/webhooks/oen or /webhooks/mypay."""
    if registered:
        return registered
    return f"{current_app.config['SANDBOX_PORTAL_URL'].rstrip('/')}/webhooks/{provider}"
