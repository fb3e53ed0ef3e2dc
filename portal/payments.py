"""The checkout state machine: open an attempt, apply provider events and queries, reconcile.

Rules kept here and nowhere else: state only moves forward by rank; every change (and every refused change) keeps
its evidence; no database transaction is held open across a provider call.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import text, update
from sqlalchemy.exc import IntegrityError

from portal.extensions import db
from portal.gateways import PROVIDER_CLASSES, operator_configured, provider_for
from portal.models import Checkout, CheckoutEvent, Merchant, Order, WebhookEvent, utcnow
from portal.providers.base import (
    CallbackRequest,
    CheckoutRef,
    CheckoutRequest,
    InvalidCallback,
    LineItem,
    ProviderError,
    ProviderEvent,
    ProviderTransaction,
    State,
    VoucherLine,
)
from portal.security import audit, decrypt_secret, encrypt_secret

log = logging.getLogger(__name__)

# Checkout states. "creating": committed, provider not yet answered; "processing": Oen card token being charged.
OPEN_STATES = ("creating", "awaiting_payment", "authorised", "processing")
RANK = {
    "creating": 0,
    "awaiting_payment": 1,
    "authorised": 2,
    "processing": 2,
    "failed": 3,
    "expired": 3,
    "cancelled": 3,
    "paid": 4,
    "partially_refunded": 5,
    "refunded": 6,
}
PAID_STATES = ("paid", "partially_refunded", "refunded")
# States in which the provider is asked again later (waiting, A0001, a provider error).
REQUERY_AFTER = timedelta(minutes=5)


class CheckoutError(Exception):
    """A checkout could not be opened; the message is for the merchant, in the interface language."""


@dataclass
class ReconcileSummary:
    asked: int = 0
    changed: int = 0
    unchanged: int = 0
    errors: int = 0


# ---------------------------------------------------------------- transactions


@contextlib.contextmanager
def write_transaction():
    """One short write transaction; on SQLite it takes the write lock up front so concurrent writers queue."""
    db.session.commit()
    if db.session.get_bind().dialect.name == "sqlite":
        db.session.execute(text("BEGIN IMMEDIATE"))
    try:
        yield
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise


def locked_checkout(checkout_id: int) -> Checkout:
    """The checkout row, re-read and locked for this transaction."""
    stmt = db.select(Checkout).where(Checkout.id == checkout_id).execution_options(populate_existing=True)
    if db.session.get_bind().dialect.name != "sqlite":
        stmt = stmt.with_for_update()
    return db.session.execute(stmt).scalar_one()


# ---------------------------------------------------------------- snapshots for providers


def new_reference() -> str:
    """A provider reference: 'C' and 19 upper-case letters and digits, unique per attempt."""
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    return "C" + "".join(secrets.choice(alphabet) for _ in range(19))


def checkout_request(checkout: Checkout, customer_ip: str = "") -> CheckoutRequest:
    """The provider's view of the order behind this attempt."""
    order = checkout.order
    base = current_app.config["PORTAL_BASE_URL"]
    return_url = f"{base}/pay/{checkout.public_token}/return"
    return CheckoutRequest(
        reference=checkout.reference,
        amount=checkout.amount,
        items=tuple(LineItem(i.sku, i.name, i.unit_price, i.quantity) for i in order.items),
        shipping_fee=order.shipping_fee,
        vouchers=tuple(VoucherLine(v.kind, v.product_id, v.serial_number, v.name, v.amount) for v in order.vouchers),
        customer_name=order.customer_name,
        customer_email=order.customer_email,
        customer_id=hashlib.sha256(f"{order.merchant_id}:{order.customer_email.lower()}".encode()).hexdigest()[:20],
        customer_ip=customer_ip or "127.0.0.1",
        success_url=return_url,
        failure_url=return_url,
        notify_url=f"{base}/webhooks/{checkout.provider}",
        description=order.number,
        created_at=checkout.created_at,
    )


