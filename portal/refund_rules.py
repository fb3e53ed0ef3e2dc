"""What may be refunded: the provider's declared refund policy, the figures, and the plan shown for confirmation.

Nothing here writes or sends; portal.refunds commits and sends what a plan says.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flask_babel import gettext as _

from portal.extensions import db
from portal.models import Checkout, Order, Refund, RefundState
from portal.payments import checkout_ref, provider_message, query_provider
from portal.providers import provider_class
from portal.providers.base import ProviderError, RefundPolicy, State, VoucherLine

ALLOWANCE = "6"  # MyPay's invoice_state for an allowance (折讓); "4" voids the e-invoice


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
    paid_vouchers: tuple[VoucherLine, ...] = ()  # voucher mode (MyPay): every paid voucher, listed in the call
    invoice_state: str = ""  # where the provider takes one (MyPay): "4" void, "6" allowance
    manual_reference: str = ""  # a refund made by hand (O'Pay): the reference the provider's back office gave it
    refunded_before: int = 0  # refunded, or being refunded, on this payment before this one

    @property
    def rest_of_payment(self) -> bool:
        """A refund of what was left after earlier ones: the payment is then refunded in full, though this is not."""
        return not self.full and self.refunded_before > 0 and self.amount + self.refunded_before >= self.paid

    @property
    def manual(self) -> bool:
        """Made by hand at the provider and recorded here; nothing is sent."""
        return not provider_class(self.provider).refund_policy.by_api

    @property
    def full(self) -> bool:
        return self.amount >= self.paid

    @property
    def gives_up_rest(self) -> int:
        """What can never be refunded after this one (a provider that refunds a payment once: Oen Tech)."""
        if self.full or not provider_class(self.provider).refund_policy.one_per_payment:
            return 0
        return self.paid - self.amount

    def options(self) -> dict[str, str]:
        """The provider options stored with the refund and passed to Provider.refund."""
        return {"invoice_state": self.invoice_state} if self.invoice_state else {}


@dataclass(frozen=True)
class RefundTerms:
    """What the refund page says about a payment before anything is entered."""

    checkout: Checkout
    paid: int
    refunded: int
    in_progress: int
    refundable: int
    voucher_mode: bool  # paid with vouchers where the provider then refunds once and in full (MyPay)
    blocked: str = ""  # why no refund can be made now ("" when one can)
    paid_vouchers: tuple[VoucherLine, ...] = field(default_factory=tuple)

    @property
    def suggested_amount(self) -> int:
        return self.paid if self.voucher_mode else self.refundable


# ---------------------------------------------------------------- reading


def paid_checkouts(order: Order) -> list[Checkout]:
    """The order's paid attempts (normally one), newest first."""
    return [c for c in reversed(order.checkouts) if c.is_paid]


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
    return sum(r.amount for r in refunds if r.is_unsettled)


def has_refund(checkout: Checkout, refunds: list[Refund]) -> bool:
    """A refund was made or is on its way (a failed one does not count)."""
    return bool(checkout.refunded_amount) or any(r.state != RefundState.FAILED for r in refunds)


def refundable(checkout: Checkout, refunds: list[Refund]) -> int:
    """Paid − refunded − refunds still in progress; nothing more once a provider that refunds a payment only once
    (Oen Tech) has its refund, however partial."""
    if policy_of(checkout).one_per_payment and has_refund(checkout, refunds):
        return 0
    return max(paid_of(checkout) - checkout.refunded_amount - in_progress(refunds), 0)


def policy_of(checkout: Checkout) -> RefundPolicy:
    return checkout.provider_rules.refund_policy


def voucher_mode(checkout: Checkout) -> bool:
    """Orders with vouchers at a provider that then refunds only once and in full (MyPay's voucher mode)."""
    return policy_of(checkout).full_only_with_vouchers and bool(checkout.order.vouchers)


def paid_vouchers(checkout: Checkout) -> tuple[VoucherLine, ...]:
    return tuple(v for v in checkout_ref(checkout).vouchers if v.kind == "paid")


# ---------------------------------------------------------------- rules


def _blocked(checkout: Checkout, refunds: list[Refund]) -> str:
    """Why this payment cannot be refunded now, whatever the amount ("" when it can)."""
    if not checkout.is_paid:
        return _("This payment is not paid, so there is nothing to refund.")
    policy = policy_of(checkout)
    has_one = has_refund(checkout, refunds)
    if policy.one_per_payment and has_one:
        return _("Oen Tech allows one refund per transaction, and this payment already has one.")
    if policy.by_transaction_id and not checkout.provider_transaction_id:
        return _("The portal has no Oen transaction number for this payment. Refresh the order first.")
    if voucher_mode(checkout) and has_one:
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
        if paid_vouchers(checkout):
            raise RefundRefused(
                _(
                    "Orders paid with vouchers can only be refunded in full at MyPay: NT$%(paid)s, listing every paid "
                    "voucher.",
                    paid=f"{paid:,}",
                )
            )
        raise RefundRefused(
            _("Orders with vouchers can only be refunded in full at MyPay: NT$%(paid)s.", paid=f"{paid:,}")
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
        paid_vouchers=paid_vouchers(checkout) if policy_of(checkout).full_only_with_vouchers else (),
    )


def check_with_provider(checkout: Checkout) -> None:
    """Ask the provider what this payment is before anything is sent (Oen: listed, paid by card, not yet refunded)."""
    policy = policy_of(checkout)
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
    if policy.methods and payment.method and payment.method.lower() not in policy.methods:
        raise RefundRefused(
            _(
                "Oen Tech refunds only card payments through its API. This payment was made by %(method)s: refund it "
                "in Oen Tech's CRM.",
                method=payment.method,
            )
        )
    refunded = payment.refunded_amount or payment.state in (State.REFUNDED, State.PARTIALLY_REFUNDED)
    if policy.one_per_payment and refunded:
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
    earlier = refunds_of(checkout.id)
    check_rules(checkout, earlier, amount)
    policy = policy_of(checkout)
    manual_reference = (manual_reference or "").strip() if not policy.by_api else ""
    if not policy.by_api and not manual_reference:
        raise RefundRefused(
            _("Enter the reference O'Pay's vendor back office gave the refund you made there."), "manual_reference"
        )
    choices = policy.invoice_states
    invoice_state = (invoice_state if invoice_state in choices else choices[0]) if choices else ""
    if amount < paid_of(checkout) and ALLOWANCE in choices:
        # Part of the money back: the invoice stands for the rest, so it gets an allowance; voiding it would cancel
        # the invoice of the whole payment.
        invoice_state = ALLOWANCE
    plan = RefundPlan(
        order_id=order.id,
        checkout_id=checkout.id,
        provider=checkout.provider,
        amount=amount,
        reason=reason,
        paid=paid_of(checkout),
        transaction_id=checkout.provider_transaction_id or checkout.provider_checkout_id or "",
        paid_vouchers=paid_vouchers(checkout) if voucher_mode(checkout) else (),
        invoice_state=invoice_state,
        manual_reference=manual_reference,
        refunded_before=checkout.refunded_amount + in_progress(earlier),
    )
    if policy.checked_by_query:
        check_with_provider(checkout)
    return plan
