"""Refunds: each provider's rules, a Refund row committed before the provider is called, and settling by query.

A refund reaches the provider at most once: its row (state "requested", a unique idempotency key) is committed first;
the amount is checked again under the checkout's lock, counting unsettled refunds as already taken; and an outcome the
portal did not hear (a timeout) stays "unknown" until a provider query settles it. Nothing here re-sends a refund.
"""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import dataclass, field
from datetime import timedelta

from flask_babel import gettext as _
from sqlalchemy.exc import IntegrityError

from portal.extensions import db
from portal.gateways import provider_for
from portal.models import Checkout, Order, Refund, utcnow
from portal.payments import (
    PAID_STATES,
    apply_state,
    checkout_ref,
    locked_checkout,
    provider_message,
    query_provider,
    state_from_transactions,
    write_transaction,
)
from portal.providers.base import ProviderError, ProviderUnavailable, State, VoucherLine
from portal.security import audit

log = logging.getLogger(__name__)

# Refunds that may still take money: counted as taken when the refundable amount is checked.
UNSETTLED = ("requested", "pending", "unknown")
# A refund whose outcome the portal did not hear is declared "not made" only when the provider still shows nothing
# this long after it was sent: a provider may finish a call it answered too late.
UNKNOWN_GRACE = timedelta(minutes=2)
INVOICE_STATES = ("4", "6")  # MyPay: 4 void the e-invoice, 6 issue an allowance
OEN_CARD_METHODS = ("card", "credit", "creditcard", "credit_card")
KEY_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


class RefundRefused(Exception):
    """A refund the portal will not send; `message` says why and `field` names the form field it concerns."""

    def __init__(self, message: str, field: str = "amount"):
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass(frozen=True)
class RefundPlan:
    """Exactly what will be sent to the provider (for O'Pay: recorded); the confirmation page shows all of it."""

    order_id: int
    checkout_id: int
    provider: str
    amount: int
    reason: str
    paid: int  # what the customer paid on this checkout
    transaction_id: str = ""  # Oen HID, MyPay uid, O'Pay TradeNo
    paid_vouchers: tuple[VoucherLine, ...] = ()  # MyPay voucher mode: every paid voucher, listed in the call
    invoice_state: str = ""  # MyPay: "4" void, "6" allowance
    manual_reference: str = ""  # O'Pay: the reference of the refund made in O'Pay's back office

    @property
    def manual(self) -> bool:
        return self.provider == "opay"

    @property
    def full(self) -> bool:
        return self.amount >= self.paid

    def options(self) -> dict[str, str]:
        """The provider options stored with the refund and passed to Provider.refund."""
        return {"invoice_state": self.invoice_state} if self.provider == "mypay" and self.invoice_state else {}


@dataclass(frozen=True)
class RefundTerms:
    """What the refund page says about a payment before anything is entered."""

    checkout: Checkout
    paid: int
    refunded: int
    in_progress: int
    refundable: int
    voucher_mode: bool  # MyPay with vouchers: full refunds only
    blocked: str = ""  # why no refund can be made now ("" when one can)
    paid_vouchers: tuple[VoucherLine, ...] = field(default_factory=tuple)

    @property
    def suggested_amount(self) -> int:
        return self.paid if self.voucher_mode else self.refundable


# ---------------------------------------------------------------- reading


def paid_checkouts(order: Order) -> list[Checkout]:
    """The order's paid attempts (normally one), newest first."""
    return [c for c in reversed(order.checkouts) if c.state in PAID_STATES]


def refunds_of(checkout_id: int) -> list[Refund]:
    """The checkout's refunds, oldest first, read afresh."""
    stmt = (
        db.select(Refund)
        .where(Refund.checkout_id == checkout_id)
        .order_by(Refund.id)
        .execution_options(populate_existing=True)
    )
    return list(db.session.execute(stmt).scalars())


def order_refunds(order: Order) -> list[Refund]:
    """Every refund of the order, newest first."""
    stmt = db.select(Refund).where(Refund.order_id == order.id).order_by(Refund.id.desc())
    return list(db.session.execute(stmt).scalars())


def paid_of(checkout: Checkout) -> int:
    return checkout.paid_amount or checkout.amount


def in_progress(refunds: list[Refund]) -> int:
    return sum(r.amount for r in refunds if r.state in UNSETTLED)


