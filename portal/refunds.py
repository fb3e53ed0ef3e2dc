"""Refunds: a Refund row committed before the provider is called, sent once, its outcome recorded, settled by query.

A refund reaches the provider at most once: its row (state "requested", a unique idempotency key) is committed first;
the amount is checked again under the checkout's lock, counting unsettled refunds as already taken; and an outcome the
portal did not hear (a timeout) stays "unknown" until a provider query settles it. Nothing here re-sends a refund.
What may be refunded (each provider's declared policy) is decided in portal.refund_rules.
"""

from __future__ import annotations

import json
import logging
import secrets
from datetime import timedelta

from flask_babel import gettext as _
from sqlalchemy.exc import IntegrityError

from portal.extensions import db
from portal.gateways import provider_for
from portal.mail import on_refund_made
from portal.models import UNSETTLED, Checkout, Refund, RefundState, utcnow
from portal.payments import (
    apply_state,
    checkout_ref,
    locked_checkout,
    provider_message,
    query_provider,
    state_from_transactions,
    write_transaction,
)
from portal.providers.base import ProviderError, ProviderUnavailable, State
from portal.refund_rules import (
    RefundPlan,
    RefundRefused,
    RefundTerms,
    check_rules,
    order_refunds,
    paid_checkouts,
    paid_of,
    plan_refund,
    refundable,
    refunds_of,
    terms_for,
)
from portal.security import audit

log = logging.getLogger(__name__)

# What the views and tests import from here, decided in portal.refund_rules; UNSETTLED: portal.models.
__all__ = [
    "UNSETTLED",
    "RefundPlan",
    "RefundRefused",
    "RefundTerms",
    "order_refunds",
    "paid_checkouts",
    "plan_refund",
    "refundable",
    "terms_for",
]
# A refund whose outcome the portal did not hear is declared "not made" only when the provider still shows nothing
# this long after it was sent: a provider may finish a call it answered too late.
UNKNOWN_GRACE = timedelta(minutes=2)
KEY_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def new_idempotency_key() -> str:
    """The key a confirmation form carries: one refund per key, however often the form is sent."""
    return secrets.token_urlsafe(24)


def valid_key(key: str) -> bool:
    return 16 <= len(key) <= 64 and set(key) <= KEY_ALPHABET


# ---------------------------------------------------------------- sending


def refund_by_key(key: str) -> Refund | None:
    stmt = db.select(Refund).filter_by(idempotency_key=key).execution_options(populate_existing=True)
    return db.session.execute(stmt).scalar_one_or_none()


def _same_refund(existing: Refund, plan: RefundPlan) -> Refund:
    if existing.order_id != plan.order_id:
        raise RefundRefused(_("This confirmation was already used for another refund. Start again."))
    return existing


def submit_refund(plan: RefundPlan, key: str, user_id: int | None) -> tuple[Refund, bool]:
    """Commit the refund as "requested", then send it once; (refund, False) when the key was used before."""
    if not valid_key(key):
        raise RefundRefused(_("The confirmation is incomplete. Start again."))
    existing = refund_by_key(key)
    if existing is not None:
        return _same_refund(existing, plan), False
    try:
        with write_transaction():
            existing = refund_by_key(key)
            if existing is not None:
                return _same_refund(existing, plan), False
            checkout = locked_checkout(plan.checkout_id)
            check_rules(checkout, refunds_of(checkout.id), plan.amount)
            refund = Refund(
                checkout_id=checkout.id,
                order_id=checkout.order_id,
                merchant_id=checkout.merchant_id,
                amount=plan.amount,
                reason=plan.reason,
                state=RefundState.SUCCEEDED if plan.manual else RefundState.REQUESTED,
                idempotency_key=key,
                options=plan.options(),
                manual=plan.manual,
                manual_reference=plan.manual_reference or None,
                created_by_id=user_id,
            )
            db.session.add(refund)
            db.session.flush()
            audit(
                "refund_recorded" if plan.manual else "refund_requested",
                merchant_id=checkout.merchant_id,
                user_id=user_id,
                refund_id=refund.id,
                order_id=checkout.order_id,
                checkout=checkout.reference,
                provider=checkout.provider,
                amount=plan.amount,
                reason=plan.reason,
                manual_reference=plan.manual_reference or None,
                **plan.options(),
            )
            if plan.manual:
                on_refund_made(refund, checkout.order)
                _apply_refunds(checkout, note=f"manual refund {refund.id} ({plan.manual_reference})")
    except IntegrityError:
        # Another request committed the same key first (a database that does not queue writers).
        db.session.rollback()
        existing = refund_by_key(key)
        if existing is None:
            raise
        return _same_refund(existing, plan), False
    if not plan.manual:
        _send(refund.id)
    return db.session.get(Refund, refund.id, populate_existing=True), True


