"""The state core: a checkout only moves forward by rank, through one compare-and-set writer that keeps the evidence;
the order's state is derived from its checkouts, here and nowhere else."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from sqlalchemy import bindparam, insert, inspect, select, union_all, update
from sqlalchemy.orm.attributes import set_committed_value

from portal.extensions import db, dialect_name, execute_core
from portal.models import (
    OPEN_STATES,
    PAID_STATES,
    AttentionReason,
    Checkout,
    CheckoutEvent,
    CheckoutState,
    Order,
    OrderState,
    utcnow,
)
from portal.payments.locking import holds_order_lock, lock_order
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
    "move_open",
    "record",
    "refresh_order",
    "state_from_transactions",
    "write_order",
]


def keep_error(checkout: Checkout, error=None) -> None:
    """Keep the provider's error (a ProviderError) on the attempt, "code: message" in English and in Chinese; None
    clears it."""
    checkout.last_error = f"{error.code}: {error.message_en}" if error is not None else None
    checkout.last_error_zh = f"{error.code}: {error.message_zh}" if error is not None else None


def detail(**fields) -> str:
    """Evidence for an event row, as sorted JSON."""
    return json.dumps(fields, ensure_ascii=False, default=str, sort_keys=True)


# Built once: the evidence row, written straight to its table (no unit of work for a row nothing reads back).
INSERT_EVENT = insert(CheckoutEvent.__table__)


def record(checkout: Checkout, source: str, from_state: str, to_state: str, detail: str, **kw) -> None:
    """Add an evidence row to the checkout's history."""
    if checkout.id is None:  # not written yet: the row follows it in the session's flush
        db.session.add(
            CheckoutEvent(
                checkout=checkout, source=source, from_state=from_state, to_state=to_state, detail=detail, **kw
            )
        )
        return
    execute_core(INSERT_EVENT, _event_row(checkout, source, from_state, to_state, detail, **kw))
    _recorded(checkout)


def _event_row(checkout: Checkout, source: str, from_state: str, to_state: str, detail: str, **kw) -> dict:
    row = {"applied": True, "webhook_event_id": None, "created_at": utcnow(), **kw}
    row.update(checkout_id=checkout.id, source=source, from_state=from_state, to_state=to_state, detail=detail)
    return row


def _recorded(checkout: Checkout) -> None:
    if "events" in inspect(checkout).dict:
        db.session.expire(checkout, ["events"])  # read again when next shown


# Built once, on the table: the compare-and-set of a checkout's state; the columns it sets are the parameters given.
_checkouts = Checkout.__table__
# What refresh_order needs of each of an order's attempts (statement building, and the ORM's layer, cost more than
# reading them), in ORDER_CHECKOUTS, or read with the move (_move_record_and_read).
FIGURES = ("id", "state", "amount", "paid_amount", "refunded_amount", "opened_at")
MOVE_CHECKOUT = update(_checkouts).where(
    _checkouts.c.id == bindparam("checkout_id_"), _checkouts.c.state == bindparam("old_state_")
)


