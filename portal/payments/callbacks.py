"""Callback intake: read once, store (secrets removed) before anything else, dedupe, verify, apply, answer.

A callback's body is read once (the provider's own reading); the fields serve redaction, naming the merchant and
verification. Its status is written by set_callback_status alone.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import parse_qsl

from sqlalchemy import Row, bindparam, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import joinedload

from portal.extensions import db, dialect_name, execute_core, insert_ignoring_conflicts
from portal.gateways import forget_kept_merchants, merchant_row, provider_for, remember_nonce
from portal.models import (
    CallbackStatus,
    Checkout,
    CheckoutEvent,
    CheckoutState,
    Merchant,
    SeenNonce,
    WebhookEvent,
    utcnow,
)
from portal.payments.attempts import refresh_checkout
from portal.payments.charges import charge_card
from portal.payments.locking import (
    checkout_as_read,
    end_reads,
    lock_with_order,
    order_locked,
    write_transaction,
)
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


# Built once, as Core statements on the table (the ORM's bulk-update layer costs more than the UPDATE): a stored
# callback's columns set from the parameters given, and a resend counted.
_callbacks = WebhookEvent.__table__
UPDATE_CALLBACK = update(_callbacks).where(_callbacks.c.id == bindparam("event_id_"))
COUNT_RESEND = (
    update(_callbacks)
    .where(_callbacks.c.dedupe_key == bindparam("dedupe"))
    .values(attempts=_callbacks.c.attempts + 1)
    .returning(_callbacks.c.id, _callbacks.c.status)
)


def callback_row(callback: ReadCallback) -> dict[str, object]:
    """The row a callback is stored as (secrets removed, card numbers cut), made before any transaction."""
    request = callback.request
    body, secret_enc = redact(callback)
    return {
        "provider": callback.provider.name,
        "dedupe_key": f"{callback.provider.name}:" + hashlib.sha256(request.body).hexdigest(),
        "headers": {k: v for k, v in request.headers.items() if k.lower() not in ("authorization", "cookie")},
        "body": body,
        "secret_enc": secret_enc,
        "remote_addr": request.remote_addr,
        "status": CallbackStatus.RECEIVED.value,
        "attempts": 1,
    }


def store_callback(row: dict[str, object]) -> tuple[int, CallbackStatus | None]:
    """Store the callback (its callback_row) as received, in the caller's write transaction, before anything else is
    done with it.

    Returns (row id, None) when it is to be processed: the first time, or again after an error on our side; for a body
    seen before, (its row id, its status). Every receipt is counted in its attempts.
    On PostgreSQL a resend racing its original waits here until the original's transaction ends.
    """
    event_id, status, _inserted = _store(row)
    return event_id, status


def _store(row: dict[str, object], remembering: Remembering | None = None) -> tuple[int, CallbackStatus | None, bool]:
    """store_callback, and whether the row was inserted (with the values given) now. `remembering`: the callback's
    request id, to remember with the store (PostgreSQL: one statement) if the row is inserted now; whether it was
    first seen here is then set on it (left None when the row was not inserted)."""
    dedupe = row["dedupe_key"]
    row = {**row, "received_at": utcnow()}
    if remembering is None:
        stored = execute_core(insert_ignoring_conflicts(WebhookEvent, WebhookEvent.id), row).scalar_one_or_none()
    else:
        nonce = {"nonce_provider": row["provider"], "nonce_value": remembering.value[:128], "nonce_seen_at": utcnow()}
        found = execute_core(_store_remembering(tuple(row)), {**row, **nonce}).one_or_none()
        stored = None if found is None else found.id
        if found is not None:
            remembering.first_seen = bool(found.first_seen)
    if stored is not None:
        return stored, None, True
    event_id, status = execute_core(COUNT_RESEND, {"dedupe": dedupe}).one()
    if status == CallbackStatus.ERROR:
        # It failed on our side (the provider's query down, the attempt still being opened, a fault): the provider's
        # resend is processed again, as if first seen; its row (and this transaction) are held meanwhile.
        db.session.execute(
            UPDATE_CALLBACK,
            {"event_id_": event_id, "status": CallbackStatus.RECEIVED.value, "error": None, "error_zh": None},
        )
        return event_id, None, False
    return event_id, CallbackStatus(status), False


@dataclass
class Remembering:
    """A verified callback's one request id (O'Pay's RqID), remembered with its store; first_seen once known."""

    value: str
    first_seen: bool | None = None

    @classmethod
    def of(cls, verified: Verified | None) -> Remembering | None:
        """PostgreSQL, where the store and the request id can be one statement: the verified callback's one id."""
        if verified is None or len(verified.nonces) != 1 or dialect_name() != "postgresql":
            return None
        return cls(verified.nonces[0])


