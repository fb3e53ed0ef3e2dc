"""Callback intake: read once, store (secrets removed) before anything else, dedupe, verify, apply, answer.

A callback's body is read once (the provider's own reading); the fields serve redaction, naming the merchant and
verification. Its status is written by set_callback_status alone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import parse_qsl

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError

from portal.extensions import db
from portal.gateways import provider_for
from portal.models import CallbackStatus, Checkout, CheckoutEvent, CheckoutState, Merchant, WebhookEvent, utcnow
from portal.payments.attempts import refresh_checkout
from portal.payments.charges import charge_card
from portal.payments.locking import locked_checkout, write_transaction
from portal.payments.redaction import mask_card_text, scrub
from portal.payments.snapshots import checkout_ref
from portal.payments.state import apply_state, detail, move, record
from portal.providers import provider_class
from portal.providers.base import (
    CallbackRequest,
    CheckoutRef,
    InvalidCallback,
    Provider,
    ProviderError,
    ProviderEvent,
    State,
)
from portal.security import audit, encrypt_secret

log = logging.getLogger(__name__)


# The portal's own reasons stored in WebhookEvent.error, in English as evidence; the callbacks page shows them in the
# reader's language (labels.py). Provider-layer reasons are stored and shown as they are.
NO_MERCHANT = "The callback names no merchant known to this portal."
NOT_READY = "the attempt is still being opened"

RETRY_LATER = (503, "retry later")

# Callbacks that moved nothing on their word: kept short, and purged after CALLBACK_RETENTION_DAYS.
UNVERIFIED = (CallbackStatus.REFUSED, CallbackStatus.UNCONFIRMED)
EXCERPT_CHARS = 300


def excerpt(body: str) -> str:
    """The first characters of a stored (already redacted) body, and how long it was; card numbers cut again."""
    if len(body) <= EXCERPT_CHARS:
        return body
    return mask_card_text(body[:EXCERPT_CHARS]) + f"… [{len(body)} characters; sha256 of the body in dedupe_key]"


def purge_callbacks(retention_days: int, now=None) -> int:
    """Remove refused and unconfirmed callbacks older than the retention; returns how many (CLI and worker)."""
    cutoff = (now or utcnow()) - timedelta(days=retention_days)
    old = db.select(WebhookEvent.id).where(
        WebhookEvent.status.in_([s.value for s in UNVERIFIED]), WebhookEvent.received_at < cutoff
    )
    with write_transaction():
        db.session.execute(
            update(CheckoutEvent).where(CheckoutEvent.webhook_event_id.in_(old)).values(webhook_event_id=None)
        )
        result = db.session.execute(delete(WebhookEvent).where(WebhookEvent.id.in_(old)))
    return result.rowcount or 0


@dataclass
class CallbackReply:
    status: int
    body: str


@dataclass(frozen=True)
class ReadCallback:
    """A callback as received and read once by its provider's rules: its fields, or why they cannot be read."""

    provider: type[Provider]
    request: CallbackRequest
    fields: dict[str, object] | None
    unreadable: InvalidCallback | None = None


def read_callback(provider: str, request: CallbackRequest) -> ReadCallback:
    """Read the callback's body once."""
    cls = provider_class(provider)
    try:
        return ReadCallback(cls, request, cls.read_callback(request))
    except InvalidCallback as exc:
        return ReadCallback(cls, request, None, exc)


# ---------------------------------------------------------------- storing


