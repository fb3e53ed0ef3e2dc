"""The sandbox's own state: its registry of merchants, simulated provider records, fault switches, settings, journal."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from sandbox.extensions import db, utcnow


class SandboxSetting(db.Model):
    """A console-editable setting (latency per provider, Oen card-number switch), overriding app config."""

    __tablename__ = "sandbox_setting"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class SandboxFault(db.Model):
    """A fault switch: the next `remaining` API calls (or callbacks) of a provider misbehave as `kind` says."""

    __tablename__ = "sandbox_fault"
    __table_args__ = (UniqueConstraint("provider", "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(10))
    kind: Mapped[str] = mapped_column(String(24))
    remaining: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SandboxCallback(db.Model):
    """A callback the sandbox sends (or sent) to a merchant's server, with what it must answer."""

    __tablename__ = "sandbox_callback"

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(10))
    url: Mapped[str] = mapped_column(Text)
    body_format: Mapped[str] = mapped_column(String(8), default="form")  # form or json
    payload: Mapped[dict] = mapped_column(JSON)  # exactly the fields sent
    readable: Mapped[dict | None] = mapped_column(JSON)  # decrypted view (O'Pay), for the console
    expect: Mapped[str | None] = mapped_column(String(32))  # the body that counts as received; None = any 2xx
    max_attempts: Mapped[int] = mapped_column(default=1)
    attempts: Mapped[int] = mapped_column(default=0)
    state: Mapped[str] = mapped_column(String(12), default="pending")  # pending, delivered, failed, dropped
    last_status: Mapped[int | None]
    last_answer: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SandboxExchange(db.Model):
    """One line of the console: a request received or a callback attempt sent, secrets and card numbers masked."""

    __tablename__ = "sandbox_exchange"

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(10), index=True)
    direction: Mapped[str] = mapped_column(String(8))  # "in" (request received) or "out" (callback sent)
    method: Mapped[str] = mapped_column(String(8))
    url: Mapped[str] = mapped_column(Text)
    status_code: Mapped[int | None]
    request_headers: Mapped[dict] = mapped_column(JSON, default=dict)
    request_body: Mapped[str] = mapped_column(Text, default="")
    decrypted: Mapped[str] = mapped_column(Text, default="")
    response_body: Mapped[str] = mapped_column(Text, default="")
    note: Mapped[str] = mapped_column(Text, default="")
    duration_ms: Mapped[int] = mapped_column(default=0)
    callback_id: Mapped[int | None] = mapped_column(ForeignKey("sandbox_callback.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


# ---------------------------------------------------------------- the registry: merchants and what was issued to them


class SandboxOenMerchant(db.Model):
    """A merchant of Oen (its sub-domain) and the CRM bearer token Oen issued it; the webhook URL set in the CRM."""

    __tablename__ = "sandbox_oen_merchant"

    id: Mapped[int] = mapped_column(primary_key=True)
    merchant_id: Mapped[str] = mapped_column(String(64), unique=True)
    token: Mapped[str] = mapped_column(String(128))
    webhook_url: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SandboxMypayStore(db.Model):
    """A store (特約商店) under the agent; the report URL set in MyPay's admin system."""

    __tablename__ = "sandbox_mypay_store"

    id: Mapped[int] = mapped_column(primary_key=True)
    store_uid: Mapped[str] = mapped_column(String(32), unique=True)
    callback_url: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SandboxOpayMerchant(db.Model):
    """An O'Pay merchant and the HashKey / HashIV O'Pay issued it."""

    __tablename__ = "sandbox_opay_merchant"

    id: Mapped[int] = mapped_column(primary_key=True)
    merchant_id: Mapped[str] = mapped_column(String(10), unique=True)
    hash_key: Mapped[str] = mapped_column(String(16))
    hash_iv: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


# ---------------------------------------------------------------- Oen Tech


class SandboxOenCheckout(db.Model):
    """A hosted card page session (POST /checkout-token) and, once a card is bound, its token."""

    __tablename__ = "sandbox_oen_checkout"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(String(64), index=True)
    success_url: Mapped[str] = mapped_column(Text)
    failure_url: Mapped[str] = mapped_column(Text)
    custom_id: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(12), default="open")  # open, 3ds, succeeded, failed
    transaction_id: Mapped[str | None] = mapped_column(String(32))
    token: Mapped[str | None] = mapped_column(String(64), unique=True)
    card_number: Mapped[str | None] = mapped_column(String(19))  # a documented test card, never a real one
    card_type: Mapped[str | None] = mapped_column(String(16))
    card_name: Mapped[str | None] = mapped_column(String(100))
    subscription_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None]


