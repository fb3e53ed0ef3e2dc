"""The portal's tables. Money is int TWD everywhere; secrets are stored encrypted (see security.py)."""

from __future__ import annotations

import enum
from datetime import UTC, datetime

from flask_login import UserMixin
from sqlalchemy import DDL, JSON, ForeignKey, Index, String, Text, UniqueConstraint, event, false, func, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.providers import NAMES, Provider, provider_class


def utcnow() -> datetime:
    """Now, in UTC, without tzinfo (stored naive, always UTC)."""
    return datetime.now(UTC).replace(tzinfo=None)


ROLES = ("admin", "staff")


class OrderState(enum.StrEnum):
    """An order's state, derived from its checkouts (payments.state.refresh_order); shown as data-order-state."""

    DRAFT = "draft"
    AWAITING_PAYMENT = "awaiting_payment"
    PAID = "paid"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"


class CheckoutState(enum.StrEnum):
    """A payment attempt's state; it only moves forward (payments.state.RANK)."""

    CREATING = "creating"  # committed, the provider has not answered yet
    AWAITING_PAYMENT = "awaiting_payment"
    AUTHORISED = "authorised"
    PROCESSING = "processing"  # an Oen card token is being charged
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    PAID = "paid"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"


class AttentionReason(enum.StrEnum):
    """Why a payment was flagged for a person to look at (Checkout.attention_reason)."""

    AMOUNT = "amount_differs"  # the provider took another amount than the attempt asked
    AFTER_END = "paid_after_end"  # paid after the link expired or staff cancelled it
    PAID_TWICE = "paid_twice"  # the order had already been paid through another attempt


class RefundState(enum.StrEnum):
    """A refund's state: "requested" is committed before the provider is called."""

    REQUESTED = "requested"
    SUCCEEDED = "succeeded"
    PENDING = "pending"  # the provider accepted it; the money moves later
    FAILED = "failed"
    UNKNOWN = "unknown"  # the portal did not hear the provider's answer


class InvoiceKind(enum.StrEnum):
    """How the customer takes the e-invoice (Taiwan's uniform invoice)."""

    PAPER = "paper"  # printed (or a paper copy on request)
    MOBILE = "mobile"  # mobile barcode carrier 手機條碼: "/" and 7 of 0-9 A-Z . + -
    CITIZEN = "citizen"  # citizen digital certificate carrier 自然人憑證: 2 letters and 14 digits
    BUSINESS = "business"  # a company's invoice with its tax ID 統一編號 (8 digits with a checksum)
    DONATION = "donation"  # donated to a charity by its code 捐贈碼 (3-7 digits)