def checkout_ref(checkout: Checkout) -> CheckoutRef:
    """What a provider needs to query, verify or refund this attempt."""
    ids = {}
    if checkout.provider_checkout_id:
        ids["checkout_id"] = checkout.provider_checkout_id
        ids["uid"] = checkout.provider_checkout_id
    if checkout.provider_secret_enc:
        ids["key"] = decrypt_secret(checkout.provider_secret_enc)
    if checkout.provider_transaction_id:
        ids["transaction_id"] = checkout.provider_transaction_id
    order = checkout.order
    return CheckoutRef(
        reference=checkout.reference,
        amount=checkout.amount,
        provider_ids=ids,
        vouchers=tuple(VoucherLine(v.kind, v.product_id, v.serial_number, v.name, v.amount) for v in order.vouchers),
        items=tuple(LineItem(i.sku, i.name, i.unit_price, i.quantity) for i in order.items),
    )


# ---------------------------------------------------------------- offering providers


def provider_choices(order: Order) -> list[tuple[str, bool, str]]:
    """Each provider with whether it can take this order and, if not, why."""
    merchant = order.merchant
    choices = []
    for name, cls in PROVIDER_CLASSES.items():
        if not operator_configured(name):
            choices.append((name, False, _("Not set up on this portal yet.")))
        elif not merchant.provider_configured(name):
            choices.append((name, False, _("Not set up for this merchant.")))
        elif order.payable < cls.min_amount:
            choices.append((name, False, _("Needs at least NT$%(min)s.", min=cls.min_amount)))
        else:
            choices.append((name, True, ""))
    return choices


def open_checkout(order: Order) -> Checkout | None:
    """The order's attempt still waiting for the customer, if any."""
    for checkout in order.checkouts:
        if checkout.state in OPEN_STATES:
            return checkout
    return None


# ---------------------------------------------------------------- opening an attempt


def start_checkout(order: Order, provider: str, user_id: int | None, customer_ip: str = "") -> Checkout:
    """Open a new attempt for the order at the provider; raises CheckoutError with a message for the merchant."""
    allowed = {name: (ok, why) for name, ok, why in provider_choices(order)}
    if provider not in allowed:
        raise CheckoutError(_("Choose Oen Tech, MyPay or O'Pay."))
    ok, why = allowed[provider]
    if not ok:
        raise CheckoutError(why)
    if order.state in PAID_STATES:
        raise CheckoutError(_("This order is already paid."))
    order_id = order.id
    with write_transaction():
        order = db.session.get(Order, order_id, populate_existing=True, with_for_update=True)  # one opener at a time
        if any(c.state in OPEN_STATES or c.state in PAID_STATES for c in order.checkouts):
            raise CheckoutError(_("This order already has a payment link that is still open or paid."))
        ttl = timedelta(hours=current_app.config["CHECKOUT_LINK_TTL_H"])
        checkout = Checkout(
            order=order,
            merchant_id=order.merchant_id,
            provider=provider,
            reference=new_reference(),
            public_token=secrets.token_urlsafe(24),
            amount=order.payable,
            state="creating",
            expires_at=utcnow() + ttl,
            created_by_id=user_id,
        )
        db.session.add(checkout)
        db.session.flush()
        record(checkout, "create", "creating", "creating", _detail(provider=provider, amount=order.payable))
        refresh_order(order)
    checkout_id = checkout.id
    request = checkout_request(checkout, customer_ip)
    merchant = checkout.merchant
    db.session.commit()  # no transaction is held across the provider call
    try:
        link = provider_for(merchant, provider).create_checkout(request)
    except ProviderError as exc:
        _fail_creation(checkout_id, exc)
        raise CheckoutError(provider_message(exc)) from exc
    with write_transaction():
        checkout = locked_checkout(checkout_id)
        checkout.provider_url = link.url
        ids = dict(link.provider_ids)
        checkout.provider_checkout_id = ids.get("checkout_id") or ids.get("uid")
        if ids.get("key"):
            checkout.provider_secret_enc = encrypt_secret(ids["key"])
        _move(checkout, "awaiting_payment", "create", _detail(url=link.url, **_public_ids(ids)))
    return checkout