class SandboxOenTransaction(db.Model):
    """A token charge (POST /token/transactions), refundable once."""

    __tablename__ = "sandbox_oen_transaction"

    id: Mapped[int] = mapped_column(primary_key=True)
    hid: Mapped[str] = mapped_column(String(32), unique=True)
    transaction_id: Mapped[str] = mapped_column(String(32), unique=True)
    merchant_id: Mapped[str] = mapped_column(String(64), index=True)
    order_id: Mapped[str] = mapped_column(String(128), index=True)
    amount: Mapped[int]
    fee: Mapped[int] = mapped_column(default=0)
    currency: Mapped[str] = mapped_column(String(3), default="TWD")
    status: Mapped[str] = mapped_column(String(12))  # charged, failed, refunded
    auth_code: Mapped[str | None] = mapped_column(String(8))
    checkout_id: Mapped[str | None] = mapped_column(String(32))
    user_name: Mapped[str | None] = mapped_column(String(100))
    user_email: Mapped[str | None] = mapped_column(String(254))
    note: Mapped[str | None] = mapped_column(Text)
    product_details: Mapped[list | None] = mapped_column(JSON)
    refund_amount: Mapped[int] = mapped_column(default=0)
    refunded_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SandboxOenSubscription(db.Model):
    """The subscription a bound card creates on Oen's side (cancelled with PUT /subscriptions/{id})."""

    __tablename__ = "sandbox_oen_subscription"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(12), default="active")
    period: Mapped[int] = mapped_column(default=1)
    reason: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    cancelled_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# ---------------------------------------------------------------- MyPay


class SandboxMypayOrder(db.Model):
    """A PayPage order (api/orders); `uid` is MyPay's transaction number."""

    __tablename__ = "sandbox_mypay_order"
    __table_args__ = (UniqueConstraint("store_uid", "order_id"),)

    uid: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(32))
    store_uid: Mapped[str] = mapped_column(String(32))
    order_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(100))
    cost: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3), default="TWD")
    pfn: Mapped[str] = mapped_column(String(20), default="all")
    voucher_type: Mapped[str] = mapped_column(String(2), default="0")
    request: Mapped[dict] = mapped_column(JSON)  # the decrypted api/orders payload
    prc: Mapped[str] = mapped_column(String(8), default="200")
    retmsg: Mapped[str] = mapped_column(String(100), default="資料正確")
    method: Mapped[str | None] = mapped_column(String(20))  # CREDITCARD, E_COLLECTION, CSTORECODE, ...
    cardno: Mapped[str | None] = mapped_column(String(19))  # masked as MyPay masks it
    card_type: Mapped[str | None] = mapped_column(String(2))
    acode: Mapped[str | None] = mapped_column(String(8))
    pending_card: Mapped[str | None] = mapped_column(String(19))  # waiting for the 3-D password
    result_content: Mapped[dict | None] = mapped_column(JSON)
    expired_date: Mapped[str | None] = mapped_column(String(14))
    finishtime: Mapped[str | None] = mapped_column(String(14))
    actual_cost: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SandboxMypayRefund(db.Model):
    """A refund (api/refund) of a PayPage order."""

    __tablename__ = "sandbox_mypay_refund"

    refund_uid: Mapped[int] = mapped_column(Integer, primary_key=True)
    uid: Mapped[int] = mapped_column(ForeignKey("sandbox_mypay_order.uid"), index=True)
    cost: Mapped[int]
    voucher_paid: Mapped[list] = mapped_column(JSON, default=list)
    refund_type: Mapped[int] = mapped_column(default=1)
    invoice_state: Mapped[str | None] = mapped_column(String(2))
    finishtime: Mapped[str] = mapped_column(String(14))
    expected_refund_date: Mapped[str] = mapped_column(String(8), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# ---------------------------------------------------------------- O'Pay


class SandboxOpayTrade(db.Model):
    """A WeChat order (WxAPI/Create)."""

    __tablename__ = "sandbox_opay_trade"
    __table_args__ = (UniqueConstraint("merchant_id", "merchant_trade_no"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    merchant_id: Mapped[str] = mapped_column(String(10))
    platform_id: Mapped[str | None] = mapped_column(String(10))
    merchant_trade_no: Mapped[str] = mapped_column(String(64))
    trade_no: Mapped[str] = mapped_column(String(20), unique=True)
    page_key: Mapped[str] = mapped_column(String(43))  # the customer's payment page is reached only with it
    item_name: Mapped[str] = mapped_column(String(200))
    amount: Mapped[int]
    merchant_trade_date: Mapped[str] = mapped_column(String(20))
    return_url: Mapped[str] = mapped_column(Text)
    client_back_url: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(8), default="0")  # 0 unpaid, 1 paid, v342 expired
    payment_date: Mapped[datetime | None]
    last_result: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SandboxOpayRqid(db.Model):
    """Every RqID O'Pay has accepted: a reused one is refused."""

    __tablename__ = "sandbox_opay_rqid"

    rqid: Mapped[str] = mapped_column(String(64), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(String(10))
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)


# ---------------------------------------------------------------- the mail catcher (sandbox/mail.py)


class CaughtMail(db.Model):
    """A mail the catcher received over SMTP: the envelope, what the console shows, and the raw message (≤ 1 MiB)."""

    __tablename__ = "sandbox_caught_mail"

    id: Mapped[int] = mapped_column(primary_key=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    mail_from: Mapped[str] = mapped_column(Text, default="")
    rcpt_tos: Mapped[list] = mapped_column(JSON, default=list)
    subject: Mapped[str] = mapped_column(Text, default="")
    message_id: Mapped[str] = mapped_column(Text, default="")
    text: Mapped[str] = mapped_column(Text, default="")
    html: Mapped[str] = mapped_column(Text, default="")
    raw: Mapped[str] = mapped_column(Text, default="")
