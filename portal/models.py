"""The portal's tables. Money is int TWD everywhere; secrets are stored encrypted (see security.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from flask_login import UserMixin
from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db


def utcnow() -> datetime:
    """Now, in UTC, without tzinfo (stored naive, always UTC)."""
    return datetime.now(UTC).replace(tzinfo=None)


ROLES = ("admin", "staff")

ORDER_STATES = (
    "draft",
    "awaiting_payment",
    "paid",
    "failed",
    "expired",
    "cancelled",
    "partially_refunded",
    "refunded",
)

PROVIDERS = ("oen", "mypay", "opay")


class Merchant(db.Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    oen_merchant_id: Mapped[str | None] = mapped_column(String(64))
    oen_token_enc: Mapped[str | None] = mapped_column(Text)
    mypay_store_uid: Mapped[str | None] = mapped_column(String(32))
    opay_merchant_id: Mapped[str | None] = mapped_column(String(32), index=True)
    opay_hash_key_enc: Mapped[str | None] = mapped_column(Text)
    opay_hash_iv_enc: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    users: Mapped[list[User]] = relationship(back_populates="merchant")

    def provider_configured(self, provider: str) -> bool:
        """Whether the merchant has the settings the provider needs."""
        if provider == "oen":
            return bool(self.oen_merchant_id and self.oen_token_enc)
        if provider == "mypay":
            return bool(self.mypay_store_uid)
        if provider == "opay":
            return bool(self.opay_merchant_id and self.opay_hash_key_enc and self.opay_hash_iv_enc)
        return False


class User(UserMixin, db.Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(10), default="staff")
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchant.id"), index=True)
    active: Mapped[bool] = mapped_column(default=True)
    locale: Mapped[str | None] = mapped_column(String(10))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    merchant: Mapped[Merchant] = relationship(back_populates="users")

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
    state: Mapped[str] = mapped_column(String(24), default="draft", index=True)
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
    state: Mapped[str] = mapped_column(String(24), default="creating", index=True)
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
    needs_attention: Mapped[bool] = mapped_column(default=False)
    last_error: Mapped[str | None] = mapped_column(Text)
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


class CheckoutEvent(db.Model):
    """The evidence for every state change (or refused change) of a checkout."""

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
    status: Mapped[str] = mapped_column(String(16), default="received")  # received, applied, refused, error
    error: Mapped[str | None] = mapped_column(Text)  # why it was refused or failed (English, as evidence)
    error_zh: Mapped[str | None] = mapped_column(Text)  # the same reason in zh-TW, where the provider layer gave one
    merchant_id: Mapped[int | None] = mapped_column(ForeignKey("merchant.id"), index=True)
    checkout_id: Mapped[int | None] = mapped_column(ForeignKey("checkout.id"), index=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=1)


class Refund(db.Model):
    """A refund, committed as "requested" before the provider is called."""

    id: Mapped[int] = mapped_column(primary_key=True)
    checkout_id: Mapped[int] = mapped_column(ForeignKey("checkout.id"), index=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("order.id"), index=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchant.id"), index=True)
    amount: Mapped[int]
    reason: Mapped[str] = mapped_column(Text)
    # requested, succeeded, pending, failed, unknown
    state: Mapped[str] = mapped_column(String(16), default="requested")
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
