"""Refunds (admins only): the form, a confirmation showing exactly what will be sent, then one refund per key."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user

from portal.extensions import db
from portal.forms import RefundForm
from portal.models import Order, Refund, RefundState
from portal.orders import get_order
from portal.overview import forget_live
from portal.refunds import (
    RefundRefused,
    new_idempotency_key,
    order_refunds,
    paid_checkouts,
    plan_refund,
    refund_by_key,
    settle_refund,
    submit_refund,
    terms_for,
    valid_key,
)
from portal.security import admin_required

bp = Blueprint("refunds", __name__)

OPAY_BACK_OFFICE = "https://vendor-stage.opay.tw"


def render_page(order: Order, form: RefundForm, status: int = 200):
    """The refund page: each paid payment's figures and rules, the refunds so far, and the form."""
    terms = [terms_for(checkout) for checkout in paid_checkouts(order)]
    # An order paid more than once: no payment is taken for the admin (the form would stand pre-filled on one).
    chosen = next((t for t in terms if t.checkout.id == form.checkout), terms[0] if len(terms) == 1 else None)
    return (
        render_template(
            "refunds/index.html",
            order=order,
            form=form,
            terms=terms,
            chosen=chosen,
            refunds=order_refunds(order),
            opay_back_office=OPAY_BACK_OFFICE,
        ),
        status,
    )


def flash_outcome(refund: Refund, created: bool) -> None:
    """Say what became of a refund, in words an admin can act on."""
    amount = f"{refund.amount:,}"
    if not created:
        flash(_("This refund was submitted already (it is not sent twice)."), "info")
    if refund.state == RefundState.SUCCEEDED:
        if refund.manual:
            flash(_("The refund of NT$%(amount)s made in O'Pay's back office is recorded.", amount=amount), "success")
        else:
            flash(_("Refunded NT$%(amount)s.", amount=amount), "success")
    elif refund.state == RefundState.PENDING:
        flash(_("The provider accepted the refund of NT$%(amount)s; the money moves later.", amount=amount), "info")
    elif refund.state == RefundState.REQUESTED:
        flash(_("The refund of NT$%(amount)s is being sent to the provider.", amount=amount), "info")
    elif refund.state == RefundState.UNKNOWN:
        flash(
            _(
                "The provider did not answer in time, so the outcome of the refund of NT$%(amount)s is unknown. It "
                "will not be sent again: use “Check with provider” on it. %(why)s",
                amount=amount,
                why=refund.message or "",
            ),
            "warning",
        )
    else:
        flash(_("The provider refused the refund: %(why)s", why=refund.message or "—"), "error")


def already_sent(order: Order, key: str) -> Refund | None:
    """The refund a resent confirmation (double click, reload, a second tab) already made, if any."""
    if not key or not valid_key(key):
        return None
    refund = refund_by_key(key)
    return refund if refund is not None and refund.order_id == order.id else None


@bp.route("/orders/<int:order_id>/refunds", methods=["GET", "POST"])
@admin_required
def index(order_id: int):
    """GET: the form. POST without a key: the confirmation. POST with the confirmation's key: the refund."""
    order = get_order(order_id)
    form = RefundForm(formdata=request.form if request.method == "POST" else None)
    if request.method == "GET":
        checkouts = paid_checkouts(order)
        # An order paid more than once (a provider page still open after the link was switched): the admin chooses
        # the payment (?payment=); none is chosen for them, or the form would stand ready to refund, in full, the
        # payment the shop keeps once the other is refunded.
        chosen = request.args.get("payment", type=int)
        checkout = next((c for c in checkouts if c.id == chosen), checkouts[0] if len(checkouts) == 1 else None)
        if checkout is not None:
            terms = terms_for(checkout)
            form.checkout_id.data = str(checkout.id)
            form.amount.data = str(terms.suggested_amount) if terms.suggested_amount else ""
        return render_page(order, form)
    key = form.idempotency_key.data or ""
    done = already_sent(order, key)
    if done is not None:
        flash_outcome(done, created=False)
        return redirect(url_for("refunds.index", order_id=order.id))
    if not form.validate_on_submit():
        form.idempotency_key.data = ""
        return render_page(order, form, 400)
    try:
        plan = plan_refund(
            order,
            form.checkout,
            form.amount.amount,
            form.reason.data,
            invoice_state=form.invoice_state.data,
            manual_reference=form.manual_reference.data,
        )
        if not key:
            form.idempotency_key.data = new_idempotency_key()
            return render_template("refunds/confirm.html", order=order, plan=plan, form=form)
        refund, created = submit_refund(plan, key, current_user.id)
    except RefundRefused as exc:
        done = already_sent(order, key)  # a concurrent copy of this confirmation got there first
        if done is not None:
            flash_outcome(done, created=False)
            return redirect(url_for("refunds.index", order_id=order.id))
        form[exc.field].errors.append(exc.message)
        form.idempotency_key.data = ""
        return render_page(order, form, 409)
    forget_live(refund.checkout_id)
    flash_outcome(refund, created)
    return redirect(url_for("refunds.index", order_id=order.id))


@bp.post("/orders/<int:order_id>/refunds/<int:refund_id>/check")
@admin_required
def check(order_id: int, refund_id: int):
    """Ask the provider what became of a refund whose outcome is unknown or pending (never re-sends it)."""
    order = get_order(order_id)
    refund = db.session.get(Refund, refund_id)
    if refund is None or refund.order_id != order.id:
        abort(404)
    try:
        refund = settle_refund(refund.id, current_user.id)
    except RefundRefused as exc:
        flash(exc.message, "error")
    else:
        forget_live(refund.checkout_id)
        if refund.state == RefundState.SUCCEEDED:
            amount = f"{refund.amount:,}"
            flash(_("The provider shows the refund of NT$%(amount)s: it is made.", amount=amount), "success")
        elif refund.state == RefundState.FAILED:
            flash(refund.message or _("The refund was not made."), "warning")
        else:
            flash(_("The provider does not show this refund yet. Check again in a few minutes."), "info")
    return redirect(url_for("refunds.index", order_id=order.id))