def remember_provider_page(checkout_id: int, body: bytes, content_type: str) -> None:
    """Keep the provider's answer to a deferred create (O'Pay), so a second visit shows it instead of creating again."""
    with write_transaction():
        checkout = locked_checkout(checkout_id)
        if checkout.provider_page is None:
            checkout.provider_page = body.decode("utf-8", errors="replace")
            checkout.provider_page_type = content_type[:100]
            record(checkout, "create", checkout.state, checkout.state, _detail(provider_page="received"), applied=False)


def _fail_creation(checkout_id: int, exc: ProviderError) -> None:
    """The provider refused or did not answer: keep the attempt, closed, with the reason."""
    with write_transaction():
        checkout = locked_checkout(checkout_id)
        checkout.last_error = f"{exc.code}: {exc.message_en}"
        _move(checkout, "failed", "create", _detail(error=exc.code, message=exc.message_en))


def provider_message(exc: ProviderError) -> str:
    """The provider error's message in the interface language."""
    from flask_babel import get_locale

    return exc.message(str(get_locale() or "zh_TW"))


def _public_ids(ids: dict) -> dict:
    return {k: v for k, v in ids.items() if k not in ("key", "token")}


def _detail(**fields) -> str:
    return json.dumps(fields, ensure_ascii=False, default=str, sort_keys=True)


# ---------------------------------------------------------------- applying states


def record(checkout: Checkout, source: str, from_state: str, to_state: str, detail: str, **kw) -> CheckoutEvent:
    """Add an evidence row to the checkout's history."""
    event = CheckoutEvent(
        checkout=checkout, source=source, from_state=from_state, to_state=to_state, detail=detail, **kw
    )
    db.session.add(event)
    return event


