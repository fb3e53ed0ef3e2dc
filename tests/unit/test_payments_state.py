"""The checkout state machine: forward only, by rank, with evidence kept for every event."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portal.extensions import db
from portal.models import CheckoutEvent
from portal.payments import RANK, apply_state, locked_checkout, write_transaction
from portal.providers.base import State
from tests.support.factories import make_checkout, make_order

EVENT_STATES = [s for s in State if s != State.PARTIALLY_REFUNDED]


def _apply(checkout_id, state, amount=None):
    with write_transaction():
        checkout = locked_checkout(checkout_id)
        changed = apply_state(checkout, state, source="callback", detail="test", amount=amount)
    return changed


def test_paid_is_not_undone_by_a_late_failed(app, seed):
    with app.app_context():
        checkout = make_checkout(make_order(seed.merchant_id))
        assert _apply(checkout.id, State.PAID, checkout.amount)
        assert not _apply(checkout.id, State.FAILED)
        assert not _apply(checkout.id, State.AWAITING_PAYMENT)
        db.session.refresh(checkout)
        assert checkout.state == "paid"
        assert checkout.order.state == "paid"
        assert checkout.order.paid_amount == checkout.amount
        events = db.session.execute(db.select(CheckoutEvent).filter_by(checkout_id=checkout.id)).scalars().all()
        expected = [("paid", True), ("failed", False), ("awaiting_payment", False)]
        assert [(e.to_state, e.applied) for e in events] == expected


def test_expired_can_still_turn_paid(app, seed):
    with app.app_context():
        checkout = make_checkout(make_order(seed.merchant_id))
        assert _apply(checkout.id, State.EXPIRED)
        assert _apply(checkout.id, State.PAID, checkout.amount)
        assert checkout.order.state == "paid"


def test_paid_with_mismatch_is_paid_and_flagged(app, seed):
    with app.app_context():
        checkout = make_checkout(make_order(seed.merchant_id))
        assert _apply(checkout.id, State.PAID_MISMATCH, checkout.amount - 1)
        db.session.refresh(checkout)
        assert checkout.state == "paid" and checkout.needs_attention


def test_error_changes_nothing_and_asks_again_later(app, seed):
    with app.app_context():
        checkout = make_checkout(make_order(seed.merchant_id))
        assert not _apply(checkout.id, State.ERROR)
        db.session.refresh(checkout)
        assert checkout.state == "awaiting_payment" and checkout.next_query_at is not None


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(st.sampled_from(EVENT_STATES), min_size=1, max_size=12))
def test_any_order_of_events_ends_in_the_highest_ranked_state(app, seed, events):
    def rank(state: State) -> int:
        value = "paid" if state == State.PAID_MISMATCH else state.value
        return RANK.get(value, -1)

    with app.app_context():
        checkout = make_checkout(make_order(seed.merchant_id), state="awaiting_payment")
        seen = [RANK["awaiting_payment"]]
        for state in events:
            _apply(checkout.id, state, checkout.amount)
            db.session.refresh(checkout)
            seen.append(RANK[checkout.state])
        assert seen == sorted(seen), "state went backwards"
        best = max([RANK["awaiting_payment"]] + [rank(s) for s in events])
        assert RANK[checkout.state] == best


@pytest.mark.parametrize("state", ["failed", "expired", "cancelled"])
def test_order_follows_its_latest_attempt(app, seed, state):
    with app.app_context():
        order = make_order(seed.merchant_id)
        checkout = make_checkout(order)
        _apply(checkout.id, State(state))
        db.session.refresh(order)
        assert order.state == state