@functools.cache
def _store_remembering(columns: tuple[str, ...]):
    """PostgreSQL, built once per set of columns: store_callback's INSERT and remember_nonce's in one statement (data-
    modifying CTEs), the request id inserted only with a row inserted now. Answers (the row's id, first_seen: 1 when
    the request id was not seen before) when the row is inserted, nothing when it was stored before."""
    seen = SeenNonce.__table__
    stored = (
        postgresql_insert(_callbacks)
        .values({name: bindparam(name, type_=_callbacks.c[name].type) for name in columns})
        .on_conflict_do_nothing()
        .returning(_callbacks.c.id)
        .cte("stored")
    )
    nonce = [bindparam(f"nonce_{name}", type_=seen.c[name].type) for name in ("provider", "value", "seen_at")]
    remembered = (
        postgresql_insert(seen)
        .from_select(["provider", "value", "seen_at"], select(*nonce).select_from(stored))
        .on_conflict_do_nothing()
        .returning(seen.c.id)
        .cte("remembered")
    )
    first_seen = select(func.count()).select_from(remembered).scalar_subquery()
    return select(stored.c.id, first_seen.label("first_seen"))


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
    values: dict[str, object] = {
        "event_id_": event_id,
        "status": status.value,
        "error": error,
        "processed_at": utcnow(),
    }
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
    execute_core(UPDATE_CALLBACK, values)
    if status is CallbackStatus.REFUSED:
        audit("callback_refused", merchant_id=merchant_id, event_id=event_id, reason=error)


# ---------------------------------------------------------------- receiving


def receive_callback(provider: str, request: CallbackRequest) -> CallbackReply:
    """Store, verify, apply, and answer as the provider expects (only after the commit).

    Reading and redacting the body come first, outside any transaction. On SQLite, whose one write lock every writer
    waits for, the callback is verified before it too (the merchant, the attempt and the body's decryption read
    first); on PostgreSQL, where the transaction locks only the attempt's row, it is verified in its transaction, the
    attempt locked, before it is stored (a transaction's round trips saved). Either way, verified, it is stored as it
    most likely ends, in one INSERT (on PostgreSQL, with O'Pay's RqID remembered in the same statement). Storing,
    remembering the RqID and applying are one write transaction. When processing fails, it is rolled back whole and
    the callback stored again in a transaction of its own, saying why.
    Only what needs the provider's word (a card token to charge, a hint to confirm by a query) goes on after the
    commit, in transactions of its own.
    """
    try:
        return _receive(read_callback(provider, request))
    finally:
        forget_kept_merchants()


def _receive(callback: ReadCallback) -> CallbackReply:
    row = callback_row(callback)
    sqlite = dialect_name() == "sqlite"
    verified = _verify_first(callback) if sqlite else None
    try:
        with write_transaction(keep_reads=True):  # the merchant read to verify it; the attempt is read again, locked
            if not sqlite:
                verified = _verify_locked(callback)
            # Verified beforehand, the callback is stored as it most likely ends (applied, to its attempt), in its one
            # INSERT; _mark updates it only when it ends otherwise. Nothing sees the row before the commit.
            ending = None if verified is None else _ending(verified)
            remembering = Remembering.of(verified)
            event_id, seen, inserted = _store({**row, **ending} if ending else row, remembering)
            stored = ending if inserted else None
            outcome = _process(event_id, callback, verified, stored, remembering) if seen is None else None
    except NotProcessed as failed:
        with write_transaction():  # the stored callback says why (a resend may have been processed meanwhile)
            event_id, seen = store_callback(row)
            outcome = None
            if seen is None:
                set_callback_status(event_id, failed.status, failed.error, **failed.fields)
                outcome = failed.reply
    if outcome is None:
        return _reply_for_duplicate(callback.provider, event_id, seen)
    return outcome()


