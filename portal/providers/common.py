"""Small helpers shared by the provider clients: callback bodies, constant-time checks, card numbers, amounts."""

from __future__ import annotations

import hmac
import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from urllib.parse import parse_qsl

from .base import CallbackRequest, InvalidCallback, ProviderRejected

# Taiwan has kept UTC+8 without daylight saving since 1979, so a fixed offset needs no tz database.
TAIPEI = timezone(timedelta(hours=8), "Asia/Taipei")


def refuse(provider: str, code: str, message_en: str, message_zh: str) -> ProviderRejected:
    """A refusal decided before anything is sent, so a caller handles it like any provider refusal."""
    return ProviderRejected(provider, code, message_en, message_zh)


def same_secret(expected: object, received: object) -> bool:
    """Constant-time equality of two values as text; an empty expected value never matches."""
    a = "" if expected is None else str(expected)
    b = "" if received is None else str(received)
    if not a:
        return False
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def last4(number: object) -> str:
    """The last four digits of a card number however much of it the provider sent."""
    digits = "".join(ch for ch in str(number or "") if ch.isascii() and ch.isdigit())
    return digits[-4:]


def to_int(value: object) -> int | None:
    """A whole-TWD amount from a provider field ("900", 900, 900.0), or None when it is not one."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    try:
        text = str(value).strip()
        number = float(text) if "." in text else int(text)
    except (TypeError, ValueError, OverflowError):
        return None
    if isinstance(number, float):
        return int(number) if number.is_integer() else None
    return number


def parse_iso(value: object) -> datetime | None:
    """An ISO 8601 UTC date (Oen), or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def to_fee(value: object) -> int | None:
    """A provider's fee as whole TWD, the nearest dollar (half up): O'Pay reports its HandlingCharge to the cent
    ("10.25"). None when it is no amount."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    if not amount.is_finite():
        return None
    return int(amount.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def parse_taipei(value: object, fmt: str) -> datetime | None:
    """A provider's Taipei wall-clock time (MyPay YYYYMMDDHHmmss, O'Pay yyyy/MM/dd HH:mm:ss), or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.strptime(value, fmt).replace(tzinfo=TAIPEI)
    except ValueError:
        return None


def callback_fields(provider: str, request: CallbackRequest, *, allow_json: bool = True) -> dict[str, object]:
    """The callback's fields: the form if the framework parsed one, else a JSON object or a form-encoded body."""
    if request.form:
        return {str(k): request.form[k] for k in request.form}
    body = request.body or b""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidCallback(provider, "The callback body is not UTF-8 text.", "回報內容不是 UTF-8 文字。") from exc
    stripped = text.strip()
    if allow_json and ("json" in (request.content_type or "").lower() or stripped.startswith("{")):
        try:
            value = json.loads(stripped)
        except (ValueError, RecursionError) as exc:  # (a deeply nested body is as unreadable as a broken one)
            raise InvalidCallback(
                provider, "The callback body is not valid JSON.", "回報內容不是有效的 JSON。"
            ) from exc
        if not isinstance(value, dict):
            raise InvalidCallback(provider, "The callback body is not a JSON object.", "回報內容不是 JSON 物件。")
        return value
    try:
        return dict(parse_qsl(stripped, keep_blank_values=True, strict_parsing=bool(stripped), errors="strict"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidCallback(provider, "The callback body cannot be read.", "無法解讀回報內容。") from exc


def text_field(fields: dict[str, object], name: str) -> str:
    """A scalar field as text ("" when absent or not a scalar)."""
    value = fields.get(name)
    if value is None or isinstance(value, (dict, list, tuple, set)):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