def refundable(checkout: Checkout, refunds: list[Refund]) -> int:
    """Paid − refunded − refunds still in progress."""
    return max(paid_of(checkout) - checkout.refunded_amount - in_progress(refunds), 0)


def voucher_mode(checkout: Checkout) -> bool:
    """MyPay orders with vouchers are sent in voucher mode, where only full refunds are possible."""
    return checkout.provider == "mypay" and bool(checkout.order.vouchers)


def paid_vouchers(checkout: Checkout) -> tuple[VoucherLine, ...]:
    return tuple(v for v in checkout_ref(checkout).vouchers if v.kind == "paid")


def new_idempotency_key() -> str:
    """The key a confirmation form carries: one refund per key, however often the form is sent."""
    return secrets.token_urlsafe(24)


def valid_key(key: str) -> bool:
    return 16 <= len(key) <= 64 and set(key) <= KEY_ALPHABET


# ---------------------------------------------------------------- rules


def _blocked(checkout: Checkout, refunds: list[Refund]) -> str:
    """Why this payment cannot be refunded now, whatever the amount ("" when it can)."""
    if checkout.state not in PAID_STATES:
        return _("This payment is not paid, so there is nothing to refund.")
    if checkout.provider == "oen":
        if checkout.refunded_amount or any(r.state != "failed" for r in refunds):
            return _("Oen Tech allows one refund per transaction, and this payment already has one.")
        if not checkout.provider_transaction_id:
            return _("The portal has no Oen transaction number for this payment. Refresh the order first.")
    if voucher_mode(checkout) and (checkout.refunded_amount or any(r.state != "failed" for r in refunds)):
        return _("This order was paid with vouchers, so MyPay refunds it once and in full; that refund exists already.")
    if refundable(checkout, refunds) <= 0:
        if in_progress(refunds):
            return _("The rest of this payment is taken by refunds still in progress. Check them with the provider.")
        return _("This payment has been refunded in full.")
    return ""


def check_rules(checkout: Checkout, refunds: list[Refund], amount: int) -> None:
    """Raise RefundRefused unless this amount may be refunded on this payment now."""
    blocked = _blocked(checkout, refunds)
    if blocked:
        raise RefundRefused(blocked)
    paid = paid_of(checkout)
    if voucher_mode(checkout) and amount != paid:
        raise RefundRefused(
            _(
                "Orders paid with vouchers can only be refunded in full at MyPay: NT$%(paid)s, listing every paid "
                "voucher.",
                paid=f"{paid:,}",
            )
        )
    left = refundable(checkout, refunds)
    if amount < 1:
        raise RefundRefused(_("Enter an amount of at least NT$1."))
    if amount > left:
        raise RefundRefused(
            _(
                "At most NT$%(left)s can be refunded (paid NT$%(paid)s, refunded NT$%(refunded)s, "
                "in progress NT$%(taken)s).",
                left=f"{left:,}",
                paid=f"{paid:,}",
                refunded=f"{checkout.refunded_amount:,}",
                taken=f"{in_progress(refunds):,}",
            )
        )


def terms_for(checkout: Checkout) -> RefundTerms:
    """The figures and rules the refund page shows for a payment."""
    refunds = refunds_of(checkout.id)
    return RefundTerms(
        checkout=checkout,
        paid=paid_of(checkout),
        refunded=checkout.refunded_amount,
        in_progress=in_progress(refunds),
        refundable=refundable(checkout, refunds),
        voucher_mode=voucher_mode(checkout),
        blocked=_blocked(checkout, refunds),
        paid_vouchers=paid_vouchers(checkout) if checkout.provider == "mypay" else (),
    )


def check_oen_card(checkout: Checkout) -> None:
    """Oen refunds card payments only, once: ask Oen what this transaction is before anything is sent."""
    try:
        txns = query_provider(checkout)
    except ProviderError as exc:
        raise RefundRefused(
            _("Oen Tech could not be asked about this payment, so nothing was sent: %(why)s", why=provider_message(exc))
        ) from exc
    payment = next(
        (t for t in txns if t.kind == "payment" and t.transaction_id == checkout.provider_transaction_id), None
    )
    if payment is None:
        raise RefundRefused(_("Oen Tech does not list this transaction. Refresh the order before refunding."))
    if payment.method and payment.method.lower() not in OEN_CARD_METHODS:
        raise RefundRefused(
            _(
                "Oen Tech refunds only card payments through its API. This payment was made by %(method)s: refund it "
                "in Oen Tech's CRM.",
                method=payment.method,
            )
        )
    if payment.refunded_amount or payment.state in (State.REFUNDED, State.PARTIALLY_REFUNDED):
        raise RefundRefused(
            _(
                "Oen Tech already shows a refund of NT$%(amount)s on this transaction, and allows only one. "
                "Apply the provider's state on the transactions page.",
                amount=f"{payment.refunded_amount:,}",
            )
        )


