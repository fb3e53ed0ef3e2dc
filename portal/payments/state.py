"""The state core: a checkout only moves forward by rank, through one compare-and-set writer that keeps the evidence;
the order's state is derived from its checkouts, here and nowhere else."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import update

from portal.extensions import db
from portal.models import (
    OPEN_STATES,
    PAID_STATES,
    Checkout,
    CheckoutEvent,
    CheckoutState,
    Order,
    OrderState,
    utcnow,
)
from portal.providers.base import ProviderTransaction, State

RANK = {
    CheckoutState.CREATING: 0,
    CheckoutState.AWAITING_PAYMENT: 1,
    CheckoutState.AUTHORISED: 2,
    CheckoutState.PROCESSING: 2,
    CheckoutState.FAILED: 3,
    CheckoutState.EXPIRED: 3,
    CheckoutState.CANCELLED: 3,
    CheckoutState.PAID: 4,
    CheckoutState.PARTIALLY_REFUNDED: 5,
    CheckoutState.REFUNDED: 6,
}
# States in which the provider is asked again later (waiting, A0001, a provider error).
REQUERY_AFTER = timedelta(minutes=5)

__all__ = [
    "OPEN_STATES",
    "PAID_STATES",
    "RANK",
    "REQUERY_AFTER",
    "apply_state",
    "detail",
    "move",
    "record",
    "refresh_order",
    "state_from_transactions",
]


def detail(**fields) -> str:
    """Evidence for an event row, as sorted JSON."""
    return json.dumps(fields, ensure_ascii=False, default=str, sort_keys=True)


def record(checkout: Checkout, source: str, from_state: str, to_state: str, detail: str, **kw) -> CheckoutEvent:
    """Add an evidence row to the checkout's history."""
    event = CheckoutEvent(
        checkout=checkout, source=source, from_state=from_state, to_state=to_state, detail=detail, **kw
    )
    db.session.add(event)
    return event


def move(checkout: Checkout, new_state: CheckoutState, source: str, detail: str, *, webhook_event_id=None) -> bool:
    """Move a locked checkout forward (compare-and-set on its current state); record the evidence either way.

    The one writer of a checkout's state; the order follows through refresh_order.
    """
    old = checkout.state
    forward = RANK.get(new_state, -1) > RANK.get(old, -1)
    if not forward:
        record(checkout, source, old, new_state, detail, applied=False, webhook_event_id=webhook_event_id)
        return False
    result = db.session.execute(
        update(Checkout)
        .where(Checkout.id == checkout.id, Checkout.state == old)
        .values(state=CheckoutState(new_state).value, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # someone else moved it first; the caller's transaction is retried by the caller
        raise RuntimeError("checkout changed under a lock")
    checkout.state = CheckoutState(new_state).value
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
    if state == State.PAID_MISMATCH:
        target = CheckoutState.PAID
        checkout.needs_attention = True
    elif state == State.AUTHORISED and checkout.state == CheckoutState.PROCESSING:
        target = CheckoutState.PROCESSING
    else:
        target = CheckoutState(state.value)
    if target in PAID_STATES and amount is not None and amount != checkout.amount and state != State.REFUNDED:
        checkout.needs_attention = True
    if target in PAID_STATES and checkout.state == CheckoutState.EXPIRED:
        checkout.needs_attention = True  # paid after the portal expired the link: applied, and a person looks
    if transaction_id and not checkout.provider_transaction_id:
        checkout.provider_transaction_id = transaction_id
    if target in PAID_STATES and not checkout.paid_amount:
        checkout.paid_amount = amount if amount is not None and target == CheckoutState.PAID else checkout.amount
    if refunded_amount is not None and refunded_amount > checkout.refunded_amount:
        checkout.refunded_amount = min(refunded_amount, checkout.paid_amount or checkout.amount)
    if target == CheckoutState.REFUNDED and not checkout.refunded_amount:
        checkout.refunded_amount = checkout.paid_amount or checkout.amount
    if target in (CheckoutState.AWAITING_PAYMENT, CheckoutState.AUTHORISED):
        checkout.next_query_at = utcnow() + REQUERY_AFTER
    changed = move(checkout, target, source, detail, webhook_event_id=webhook_event_id)
    if not changed and checkout.refunded_amount:
        refresh_order(checkout.order)
    return changed


def refresh_order(order: Order) -> None:
    """Derive the order's state and amounts from its checkouts: the one place an order's state is written."""
    checkouts = list(order.checkouts)
    paid = [c for c in checkouts if c.is_paid]
    order.paid_amount = sum(c.paid_amount or c.amount for c in paid)
    order.refunded_amount = sum(c.refunded_amount for c in paid)
    if paid:
        if order.refunded_amount >= order.paid_amount:
            order.state = OrderState.REFUNDED.value
        elif order.refunded_amount > 0:
            order.state = OrderState.PARTIALLY_REFUNDED.value
        else:
            order.state = OrderState.PAID.value
    elif not checkouts:
        order.state = OrderState.DRAFT.value
    else:
        latest = checkouts[-1]
        order.state = OrderState.AWAITING_PAYMENT.value if latest.is_open else OrderState(latest.state).value


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
    value = CheckoutState.PAID if state == State.PAID_MISMATCH else state.value
    return RANK.get(value, -1)