def _send(refund_id: int) -> None:
    """Call the provider once for a committed "requested" refund and record what it said (or that it did not)."""
    refund = db.session.get(Refund, refund_id, populate_existing=True)
    checkout = refund.checkout
    provider = provider_for(checkout.merchant, checkout.provider)
    ref = checkout_ref(checkout)
    amount, reason, options = refund.amount, refund.reason, dict(refund.options or {})
    db.session.commit()  # no transaction is held across the provider call
    try:
        result = provider.refund(ref, amount, reason, **options)
    except ProviderUnavailable as exc:
        _record_outcome(refund_id, RefundState.UNKNOWN, provider_message(exc), code=exc.code)
    except ProviderError as exc:
        _record_outcome(refund_id, RefundState.FAILED, provider_message(exc), code=exc.code)
    except Exception:  # the call may or may not have left: never guess "not made"
        log.exception("refund %s: the provider call ended unexpectedly", refund_id)
        db.session.rollback()
        _record_outcome(
            refund_id,
            RefundState.UNKNOWN,
            _("The portal could not tell whether the provider made this refund."),
            code="error",
        )
    else:
        answered = (RefundState.SUCCEEDED, RefundState.PENDING, RefundState.FAILED)
        state = RefundState(result.state) if result.state in answered else RefundState.UNKNOWN
        _record_outcome(refund_id, state, result.message, provider_refund_id=result.provider_refund_id)


def set_refund_state(refund: Refund, state: RefundState, message: str, provider_refund_id: str = "") -> None:
    """The one writer of a refund's state once it exists: only a refund still unsettled moves."""
    if not refund.is_unsettled:
        raise RuntimeError(f"refund {refund.id} is settled ({refund.state}); it does not become {state}")
    refund.state = state.value
    refund.message = message or None
    refund.provider_refund_id = provider_refund_id or refund.provider_refund_id
    if state == RefundState.SUCCEEDED:
        on_refund_made(refund, refund.checkout.order)


def _record_outcome(
    refund_id: int, state: RefundState, message: str, *, code: str = "", provider_refund_id: str = ""
) -> None:
    with write_transaction():
        refund = db.session.get(Refund, refund_id, populate_existing=True)
        checkout = locked_checkout(refund.checkout_id)
        refund = db.session.get(Refund, refund_id, populate_existing=True)
        if refund.state != RefundState.REQUESTED:  # settled meanwhile by a provider query
            return
        set_refund_state(refund, state, message, provider_refund_id)
        if state == RefundState.SUCCEEDED:
            _apply_refunds(checkout, note=f"refund {refund.id}")
        audit(
            f"refund_{state}",
            merchant_id=refund.merchant_id,
            user_id=refund.created_by_id,
            refund_id=refund.id,
            order_id=refund.order_id,
            amount=refund.amount,
            code=code or None,
            message=message or None,
        )


def _apply_refunds(checkout: Checkout, *, note: str, provider_refunded: int = 0) -> None:
    """Apply the refunded total to a locked checkout through the state machine, so the order follows."""
    succeeded = sum(r.amount for r in refunds_of(checkout.id) if r.state == RefundState.SUCCEEDED)
    paid = paid_of(checkout)
    total = min(max(succeeded, checkout.refunded_amount, provider_refunded), paid)
    if total <= 0:
        return
    apply_state(
        checkout,
        State.REFUNDED if total >= paid else State.PARTIALLY_REFUNDED,
        source="refund",
        detail=json.dumps({"refunded": total, "paid": paid, "by": note}, ensure_ascii=False, sort_keys=True),
        refunded_amount=total,
    )


# ---------------------------------------------------------------- settling by query


def settle_refund(refund_id: int, user_id: int | None) -> Refund:
    """Ask the provider about a refund still unsettled and record what it shows; never sends the refund again."""
    refund = db.session.get(Refund, refund_id, populate_existing=True)
    if not refund.is_unsettled or refund.manual:
        return refund
    checkout = refund.checkout
    try:
        txns = query_provider(checkout)
    except ProviderError as exc:
        raise RefundRefused(
            _("The provider could not be asked, so the refund stays as it is: %(why)s", why=provider_message(exc))
        ) from exc
    _state, figures = state_from_transactions(checkout, txns)
    shown = int(figures.get("refunded") or 0)
    with write_transaction():
        checkout = locked_checkout(checkout.id)
        refunds = refunds_of(checkout.id)
        available = shown - sum(r.amount for r in refunds if r.state == RefundState.SUCCEEDED and not r.manual)
        now = utcnow()
        for row in refunds:
            if not row.is_unsettled or row.manual:
                continue
            late = now - row.created_at >= UNKNOWN_GRACE
            if row.state == RefundState.REQUESTED and not late:
                continue  # its provider call may still be under way
            if available >= row.amount:
                available -= row.amount
                set_refund_state(row, RefundState.SUCCEEDED, _("Confirmed by a provider query."))
            elif row.state != RefundState.PENDING and late:
                set_refund_state(
                    row,
                    RefundState.FAILED,
                    _("The provider shows no such refund, long after it was sent: it was not made."),
                )
        if shown or any(r.state == RefundState.SUCCEEDED for r in refunds):
            _apply_refunds(checkout, note=f"query for refund {refund_id}", provider_refunded=shown)
        refund = db.session.get(Refund, refund_id)
        audit(
            "refund_checked",
            merchant_id=checkout.merchant_id,
            user_id=user_id,
            refund_id=refund_id,
            order_id=checkout.order_id,
            provider_refunded=shown,
            state=refund.state,
        )
    return db.session.get(Refund, refund_id, populate_existing=True)
