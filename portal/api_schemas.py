"""The JSON API's bodies as pydantic models: the API validates requests with them and the OpenAPI document is generated
from them (portal.views.api), so no schema is written twice.

Request bodies are strict (numbers must be JSON numbers, not strings; no unknown fields). The rules on the values
themselves (lengths, e-mail, amounts and the order's money rules) are the order and refund forms' (portal.forms and
portal.money), applied to the body after these models accepted its shape. The order as answered is
portal.order_json.order_payload; OrderOut describes exactly its fields (a test holds them together).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from portal.forms.orders import MAX_ITEM_ROWS, MAX_VOUCHER_ROWS
from portal.models import ORDER_STATES
from portal.providers import NAMES as PROVIDER_NAMES

ProviderName = Literal[PROVIDER_NAMES]  # type: ignore[valid-type]
LinkProvider = Literal[(*PROVIDER_NAMES, "choice")]  # type: ignore[valid-type]
OrderStateName = Literal[ORDER_STATES]  # type: ignore[valid-type]


class StrictBody(BaseModel):
    """A request body: JSON types as declared (no "12" for 12), no field the API does not know."""

    model_config = ConfigDict(strict=True, extra="forbid")


class Answer(BaseModel):
    """A response body."""

    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------- requests


class ItemIn(StrictBody):
    sku: str = Field("", description="Your product code (optional).")
    name: str
    unit_price: int = Field(description="Whole TWD.")
    quantity: int = 1


class VoucherIn(StrictBody):
    kind: Literal["paid", "free"] = "paid"
    product_id: str
    serial_number: str = Field(description="Unique within the order.")
    name: str
    amount: int = Field(description="Whole TWD taken off the order.")


class InvoiceIn(StrictBody):
    """E-invoice data (Taiwan's uniform invoice): only the chosen kind's field(s) are read."""

    kind: Literal["paper", "mobile", "citizen", "business", "donation"]
    carrier: str = Field("", description="mobile: the barcode (/ and 7 characters); citizen: the certificate number.")
    tax_id: str = Field("", description="business: the 8-digit tax ID.")
    title: str = Field("", description="business: the company name.")
    donation_code: str = Field("", description="donation: 3 to 7 digits.")


class OrderCreate(StrictBody):
    """A new order; with `provider` its customer link is made at once ("choice": the customer picks)."""

    customer_name: str
    customer_email: str
    shipping_fee: int = Field(0, description="Whole TWD.")
    note: str = ""
    items: list[ItemIn] = Field(min_length=1, max_length=MAX_ITEM_ROWS)
    vouchers: list[VoucherIn] = Field(default_factory=list, max_length=MAX_VOUCHER_ROWS)
    invoice: InvoiceIn | None = None
    provider: LinkProvider | None = None


class CheckoutCreate(StrictBody):
    """Open the order's customer link at a provider ("choice": the customer picks); `switch` changes a live link's
    provider (its open attempt is cancelled first)."""

    provider: LinkProvider
    switch: bool = False


class RefundCreate(StrictBody):
    """A refund of a paid order (keys with the refunds permission)."""

    amount: int = Field(description="Whole TWD.")
    reason: str
    checkout_id: int | None = Field(None, description="Which payment; default: the order's latest paid one.")
    invoice_state: Literal["4", "6"] | None = Field(
        None, description="MyPay's e-invoice: 4 void, 6 allowance (default: the provider's first)."
    )
    manual_reference: str = Field("", description="O'Pay: the reference its back office gave the refund made there.")


class OrderQuery(BaseModel):
    """The order list's filters (query parameters)."""

    model_config = ConfigDict(extra="ignore")

    state: OrderStateName | None = None
    q: str | None = Field(None, max_length=100, description="Part of the customer's name, e-mail or the number.")
    provider: Literal["oen", "mypay", "opay"] | None = Field(None, description="Orders with an attempt at it.")
    from_: str | None = Field(None, alias="from", description="Created on or after this Taipei day (YYYY-MM-DD).")
    to: str | None = Field(None, description="Created on or before this Taipei day (YYYY-MM-DD).")
    cursor: str | None = Field(None, max_length=200, description="`next_cursor` of the page before.")
    limit: int = Field(50, ge=1, le=100)


# ---------------------------------------------------------------- answers


class ItemOut(Answer):
    sku: str | None
    name: str
    unit_price: int
    quantity: int


class VoucherOut(Answer):
    kind: str
    product_id: str
    serial_number: str
    name: str
    amount: int


class InvoiceOut(Answer):
    kind: str
    carrier: str | None
    tax_id: str | None
    title: str | None
    donation_code: str | None


class CheckoutOut(Answer):
    url: str = Field(description="The customer link.")
    provider: str | None
    state: str
    expires_at: str | None


class AttentionOut(Answer):
    reference: str = Field(description="The payment's reference (as on the provider's records).")
    provider: str
    reason: str | None = Field(
        description="paid_twice (the order was already paid: one payment is to be refunded), amount_differs (the "
        "provider took another amount), paid_after_end (paid after the link expired or was cancelled)."
    )


class OrderOut(Answer):
    """An order, as the API answers it and the webhooks send it (portal.order_json.order_payload)."""

    id: int
    number: str
    state: OrderStateName
    currency: Literal["TWD"]
    customer_name: str
    customer_email: str
    shipping_fee: int
    subtotal: int
    voucher_total: int
    payable: int
    paid_amount: int
    refunded_amount: int
    note: str | None
    created_at: str | None
    items: list[ItemOut]
    vouchers: list[VoucherOut]
    invoice: InvoiceOut | None
    checkout: CheckoutOut | None
    needs_attention: bool = Field(description="A payment of the order waits for a person at the shop (`attention`).")
    attention: list[AttentionOut] = Field(
        description="The order's payments flagged for a person and not yet marked handled in the portal."
    )


class LinkError(Answer):
    title: str
    detail: str


class OrderCreated(OrderOut):
    """The new order; with `provider`, its link in `checkout`, or why the provider would not make it now."""

    checkout_error: LinkError | None = Field(
        default=None,
        description="The order was created, but the provider refused its link: make it later with "
        "POST /orders/{id}/checkout. Replaying the request answers the same; it never creates a second order.",
    )


class OrderList(Answer):
    data: list[OrderOut]
    has_more: bool
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page; null on the last.")


class RefundOut(Answer):
    id: int
    order_id: int
    checkout_id: int
    provider: str
    amount: int
    reason: str
    state: str = Field(description="requested, pending, succeeded, failed or unknown (never sent again).")
    message: str | None
    created_at: str | None
    order: OrderOut


class TransactionOut(Answer):
    transaction_id: str
    kind: str
    state: str
    amount: int
    refunded_amount: int
    fee: int | None
    method: str
    card_brand: str
    card_last4: str
    created_at: str | None
    refunded_at: str | None
    message: str


class AttemptOut(Answer):
    checkout_id: int
    reference: str
    provider: str
    state: str = Field(description="The portal's record.")
    amount: int
    provider_status: str = Field(description="ok; error; unknown (no answer in time); not_sent.")
    live_state: str = Field(description="What the provider says, as a portal state; none; unknown.")
    live_paid: int | None
    live_refunded: int
    differs: bool
    transactions: list[TransactionOut]


class TransactionsOut(Answer):
    order_id: int
    attempts: list[AttemptOut]


class FieldError(Answer):
    field: str = Field(description="Where in the body: customer_email, items.0.unit_price, …")
    message: str


class Problem(Answer):
    """An error (RFC 9457, application/problem+json)."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str | None = None
    errors: list[FieldError] = Field(default_factory=list)
