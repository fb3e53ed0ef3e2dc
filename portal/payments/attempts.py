"""Payment attempts: offer the providers, open one, create a deferred trade, ask the provider, reconcile, expire."""

from __future__ import annotations

import functools
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import bindparam, insert
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from portal.extensions import db, execute_core
from portal.gateways import operator_configured, provider_for
from portal.models import OPEN_STATES, Checkout, CheckoutState, Merchant, Order, OrderItem, Voucher, utcnow
from portal.payments.locking import end_reads, locked_checkout, order_locked, write_transaction
from portal.payments.snapshots import (
    checkout_ref,
    checkout_request,
    customer_message,
    new_reference,
    provider_message,
)
from portal.payments.state import (
    REQUERY_AFTER,
    apply_state,
    detail,
    keep_error,
    move,
    move_open,
    record,
    refresh_order,
    state_from_transactions,
)
from portal.providers import REGISTRY
from portal.providers.base import CheckoutRequest, Provider, ProviderError, ProviderTransaction, State
from portal.security import audit, encrypt_secret

log = logging.getLogger(__name__)


class CheckoutError(Exception):
    """A checkout could not be opened; the message is for the merchant, in the interface language."""


@dataclass
class ReconcileSummary:
    asked: int = 0
    changed: int = 0
    unchanged: int = 0
    errors: int = 0


# ---------------------------------------------------------------- offering providers


def provider_choices(order: Order) -> list[tuple[str, bool, str]]:
    """Each provider with whether it can take this order and, if not, why."""
    merchant = order.merchant
    choices = []
    for name, cls in REGISTRY.items():
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
        if checkout.is_open:
            return checkout
    return None


# ---------------------------------------------------------------- opening an attempt


def start_checkout(order: Order, provider: str, user_id: int | None, customer_ip: str = "") -> Checkout:
    """Open a new attempt for the order at the provider; raises CheckoutError with a message for the merchant.

    One transaction before the provider call (the order locked and checked, the attempt stored, what the provider is
    sent read from the rows loaded there) and one after it; none is held across the call.
    """
    order_id, merchant = order.id, keep_merchant(order)
    with write_transaction(keep_reads=True):
        order = locked_order(order_id, merchant=merchant)  # one opener at a time
        prepared = prepare_attempt(order, provider, user_id, customer_ip)
    return open_at_provider(prepared)


def keep_merchant(order: Order) -> Merchant:
    """The order's merchant (its providers' settings), read before the write lock and kept for
    write_transaction(keep_reads=True) and locked_order: under the lock only the order and its rows are read, as they
    decide what is written."""
    merchant = db.session.get(Merchant, order.merchant_id)
    end_reads()
    return merchant


def locked_order(order_id: int, *, lines: bool = True, merchant: Merchant | None = None) -> Order:
    """The order, re-read and locked for this transaction with what opening an attempt reads of it: its attempts and
    (with `lines`) its items and vouchers, each read once; its merchant as kept before (keep_merchant), if given."""
    dialect = db.session.get_bind().dialect.name
    order = db.session.execute(_locked_order(dialect), {"order_id": order_id}).scalar_one()
    order_locked(order_id)
    if merchant is not None and merchant.id == order.merchant_id:
        set_committed_value(order, "merchant", merchant)
    # Each collection by a statement built once, given to the order as loaded: the ORM's eager loaders cost twice as
    # much for one order, and this runs under the write lock.
    for name in ("checkouts", "items", "vouchers") if lines else ("checkouts",):
        rows = db.session.execute(ORDER_COLLECTIONS[name], {"order_id": order_id}).scalars().all()
        set_committed_value(order, name, rows)
    return order


@functools.cache
def _locked_order(dialect: str):
    """Built once per database (statement building costs more than running it)."""
    stmt = db.select(Order).where(Order.id == bindparam("order_id")).execution_options(populate_existing=True)
    return stmt.with_for_update(of=Order) if dialect != "sqlite" else stmt


ORDER_COLLECTIONS = {
    name: db.select(model)
    .where(model.order_id == bindparam("order_id"))
    .order_by(order)
    .execution_options(populate_existing=True)
    for name, model, order in (
        ("checkouts", Checkout, Checkout.id),
        ("items", OrderItem, OrderItem.position),
        ("vouchers", Voucher, Voucher.position),
    )
}


@dataclass(frozen=True)
class PreparedAttempt:
    """An attempt stored as "creating", with what its provider is to be sent."""

    checkout_id: int
    request: CheckoutRequest
    client: Provider
    attempt: Checkout  # the session's object of it (expired with the transaction that stored it), for the caller