def plan_refund(
    order: Order,
    checkout_id: int | None,
    amount: int,
    reason: str,
    *,
    invoice_state: str = "",
    manual_reference: str = "",
) -> RefundPlan:
    """Check a refund against the rules (asking Oen what it holds) and say exactly what will be sent."""
    candidates = paid_checkouts(order)
    checkout = next((c for c in candidates if c.id == checkout_id), None) if checkout_id else None
    checkout = checkout or (candidates[0] if candidates and not checkout_id else None)
    if checkout is None:
        raise RefundRefused(_("This order has no paid payment to refund."))
    reason = (reason or "").strip()
    if not reason:
        raise RefundRefused(_("Please say why the money is given back."), "reason")
    check_rules(checkout, refunds_of(checkout.id), amount)
    manual_reference = (manual_reference or "").strip()
    if checkout.provider == "opay" and not manual_reference:
        raise RefundRefused(
            _("Enter the reference O'Pay's vendor back office gave the refund you made there."), "manual_reference"
        )
    if checkout.provider == "mypay":
        invoice_state = invoice_state if invoice_state in INVOICE_STATES else "4"
    plan = RefundPlan(
        order_id=order.id,
        checkout_id=checkout.id,
        provider=checkout.provider,
        amount=amount,
        reason=reason,
        paid=paid_of(checkout),
        transaction_id=checkout.provider_transaction_id or checkout.provider_checkout_id or "",
        paid_vouchers=paid_vouchers(checkout) if voucher_mode(checkout) else (),
        invoice_state=invoice_state if checkout.provider == "mypay" else "",
        manual_reference=manual_reference if checkout.provider == "opay" else "",
    )
    if checkout.provider == "oen":
        check_oen_card(checkout)
    return plan


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
                state="succeeded" if plan.manual else "requested",
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
        _record_outcome(refund_id, "unknown", provider_message(exc), code=exc.code)
    except ProviderError as exc:
        _record_outcome(refund_id, "failed", provider_message(exc), code=exc.code)
    except Exception:  # the call may or may not have left: never guess "not made"
        log.exception("refund %s: the provider call ended unexpectedly", refund_id)
        db.session.rollback()
        _record_outcome(
            refund_id, "unknown", _("The portal could not tell whether the provider made this refund."), code="error"
        )
    else:
        state = result.state if result.state in ("succeeded", "pending", "failed") else "unknown"
        _record_outcome(refund_id, state, result.message, provider_refund_id=result.provider_refund_id)


def _record_outcome(refund_id: int, state: str, message: str, *, code: str = "", provider_refund_id: str = "") -> None:
    with write_transaction():
        refund = db.session.get(Refund, refund_id, populate_existing=True)
        checkout = locked_checkout(refund.checkout_id)
        refund = db.session.get(Refund, refund_id, populate_existing=True)
        if refund.state != "requested":  # settled meanwhile by a provider query
            return
        refund.state = state
        refund.message = message or None
        refund.provider_refund_id = provider_refund_id or refund.provider_refund_id
        if state == "succeeded":
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
    succeeded = sum(r.amount for r in refunds_of(checkout.id) if r.state == "succeeded")
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
    if refund.state not in UNSETTLED or refund.manual:
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
        available = shown - sum(r.amount for r in refunds if r.state == "succeeded" and not r.manual)
        now = utcnow()
        for row in refunds:
            if row.state not in UNSETTLED or row.manual:
                continue
            late = now - row.created_at >= UNKNOWN_GRACE
            if row.state == "requested" and not late:
                continue  # its provider call may still be under way
            if available >= row.amount:
                available -= row.amount
                row.state = "succeeded"
                row.message = _("Confirmed by a provider query.")
            elif row.state != "pending" and late:
                row.state = "failed"
                row.message = _("The provider shows no such refund, long after it was sent: it was not made.")
        if shown or any(r.state == "succeeded" for r in refunds):
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