def _reply_for_duplicate(provider: type[Provider], event_id: int, status: CallbackStatus) -> CallbackReply:
    """A resent callback: answer as the first one was answered, waiting briefly while it is still being processed
    (its follow-up with the provider, after the first commit)."""
    deadline = time.monotonic() + 15
    while status == CallbackStatus.RECEIVED and time.monotonic() < deadline:
        time.sleep(0.05)
        status = CallbackStatus(
            db.session.execute(db.select(WebhookEvent.status).where(WebhookEvent.id == event_id)).scalar_one()
        )
        db.session.commit()
    if status in (CallbackStatus.APPLIED, CallbackStatus.RECORDED, CallbackStatus.UNCONFIRMED):
        return CallbackReply(200, provider.callback_reply)
    if status == CallbackStatus.REFUSED:
        return CallbackReply(400, "refused")
    return CallbackReply(*RETRY_LATER)


def _callback_merchant(provider: type[Provider], fields: dict | None) -> Row | None:
    """The merchant whose credentials read this callback, by the id the callback names (O'Pay, Oen): its row (id and
    stored settings, read as Merchant's attributes are), not an ORM object, which costs several times the query; kept
    for the rest of the request (gateways.kept_merchant)."""
    if provider.callback_merchant_setting is None or not fields:
        return None
    named = provider.callback_merchant(fields)
    if not named:
        return None
    return merchant_row(provider.callback_merchant_setting, named)


@functools.cache
def _checkout_by_reference(dialect: str, scoped: bool):
    """Built once: the attempt by its reference and provider (and merchant), with its order, both locked."""
    stmt = (
        db.select(Checkout)
        .where(Checkout.reference == bindparam("reference"), Checkout.provider == bindparam("provider"))
        .options(joinedload(Checkout.order, innerjoin=True))  # applying it refreshes the order: one query, not two
        .execution_options(populate_existing=True)
    )
    if scoped:
        stmt = stmt.where(Checkout.merchant_id == bindparam("merchant_id"))
    return lock_with_order(stmt, dialect, with_order=True)


def _find_checkout(provider: str, merchant: Row | None, reference: str) -> Checkout | None:
    """The attempt a callback names by its reference (scoped to the merchant the callback names, if any), locked for
    the rest of the transaction."""
    if not reference or "\x00" in reference:  # no reference has one (PostgreSQL would refuse to compare it)
        return None
    params = {"reference": reference, "provider": provider}
    if merchant is not None:
        params["merchant_id"] = merchant.id
    stmt = _checkout_by_reference(dialect_name(), merchant is not None)
    checkout = db.session.execute(stmt, params).scalar_one_or_none()
    if checkout is not None:
        order_locked(checkout.order_id)
    return checkout


def _verify(callback: ReadCallback, merchant: Row | None, found: list[Checkout]) -> ProviderEvent:
    """The provider's verified event; InvalidCallback otherwise. The attempt the provider looked up goes in `found`."""
    provider = callback.provider
    if provider.callback_merchant_setting and merchant is None:
        raise InvalidCallback(provider.name, NO_MERCHANT)
    if callback.unreadable is not None:
        raise callback.unreadable

    def lookup(reference: str) -> CheckoutRef | None:
        checkout = _find_checkout(provider.name, merchant, reference)
        if checkout is not None:
            found[:] = [checkout]
        if checkout is None or checkout.state == CheckoutState.CREATING:
            return None  # unknown, or not yet opened
        return checkout_ref(checkout, lines=False)

    # MyPay callbacks are the agent's, for any store: the lookup finds the attempt by its reference.
    client = provider_for(merchant or Merchant(), provider.name)
    return client.parse_callback(callback.request, lookup, fields=callback.fields)


