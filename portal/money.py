"""Order totals and the rules on amounts: pure functions on int TWD (no Flask, no database)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

# Inclusive limits, whole TWD (quantity in pieces). None means "no limit of its own".
QUANTITY = (1, 9_999)
UNIT_PRICE = (0, 1_000_000)
SHIPPING_FEE = (0, 1_000_000)
VOUCHER_AMOUNT = (1, None)
# Subtotal + shipping: keeps every stored total inside a 32-bit integer column (PostgreSQL `integer`).
ORDER_AMOUNT_MAX = 999_999_999
# The lowest payable amount an order may have; providers may ask for more (see meets_minimum).
PAYABLE_MIN = 1
# More digits than this is never a valid amount; refusing early keeps int() cheap on hostile input.
MAX_DIGITS = 12

_ASCII_DIGITS = re.compile(r"[0-9]+")
_GROUPED = re.compile(r"[1-9][0-9]{0,2}(?:,[0-9]{3})+")  # 1,200 · 1,234,567: commas every three digits
_CURRENCY = re.compile(r"(?:NT\$|\$)", re.IGNORECASE)
_EXPONENT = re.compile(r"[0-9.]*[0-9][0-9.]*[eE][+-]?[0-9]+")
_NOT_NUMBERS = {"nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}
_MINUS_SIGNS = ("-", "\u2212", "\uff0d")  # hyphen-minus, minus sign, full-width hyphen-minus
_DECIMAL_POINTS = (".", "\uff0e", "\u3002")  # full stop, full-width full stop, ideographic full stop


class AmountError(ValueError):
    """An amount or order rule refused; `code` says why, `field` where (a form field name), `params` the limits."""

    def __init__(self, code: str, field: str = "", **params: int):
        super().__init__(f"{field or 'amount'}: {code} {params or ''}".strip())
        self.code = code
        self.field = field
        self.params = params


@dataclass(frozen=True)
class Line:
    """One item row's money: unit price × quantity."""

    unit_price: int
    quantity: int

    @property
    def total(self) -> int:
        return self.unit_price * self.quantity


@dataclass(frozen=True)
class OrderTotals:
    """What an order comes to; payable = subtotal + shipping − voucher_total."""

    subtotal: int
    shipping_fee: int
    voucher_total: int
    payable: int
    line_totals: tuple[int, ...] = field(default=())

    @property
    def discountable(self) -> int:
        """The most that vouchers may take off: subtotal + shipping."""
        return self.subtotal + self.shipping_fee


def parse_amount(text: str | None, field: str = "") -> int:
    """A whole, non-negative TWD amount; anything else raises AmountError.

    Accepted as people type amounts: spaces around, full-width digits and commas (a Chinese input method's １，２００),
    an `NT$` or `$` in front, commas every three digits (1,200). Decimals, negatives, spaces inside and other
    digits are refused with a reason.
    """
    if text is None:
        raise AmountError("required", field)
    if not isinstance(text, str):
        raise AmountError("not_number", field)
    value = normalise_amount_text(text)
    if not value:
        raise AmountError("required", field)
    if _GROUPED.fullmatch(value):
        value = value.replace(",", "")
    if _ASCII_DIGITS.fullmatch(value):
        significant = value.lstrip("0") or "0"
        if len(significant) > MAX_DIGITS:
            raise AmountError("too_long", field)
        return int(significant)
    raise AmountError(_why_not_amount(value), field)


def normalise_amount_text(text: str) -> str:
    """Full-width forms made half-width (NFKC on them alone: ² or ① stay what they are), spaces around and an `NT$`
    or `$` in front removed."""
    value = "".join(unicodedata.normalize("NFKC", ch) if _is_fullwidth(ch) else ch for ch in text).strip()
    prefix = _CURRENCY.match(value)
    return value[prefix.end() :].strip() if prefix else value


def _is_fullwidth(ch: str) -> bool:
    return "\uff01" <= ch <= "\uff5e" or ch == "\u3000"