def redact(callback: ReadCallback) -> tuple[str, str | None]:
    """The body to store (secrets removed, card numbers cut to the last four digits) and the secrets, encrypted.

    For every provider, whatever the body: the fields as read, or as well as they can be read when the provider could
    not; a body that cannot be read at all is kept as text with its card numbers cut.
    """
    # PostgreSQL text cannot hold NUL: it is kept as U+FFFD, like any other byte that is not UTF-8.
    text_body = callback.request.body.decode("utf-8", errors="replace").replace("\x00", "\ufffd")
    fields = callback.fields
    if fields is None:
        fields = _lenient_fields(text_body)  # unreadable to the provider, yet a secret in it is still never stored
    if fields is None:
        return mask_card_text(text_body), None
    kept, found = scrub(fields, callback.provider.callback_secret_fields)
    secret = None
    if found:
        secret = next(iter(found.values())) if len(found) == 1 else json.dumps(found, ensure_ascii=False)
    if kept == fields:
        return mask_card_text(text_body), None
    try:
        body = json.dumps(kept, ensure_ascii=False)
    except (ValueError, RecursionError):
        body = f"[{len(callback.request.body)} bytes, too deeply nested to keep]"
    return body, encrypt_secret(secret) if secret else None


def _lenient_fields(text_body: str) -> dict | None:
    """A JSON object or form fields, read as leniently as possible (for redaction only)."""
    stripped = text_body.strip()
    try:
        value = json.loads(stripped)
    except (ValueError, RecursionError):
        value = None
    if isinstance(value, dict):
        return value
    if "=" in stripped and not stripped.startswith(("{", "[")):
        fields = dict(parse_qsl(stripped, keep_blank_values=True))
        return fields or None
    return None


def store_callback(callback: ReadCallback) -> tuple[WebhookEvent, bool]:
    """Store the callback as received before anything else; returns (row, first time seen)."""
    provider, request = callback.provider.name, callback.request
    dedupe = f"{provider}:" + hashlib.sha256(request.body).hexdigest()
    body, secret_enc = redact(callback)
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


def set_callback_status(
    event_id: int,
    status: CallbackStatus,
    error: str | None = None,
    *,
    error_zh: str | None = None,
    checkout_id: int | None = None,
    merchant_id: int | None = None,
) -> None:
    """The one writer of a stored callback's status (in the caller's transaction); a refusal is audited."""
    values: dict[str, object] = {"status": status.value, "error": error, "processed_at": utcnow()}
    if status in UNVERIFIED:
        # Kept as its hash (dedupe_key) and a short excerpt, secrets already removed; the removed secret is not kept.
        body = db.session.execute(db.select(WebhookEvent.body).where(WebhookEvent.id == event_id)).scalar_one()
        values["body"] = excerpt(body or "")
        values["secret_enc"] = None
    if error_zh is not None:
        values["error_zh"] = error_zh
    if checkout_id is not None:
        values["checkout_id"] = checkout_id
    if merchant_id is not None:
        values["merchant_id"] = merchant_id
    db.session.execute(update(WebhookEvent).where(WebhookEvent.id == event_id).values(**values))
    if status is CallbackStatus.REFUSED:
        audit("callback_refused", merchant_id=merchant_id, event_id=event_id, reason=error)


def _finish(event_id: int, status: CallbackStatus, error: str | None = None, **fields) -> None:
    """Set a callback's status in a transaction of its own."""
    with write_transaction():
        set_callback_status(event_id, status, error, **fields)


# ---------------------------------------------------------------- receiving


def receive_callback(provider: str, request: CallbackRequest) -> CallbackReply:
    """Store, verify, apply, and answer as the provider expects (only after the commit)."""
    callback = read_callback(provider, request)
    row, first = store_callback(callback)
    if not first:
        return _reply_for_duplicate(callback.provider, row.id)
    return process_callback(row.id, callback)


def _reply_for_duplicate(provider: type[Provider], event_id: int) -> CallbackReply:
    """A resent callback: answer as the first one was answered, waiting briefly if it is still being processed."""
    deadline = time.monotonic() + 15
    while True:
        status = db.session.execute(
            db.select(WebhookEvent.status).where(WebhookEvent.id == event_id).execution_options(populate_existing=True)
        ).scalar_one()
        db.session.commit()
        if status != CallbackStatus.RECEIVED or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if status in (CallbackStatus.APPLIED, CallbackStatus.RECORDED, CallbackStatus.UNCONFIRMED):
        return CallbackReply(200, provider.callback_reply)
    if status == CallbackStatus.REFUSED:
        return CallbackReply(400, "refused")
    return CallbackReply(*RETRY_LATER)