@dataclass(frozen=True)
class Verified:
    """A callback verified before it is stored: the event, the attempt it names, the request ids to keep."""

    event: ProviderEvent
    checkout: Checkout  # with its order: read before the write transaction (SQLite), or locked in it (PostgreSQL)
    nonces: tuple[str, ...]
    locked: bool = False  # the attempt and its order are locked in the transaction (else: checkout_as_read)


def _collecting_nonces(callback: ReadCallback, find) -> tuple[ProviderEvent, tuple[str, ...]] | None:
    """The provider's verdict on the callback, with the request ids (RqID) it carries collected, not remembered: they
    are remembered after the store, where a replay is caught. `find(merchant, reference)` looks up the attempt the
    callback names (its CheckoutRef, or None). None when the callback cannot be read or names no merchant known here;
    InvalidCallback when it does not verify."""
    provider = callback.provider
    if callback.unreadable is not None:
        return None
    merchant = _callback_merchant(provider, callback.fields)
    if provider.callback_merchant_setting and merchant is None:
        return None
    nonces: list[str] = []
    client = provider_for(merchant or Merchant(), provider.name, nonce_store=lambda value: nonces.append(value) or True)
    event = client.parse_callback(callback.request, lambda ref: find(merchant, ref), fields=callback.fields)
    return event, tuple(nonces)


def _verify_first(callback: ReadCallback) -> Verified | None:
    """Verify the callback with reads only, before its write transaction (which then holds its locks the least time).

    None when it does not verify: it is then verified again in the transaction, where its refusal is written.
    """
    found: list[Checkout] = []

    def find(merchant: Row | None, reference: str) -> CheckoutRef | None:
        checkout = _find_checkout(callback.provider.name, merchant, reference)  # on SQLite, reading locks nothing
        if checkout is None or checkout.state == CheckoutState.CREATING:
            return None
        found[:] = [checkout]
        return checkout_ref(checkout, lines=False)

    try:
        verdict = _collecting_nonces(callback, find)
        if verdict is None or not found:
            return None
    except Exception:  # refused, or a fault: decided (and logged) again in the transaction
        return None
    finally:
        end_reads()  # what was read here is kept: under the lock, the attempt and its order are only compared
    return Verified(verdict[0], found[0], verdict[1])


def _verify_locked(callback: ReadCallback) -> Verified | None:
    """PostgreSQL: verify the callback in its write transaction, before it is stored, the attempt it names locked.

    The store (its INSERT, where a resend waits for its original) then writes the row as it most likely ends. A resend
    racing its original first waits here, at the attempt's lock, then finds the original stored; it changes nothing.
    None when the callback does not verify: it is verified again after the store, where its refusal is written.
    """
    found: list[Checkout] = []

    def find(merchant: Row | None, reference: str) -> CheckoutRef | None:
        checkout = _find_checkout(callback.provider.name, merchant, reference)
        if checkout is None or checkout.state == CheckoutState.CREATING:
            return None
        found[:] = [checkout]
        return checkout_ref(checkout, lines=False)

    try:
        verdict = _collecting_nonces(callback, find)
    except DBAPIError:
        raise  # the transaction is lost: the provider resends
    except Exception:  # refused, or a fault: decided (and logged) again after the store
        return None
    if verdict is None or not found:
        return None
    return Verified(verdict[0], found[0], verdict[1], locked=True)


Reply = Callable[[], CallbackReply]


class NotProcessed(Exception):
    """Processing a stored callback failed or refused it: its transaction is rolled back, and the callback stored
    again with this status, in a transaction of its own."""

    def __init__(self, status: CallbackStatus, error: str, reply: Reply, **fields) -> None:
        super().__init__(error)
        self.status, self.error, self.reply, self.fields = status, error, reply, fields