def _why_not_amount(value: str) -> str:
    """The most helpful reason a normalised, non-empty text is not an amount."""
    if any(ch.isdigit() and not ch.isascii() for ch in value):
        return "digits"
    if any(ch.isspace() or unicodedata.category(ch) in ("Zs", "Cf") for ch in value):
        return "spaces"
    if value.lower() in _NOT_NUMBERS:
        return "not_number"
    if value.startswith("+"):
        return "plus_sign"
    if value.startswith(_MINUS_SIGNS):
        return "negative"
    plain = value.replace(",", "")
    if _EXPONENT.fullmatch(plain):
        return "exponent"
    if any(point in plain for point in _DECIMAL_POINTS) and _is_digits_with(plain, "."):
        return "decimal"
    if "," in value and _is_digits_with(value, ","):
        return "separator"
    return "not_number"


def _is_digits_with(value: str, sep: str) -> bool:
    """Whether value is ASCII digits with `sep` (or its look-alikes) somewhere in between."""
    for point in _DECIMAL_POINTS:
        value = value.replace(point, ".")
    return bool(re.fullmatch(r"[0-9]*[" + re.escape(sep) + r"][0-9" + re.escape(sep) + r"]*", value)) and any(
        ch.isdigit() for ch in value
    )


def check_range(value: int, limits: tuple[int, int | None], field: str = "") -> int:
    """Value itself if it lies within limits (inclusive); otherwise AmountError too_small / too_large."""
    low, high = limits
    if value < low:
        raise AmountError("too_small", field, min=low, **({"max": high} if high is not None else {}))
    if high is not None and value > high:
        raise AmountError("too_large", field, min=low, max=high)
    return value


def parse_in_range(text: str | None, limits: tuple[int, int | None], field: str = "") -> int:
    """parse_amount, then check_range."""
    return check_range(parse_amount(text, field), limits, field)


def order_totals(lines: Sequence[Line], shipping_fee: int, vouchers: Sequence[int]) -> OrderTotals:
    """The arithmetic alone, no rules: subtotal, voucher total and payable."""
    line_totals = tuple(line.total for line in lines)
    subtotal = sum(line_totals)
    voucher_total = sum(vouchers)
    return OrderTotals(
        subtotal=subtotal,
        shipping_fee=shipping_fee,
        voucher_total=voucher_total,
        payable=subtotal + shipping_fee - voucher_total,
        line_totals=line_totals,
    )


def check_order(lines: Sequence[Line], shipping_fee: int, vouchers: Sequence[int]) -> OrderTotals:
    """The totals of an order that keeps every rule, else AmountError naming the field.

    Field names are the form's, numbered by position in `lines` / `vouchers`: items-N-quantity,
    items-N-unit_price, shipping_fee, vouchers-N-amount.
    """
    if not lines:
        raise AmountError("no_items", "items-0-name")
    for i, line in enumerate(lines):
        check_range(line.unit_price, UNIT_PRICE, f"items-{i}-unit_price")
        check_range(line.quantity, QUANTITY, f"items-{i}-quantity")
    check_range(shipping_fee, SHIPPING_FEE, "shipping_fee")
    for i, amount in enumerate(vouchers):
        check_range(amount, VOUCHER_AMOUNT, f"vouchers-{i}-amount")

    running = 0
    for i, line in enumerate(lines):
        running += line.total
        if running > ORDER_AMOUNT_MAX:
            raise AmountError("order_too_large", f"items-{i}-quantity", max=ORDER_AMOUNT_MAX)
    if running + shipping_fee > ORDER_AMOUNT_MAX:
        raise AmountError("order_too_large", "shipping_fee", max=ORDER_AMOUNT_MAX)

    totals = order_totals(lines, shipping_fee, vouchers)
    running = 0
    for i, amount in enumerate(vouchers):
        running += amount
        if running > totals.discountable:
            raise AmountError("vouchers_exceed", f"vouchers-{i}-amount", max=totals.discountable)
    if totals.payable < PAYABLE_MIN:
        where = f"vouchers-{len(vouchers) - 1}-amount" if vouchers else "items-0-unit_price"
        raise AmountError("payable_too_small", where, min=PAYABLE_MIN)
    return totals


def meets_minimum(payable: int, min_amount: int) -> bool:
    """Whether a payable amount reaches a provider's minimum (e.g. O'Pay's 6)."""
    return payable >= max(min_amount, PAYABLE_MIN)
