"""The provider interface: one base class, result dataclasses and typed errors (no Flask, no database)."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime


class State(enum.StrEnum):
    """Normalised payment state, the same for every provider."""

    AWAITING_PAYMENT = "awaiting_payment"
    AUTHORISED = "authorised"
    PAID = "paid"
    PAID_MISMATCH = "paid_mismatch"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"
    PARTIALLY_REFUNDED = "partially_refunded"
    ERROR = "error"


# ---------------------------------------------------------------- inputs


@dataclass(frozen=True)
class LineItem:
    """One order line as sent to a provider."""

    sku: str
    name: str
    unit_price: int
    quantity: int

    @property
    def total(self) -> int:
        return self.unit_price * self.quantity


@dataclass(frozen=True)
class VoucherLine:
    """One voucher as sent to a provider; kind is "paid" or "free"."""

    kind: str
    product_id: str
    serial_number: str
    name: str
    amount: int


@dataclass(frozen=True)
class CheckoutRequest:
    """Everything a provider needs to open a payment attempt (a snapshot, never a database row)."""

    reference: str  # the portal's own provider reference: letters and digits, unique per attempt
    amount: int  # payable, whole TWD
    items: tuple[LineItem, ...]
    shipping_fee: int = 0
    vouchers: tuple[VoucherLine, ...] = ()
    customer_name: str = ""
    customer_email: str = ""
    customer_id: str = ""  # a stable id for the customer (MyPay user_id)
    customer_ip: str = ""
    success_url: str = ""  # where the customer's browser comes back
    failure_url: str = ""
    notify_url: str = ""  # server-to-server result notice, where the provider takes one per request
    description: str = ""
    created_at: datetime | None = None  # O'Pay MerchantTradeDate (Asia/Taipei wall time)


@dataclass(frozen=True)
class CheckoutRef:
    """What the portal remembers of an attempt: enough to query, verify or refund it."""

    reference: str
    amount: int
    provider_ids: Mapping[str, str] = field(default_factory=dict)  # e.g. {"checkout_id": ...} or {"uid", "key"}
    vouchers: tuple[VoucherLine, ...] = ()
    items: tuple[LineItem, ...] = ()


@dataclass(frozen=True)
class CallbackRequest:
    """An incoming HTTP callback, copied out of the web framework."""

    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    form: Mapping[str, str] = field(default_factory=dict)
    content_type: str = ""
    remote_addr: str = ""


# Given a reference (or provider id) found in a callback, the portal returns the open attempt or None.
CheckoutLookup = Callable[[str], "CheckoutRef | None"]


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class CheckoutLink:
    """The result of create_checkout."""

    url: str | None  # the provider's page for the customer; None where the portal's own link leads on (O'Pay)
    provider_ids: Mapping[str, str] = field(default_factory=dict)  # kept on the Checkout (MyPay uid/key, Oen id)
    raw: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class ProviderEvent:
    """A parsed callback."""

    provider: str
    reference: str  # the portal's reference ("" when the callback names none we could read)
    state: State
    verified: bool
    dedupe_key: str  # stable for the same notice resent; distinct for distinct notices
    reply_body: str  # what the provider expects back (MyPay "8888", O'Pay "1|OK", Oen "")
    reply_status: int = 200
    amount: int | None = None
    transaction_id: str = ""
    message: str = ""
    raw: Mapping[str, object] = field(default_factory=dict)  # secrets removed
    card_token: str = field(default="", repr=False)  # Oen only: a secret, never logged or shown
    occurred_at: datetime | None = None


@dataclass(frozen=True)
class ProviderTransaction:
    """One payment or refund as the provider reports it; card numbers are already cut to the last four."""

    provider: str
    reference: str
    transaction_id: str
    state: State
    amount: int
    kind: str = "payment"  # "payment" or "refund"
    refunded_amount: int = 0
    fee: int | None = None
    method: str = ""
    card_brand: str = ""
    card_last4: str = ""
    created_at: datetime | None = None
    refunded_at: datetime | None = None
    message: str = ""
    details: Mapping[str, object] = field(default_factory=dict)  # provider extras, safe to show


@dataclass(frozen=True)
class RefundResult:
    """The provider's answer to a refund."""

    state: str  # "succeeded", "pending" (provider accepted, money moves later), "failed"
    amount: int
    provider_refund_id: str = ""
    message: str = ""
    raw: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class RelayedPage:
    """A provider answer the portal passes on to the customer's browser (O'Pay Create)."""

    status: int
    content_type: str
    body: bytes


# ---------------------------------------------------------------- errors


class ProviderError(Exception):
    """A provider call that did not do what was asked; message_en / message_zh say what a merchant can do."""

    retryable = False

    def __init__(
        self,
        provider: str,
        code: str,
        message_en: str,
        message_zh: str = "",
        *,
        retryable: bool | None = None,
    ):
        super().__init__(f"{provider} {code}: {message_en}")
        self.provider = provider
        self.code = code
        self.message_en = message_en
        self.message_zh = message_zh or message_en
        if retryable is not None:
            self.retryable = retryable

    def message(self, locale: str = "zh_TW") -> str:
        """The merchant-facing message in the given interface language."""
        return self.message_en if locale.startswith("en") else self.message_zh


class ProviderUnavailable(ProviderError):
    """Timeouts, connection errors and 5xx: the outcome is unknown, try again later."""

    retryable = True


class ProviderRejected(ProviderError):
    """A business refusal (declined card, wrong state, B500)."""


class InvalidCallback(ProviderError):
    """A callback that cannot be read or verified; it is kept but never applied."""

    def __init__(self, provider: str, reason: str, reason_zh: str = ""):
        super().__init__(provider, "invalid_callback", reason, reason_zh or reason)
        self.reason = reason


# ---------------------------------------------------------------- the interface


class Provider:
    """One payment provider, configured per merchant through its constructor."""

    name: str = ""
    min_amount: int = 1
    supports_refund_api: bool = True
    supports_partial_refund: bool = True

    def create_checkout(self, request: CheckoutRequest) -> CheckoutLink:
        """Open a payment attempt at the provider (or prepare one, where the provider is called later)."""
        raise NotImplementedError

    def parse_callback(self, request: CallbackRequest, lookup: CheckoutLookup) -> ProviderEvent:
        """Read and verify a callback; raise InvalidCallback for anything unreadable or unverifiable."""
        raise NotImplementedError

    def query(self, ref: CheckoutRef) -> list[ProviderTransaction]:
        """Ask the provider what it knows of this attempt now."""
        raise NotImplementedError

    def refund(self, ref: CheckoutRef, amount: int, reason: str, **options) -> RefundResult:
        """Give money back; never retried automatically."""
        raise NotImplementedError