def _process(
    event_id: int,
    callback: ReadCallback,
    verified: Verified | None,
    stored: dict[str, object] | None = None,
    remembering: Remembering | None = None,
) -> Reply:
    """Verify the stored callback (unless it already was) and apply it, in the caller's transaction; returns what is
    left to do after the commit (the reply, or the follow-up with the provider that decides it). NotProcessed when
    it is refused or fails. `stored`: the status and attempt the callback's row was inserted with (_ending);
    `remembering`: its request id, if it was remembered with the store."""
    provider = callback.provider
    found: list[Checkout] = []  # the attempt the callback named, locked
    try:
        if verified is not None and _first_seen(provider.name, verified, remembering):
            event = verified.event
            checkout = verified.checkout if verified.locked else checkout_as_read(verified.checkout)
        else:  # not verified beforehand, or a replayed request id: the provider's own verdict, in this transaction
            merchant = _callback_merchant(provider, callback.fields)
            event = _verify(callback, merchant, found)
            checkout = found[0]
        if provider.saves_cards and event.card_token:
            return _take_card_token(checkout, event, event_id)
        if provider.confirms_by_query(event):
            _record_only(checkout, event.state.value, event, event_id)
            return lambda: _confirm_by_query(checkout.id, event, event_id)
        changed = apply_state(
            checkout,
            event.state,
            source="callback",
            detail=_event_detail(event, event_id),
            amount=event.amount,
            transaction_id=event.transaction_id,
            webhook_event_id=event_id,
            payment_code=event.payment_code,
            payment_deadline=event.payment_deadline,
            card_last4=event.card_last4,
        )
        _mark(event_id, checkout, CallbackStatus.APPLIED if changed else CallbackStatus.RECORDED, stored=stored)
        return lambda: CallbackReply(200, event.reply_body)
    except InvalidCallback as exc:
        named = found[0] if found else None
        if named is not None and exc.reference and named.state == CheckoutState.CREATING:
            # To be resent, and shown to the attempt's merchant.
            raise NotProcessed(
                CallbackStatus.ERROR,
                NOT_READY,
                lambda: CallbackReply(*RETRY_LATER),
                checkout_id=named.id,
                merchant_id=named.merchant_id,
            ) from exc
        # A refusal is filed under no merchant or attempt: what it names is its own word, not verified.
        raise NotProcessed(
            CallbackStatus.REFUSED, exc.message_en, lambda: CallbackReply(400, "refused"), error_zh=exc.message_zh
        ) from exc
    except Exception as exc:  # a broken provider answer or a bug must not lose the stored callback
        log.exception("callback %s could not be processed", event_id)
        raise NotProcessed(CallbackStatus.ERROR, f"{type(exc).__name__}", lambda: CallbackReply(*RETRY_LATER)) from exc


def _first_seen(provider: str, verified: Verified, remembering: Remembering | None) -> bool:
    """Whether the verified callback's request ids were not seen before (remembered now, if not with the store)."""
    if remembering is not None and remembering.first_seen is not None:
        return remembering.first_seen
    return all(remember_nonce(provider, value) for value in verified.nonces)


# ---------------------------------------------------------------- applying


def _event_detail(event: ProviderEvent, event_id: int) -> str:
    return detail(callback=event_id, state=event.state.value, amount=event.amount, message=event.message)


def _ending(verified: Verified) -> dict[str, object]:
    """What a verified callback's row is most likely to end as: applied to the attempt it names."""
    return {
        "status": CallbackStatus.APPLIED.value,
        "processed_at": utcnow(),
        "checkout_id": verified.checkout.id,
        "merchant_id": verified.checkout.merchant_id,
    }


