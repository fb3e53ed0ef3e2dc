"""Hypothesis stateful test: any interleaving of callbacks, queries and replays for one checkout never goes back."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from portal.extensions import db
from portal.models import Checkout, CheckoutEvent
from portal.payments import PAID_STATES, RANK, apply_state, locked_checkout, write_transaction
from portal.providers.base import State
from tests.support.apps import make_app, seed_merchants
from tests.support.factories import make_checkout, make_order

PROVIDER_STATES = [
    State.AWAITING_PAYMENT,
    State.AUTHORISED,
    State.PAID,
    State.PAID_MISMATCH,
    State.FAILED,
    State.EXPIRED,
    State.CANCELLED,
    State.ERROR,
]


def rank_of(state: State) -> int:
    return RANK.get("paid" if state == State.PAID_MISMATCH else state.value, -1)


class CheckoutMachine(RuleBasedStateMachine):
    """Events arrive in any order, any number of times, from callbacks or queries; the model keeps the best seen."""

    @initialize()
    def open_checkout(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.app = make_app(Path(self.tmp.name), WTF_CSRF_ENABLED=False)
        seed = seed_merchants(self.app)
        self.ctx = self.app.app_context()
        self.ctx.push()
        self.checkout_id = make_checkout(make_order(seed.merchant_id)).id
        self.best = RANK["awaiting_payment"]
        self.history: list[str] = ["awaiting_payment"]
        self.events = 0

    def teardown(self):
        if hasattr(self, "ctx"):
            db.session.remove()
            db.engine.dispose()
            self.ctx.pop()
            self.tmp.cleanup()

    def _apply(self, state: State, source: str, amount: int | None) -> None:
        with write_transaction():
            checkout = locked_checkout(self.checkout_id)
            apply_state(checkout, state, source=source, detail="stateful", amount=amount)
        self.events += 1
        if state != State.ERROR:
            self.best = max(self.best, rank_of(state))
        self.history.append(db.session.get(Checkout, self.checkout_id, populate_existing=True).state)

    @rule(state=st.sampled_from(PROVIDER_STATES), source=st.sampled_from(["callback", "query", "reconcile"]))
    def provider_reports(self, state, source):
        checkout = db.session.get(Checkout, self.checkout_id)
        self._apply(state, source, checkout.amount)

    @precondition(lambda self: len(self.history) > 1)
    @rule(data=st.data())
    def an_old_report_is_replayed(self, data):
        earlier = data.draw(st.sampled_from(self.history[:-1]))
        if earlier in {s.value for s in PROVIDER_STATES}:
            checkout = db.session.get(Checkout, self.checkout_id)
            self._apply(State(earlier), "callback", checkout.amount)

    @invariant()
    def never_goes_back(self):
        if hasattr(self, "history"):
            ranks = [RANK[s] for s in self.history]
            assert ranks == sorted(ranks), self.history

    @invariant()
    def ends_in_the_best_state_seen(self):
        if hasattr(self, "checkout_id"):
            checkout = db.session.get(Checkout, self.checkout_id, populate_existing=True)
            assert RANK[checkout.state] == self.best
            if checkout.state in PAID_STATES:
                assert checkout.order.state == "paid" and checkout.order.paid_amount == checkout.amount

    @invariant()
    def every_event_leaves_evidence(self):
        if hasattr(self, "checkout_id"):
            rows = db.session.query(CheckoutEvent).filter_by(checkout_id=self.checkout_id).count()
            assert rows == self.events
            applied = db.session.query(CheckoutEvent).filter_by(checkout_id=self.checkout_id, applied=True).count()
            changes = sum(1 for before, after in zip(self.history, self.history[1:], strict=False) if before != after)
            assert applied == changes  # each change is one applied row; every other event is recorded, not applied


CheckoutMachine.TestCase.settings = settings(max_examples=25, stateful_step_count=15, deadline=None)
TestCheckoutStateMachine = CheckoutMachine.TestCase
