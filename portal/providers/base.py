"""The provider interface: one base class, result dataclasses and typed errors (no Flask, no database)."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import requests

from portal.invoices import Invoice


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
    invoice: Invoice | None = None  # the order's e-invoice data, for providers that issue invoices (MyPay)


@dataclass(frozen=True)
class CheckoutRef:
    """What the portal remembers of an attempt: enough to query, verify or refund it."""

    reference: str
    amount: int
    provider_ids: Mapping[str, str] = field(default_factory=dict)  # e.g. {"checkout_id": ...} or {"uid", "key"}
    paid_amount: int = 0  # what the provider reported paid (MyPay actual_cost); 0 while not paid or not known
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
# Remember a request id a provider sent (O'Pay RqID); False when it was seen before (a replay).
NonceStore = Callable[[str], bool]


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
    # An offline payment's instructions (see ProviderTransaction.payment_code) and the card's last four, where given.
    payment_code: Mapping[str, object] | None = None
    payment_deadline: datetime | None = None
    card_last4: str = ""


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
    # An offline payment's instructions for the customer: {"kind": "atm", "bank_code", "account"} (ATM transfer to a
    # virtual account), {"kind": "cvs", "store", "pin_code", "barcodes"} (a convenience-store payment code) or
    # {"kind": "barcode", "store", "barcodes"} (bar codes a store scans); all values text. The deadline is aware.
    payment_code: Mapping[str, object] | None = None
    payment_deadline: datetime | None = None


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
    """A callback that cannot be read or verified; it is kept but never applied.

    `reference` is the portal reference the callback named and the provider looked up ("" when it got no further), so
    the portal can file the refusal under that attempt.
    """

    def __init__(self, provider: str, reason: str, reason_zh: str = "", *, reference: str = ""):
        super().__init__(provider, "invalid_callback", reason, reason_zh or reason)
        self.reason = reason
        self.reference = reference


# ---------------------------------------------------------------- rules a provider declares


@dataclass(frozen=True)
class RefundPolicy:
    """How a provider's payments are refunded; the portal's refund service asks this, never the provider's name."""

    by_api: bool = True  # False: made by hand in the provider's back office, then recorded here with its reference
    one_per_payment: bool = False  # a payment is refunded once at most (Oen: one refund per transaction)
    by_transaction_id: bool = False  # the refund names the provider's transaction number, so one must be known
    checked_by_query: bool = False  # the provider is asked about the payment (listed, method, refunds) before sending
    full_only_with_vouchers: bool = False  # an order with vouchers: one refund, in full, listing every paid voucher
    methods: tuple[str, ...] = ()  # the payment methods the API refunds, checked by a query first (empty: any)
    invoice_states: tuple[str, ...] = ()  # e-invoice choices sent with a refund, the first the default (MyPay)


# ---------------------------------------------------------------- the interface


class Provider:
    """One payment provider, configured per merchant through its constructor; its class attributes are its rules."""

    name: str = ""
    min_amount: int = 1
    refund_policy: RefundPolicy = RefundPolicy()
    # The merchant's settings the provider needs (a secret one is stored encrypted, as "<name>_enc"), and the portal's.
    merchant_settings: tuple[str, ...] = ()
    operator_settings: tuple[str, ...] = ()
    # The callback field naming the merchant at the provider, and the merchant setting it matches (None: callbacks are
    # the operator's, for any merchant, and the attempt is found by its reference alone).
    callback_merchant_field: str | None = None
    callback_merchant_setting: str | None = None
    callback_secret_fields: tuple[str, ...] = ()  # removed from a callback before it is stored
    callback_reply: str = ""  # the body a provider expects back from an accepted callback
    callbacks_confirmed_by_query: bool = False  # a callback is only a hint: the portal asks the provider to confirm it
    saves_cards: bool = False  # a callback may carry a saved card's token, which the portal charges (Oen)
    creates_on_visit: bool = False  # the provider's trade is created when the customer opens the link (O'Pay)
    pays_offline: bool = False  # the customer may pay later, at an ATM or a convenience store (MyPay)
    queried_by_checkout_id: bool = False  # nothing to ask until the provider's checkout id is known (Oen)

    @classmethod
    def from_settings(
        cls,
        config: Mapping[str, Any],
        merchant: Mapping[str, str],
        *,
        session: requests.Session | None = None,
        nonce_store: NonceStore | None = None,
    ) -> Provider:
        """A client from the portal's settings (by setting name) and the merchant's decrypted `merchant_settings`."""
        raise NotImplementedError

    @property
    def supports_refund_api(self) -> bool:
        """Whether refunds are sent through the provider's API (else made by hand and recorded)."""
        return self.refund_policy.by_api

    @classmethod
    def read_callback(cls, request: CallbackRequest) -> dict[str, object]:
        """A callback's fields, read once; InvalidCallback when the body cannot be read."""
        from .common import callback_fields

        return callback_fields(cls.name, request)

    @classmethod
    def callback_merchant(cls, fields: Mapping[str, object]) -> str:
        """The provider's id of the merchant a callback names ("" when it names none, or none a merchant can have: a
        NUL character, which no stored text holds and PostgreSQL refuses to compare)."""
        value = fields.get(cls.callback_merchant_field) if cls.callback_merchant_field else None
        return value if isinstance(value, str) and "\x00" not in value else ""

    @classmethod
    def confirms_by_query(cls, event: ProviderEvent) -> bool:
        """Whether this verified event moves money state only after a query says the same."""
        return cls.callbacks_confirmed_by_query

    def create_checkout(self, request: CheckoutRequest) -> CheckoutLink:
        """Open a payment attempt at the provider (or prepare one, where the provider is called later)."""
        raise NotImplementedError

    def parse_callback(
        self, request: CallbackRequest, lookup: CheckoutLookup, *, fields: Mapping[str, object] | None = None
    ) -> ProviderEvent:
        """Read (unless `fields` were read already) and verify a callback; InvalidCallback for anything else."""
        raise NotImplementedError

    def query(self, ref: CheckoutRef) -> list[ProviderTransaction]:
        """Ask the provider what it knows of this attempt now."""
        raise NotImplementedError

    def create_trade(self, request: CheckoutRequest) -> RelayedPage:
        """A provider that `creates_on_visit`: create the trade now and hand back its page for the customer."""
        raise NotImplementedError

    def charge(self, ref: CheckoutRef, token: str, request: CheckoutRequest) -> ProviderTransaction:
        """A provider that `saves_cards`: charge a saved card's token once."""
        raise NotImplementedError

    def refund(
        self,
        ref: CheckoutRef,
        amount: int,
        reason: str,
        *,
        invoice_state: str | int | None = None,
        items: Sequence[LineItem] = (),
        product_details: Sequence[Mapping[str, object]] = (),
        remit_info: Mapping[str, object] | None = None,
    ) -> RefundResult:
        """Give money back; never retried automatically. Options a provider does not use are ignored."""
        raise NotImplementedError