def move(checkout: Checkout, new_state: CheckoutState, source: str, detail: str, *, webhook_event_id=None) -> bool:
    """Move a locked checkout forward (compare-and-set on its current state); record the evidence either way.

    The one writer of a checkout's state (move_open is its form for an attempt moved by its id between two open
    states, with the same statement); the order follows through refresh_order, unless the checkout moves from an
    open state to another (opened at the provider, a card charge under way): the order's state and figures stay as
    they were (it awaits payment while its latest attempt is open, and only paid attempts count), so neither the
    order's row nor its lock is needed (locked_checkout without with_order).
    """
    old = checkout.state
    forward = RANK.get(new_state, -1) > RANK.get(old, -1)
    if not forward:
        record(checkout, source, old, new_state, detail, applied=False, webhook_event_id=webhook_event_id)
        return False
    # One statement: the compare-and-set of the state, with whatever else the caller changed on the row.
    values = _unwritten(checkout)
    values.update(state=CheckoutState(new_state).value, updated_at=utcnow())
    if old == CheckoutState.CREATING and new_state != CheckoutState.FAILED and checkout.opened_at is None:
        values["opened_at"] = values["updated_at"]  # the provider made it: from now on it counts for the order
    params = {"checkout_id_": checkout.id, "old_state_": old, **values}
    evidence = _event_row(checkout, source, old, values["state"], detail, webhook_event_id=webhook_event_id)
    postgresql = dialect_name() == "postgresql"
    refresh = not (old in OPEN_STATES and new_state in OPEN_STATES)
    # PostgreSQL, the order already locked: its attempts' figures read in the same statement, as they are after it.
    figures = None
    with db.session.no_autoflush:
        if postgresql:  # the move and its evidence in one statement: the row is written only if the checkout moved
            params.update({f"event_{key}": value for key, value in evidence.items()})
            if refresh and holds_order_lock(checkout.order_id):
                params["order_id_"] = checkout.order_id
                figures = execute_core(_move_record_and_read(tuple(values)), params).all()
                moved = any(row.id == checkout.id for row in figures)
            else:
                moved = execute_core(_move_and_record(tuple(values)), params).rowcount == 1
        else:
            moved = execute_core(MOVE_CHECKOUT, params).rowcount == 1
    if not moved:  # someone else moved it first; the caller's transaction is retried by the caller
        raise RuntimeError("checkout changed under a lock")
    for key, value in values.items():
        set_committed_value(checkout, key, value)
    _settled(checkout)
    if not postgresql:
        execute_core(INSERT_EVENT, evidence)
    _recorded(checkout)
    if refresh:
        refresh_order(checkout.order, checkouts=figures)
    return True


def move_open(checkout_id: int, old_state: CheckoutState, new_state: CheckoutState, source: str, detail: str, **values):
    """move() of an attempt between two open states (the provider answered its creation), by its id, with no object:
    the compare-and-set of its row on `old_state` with the columns given (`values`), and its evidence. The order is not
    touched (its state and figures stay as they are while its attempt is open, as move() says). True when it moved;
    False when the attempt was no longer in `old_state` (the caller then moves it as read, locked, with move())."""
    if old_state not in OPEN_STATES or new_state not in OPEN_STATES or RANK[new_state] <= RANK[old_state]:
        raise ValueError(f"move_open: {old_state} -> {new_state} is not a forward move between open states")
    now = utcnow()
    values = {**values, "state": new_state.value, "updated_at": now}
    if old_state == CheckoutState.CREATING:
        values["opened_at"] = now  # the provider made it: from now on it counts for the order (as move() sets it)
    params = {"checkout_id_": checkout_id, "old_state_": old_state.value, **values}
    evidence = {"applied": True, "webhook_event_id": None, "created_at": now, "checkout_id": checkout_id}
    evidence.update(source=source, from_state=old_state.value, to_state=new_state.value, detail=detail)
    with db.session.no_autoflush:
        if dialect_name() == "postgresql":  # one statement: the evidence row is inserted only if the attempt moved
            params.update({f"event_{key}": value for key, value in evidence.items()})
            moved = execute_core(_move_and_record(tuple(values)), params).rowcount == 1
        else:
            moved = execute_core(_move_checkout(tuple(values)), params).rowcount == 1
            if moved:
                execute_core(INSERT_EVENT, evidence)
    return moved


@functools.cache
def _move_checkout(columns: tuple[str, ...]):
    """MOVE_CHECKOUT with its columns named, built once per set of them."""
    return MOVE_CHECKOUT.values({name: bindparam(name, type_=_checkouts.c[name].type) for name in columns})


_events = CheckoutEvent.__table__
EVENT_COLUMNS = (
    "checkout_id",
    "source",
    "from_state",
    "to_state",
    "applied",
    "webhook_event_id",
    "detail",
    "created_at",
)