def _callback_merchant(provider: type[Provider], fields: dict | None) -> Merchant | None:
    """The merchant whose credentials read this callback, by the id the callback names (O'Pay, Oen)."""
    if provider.callback_merchant_setting is None or not fields:
        return None
    named = provider.callback_merchant(fields)
    if not named:
        return None
    column = getattr(Merchant, provider.callback_merchant_setting)
    return db.session.execute(db.select(Merchant).where(column == named)).scalar_one_or_none()


def _find_checkout(provider: str, merchant: Merchant | None, reference: str) -> Checkout | None:
    """The attempt a callback names by its reference (scoped to the merchant the callback names, if any)."""
    if not reference:
        return None
    stmt = db.select(Checkout).where(Checkout.reference == reference, Checkout.provider == provider)
    if merchant is not None:
        stmt = stmt.where(Checkout.merchant_id == merchant.id)
    return db.session.execute(stmt).scalar_one_or_none()


def _verify(callback: ReadCallback, merchant: Merchant | None) -> ProviderEvent:
    """The provider's verified event; InvalidCallback otherwise."""
    provider = callback.provider
    if provider.callback_merchant_setting and merchant is None:
        raise InvalidCallback(provider.name, NO_MERCHANT)
    if callback.unreadable is not None:
        raise callback.unreadable

    def lookup(reference: str) -> CheckoutRef | None:
        checkout = _find_checkout(provider.name, merchant, reference)
        if checkout is None or checkout.state == CheckoutState.CREATING:
            return None  # unknown, or not yet opened
        return checkout_ref(checkout)

    # MyPay callbacks are the agent's, for any store: the lookup finds the attempt by its reference.
    client = provider_for(merchant or Merchant(), provider.name)
    return client.parse_callback(callback.request, lookup, fields=callback.fields)


def process_callback(event_id: int, callback: ReadCallback) -> CallbackReply:
    """Verify a stored callback and apply it; the reply is decided only after the commit."""
    provider = callback.provider
    named: tuple[int, int, str] | None = None  # the attempt the callback named: id, merchant id, state
    try:
        # Parsing writes (O'Pay's RqID store), so it runs in one short write transaction; no network inside.
        with write_transaction():
            merchant = _callback_merchant(provider, callback.fields)
            try:
                event = _verify(callback, merchant)
            except InvalidCallback as exc:
                # Read in the same transaction as the provider's lookup, so "still being opened" is what it saw.
                checkout = _find_checkout(provider.name, merchant, exc.reference)
                named = (checkout.id, checkout.merchant_id, checkout.state) if checkout else None
                raise
            checkout = _find_checkout(provider.name, merchant, event.reference)
            checkout_id = checkout.id
    except InvalidCallback as exc:
        if named is not None and named[2] == CheckoutState.CREATING:  # to be resent, shown to the attempt's merchant
            _finish(event_id, CallbackStatus.ERROR, NOT_READY, checkout_id=named[0], merchant_id=named[1])
            return CallbackReply(*RETRY_LATER)
        # A refusal is filed under no merchant or attempt: what it names is its own word, not verified.
        _finish(event_id, CallbackStatus.REFUSED, exc.message_en, error_zh=exc.message_zh)
        return CallbackReply(400, "refused")
    except Exception as exc:  # a broken provider answer must not lose the stored callback
        log.exception("callback %s could not be processed", event_id)
        db.session.rollback()
        _finish(event_id, CallbackStatus.ERROR, f"{type(exc).__name__}")
        return CallbackReply(*RETRY_LATER)
    try:
        if provider.saves_cards and event.card_token:
            status = _apply_card_token(checkout_id, event, event_id)
        elif provider.confirms_by_query(event):
            status = _apply_confirmed_by_query(checkout_id, event, event_id)
        else:
            status = _apply_event(checkout_id, event, event_id)
    except ProviderError as exc:
        db.session.rollback()
        checkout = db.session.get(Checkout, checkout_id)
        _finish(
            event_id,
            CallbackStatus.ERROR,
            f"{exc.code}: {exc.message_en}",
            error_zh=f"{exc.code}: {exc.message_zh}",
            checkout_id=checkout_id,
            merchant_id=checkout.merchant_id,
        )
        return CallbackReply(*RETRY_LATER)
    if status == CallbackStatus.ERROR:
        return CallbackReply(*RETRY_LATER)
    return CallbackReply(200, event.reply_body)


