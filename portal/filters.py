"""Template filters: money and times as a Taiwanese merchant reads them."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from flask import Flask

TAIPEI = ZoneInfo("Asia/Taipei")


def twd(amount: int | None) -> str:
    """Whole TWD with thousands separators: NT$1,234."""
    if amount is None:
        return "—"
    sign = "-" if amount < 0 else ""
    return f"{sign}NT${abs(int(amount)):,}"


def taipei(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A UTC time (naive = UTC) shown in Asia/Taipei."""
    if value is None:
        return "—"
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(TAIPEI).strftime(fmt)


def register(app: Flask) -> None:
    app.jinja_env.filters["twd"] = twd
    app.jinja_env.filters["taipei"] = taipei
    app.jinja_env.filters["mask_cards"] = mask_cards
    app.jinja_env.filters["provider_date"] = provider_date


def provider_date(value) -> str:
    """A provider's date written as eight digits (MyPay's 20261205) as a person reads it: 2026-12-05; anything else as
    it came."""
    text = "" if value is None else str(value)
    if len(text) == 8 and text.isdigit():
        return f"{text[:4]}-{text[4:6]}-{text[6:]}"
    return text


def mask_cards(text: str | None) -> str:
    """Replace anything that looks like a whole card number with its last four digits."""
    if not text:
        return ""
    from portal.payments.redaction import mask_card_text  # also cuts "493817******0003" to its last four

    return mask_card_text(text)