def _moved_and_recorded(columns: tuple[str, ...]):
    """The compare-and-set of MOVE_CHECKOUT as a CTE answering the moved row's figures, and the INSERT of its evidence
    row (record's) from it: the row is inserted only if the checkout moved."""
    moved = (
        update(_checkouts)
        .where(_checkouts.c.id == bindparam("checkout_id_"), _checkouts.c.state == bindparam("old_state_"))
        .values({name: bindparam(name, type_=_checkouts.c[name].type) for name in columns})
        .returning(*(_checkouts.c[name] for name in FIGURES))
        .cte("moved")
    )
    row = [bindparam(f"event_{name}", type_=_events.c[name].type) for name in EVENT_COLUMNS[1:]]
    return moved, insert(_events).from_select(EVENT_COLUMNS, select(moved.c.id, *row), include_defaults=False)


@functools.cache
def _move_and_record(columns: tuple[str, ...]):
    """PostgreSQL, built once per set of columns moved: the move and its evidence row in one statement (data-modifying
    CTEs) and one round trip; the INSERT's rowcount is the move's. Parameters: MOVE_CHECKOUT's, and the evidence row's
    as event_<column>."""
    _moved, recorded = _moved_and_recorded(columns)
    return recorded.execution_options(preserve_rowcount=True)  # an INSERT's rowcount is not kept otherwise


@functools.cache
def _move_record_and_read(columns: tuple[str, ...]):
    """_move_and_record, answering the figures refresh_order needs of the order's attempts as they are after the move
    (the moved one from the UPDATE, the others as the statement found them): the moved attempt is among them only if
    it moved. For an order whose row lock the transaction holds. Parameters: _move_and_record's, and order_id_."""
    moved, recorded = _moved_and_recorded(columns)
    others = select(*(_checkouts.c[name] for name in FIGURES)).where(
        _checkouts.c.order_id == bindparam("order_id_"), _checkouts.c.id != bindparam("checkout_id_")
    )
    both = union_all(others, select(*(moved.c[name] for name in FIGURES))).subquery()
    return select(both).order_by(both.c.id).add_cte(recorded.returning(_events.c.id).cte("recorded"))


def _settled(row) -> None:
    """Tell the session a row whose changed columns were all just written outside its flush (and set_committed_value
    since) has nothing left to write, unless a relationship of it has a change pending: else every later flush looks
    it over again, which costs more than the UPDATE did."""
    state = inspect(row)
    if state.modified and not any(state.attrs[rel.key].history.has_changes() for rel in state.mapper.relationships):
        state._commit_all(state.dict, db.session().identity_map)  # SQLAlchemy's own step after a flush wrote it


def _unwritten(row) -> dict[str, object]:
    """A row's column values changed in this session and not yet written (the session keeps the original of each
    changed attribute in committed_state)."""
    state = inspect(row)
    columns = state.mapper.column_attrs
    return {key: state.dict[key] for key in state.committed_state if key in columns and key in state.dict}


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
    payment_code: Mapping[str, object] | None = None,
    payment_deadline: datetime | None = None,
    card_last4: str = "",
    fee: int | None = None,
) -> bool:
    """Apply a provider-reported state to a locked checkout; True when the state changed.

    An offline payment's instructions (payment_code, with its deadline) and the card's last four digits are kept on
    the checkout whenever the provider reports them, whether or not the state changes; so is the provider's fee.
    """
    state = State(state) if not isinstance(state, State) else state
    if state == State.ERROR:
        checkout.next_query_at = utcnow() + REQUERY_AFTER
        record(
            checkout, source, checkout.state, checkout.state, detail, applied=False, webhook_event_id=webhook_event_id
        )
        return False
    if state == State.PAID_MISMATCH:
        target = CheckoutState.PAID
    elif state == State.AUTHORISED and checkout.state == CheckoutState.PROCESSING:
        target = CheckoutState.PROCESSING
    else:
        target = CheckoutState(state.value)
    if target in PAID_STATES:
        reason = attention_reason(checkout, state, amount)
        if reason is not None:
            flag_for_attention(checkout, reason)
    if transaction_id and not checkout.provider_transaction_id:
        checkout.provider_transaction_id = transaction_id
    keep_payment_details(checkout, payment_code, payment_deadline, card_last4)
    if fee is not None and fee >= 0 and fee != checkout.fee_amount:
        checkout.fee_amount = fee
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