# ---------------------------------------------------------------- applying


def _event_detail(event: ProviderEvent, event_id: int) -> str:
    return detail(callback=event_id, state=event.state.value, amount=event.amount, message=event.message)


def _mark(event_id: int, checkout: Checkout, status: CallbackStatus) -> None:
    set_callback_status(event_id, status, checkout_id=checkout.id, merchant_id=checkout.merchant_id)


def _apply_event(checkout_id: int, event: ProviderEvent, event_id: int) -> CallbackStatus:
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
        _mark(event_id, checkout, CallbackStatus.APPLIED if changed else CallbackStatus.RECORDED)
    return CallbackStatus.APPLIED


def _record_only(checkout: Checkout, to_state: str, event: ProviderEvent, event_id: int) -> None:
    """Keep a verified callback as evidence without applying it."""
    evidence = _event_detail(event, event_id)
    record(checkout, "callback", checkout.state, to_state, evidence, applied=False, webhook_event_id=event_id)
    _mark(event_id, checkout, CallbackStatus.RECORDED)


def _apply_confirmed_by_query(checkout_id: int, event: ProviderEvent, event_id: int) -> CallbackStatus:
    """A callback that is only a hint (MyPay) moves money state only after the provider's query says the same."""
    with write_transaction():
        _record_only(locked_checkout(checkout_id), event.state.value, event, event_id)
    changed, error = refresh_checkout(checkout_id, source="callback+query")
    if error:
        _finish(event_id, CallbackStatus.ERROR, error, checkout_id=checkout_id)
        return CallbackStatus.ERROR
    checkout = db.session.get(Checkout, checkout_id, populate_existing=True)
    if not _confirmed(checkout.state, event.state):
        status = CallbackStatus.UNCONFIRMED  # the provider says otherwise: kept, and it changed nothing
    else:
        status = CallbackStatus.APPLIED if changed else CallbackStatus.RECORDED
    _finish(event_id, status, checkout_id=checkout_id, merchant_id=checkout.merchant_id)
    return status


def _confirmed(checkout_state: str, said: State) -> bool:
    """Whether the attempt's state after the provider's answer is what the notice said."""
    if said in (State.PAID, State.PAID_MISMATCH):
        return checkout_state == CheckoutState.PAID
    if said == State.AUTHORISED:
        return checkout_state in (CheckoutState.AUTHORISED, CheckoutState.PROCESSING)
    return checkout_state == said.value


def _apply_card_token(checkout_id: int, event: ProviderEvent, event_id: int) -> CallbackStatus:
    """The card is saved at the provider (Oen): keep its token encrypted and charge it exactly once."""
    with write_transaction():
        checkout = locked_checkout(checkout_id)
        if checkout.state != CheckoutState.AWAITING_PAYMENT:
            _record_only(checkout, CheckoutState.PROCESSING, event, event_id)
            return CallbackStatus.RECORDED
        checkout.card_token_enc = encrypt_secret(event.card_token)
        move(checkout, CheckoutState.PROCESSING, "callback", _event_detail(event, event_id), webhook_event_id=event_id)
        _mark(event_id, checkout, CallbackStatus.APPLIED)
    charge_card(checkout_id, source="callback")
    return CallbackStatus.APPLIED