def prepare_attempt(
    order: Order, provider: str, user_id: int | None, customer_ip: str = "", *, also: dict | None = None
) -> PreparedAttempt:
    """In the caller's transaction, with the order locked: check, store the attempt, and read what the provider is
    sent. open_at_provider makes the call after that transaction. `also`: the order's columns the caller changes
    with it (its link), written with the order's state."""
    allowed = {name: (ok, why) for name, ok, why in provider_choices(order)}
    if provider not in allowed:
        raise CheckoutError(_("Choose Oen Tech, MyPay or O'Pay."))
    ok, why = allowed[provider]
    if not ok:
        raise CheckoutError(why)
    if order.is_paid:
        raise CheckoutError(_("This order is already paid."))
    if any(c.is_open or c.is_paid for c in order.checkouts):
        raise CheckoutError(_("This order already has a payment link that is still open or paid."))
    now = utcnow()
    checkout = _stored_attempt(
        order,
        merchant_id=order.merchant_id,
        provider=provider,
        reference=new_reference(),
        public_token=secrets.token_urlsafe(24),
        amount=order.payable,
        state=CheckoutState.CREATING.value,
        expires_at=now + timedelta(hours=current_app.config["CHECKOUT_LINK_TTL_H"]),
        created_by_id=user_id,
        created_at=now,
        updated_at=now,
        # What the order's state is derived from (state.FIGURES), given: not read back from the row.
        paid_amount=0,
        refunded_amount=0,
        opened_at=None,
    )
    creating = CheckoutState.CREATING
    record(checkout, "create", creating, creating, detail(provider=provider, amount=order.payable))
    # Its attempts as locked_order read them (the order locked), with the new one: not read again.
    refresh_order(order, also=also, checkouts=order.checkouts)
    client = provider_for(order.merchant, provider)
    return PreparedAttempt(checkout.id, checkout_request(checkout, customer_ip), client, checkout)


# Built once, on the table: a new attempt's row, its id returned.
INSERT_ATTEMPT = insert(Checkout.__table__).returning(Checkout.__table__.c.id)


def _stored_attempt(order: Order, **values) -> Checkout:
    """Write a new attempt of the order in one statement (the session's flush of a new row costs more than the INSERT,
    under the write lock) and give the session the row as written, one of the order's attempts."""
    checkout_id = execute_core(INSERT_ATTEMPT, {"order_id": order.id, **values}).scalar_one()
    checkout = Checkout(id=checkout_id, order_id=order.id, **values)
    make_transient_to_detached(checkout)  # as if read back: nothing pending; the columns left to defaults unloaded
    db.session.add(checkout)
    set_committed_value(checkout, "order", order)
    set_committed_value(order, "checkouts", [*order.checkouts, checkout])
    return checkout


def open_at_provider(prepared: PreparedAttempt) -> Checkout:
    """Ask the provider for the prepared attempt (no transaction held), then record its answer in one transaction."""
    checkout_id = prepared.checkout_id
    try:
        link = prepared.client.create_checkout(prepared.request)
    except ProviderError as exc:
        _fail_creation(checkout_id, exc)
        raise CheckoutError(provider_message(exc)) from exc
    ids = dict(link.provider_ids)
    # What is written is worked out before the write lock is taken: under it, only the statements.
    answer = {
        "provider_url": link.url,
        "provider_checkout_id": ids.get("checkout_id") or ids.get("uid"),
        "provider_secret_enc": encrypt_secret(ids["key"]) if ids.get("key") else None,
    }
    evidence = detail(url=link.url, **_public_ids(ids))
    answer = {name: value for name, value in answer.items() if value is not None}
    with write_transaction():
        # Opened, it stays open: the order stays as it was, and the attempt's row is moved without being read
        # (state.move_open), unless it is no longer being created (staff switched the link meanwhile): then the answer
        # is kept on it as it is, locked, and recorded as not applied (state.move).
        if not move_open(
            checkout_id, CheckoutState.CREATING, CheckoutState.AWAITING_PAYMENT, "create", evidence, **answer
        ):
            checkout = locked_checkout(checkout_id)
            for name, value in answer.items():
                setattr(checkout, name, value)
            move(checkout, CheckoutState.AWAITING_PAYMENT, "create", evidence)
    return prepared.attempt  # read again from its row when used (its transaction expired it)


def _fail_creation(checkout_id: int, exc: ProviderError) -> None:
    """The provider refused or did not answer: keep the attempt, closed, with the reason."""
    with write_transaction():
        checkout = locked_checkout(checkout_id, with_order=True)
        keep_error(checkout, exc)
        move(checkout, CheckoutState.FAILED, "create", detail(error=exc.code, message=exc.message_en))


def _public_ids(ids: dict) -> dict:
    return {k: v for k, v in ids.items() if k not in ("key", "token")}


def trade_page(checkout: Checkout, customer_ip: str = "") -> Checkout:
    """A provider that creates its trade when the customer opens the link (O'Pay): create it once, keep its page.

    A second visit shows the kept page instead of creating again (a second Create would repeat the trade number).
    Raises CheckoutError with a message for the customer when the provider refuses or answers oddly.
    """
    if checkout.provider_page is not None:
        return checkout
    provider = provider_for(checkout.merchant, checkout.provider)
    trade = checkout_request(checkout, customer_ip)
    db.session.commit()  # no transaction is held across the provider call
    try:
        page = provider.create_trade(trade)
    except ProviderError as exc:
        raise CheckoutError(customer_message(exc)) from exc
    if page.status != 200:
        raise CheckoutError(_("The payment provider did not answer as expected. Please try again in a moment."))
    remember_provider_page(checkout.id, page.body, page.content_type)
    return db.session.get(Checkout, checkout.id, populate_existing=True)