def attention_reason(checkout: Checkout, state: State, amount: int | None) -> AttentionReason | None:
    """Why a paid report on this attempt needs a person to look, if it does (the most pressing reason)."""
    if checkout.state not in PAID_STATES and checkout.order.is_paid:
        return AttentionReason.PAID_TWICE  # the order was already paid through another attempt: one is to be refunded
    if checkout.state in (CheckoutState.EXPIRED, CheckoutState.CANCELLED):
        return AttentionReason.AFTER_END  # paid after the link expired or staff cancelled it
    if state == State.PAID_MISMATCH or (amount is not None and amount != checkout.amount and state != State.REFUNDED):
        return AttentionReason.AMOUNT
    return None


def flag_for_attention(checkout: Checkout, reason: AttentionReason) -> None:
    """Flag the attempt for a person, with why; once per reason: a flag an admin marked handled is not raised again by
    the provider saying the same again (every query of a MyPay payment reports its other amount), and a flag still
    waiting keeps its reason."""
    if checkout.attention_reason == reason or (checkout.needs_attention and checkout.attention_reason):
        return  # handled for this reason before, or flagged and still waiting for a person
    checkout.needs_attention = True
    checkout.attention_reason = reason.value


def keep_payment_details(
    checkout: Checkout, payment_code: Mapping[str, object] | None, deadline: datetime | None, card_last4: str
) -> None:
    """Keep an offline payment code (and its deadline, stored naive UTC) and a card's last four digits (never more).

    A deadline later than the attempt's own expiry extends it, so the portal does not expire a code still payable."""
    if payment_code:
        code = {str(k): v for k, v in payment_code.items()}
        if code != checkout.payment_code:
            checkout.payment_code = code
        if deadline is not None:
            deadline = deadline.astimezone(UTC).replace(tzinfo=None) if deadline.tzinfo else deadline
            checkout.payment_code_expires_at = deadline
            if deadline > checkout.expires_at:
                checkout.expires_at = deadline  # the customer was given until then: the attempt is not expired sooner
    digits = "".join(ch for ch in card_last4 or "" if ch.isascii() and ch.isdigit())[-4:]
    if len(digits) == 4:
        checkout.card_last4 = digits


ORDER_CHECKOUTS = (
    select(*(_checkouts.c[name] for name in FIGURES))
    .where(_checkouts.c.order_id == bindparam("order_id"))
    .order_by(_checkouts.c.id)
)


def counts_for_order(attempt) -> bool:
    """Whether an attempt (its FIGURES) counts for its order: one the provider refused to make never opened, and the
    order stays as it was (e.g. a draft)."""
    return attempt.opened_at is not None or attempt.state != CheckoutState.FAILED.value