class OutboxState(enum.StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"  # given up after its retries


class CallbackStatus(enum.StrEnum):
    """What became of a stored callback."""

    RECEIVED = "received"  # stored, not processed yet
    APPLIED = "applied"
    RECORDED = "recorded"  # verified and kept as evidence, no change
    UNCONFIRMED = "unconfirmed"  # a hint the provider's own answer did not confirm: kept, no change
    REFUSED = "refused"
    ERROR = "error"  # could not be processed now; the provider is asked to send it again


ORDER_STATES = tuple(state.value for state in OrderState)
# An attempt still waiting for the customer (or for the provider to answer).
OPEN_STATES = (
    CheckoutState.CREATING,
    CheckoutState.AWAITING_PAYMENT,
    CheckoutState.AUTHORISED,
    CheckoutState.PROCESSING,
)
# Money was taken: the same three words for an order and for its checkouts.
PAID_STATES = (CheckoutState.PAID, CheckoutState.PARTIALLY_REFUNDED, CheckoutState.REFUNDED)
# Attempts the portal gave up on (staff cancelled or switched the link, or its time ran out) while the provider's page
# may still be open: none of the providers lets the portal close it, and a payment there is still applied (flagged).
ENDED_HERE = (CheckoutState.CANCELLED, CheckoutState.EXPIRED)
FINAL_STATES = (CheckoutState.FAILED, CheckoutState.EXPIRED, CheckoutState.CANCELLED, *PAID_STATES)
# Refunds that may still take money: counted as taken when the refundable amount is checked.
UNSETTLED = (RefundState.REQUESTED, RefundState.PENDING, RefundState.UNKNOWN)


class Merchant(db.Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    # Callbacks find the merchant by these ids: unique (a unique index, so any number of merchants may have none).
    oen_merchant_id: Mapped[str | None] = mapped_column(String(64), unique=True, index=True)
    oen_token_enc: Mapped[str | None] = mapped_column(Text)
    mypay_store_uid: Mapped[str | None] = mapped_column(String(32), unique=True, index=True)
    opay_merchant_id: Mapped[str | None] = mapped_column(String(32), unique=True, index=True)
    opay_hash_key_enc: Mapped[str | None] = mapped_column(Text)
    opay_hash_iv_enc: Mapped[str | None] = mapped_column(Text)
    # Admins must sign in with a second factor before they refund or change settings (off by default).
    require_admin_two_factor: Mapped[bool] = mapped_column(default=False, server_default=false())
    # Shown to customers on every customer page and in mails.
    contact_phone: Mapped[str | None] = mapped_column(String(40))
    contact_email: Mapped[str | None] = mapped_column(String(254))
    contact_note: Mapped[str | None] = mapped_column(String(200))  # e.g. a LINE ID or opening hours
    # Mails: a notice to the shop's staff when an order is paid (none when empty); a reminder to the customer when a
    # link is still unpaid this many hours after it was made (0: none).
    notify_email: Mapped[str | None] = mapped_column(String(254))
    reminder_hours: Mapped[int] = mapped_column(default=24, server_default=text("24"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    users: Mapped[list[User]] = relationship(back_populates="merchant")

    def stored_setting(self, name: str) -> str | None:
        """A provider setting as stored: the plain column, or "<name>_enc" (encrypted) for a secret one."""
        return getattr(self, name, None) or getattr(self, f"{name}_enc", None)

    def provider_configured(self, provider: str) -> bool:
        """Whether the merchant has the settings the provider needs."""
        if provider not in NAMES:
            return False
        return all(self.stored_setting(name) for name in provider_class(provider).merchant_settings)


class User(UserMixin, db.Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(10), default="staff")
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchant.id"), index=True)
    active: Mapped[bool] = mapped_column(default=True)
    locale: Mapped[str | None] = mapped_column(String(10))
    # Two-factor sign-in (TOTP): the secret encrypted; set but unconfirmed while enrolling; the last time step used,
    # so that a code is accepted once.
    totp_secret_enc: Mapped[str | None] = mapped_column(Text)
    totp_confirmed_at: Mapped[datetime | None]
    totp_last_step: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    merchant: Mapped[Merchant] = relationship(back_populates="users")
    recovery_codes: Mapped[list[RecoveryCode]] = relationship(back_populates="user", cascade="all, delete-orphan")

    @property
    def two_factor_enabled(self) -> bool:
        return self.totp_confirmed_at is not None

    # Flask-Login identifies a login by its UserSession id, set when the session is loaded.
    login_session_id = None

    def get_id(self) -> str | None:
        return self.login_session_id

    @property
    def is_active(self) -> bool:
        return self.active

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class RecoveryCode(db.Model):
    """A one-time code that stands in for the authenticator app; stored hashed, shown once."""

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"), index=True)
    code_hash: Mapped[str] = mapped_column(String(255))
    used_at: Mapped[datetime | None]

    user: Mapped[User] = relationship(back_populates="recovery_codes")


class UserSession(db.Model):
    """One login; deleting the row ends it on the server, whatever copies of the cookie exist."""

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    ip: Mapped[str | None] = mapped_column(String(64))

    user: Mapped[User] = relationship()


class Order(db.Model):
    __table_args__ = (
        UniqueConstraint("merchant_id", "number"),
        Index("ix_order_merchant_created", "merchant_id", "created_at"),
        # The order list filtered by state, newest first.
        Index("ix_order_merchant_state_created", "merchant_id", "state", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchant.id"))
    number: Mapped[str] = mapped_column(String(32))
    customer_name: Mapped[str] = mapped_column(String(100))
    customer_email: Mapped[str] = mapped_column(String(254))
    shipping_fee: Mapped[int] = mapped_column(default=0)
    subtotal: Mapped[int] = mapped_column(default=0)
    voucher_total: Mapped[int] = mapped_column(default=0)
    payable: Mapped[int] = mapped_column(default=0)
    paid_amount: Mapped[int] = mapped_column(default=0)
    refunded_amount: Mapped[int] = mapped_column(default=0)
    note: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[str] = mapped_column(String(24), default=OrderState.DRAFT.value, index=True)  # an OrderState
    # The customer link belongs to the order: /pay/<link_token> stays the same across retries and provider switches.
    link_token: Mapped[str | None] = mapped_column(String(64), unique=True, index=True)
    link_provider: Mapped[str | None] = mapped_column(String(10))  # a provider, or "choice": the customer picks
    link_expires_at: Mapped[datetime | None]
    link_ended_at: Mapped[datetime | None]  # staff cancelled the link
    customer_locale: Mapped[str | None] = mapped_column(String(10))  # the customer's language, for mails
    # E-invoice data given at order time (MyPay's invoice fields): how the customer takes the invoice, and its details.
    invoice_kind: Mapped[str | None] = mapped_column(String(12))  # an InvoiceKind; None: no e-invoice data given
    invoice_carrier: Mapped[str | None] = mapped_column(String(64))  # mobile barcode or citizen certificate
    invoice_tax_id: Mapped[str | None] = mapped_column(String(8))  # business tax ID (統一編號)
    invoice_title: Mapped[str | None] = mapped_column(String(100))  # the business's name on a B2B invoice
    invoice_donation_code: Mapped[str | None] = mapped_column(String(7))  # the charity's code (捐贈碼)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    merchant: Mapped[Merchant] = relationship()
    items: Mapped[list[OrderItem]] = relationship(
        back_populates="order", order_by="OrderItem.position", cascade="all, delete-orphan"
    )
    vouchers: Mapped[list[Voucher]] = relationship(
        back_populates="order", order_by="Voucher.position", cascade="all, delete-orphan"
    )
    checkouts: Mapped[list[Checkout]] = relationship(back_populates="order", order_by="Checkout.id")

    @property
    def refundable(self) -> int:
        return max(self.paid_amount - self.refunded_amount, 0)

    @property
    def is_paid(self) -> bool:
        """Money was taken (paid, partially refunded or refunded)."""
        return self.state in PAID_STATES

    @property
    def history(self) -> list[CheckoutEvent]:
        """Every attempt's history in one timeline, newest first: a late word about an earlier attempt (a card token
        arriving after the customer entered the card again) shows where it happened, not under its attempt."""
        events = [event for checkout in self.checkouts for event in checkout.events]
        return sorted(events, key=lambda event: (event.created_at, event.id), reverse=True)


# The order list's search (orders.list_orders: lower(column) LIKE '%text%'): trigram indexes on PostgreSQL, where
# the pg_trgm extension comes with the server's contrib package. No index can serve a LIKE with a leading % on SQLite.
SEARCH_COLUMNS = ("number", "customer_name", "customer_email")
for _name in SEARCH_COLUMNS:
    Index(
        f"ix_order_{_name}_trgm",
        func.lower(Order.__table__.c[_name]).label(f"{_name}_lower"),
        postgresql_using="gin",
        postgresql_ops={f"{_name}_lower": "gin_trgm_ops"},
    ).ddl_if(dialect="postgresql")
event.listen(
    Order.__table__, "before_create", DDL("CREATE EXTENSION IF NOT EXISTS pg_trgm").execute_if(dialect="postgresql")
)


class OrderItem(db.Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("order.id"), index=True)
    position: Mapped[int] = mapped_column(default=0)
    sku: Mapped[str] = mapped_column(String(64), default="")
    name: Mapped[str] = mapped_column(String(100))
    unit_price: Mapped[int]
    quantity: Mapped[int]

    order: Mapped[Order] = relationship(back_populates="items")

    @property
    def total(self) -> int:
        return self.unit_price * self.quantity


class Voucher(db.Model):
    __table_args__ = (UniqueConstraint("order_id", "serial_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("order.id"), index=True)
    position: Mapped[int] = mapped_column(default=0)
    kind: Mapped[str] = mapped_column(String(8))  # "paid" or "free"
    product_id: Mapped[str] = mapped_column(String(32))
    serial_number: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(100))
    amount: Mapped[int]

    order: Mapped[Order] = relationship(back_populates="vouchers")


class Checkout(db.Model):
    """One payment attempt at one provider, with its own provider reference and public link."""

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("order.id"), index=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchant.id"), index=True)
    provider: Mapped[str] = mapped_column(String(10))
    reference: Mapped[str] = mapped_column(String(32), unique=True)
    public_token: Mapped[str] = mapped_column(String(64), unique=True)
    amount: Mapped[int]
    state: Mapped[str] = mapped_column(String(24), default=CheckoutState.CREATING.value, index=True)  # a CheckoutState
    expires_at: Mapped[datetime]
    provider_url: Mapped[str | None] = mapped_column(Text)
    # O'Pay: its Create answer, shown again when the customer comes back (a second Create would repeat the trade no).
    provider_page: Mapped[str | None] = mapped_column(Text)
    provider_page_type: Mapped[str | None] = mapped_column(String(100))
    provider_checkout_id: Mapped[str | None] = mapped_column(String(128), index=True)
    provider_secret_enc: Mapped[str | None] = mapped_column(Text)  # MyPay key
    provider_transaction_id: Mapped[str | None] = mapped_column(String(128))  # Oen HID, O'Pay TradeNo
    card_token_enc: Mapped[str | None] = mapped_column(Text)  # Oen card token
    charge_started_at: Mapped[datetime | None]  # Oen: when the card token was last sent to be charged
    paid_amount: Mapped[int] = mapped_column(default=0)
    refunded_amount: Mapped[int] = mapped_column(default=0)
    card_last4: Mapped[str | None] = mapped_column(String(4))  # as the provider reported it; never more
    fee_amount: Mapped[int | None]  # the provider's fee where it reports one, whole NT$ (O'Pay's cents rounded)
    # When the provider opened it (awaiting payment); None for one the provider refused to make, which leaves the
    # order as it was.
    opened_at: Mapped[datetime | None]
    # An offline payment's instructions (MyPay ATM virtual account, convenience-store code) and their deadline.
    payment_code: Mapped[dict | None] = mapped_column(JSON)
    payment_code_expires_at: Mapped[datetime | None]
    needs_attention: Mapped[bool] = mapped_column(default=False)
    # An AttentionReason: why it was flagged (kept after an admin marks it handled); None on rows flagged before 0012.
    attention_reason: Mapped[str | None] = mapped_column(String(24))
    # The provider's last error, "code: message", in English (evidence) and in Chinese (staff read it in zh-TW).
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_zh: Mapped[str | None] = mapped_column(Text)
    last_queried_at: Mapped[datetime | None]
    next_query_at: Mapped[datetime | None]
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    order: Mapped[Order] = relationship(back_populates="checkouts")
    merchant: Mapped[Merchant] = relationship()
    events: Mapped[list[CheckoutEvent]] = relationship(
        back_populates="checkout", order_by="CheckoutEvent.id", cascade="all, delete-orphan"
    )

    @property
    def provider_rules(self) -> type[Provider]:
        """The provider's class: what it declares (refund policy, saved cards, …), asked instead of its name."""
        return provider_class(self.provider)

    @property
    def is_open(self) -> bool:
        """Still waiting for the customer (or for the provider to answer)."""
        return self.state in OPEN_STATES

    @property
    def is_paid(self) -> bool:
        return self.state in PAID_STATES

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES


class CheckoutEvent(db.Model):
    """The evidence for every state change (or refused change) of a checkout."""

    # The dashboard: payments, failures and expiries by the day they happened.
    __table_args__ = (Index("ix_checkout_event_to_state_created", "to_state", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    checkout_id: Mapped[int] = mapped_column(ForeignKey("checkout.id"), index=True)
    source: Mapped[str] = mapped_column(String(16))  # callback, query, create, manual, refund
    from_state: Mapped[str] = mapped_column(String(24))
    to_state: Mapped[str] = mapped_column(String(24))
    applied: Mapped[bool] = mapped_column(default=True)
    webhook_event_id: Mapped[int | None] = mapped_column(ForeignKey("webhook_event.id"))
    detail: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    checkout: Mapped[Checkout] = relationship(back_populates="events")


class WebhookEvent(db.Model):
    """A callback exactly as received, stored before it is processed."""

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(10))
    dedupe_key: Mapped[str] = mapped_column(String(128), unique=True)
    headers: Mapped[dict] = mapped_column(JSON, default=dict)
    body: Mapped[str] = mapped_column(Text, default="")  # secrets (Oen card token) removed
    secret_enc: Mapped[str | None] = mapped_column(Text)  # the removed secret, encrypted
    remote_addr: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=CallbackStatus.RECEIVED.value)  # a CallbackStatus
    error: Mapped[str | None] = mapped_column(Text)  # why it was refused or failed (English, as evidence)
    error_zh: Mapped[str | None] = mapped_column(Text)  # the same reason in zh-TW, where the provider layer gave one
    merchant_id: Mapped[int | None] = mapped_column(ForeignKey("merchant.id"), index=True)
    checkout_id: Mapped[int | None] = mapped_column(ForeignKey("checkout.id"), index=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=1)


class Refund(db.Model):
    """A refund, committed as "requested" before the provider is called."""

    # The dashboard: a merchant's refunds by the day they were made.
    __table_args__ = (Index("ix_refund_merchant_created", "merchant_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    checkout_id: Mapped[int] = mapped_column(ForeignKey("checkout.id"), index=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("order.id"), index=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchant.id"), index=True)
    amount: Mapped[int]
    reason: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default=RefundState.REQUESTED.value)  # a RefundState
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    options: Mapped[dict] = mapped_column(JSON, default=dict)
    manual: Mapped[bool] = mapped_column(default=False)
    manual_reference: Mapped[str | None] = mapped_column(String(128))
    provider_refund_id: Mapped[str | None] = mapped_column(String(128))
    message: Mapped[str | None] = mapped_column(Text)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    checkout: Mapped[Checkout] = relationship()
    created_by: Mapped[User | None] = relationship()

    @property
    def is_unsettled(self) -> bool:
        """It may still take money: being sent, accepted for later, or its outcome not heard."""
        return self.state in UNSETTLED


class AuditEvent(db.Model):
    """An append-only record of who did what; the portal offers no way to edit or delete one."""

    id: Mapped[int] = mapped_column(primary_key=True)
    merchant_id: Mapped[int | None] = mapped_column(ForeignKey("merchant.id"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    action: Mapped[str] = mapped_column(String(40), index=True)
    detail: Mapped[dict] = mapped_column(JSON, default=dict)
    ip: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    user: Mapped[User | None] = relationship()


class SeenNonce(db.Model):
    """Request ids a provider has used (O'Pay RqID), so that a replay is refused."""

    __table_args__ = (UniqueConstraint("provider", "value"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(10))
    value: Mapped[str] = mapped_column(String(128))
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)


class OutboxMessage(db.Model):
    """Something to send (a mail; later a webhook to the merchant), written with the change that causes it."""

    __table_args__ = (Index("ix_outbox_message_due", "state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # "mail"
    topic: Mapped[str] = mapped_column(String(32))  # e.g. "receipt", "reminder", "link", "staff_paid"
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)  # one message per event
    merchant_id: Mapped[int | None] = mapped_column(ForeignKey("merchant.id"), index=True)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("order.id"), index=True)
    payload: Mapped[dict] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(16), default=OutboxState.PENDING.value)  # an OutboxState
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    locked_until: Mapped[datetime | None]  # while a worker sends it
    last_error: Mapped[str | None] = mapped_column(Text)
    last_duration_ms: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]


class JobRun(db.Model):
    """A scheduled job's last run, shared by every worker: one of them runs it each time, whichever claims it."""

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    last_started_at: Mapped[datetime | None]
    locked_until: Mapped[datetime | None]  # while a worker runs it
    holder: Mapped[str | None] = mapped_column(String(100))  # host and process of that worker
    last_finished_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)


class ApiKey(db.Model):
    """A merchant's key to the JSON API: shown once, stored as its hash."""

    id: Mapped[int] = mapped_column(primary_key=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchant.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16))  # the key's first characters, to tell keys apart
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    can_refund: Mapped[bool] = mapped_column(default=False)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    form_token: Mapped[str | None] = mapped_column(String(64), unique=True)  # the form that made it: sent once
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class IdempotencyRecord(db.Model):
    """The first answer to a POST with an Idempotency-Key, replayed for 24 hours to the same request."""

    __table_args__ = (UniqueConstraint("api_key_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_key.id"), index=True)
    key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))  # sha256 of method, path and body
    status_code: Mapped[int | None]  # None while the first request is still being answered
    response_body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    locked_until: Mapped[datetime | None]  # the first request's hold; another may take over after it
    expires_at: Mapped[datetime] = mapped_column(index=True)


class WebhookEndpoint(db.Model):
    """Where a merchant's systems receive signed events."""

    id: Mapped[int] = mapped_column(primary_key=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchant.id"), index=True)
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str | None] = mapped_column(String(200))
    events: Mapped[list] = mapped_column(JSON, default=list)  # event types; empty: every type
    secret_enc: Mapped[str] = mapped_column(Text)  # the signing secret, encrypted
    enabled: Mapped[bool] = mapped_column(default=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    form_token: Mapped[str | None] = mapped_column(String(64), unique=True)  # the form that made it: sent once
    failing_since: Mapped[datetime | None]  # the first failed delivery since the last success
    flagged_at: Mapped[datetime | None]  # deliveries failed for three days


class MerchantEvent(db.Model):
    """Something that happened to a merchant's order, told to its webhook endpoints."""

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(40), unique=True)  # evt_…
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchant.id"), index=True)
    type: Mapped[str] = mapped_column(String(40))  # order.paid, order.failed, …
    order_id: Mapped[int | None] = mapped_column(ForeignKey("order.id"), index=True)
    data: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookAttempt(db.Model):
    """One delivery attempt of an event to an endpoint, as the merchant's admins see it."""

    id: Mapped[int] = mapped_column(primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoint.id"), index=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("merchant_event.id"), index=True)
    outbox_message_id: Mapped[int | None] = mapped_column(ForeignKey("outbox_message.id"), index=True)
    attempted_at: Mapped[datetime] = mapped_column(default=utcnow)
    status_code: Mapped[int | None]
    duration_ms: Mapped[int | None]
    response_excerpt: Mapped[str | None] = mapped_column(Text)  # the first bytes of the answer
    error: Mapped[str | None] = mapped_column(Text)  # no answer: timeout, refused, redirect…
    resend: Mapped[bool] = mapped_column(default=False)  # asked for by an admin