def remember_provider_page(checkout_id: int, body: bytes, content_type: str) -> None:
    """Keep the provider's answer to a deferred create (O'Pay), so a second visit shows it instead of creating again."""
    with write_transaction():
        checkout = locked_checkout(checkout_id)
        if checkout.provider_page is None:
            checkout.provider_page = body.decode("utf-8", errors="replace")
            checkout.provider_page_type = content_type[:100]
            record(checkout, "create", checkout.state, checkout.state, detail(provider_page="received"), applied=False)


# ---------------------------------------------------------------- asking the provider


def queryable(checkout: Checkout) -> bool:
    """Whether the provider has heard of this attempt, so that asking it means something."""
    if checkout.state == CheckoutState.CREATING:
        return False
    return not (checkout.provider_rules.queried_by_checkout_id and not checkout.provider_checkout_id)


def query_provider(checkout: Checkout) -> list[ProviderTransaction]:
    """What the provider reports for this attempt now; the open transaction is ended first (none across the call)."""
    provider = provider_for(checkout.merchant, checkout.provider)
    ref = checkout_ref(checkout)
    db.session.commit()
    return provider.query(ref)


def refresh_checkout(checkout_id: int, source: str = "query") -> tuple[bool, str | None]:
    """Ask the provider about one attempt and apply its answer; returns (changed, error message)."""
    checkout = db.session.get(Checkout, checkout_id, populate_existing=True)
    if not queryable(checkout):
        return False, None
    try:
        txns = query_provider(checkout)
    except ProviderError as exc:
        with write_transaction():
            checkout = locked_checkout(checkout_id)
            checkout.last_queried_at = utcnow()
            checkout.next_query_at = utcnow() + REQUERY_AFTER
            keep_error(checkout, exc)
        return False, provider_message(exc)
    with write_transaction():
        checkout = locked_checkout(checkout_id)
        checkout.last_queried_at = utcnow()
        state, figures = state_from_transactions(checkout, txns)
        if state is not None or checkout.state != CheckoutState.PROCESSING:
            keep_error(checkout)  # (a charge that failed in transit keeps its error until Oen shows one)
        changed = False
        if expiry_due(checkout) and state in (None, State.AWAITING_PAYMENT):
            # The link's time is up and the provider still awaits payment (or never heard of it): expire it here, so
            # a new link can follow. A payment that arrives later is still applied, and flagged (apply_state).
            evidence = detail(expires_at=checkout.expires_at, provider_state=state.value if state else "none")
            changed = move(checkout, CheckoutState.EXPIRED, "expiry", evidence)
        elif state is not None:
            evidence = detail(
                provider_state=state.value,
                transactions=[{"id": t.transaction_id, "state": t.state.value, "amount": t.amount} for t in txns],
            )
            changed = apply_state(
                checkout,
                state,
                source=source,
                detail=evidence,
                amount=figures.get("amount"),
                refunded_amount=figures.get("refunded"),
                transaction_id=figures.get("transaction_id", ""),
                payment_code=figures.get("payment_code"),
                payment_deadline=figures.get("payment_deadline"),
                card_last4=figures.get("card_last4", ""),
                fee=figures.get("fee"),
            )
    return changed, None


def expiry_due(checkout: Checkout) -> bool:
    """A link still awaiting payment whose time is up (a card charge under way is never expired)."""
    return checkout.state == CheckoutState.AWAITING_PAYMENT and checkout.expires_at < utcnow()


def expire_if_due(checkout_id: int) -> bool:
    """Expire a link whose time is up, after asking the provider (which may say it was paid); True when it moved.

    Called on the customer's visit, on the order page's refresh and by reconcile (and the background worker).
    """
    checkout = db.session.get(Checkout, checkout_id, populate_existing=True)
    if checkout is None or not expiry_due(checkout):
        return False
    changed, _error = refresh_checkout(checkout_id, source="expiry")
    return changed


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


def mark_handled(checkout_id: int, user_id: int | None) -> bool:
    """An admin has looked at a flagged attempt (refunded the second payment, asked the customer about the amount...):
    its flag is lowered, its reason kept, and who did it is audited. False when it was not flagged (already handled)."""
    with write_transaction():
        checkout = locked_checkout(checkout_id)
        if not checkout.needs_attention:
            return False
        checkout.needs_attention = False
        audit(
            "attention_handled",
            merchant_id=checkout.merchant_id,
            user_id=user_id,
            order_id=checkout.order_id,
            checkout=checkout.reference,
            reason=checkout.attention_reason or "",
        )
    return True