def refresh_order(order: Order, *, also: Mapping[str, object] | None = None, checkouts: list | None = None) -> None:
    """Derive the order's state and amounts from its checkouts: the one place an order's state is written.

    Reads the few figures it needs of the order's checkouts (FIGURES), not the rows themselves, with the order's row
    locked (locking.lock_order), unless given them (`checkouts`: read with the move, the order already locked).
    `also`: other columns of the order (its link) to write in the same statement, seen by the derivation.
    """
    lock_order(order)  # on PostgreSQL: no other transaction derives it meanwhile, and the read below sees theirs
    also = dict(also or {})
    for key, value in also.items():
        set_committed_value(order, key, value)  # as the derivation below must see them; written with the state
    if checkouts is None:
        checkouts = execute_core(ORDER_CHECKOUTS, {"order_id": order.id}).all()
    rows = [row for row in checkouts if counts_for_order(row)]
    old_state = order.state
    was_paid = order.state in (OrderState.PAID, OrderState.PARTIALLY_REFUNDED, OrderState.REFUNDED)
    paid = [row for row in rows if row.state in PAID_STATES]
    paid_amount = sum(row.paid_amount or row.amount for row in paid)
    refunded_amount = sum(row.refunded_amount for row in paid)
    if paid:
        if refunded_amount >= paid_amount:
            state = OrderState.REFUNDED.value
        elif refunded_amount > 0 and paid_amount - refunded_amount < order.payable:
            state = OrderState.PARTIALLY_REFUNDED.value
        else:
            # Unrefunded, or what went back was beyond the order's price (a second payment of it, or more than it
            # asked): the shop still holds the whole price, and the order is paid.
            state = OrderState.PAID.value
    elif order.link_ended_at is not None:
        state = OrderState.CANCELLED.value  # staff ended the order's link
    elif not rows:
        # A link on which the customer picks the provider awaits payment before its first attempt.
        state = OrderState.AWAITING_PAYMENT.value if order.link_token else OrderState.DRAFT.value
    else:
        latest = rows[-1].state
        state = OrderState.AWAITING_PAYMENT.value if latest in OPEN_STATES else OrderState(latest).value
    changed = _order_changes(order, also, state=state, paid_amount=paid_amount, refunded_amount=refunded_amount)
    from portal import outbox
    from portal.mail import on_order_paid  # the receipt goes out with the transaction that says it was paid
    from portal.merchant_webhooks import on_order_state  # the merchant's webhooks, in this same transaction

    # What the change sends is written with it: on PostgreSQL, the order's row and its messages in one statement.
    with outbox.held_messages() as messages:
        if paid and not was_paid:
            on_order_paid(order)
        if order.state != old_state:
            on_order_state(order, old_state, order.state)
    _write_order(order, changed, messages)


# Built once, on the table: an order's columns set from the parameters given.
_orders = Order.__table__
UPDATE_ORDER = update(_orders).where(_orders.c.id == bindparam("order_id_"))


@functools.cache
def _update_order(columns: tuple[str, ...]):
    """UPDATE_ORDER with its columns named, built once per set of them (a CTE needs them named)."""
    return UPDATE_ORDER.values({name: bindparam(name, type_=_orders.c[name].type) for name in columns})


def write_order(order: Order, written: Mapping[str, object], **values) -> None:
    """Write the order's columns changed in this session, `written` (set on it as committed by the caller) and the
    given values that differ, in one statement (not through the session's flush of the whole row), and give the
    session the row as written; an order not yet written takes them as attributes."""
    _write_order(order, _order_changes(order, written, **values), [])


def _order_changes(order: Order, written: Mapping[str, object], **values) -> dict[str, object] | None:
    """The columns write_order writes, given to the order object now as written (the session has nothing left to
    flush of it); None for an order not yet written, which takes them as attributes, for the session's flush."""
    changed = {key: value for key, value in values.items() if getattr(order, key) != value}
    if not inspect(order).persistent:
        for key, value in {**written, **changed}.items():
            setattr(order, key, value)
        return None
    changed = {**_unwritten(order), **written, **changed}
    if not changed:
        return changed
    changed["updated_at"] = utcnow()
    for key, value in changed.items():
        set_committed_value(order, key, value)
    _settled(order)
    return changed


def _write_order(order: Order, changed: dict[str, object] | None, messages: list[dict]) -> None:
    """Write the order's changes (_order_changes) with the messages held while they were decided (outbox)."""
    from portal import outbox

    change = _update_order(tuple(changed)) if changed else None
    with db.session.no_autoflush:
        outbox.write_with(change, {"order_id_": order.id, **(changed or {})}, messages)


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
    figures = {"amount": paid_amount, "refunded": refunded, "transaction_id": best.transaction_id}
    offline = next((t for t in payments if t.payment_code), None)
    if offline is not None:
        figures.update(payment_code=offline.payment_code, payment_deadline=offline.payment_deadline)
    figures["card_last4"] = best.card_last4
    figures["fee"] = best.fee
    return state, figures


def _rank_of(state: State) -> int:
    value = CheckoutState.PAID if state == State.PAID_MISMATCH else state.value
    return RANK.get(value, -1)
