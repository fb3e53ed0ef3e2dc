"""Small helpers shared by the three simulators."""

from __future__ import annotations

import ipaddress
import re
import secrets
import string
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

ALNUM = string.ascii_letters + string.digits
UPPER_ALNUM = string.ascii_uppercase + string.digits
TAIPEI = timezone(timedelta(hours=8))  # Taiwan keeps no daylight saving time


def random_string(length: int, alphabet: str = ALNUM) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def random_digits(length: int) -> str:
    return random_string(length, string.digits)


def taipei_now() -> datetime:
    """Now on Taiwan's clock (the providers' local time)."""
    return datetime.now(TAIPEI)


def is_http_url(value) -> bool:
    """An absolute http(s) URL."""
    if not isinstance(value, str) or not value:
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def as_int(value) -> int | None:
    """An integer given as int or as a string of digits (providers' samples do both), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d{1,12}", value.strip()):
        return int(value.strip())
    return None


CARD_TYPES = (("34", "AMEX"), ("37", "AMEX"), ("35", "JCB"), ("4", "Visa"), ("5", "MasterCard"), ("2", "MasterCard"))


def card_brand(number: str) -> str:
    """Visa, MasterCard, JCB or AMEX from the card number's prefix."""
    for prefix, brand in CARD_TYPES:
        if number.startswith(prefix):
            return brand
    return "Unknown"


def clean_card_number(value: str) -> str:
    """The digits of a card number as typed (spaces and dashes allowed)."""
    return re.sub(r"[\s-]", "", value or "")


def parse_expiry(value: str) -> tuple[int, int] | None:
    """(month, 2-digit year) from MM/YY or MMYY, else None."""
    match = re.fullmatch(r"\s*(\d{2})\s*/?\s*(\d{2})\s*", value or "")
    if not match:
        return None
    month, year = int(match.group(1)), int(match.group(2))
    return (month, year) if 1 <= month <= 12 else None


def expiry_passed(month: int, year: int) -> bool:
    """Whether a card valid through MM/YY has expired."""
    now = taipei_now()
    return (2000 + year, month) < (now.year, now.month)


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