def _mark(event_id: int, checkout: Checkout, status: CallbackStatus, *, stored: dict | None = None) -> None:
    """The callback's status once processed; not written again when its row was stored so (_ending)."""
    if stored is not None and (stored["status"], stored["checkout_id"], stored["merchant_id"]) == (
        status.value,
        checkout.id,
        checkout.merchant_id,
    ):
        return
    set_callback_status(event_id, status, checkout_id=checkout.id, merchant_id=checkout.merchant_id)


def _finish(event_id: int, status: CallbackStatus, error: str | None = None, **fields) -> None:
    """Set a callback's status in a transaction of its own (after a follow-up with the provider)."""
    with write_transaction():
        set_callback_status(event_id, status, error, **fields)


def _provider_failed(event_id: int, checkout_id: int, exc: ProviderError) -> CallbackReply:
    """The follow-up with the provider failed: the callback is kept as an error and the provider asked to resend."""
    db.session.rollback()
    merchant_id = db.session.execute(db.select(Checkout.merchant_id).where(Checkout.id == checkout_id)).scalar_one()
    _finish(
        event_id,
        CallbackStatus.ERROR,
        f"{exc.code}: {exc.message_en}",
        error_zh=f"{exc.code}: {exc.message_zh}",
        checkout_id=checkout_id,
        merchant_id=merchant_id,
    )
    return CallbackReply(*RETRY_LATER)


def _record_only(checkout: Checkout, to_state: str, event: ProviderEvent, event_id: int) -> None:
    """Keep a verified callback as evidence without applying it."""
    evidence = _event_detail(event, event_id)
    record(checkout, "callback", checkout.state, to_state, evidence, applied=False, webhook_event_id=event_id)
    _mark(event_id, checkout, CallbackStatus.RECORDED)


def _confirm_by_query(checkout_id: int, event: ProviderEvent, event_id: int) -> CallbackReply:
    """A callback that is only a hint (MyPay, Oen) moves money state only after the provider's query says the same."""
    try:
        changed, error = refresh_checkout(checkout_id, source="callback+query")
    except ProviderError as exc:
        return _provider_failed(event_id, checkout_id, exc)
    if error:
        _finish(event_id, CallbackStatus.ERROR, error, checkout_id=checkout_id)
        return CallbackReply(*RETRY_LATER)
    state, merchant_id = db.session.execute(
        db.select(Checkout.state, Checkout.merchant_id).where(Checkout.id == checkout_id)
    ).one()
    if not _confirmed(state, event.state):
        status = CallbackStatus.UNCONFIRMED  # the provider says otherwise: kept, and it changed nothing
    else:
        status = CallbackStatus.APPLIED if changed else CallbackStatus.RECORDED
    _finish(event_id, status, checkout_id=checkout_id, merchant_id=merchant_id)
    return CallbackReply(200, event.reply_body)


def _confirmed(checkout_state: str, said: State) -> bool:
    """Whether the attempt's state after the provider's answer is what the notice said."""
    if said in (State.PAID, State.PAID_MISMATCH):
        return checkout_state == CheckoutState.PAID
    if said == State.AUTHORISED:
        return checkout_state in (CheckoutState.AUTHORISED, CheckoutState.PROCESSING)
    return checkout_state == said.value


def _take_card_token(checkout: Checkout, event: ProviderEvent, event_id: int) -> Reply:
    """The card is saved at the provider (Oen): keep its token encrypted, then (after the commit) charge it once."""
    if checkout.state != CheckoutState.AWAITING_PAYMENT:
        _record_only(checkout, CheckoutState.PROCESSING, event, event_id)
        return lambda: CallbackReply(200, event.reply_body)
    checkout.card_token_enc = encrypt_secret(event.card_token)
    move(checkout, CheckoutState.PROCESSING, "callback", _event_detail(event, event_id), webhook_event_id=event_id)
    _mark(event_id, checkout, CallbackStatus.APPLIED)
    checkout_id = checkout.id

    def charge() -> CallbackReply:
        try:
            charge_card(checkout_id, source="callback")
        except ProviderError as exc:
            return _provider_failed(event_id, checkout_id, exc)
        return CallbackReply(200, event.reply_body)

    return charge