def _move(checkout: Checkout, new_state: str, source: str, detail: str, *, webhook_event_id=None) -> bool:
    """Move a locked checkout forward (compare-and-set on its current state); record the evidence either way."""
    old = checkout.state
    forward = RANK.get(new_state, -1) > RANK.get(old, -1)
    if not forward:
        record(checkout, source, old, new_state, detail, applied=False, webhook_event_id=webhook_event_id)
        return False
    result = db.session.execute(
        update(Checkout)
        .where(Checkout.id == checkout.id, Checkout.state == old)
        .values(state=new_state, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # someone else moved it first; the caller's transaction is retried by the caller
        raise RuntimeError("checkout changed under a lock")
    checkout.state = new_state
    record(checkout, source, old, new_state, detail, webhook_event_id=webhook_event_id)
    refresh_order(checkout.order)
    return True


def apply_state(
    checkout: Checkout,
    state: State | str,
    *,
    source: str,
    detail: str,
    amount: int | None = None,
    refunded_amount: int | None = None,
    transaction_id: str = "",
    webhook_event_id: int | None = None,
) -> bool:
    """Apply a provider-reported state to a locked checkout; True when the state changed."""
    state = State(state) if not isinstance(state, State) else state
    if state == State.ERROR:
        checkout.next_query_at = utcnow() + REQUERY_AFTER
        record(
            checkout, source, checkout.state, checkout.state, detail, applied=False, webhook_event_id=webhook_event_id
        )
        return False
    target = state.value
    if state == State.PAID_MISMATCH:
        target = "paid"
        checkout.needs_attention = True
    if state == State.AUTHORISED and checkout.state == "processing":
        target = "processing"
    if target in PAID_STATES and amount is not None and amount != checkout.amount and state != State.REFUNDED:
        checkout.needs_attention = True
    if transaction_id and not checkout.provider_transaction_id:
        checkout.provider_transaction_id = transaction_id
    if target in PAID_STATES and not checkout.paid_amount:
        checkout.paid_amount = amount if amount is not None and target == "paid" else checkout.amount
    if refunded_amount is not None and refunded_amount > checkout.refunded_amount:
        checkout.refunded_amount = min(refunded_amount, checkout.paid_amount or checkout.amount)
    if target == "refunded" and not checkout.refunded_amount:
        checkout.refunded_amount = checkout.paid_amount or checkout.amount
    if target == "awaiting_payment" or target == "authorised":
        checkout.next_query_at = utcnow() + REQUERY_AFTER
    changed = _move(checkout, target, source, detail, webhook_event_id=webhook_event_id)
    if not changed and checkout.refunded_amount:
        refresh_order(checkout.order)
    return changed


def refresh_order(order: Order) -> None:
    """Derive the order's state and amounts from its checkouts."""
    checkouts = list(order.checkouts)
    paid = [c for c in checkouts if c.state in PAID_STATES]
    order.paid_amount = sum(c.paid_amount or c.amount for c in paid)
    order.refunded_amount = sum(c.refunded_amount for c in paid)
    if paid:
        if order.refunded_amount >= order.paid_amount:
            order.state = "refunded"
        elif order.refunded_amount > 0:
            order.state = "partially_refunded"
        else:
            order.state = "paid"
    elif not checkouts:
        order.state = "draft"
    else:
        latest = checkouts[-1].state
        order.state = "awaiting_payment" if latest in OPEN_STATES else latest


# ---------------------------------------------------------------- states from queries


def state_from_transactions(checkout: Checkout, txns: list[ProviderTransaction]) -> tuple[State | None, dict]:
    """The state a provider's transactions add up to (None: the provider knows nothing yet), with the figures."""
    payments = [t for t in txns if t.kind == "payment"]
    refunds = [t for t in txns if t.kind == "refund"]
    if not payments:
        return None, {}
    best = max(payments, key=lambda t: _rank_of(t.state))
    refunded = sum(t.amount for t in refunds if t.state in (State.REFUNDED, State.PAID)) or sum(
        t.refunded_amount for t in payments
    )
    state = best.state
    paid_amount = best.amount
    if state in (State.PAID, State.PAID_MISMATCH, State.REFUNDED, State.PARTIALLY_REFUNDED) and refunded:
        state = State.REFUNDED if refunded >= paid_amount else State.PARTIALLY_REFUNDED
    return state, {"amount": paid_amount, "refunded": refunded, "transaction_id": best.transaction_id}


def _rank_of(state: State) -> int:
    value = "paid" if state == State.PAID_MISMATCH else state.value
    return RANK.get(value, -1)


def query_provider(checkout: Checkout) -> list[ProviderTransaction]:
    """What the provider reports for this attempt now; the open transaction is ended first (none across the call)."""
    provider = provider_for(checkout.merchant, checkout.provider)
    ref = checkout_ref(checkout)
    db.session.commit()
    return provider.query(ref)


def refresh_checkout(checkout_id: int, source: str = "query") -> tuple[bool, str | None]:
    """Ask the provider about one attempt and apply its answer; returns (changed, error message)."""
    checkout = db.session.get(Checkout, checkout_id, populate_existing=True)
    if checkout.state == "creating" or checkout.provider == "oen" and not checkout.provider_checkout_id:
        return False, None
    try:
        txns = query_provider(checkout)
    except ProviderError as exc:
        with write_transaction():
            checkout = locked_checkout(checkout_id)
            checkout.last_queried_at = utcnow()
            checkout.next_query_at = utcnow() + REQUERY_AFTER
            checkout.last_error = f"{exc.code}: {exc.message_en}"
        return False, provider_message(exc)
    with write_transaction():
        checkout = locked_checkout(checkout_id)
        checkout.last_queried_at = utcnow()
        state, figures = state_from_transactions(checkout, txns)
        if state is not None or checkout.state != "processing":
            checkout.last_error = None  # (a charge that failed in transit keeps its error until Oen shows one)
        changed = False
        if state is not None:
            detail = _detail(
                provider_state=state.value,
                transactions=[{"id": t.transaction_id, "state": t.state.value, "amount": t.amount} for t in txns],
            )
            changed = apply_state(
                checkout,
                state,
                source=source,
                detail=detail,
                amount=figures.get("amount"),
                refunded_amount=figures.get("refunded"),
                transaction_id=figures.get("transaction_id", ""),
            )
        elif checkout.state in OPEN_STATES and checkout.expires_at < utcnow():
            changed = _move(checkout, "expired", "expiry", _detail(expires_at=checkout.expires_at))
    return changed, None


def reconcile_open_checkouts(older_than_minutes: int = 0, merchant_id: int | None = None) -> ReconcileSummary:
    """Query the provider for every open checkout (untouched for the given minutes) and apply the answers."""
    cutoff = utcnow() - timedelta(minutes=older_than_minutes)
    stmt = db.select(Checkout.id).where(Checkout.state.in_(OPEN_STATES), Checkout.updated_at <= cutoff)
    if merchant_id is not None:
        stmt = stmt.where(Checkout.merchant_id == merchant_id)
    ids = list(db.session.execute(stmt.order_by(Checkout.id)).scalars())
    summary = ReconcileSummary()
    for checkout_id in ids:
        summary.asked += 1
        try:
            changed, error = refresh_checkout(checkout_id, source="reconcile")
        except Exception:  # one broken checkout must not stop the others
            log.exception("reconcile failed for checkout %s", checkout_id)
            db.session.rollback()
            summary.errors += 1
            continue
        if error:
            summary.errors += 1
        elif changed:
            summary.changed += 1
        else:
            summary.unchanged += 1
    return summary


# ---------------------------------------------------------------- callbacks


@dataclass
class CallbackReply:
    status: int
    body: str


REDACTED = "[encrypted]"

# The portal's own reasons stored in WebhookEvent.error, in English as evidence; the callbacks page shows them in the
# reader's language (views/webhooks.py CALLBACK_ERRORS). Provider-layer reasons are stored and shown as they are.
NO_MERCHANT = "The callback names no merchant known to this portal."
NOT_READY = "the attempt is still being opened"


def _redact(provider: str, body: bytes) -> tuple[str, str | None]:
    """The body to store (secrets removed) and the removed secret, encrypted."""
    # PostgreSQL text cannot hold NUL: it is kept as U+FFFD, like any other byte that is not UTF-8.
    text_body = body.decode("utf-8", errors="replace").replace("\x00", "\ufffd")
    if provider != "oen":
        return text_body, None
    try:
        fields = json.loads(text_body)
    except ValueError:
        return text_body, None
    if isinstance(fields, dict) and fields.get("token"):
        secret = str(fields["token"])
        fields["token"] = REDACTED
        return json.dumps(fields, ensure_ascii=False), encrypt_secret(secret)
    return text_body, None


def store_callback(provider: str, request: CallbackRequest) -> tuple[WebhookEvent, bool]:
    """Store the callback as received before anything else; returns (row, first time seen)."""
    dedupe = f"{provider}:" + hashlib.sha256(request.body).hexdigest()
    body, secret_enc = _redact(provider, request.body)
    headers = {k: v for k, v in request.headers.items() if k.lower() not in ("authorization", "cookie")}
    row = WebhookEvent(
        provider=provider,
        dedupe_key=dedupe,
        headers=headers,
        body=body,
        secret_enc=secret_enc,
        remote_addr=request.remote_addr,
    )
    try:
        with write_transaction():
            db.session.add(row)
        return row, True
    except IntegrityError:
        existing = db.session.execute(db.select(WebhookEvent).filter_by(dedupe_key=dedupe)).scalar_one()
        with write_transaction():
            db.session.execute(
                update(WebhookEvent).where(WebhookEvent.id == existing.id).values(attempts=WebhookEvent.attempts + 1)
            )
        return existing, False


SUCCESS_REPLY = {"mypay": "8888", "opay": "1|OK", "oen": ""}


def receive_callback(provider: str, request: CallbackRequest) -> CallbackReply:
    """Store, verify, apply, and answer as the provider expects (only after the commit)."""
    row, first = store_callback(provider, request)
    if not first:
        return _reply_for_duplicate(provider, row.id)
    return process_callback(row.id, request)


def _reply_for_duplicate(provider: str, event_id: int) -> CallbackReply:
    """A resent callback: answer as the first one was answered, waiting briefly if it is still being processed."""
    import time

    deadline = time.monotonic() + 15
    while True:
        status = db.session.execute(
            db.select(WebhookEvent.status).where(WebhookEvent.id == event_id).execution_options(populate_existing=True)
        ).scalar_one()
        db.session.commit()
        if status != "received" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if status in ("applied", "recorded"):
        return CallbackReply(200, SUCCESS_REPLY[provider])
    if status == "refused":
        return CallbackReply(400, "refused")
    return CallbackReply(503, "retry later")


def _finish_event(event_id: int, status: str, error: str | None = None, **fields) -> None:
    with write_transaction():
        db.session.execute(
            update(WebhookEvent)
            .where(WebhookEvent.id == event_id)
            .values(status=status, error=error, processed_at=utcnow(), **fields)
        )
        if status == "refused":
            audit("callback_refused", merchant_id=fields.get("merchant_id"), event_id=event_id, reason=error)


def _lookup_factory(provider: str, merchant_id: int | None, found: dict):
    """A lookup for the provider: reference -> the attempt's CheckoutRef (None if unknown or not yet opened)."""

    def lookup(reference: str) -> CheckoutRef | None:
        stmt = db.select(Checkout).where(Checkout.reference == reference, Checkout.provider == provider)
        if merchant_id is not None:
            stmt = stmt.where(Checkout.merchant_id == merchant_id)
        checkout = db.session.execute(stmt).scalar_one_or_none()
        if checkout is None:
            return None
        found["checkout"] = checkout
        if checkout.state == "creating":
            found["not_ready"] = True
            return None
        return checkout_ref(checkout)

    return lookup


def _callback_merchant(provider: str, request: CallbackRequest) -> Merchant | None:
    """The merchant whose credentials read this callback (O'Pay by MerchantID; Oen by merchantId)."""
    if provider == "opay":
        merchant_id = (request.form or {}).get("MerchantID", "")
        return (
            db.session.execute(db.select(Merchant).filter_by(opay_merchant_id=merchant_id)).scalar_one_or_none()
            if merchant_id
            else None
        )
    if provider == "oen":
        try:
            fields = json.loads(request.body or b"{}")
        except ValueError:
            return None
        merchant_id = fields.get("merchantId") if isinstance(fields, dict) else None
        if not isinstance(merchant_id, str) or not merchant_id:
            return None
        return db.session.execute(db.select(Merchant).filter_by(oen_merchant_id=merchant_id)).scalar_one_or_none()
    return None


def process_callback(event_id: int, request: CallbackRequest) -> CallbackReply:
    """Verify a stored callback and apply it; the reply is decided only after the commit."""
    found: dict = {}
    provider = _event_provider(event_id)
    merchant = None
    try:
        # Parsing writes (O'Pay's RqID store), so it runs in one short write transaction; no network inside.
        with write_transaction():
            merchant = _callback_merchant(provider, request)
            if provider in ("opay", "oen") and merchant is None:
                raise InvalidCallback(provider, NO_MERCHANT)
            # MyPay callbacks are the agent's, for any store: the lookup finds the attempt by its reference.
            client = provider_for(merchant or Merchant(), provider)
            lookup = _lookup_factory(provider, merchant.id if merchant else None, found)
            event = client.parse_callback(request, lookup)
    except InvalidCallback as exc:
        checkout = found.get("checkout")
        if found.get("not_ready"):
            _finish_event(event_id, "error", NOT_READY, checkout_id=checkout.id, merchant_id=checkout.merchant_id)
            return CallbackReply(503, "retry later")
        _finish_event(
            event_id,
            "refused",
            exc.message_en,
            error_zh=exc.message_zh,
            merchant_id=merchant.id if merchant else (checkout.merchant_id if checkout else None),
            checkout_id=checkout.id if checkout else None,
        )
        return CallbackReply(400, "refused")
    except Exception as exc:  # a broken provider answer must not lose the stored callback
        log.exception("callback %s could not be processed", event_id)
        db.session.rollback()
        _finish_event(event_id, "error", f"{type(exc).__name__}")
        return CallbackReply(503, "retry later")
    checkout = found["checkout"]
    try:
        if provider == "oen" and event.card_token:
            status = _apply_oen_token(checkout.id, event, event_id)
        elif provider == "mypay" and event.state not in (State.AWAITING_PAYMENT,):
            status = _apply_confirmed_by_query(checkout.id, event, event_id)
        else:
            status = _apply_event(checkout.id, event, event_id)
    except ProviderError as exc:
        db.session.rollback()
        _finish_event(
            event_id,
            "error",
            f"{exc.code}: {exc.message_en}",
            error_zh=f"{exc.code}: {exc.message_zh}",
            checkout_id=checkout.id,
            merchant_id=checkout.merchant_id,
        )
        return CallbackReply(503, "retry later")
    if status == "error":
        return CallbackReply(503, "retry later")
    return CallbackReply(200, event.reply_body)


def _event_provider(event_id: int) -> str:
    return db.session.execute(db.select(WebhookEvent.provider).where(WebhookEvent.id == event_id)).scalar_one()


def _event_detail(event: ProviderEvent, event_id: int) -> str:
    return _detail(callback=event_id, state=event.state.value, amount=event.amount, message=event.message)


def _apply_event(checkout_id: int, event: ProviderEvent, event_id: int) -> str:
    """Apply a verified event in one transaction holding the checkout's lock."""
    with write_transaction():
        checkout = locked_checkout(checkout_id)
        changed = apply_state(
            checkout,
            event.state,
            source="callback",
            detail=_event_detail(event, event_id),
            amount=event.amount,
            transaction_id=event.transaction_id,
            webhook_event_id=event_id,
        )
        _mark_event(event_id, checkout, "applied" if changed else "recorded")
    return "applied"


def _mark_event(event_id: int, checkout: Checkout, status: str) -> None:
    db.session.execute(
        update(WebhookEvent)
        .where(WebhookEvent.id == event_id)
        .values(status=status, processed_at=utcnow(), checkout_id=checkout.id, merchant_id=checkout.merchant_id)
    )


def _apply_confirmed_by_query(checkout_id: int, event: ProviderEvent, event_id: int) -> str:
    """A MyPay callback moves money state only after api/queryorder says the same."""
    with write_transaction():
        checkout = locked_checkout(checkout_id)
        record(
            checkout,
            "callback",
            checkout.state,
            event.state.value,
            _event_detail(event, event_id),
            applied=False,
            webhook_event_id=event_id,
        )
        _mark_event(event_id, checkout, "recorded")
    _changed, error = refresh_checkout(checkout_id, source="callback+query")
    if error:
        _finish_event(event_id, "error", error, checkout_id=checkout_id)
        return "error"
    with write_transaction():
        db.session.execute(update(WebhookEvent).where(WebhookEvent.id == event_id).values(status="applied"))
    return "applied"


# ---------------------------------------------------------------- Oen: charging the card token


def _apply_oen_token(checkout_id: int, event: ProviderEvent, event_id: int) -> str:
    """The card is saved at Oen: keep its token encrypted and charge it exactly once."""
    with write_transaction():
        checkout = locked_checkout(checkout_id)
        if checkout.state != "awaiting_payment":
            record(
                checkout,
                "callback",
                checkout.state,
                "processing",
                _event_detail(event, event_id),
                applied=False,
                webhook_event_id=event_id,
            )
            _mark_event(event_id, checkout, "recorded")
            return "recorded"
        checkout.card_token_enc = encrypt_secret(event.card_token)
        _move(checkout, "processing", "callback", _event_detail(event, event_id), webhook_event_id=event_id)
        _mark_event(event_id, checkout, "applied")
    charge_card(checkout_id, source="callback")
    return "applied"


def read_card_token(checkout: Checkout, purpose: str, user_id: int | None = None) -> str:
    """Decrypt a checkout's card token; every read is audited."""
    audit("card_token_read", merchant_id=checkout.merchant_id, user_id=user_id, checkout=checkout.id, purpose=purpose)
    return decrypt_secret(checkout.card_token_enc) or ""


# A charge whose outcome was unknown may be tried again by an admin only after this long (and a query showing none).
CHARGE_RETRY_AFTER = timedelta(minutes=2)


def charge_card(checkout_id: int, source: str, user_id: int | None = None, retry: bool = False) -> bool:
    """Charge the checkout's Oen card token once (it must be "processing"), then confirm by query; True when sent."""
    with write_transaction():
        checkout = locked_checkout(checkout_id)
        started = checkout.charge_started_at
        if checkout.state != "processing" or not checkout.card_token_enc:
            return False
        if started is not None and (not retry or utcnow() - started < CHARGE_RETRY_AFTER):
            return False  # a charge was already sent (or is being sent): never a second one by accident
        checkout.charge_started_at = utcnow()
        token = read_card_token(checkout, purpose=f"charge {checkout.reference}", user_id=user_id)
    provider = provider_for(checkout.merchant, "oen")
    ref = checkout_ref(checkout)
    request = checkout_request(checkout)
    db.session.commit()
    try:
        txn = provider.charge(ref, token, request)
    except ProviderError as exc:
        with write_transaction():
            checkout = locked_checkout(checkout_id)
            checkout.last_error = f"{exc.code}: {exc.message_en}"
            if exc.retryable:
                # Outcome unknown: leave it "processing"; the order transactions query settles it.
                record(
                    checkout,
                    source,
                    checkout.state,
                    checkout.state,
                    _detail(charge="unknown", error=exc.code),
                    applied=False,
                )
                checkout.next_query_at = utcnow()
            else:
                _move(checkout, "failed", source, _detail(charge="refused", error=exc.code, message=exc.message_en))
        if exc.retryable:
            refresh_checkout(checkout_id, source="query")
        return False
    with write_transaction():
        checkout = locked_checkout(checkout_id)
        apply_state(
            checkout,
            txn.state,
            source=source,
            detail=_detail(charge=txn.transaction_id, amount=txn.amount),
            amount=txn.amount,
            transaction_id=txn.transaction_id,
        )
    refresh_checkout(checkout_id, source="query")
    return True


def charge_again(order: Order, previous: Checkout, user_id: int) -> Checkout:
    """Charge the card saved with an earlier Oen checkout of the same customer for this order (admins only)."""
    if previous.provider != "oen" or not previous.card_token_enc:
        raise CheckoutError(_("That payment has no saved card."))
    if previous.merchant_id != order.merchant_id or previous.order.customer_email.lower() != (
        order.customer_email.lower()
    ):
        raise CheckoutError(_("A saved card can only be charged for the same customer."))
    checkout = start_checkout(order, "oen", user_id)
    with write_transaction():
        checkout = locked_checkout(checkout.id)
        checkout.card_token_enc = previous.card_token_enc  # the same encrypted token, read only to charge
        _move(checkout, "processing", "manual", _detail(charge_again_from=previous.reference))
    charge_card(checkout.id, source="manual", user_id=user_id)
    return db.session.get(Checkout, checkout.id, populate_existing=True)


def retry_charge(checkout_id: int, user_id: int) -> Checkout:
    """An Oen charge whose outcome was unknown: ask Oen first, and charge again only if Oen shows no charge."""
    checkout = db.session.get(Checkout, checkout_id, populate_existing=True)
    if checkout.provider != "oen" or checkout.state != "processing":
        raise CheckoutError(_("This payment is not waiting for a card charge."))
    if checkout.charge_started_at and utcnow() - checkout.charge_started_at < CHARGE_RETRY_AFTER:
        raise CheckoutError(_("The last charge was sent less than two minutes ago. Refresh from the provider first."))
    _changed, error = refresh_checkout(checkout_id, source="manual")
    if error:
        raise CheckoutError(error)
    still_open = db.session.get(Checkout, checkout_id, populate_existing=True).state == "processing"
    if still_open and not charge_card(checkout_id, source="manual", user_id=user_id, retry=True):
        raise CheckoutError(_("Another charge of this card is already on its way."))
    return db.session.get(Checkout, checkout_id, populate_existing=True)
