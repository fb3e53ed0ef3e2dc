"""Payment links: staff open them on an order; customers follow them with no account."""

from __future__ import annotations

import re
import time
from urllib.parse import urlsplit

import segno
from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_limiter.util import get_remote_address
from flask_login import current_user, login_required

from portal.extensions import db, limiter
from portal.labels import PROVIDER_NAMES, attempt_error, state_label
from portal.models import ENDED_HERE, Checkout, CheckoutState, utcnow
from portal.orders import get_attempt, get_order
from portal.payments import (
    CheckoutError,
    charge_again,
    open_checkout,
    provider_choices,
    refresh_checkout,
    retry_charge,
    saved_cards,
    trade_page,
)
from portal.payments.attempts import expire_if_due, mark_handled
from portal.payments.links import CARD_WAIT, card_not_heard, open_link
from portal.security import admin_required
from portal.views.links import customer_page, link_order, provider_origins

bp = Blueprint("checkout", __name__)

ORIGIN_RE = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?")


def customer_link(checkout: Checkout) -> str:
    """The public address the customer follows."""
    return current_app.config["PORTAL_BASE_URL"] + url_for("checkout.pay", token=checkout.public_token)


def qr_svg(data: str) -> str:
    """A QR code as inline SVG, made on the server."""
    return segno.make(data, error="m").svg_inline(scale=4, border=2, dark="#14213d")


@bp.app_context_processor
def checkout_helpers():
    return {
        "customer_link": customer_link,
        "qr_svg": qr_svg,
        "provider_names": PROVIDER_NAMES,
        "open_attempt": open_checkout,
        "provider_choices": provider_choices,
        "saved_cards": saved_cards,
    }


# ---------------------------------------------------------------- staff


@bp.post("/orders/<int:order_id>/checkout")
@login_required
def create(order_id: int):
    """Open a payment link at the chosen provider."""
    order = get_order(order_id, with_merchant=True)
    try:
        switch = request.form.get("switch") == "1"
        open_link(order, request.form.get("provider", ""), current_user.id, request.remote_addr or "", switch=switch)
    except CheckoutError as exc:
        flash(str(exc), "error")
    else:
        flash(
            _switched_to(request.form.get("provider", ""))
            if switch
            else _("The payment link is ready. Send it to the customer."),
            "success",
        )
    return redirect(url_for("orders.detail", order_id=order_id))


def _switched_to(provider: str) -> str:
    """Switching a live link changes who takes the payment, not the link the customer has."""
    if provider in PROVIDER_NAMES:
        return _(
            "The link now pays through %(provider)s; the customer's link stays the same.",
            provider=PROVIDER_NAMES[provider],
        )
    return _("The link now lets the customer choose how to pay; the customer's link stays the same.")


@bp.post("/orders/<int:order_id>/refresh")
@login_required
def refresh(order_id: int):
    """Ask the provider about the order's attempts now."""
    order = get_order(order_id)
    changed_any, errors = False, []
    for checkout in list(order.checkouts):
        if checkout.is_open or checkout.state in (CheckoutState.PAID, CheckoutState.PARTIALLY_REFUNDED):
            changed, error = refresh_checkout(checkout.id, source="refresh")
            changed_any |= changed
            if error:
                errors.append(error)
    for error in errors:
        flash(error, "error")
    if not errors:
        flash(_("Updated from the provider.") if changed_any else _("The provider reports no change."), "info")
    return redirect(url_for("orders.detail", order_id=order_id))


@bp.post("/orders/<int:order_id>/charge-again")
@admin_required
def charge_saved_card(order_id: int):
    """Charge a card the same customer saved with Oen for an earlier order."""
    order = get_order(order_id)
    previous = db.session.execute(
        db.select(Checkout).where(
            Checkout.id == request.form.get("from_checkout", type=int),
            Checkout.merchant_id == current_user.merchant_id,
        )
    ).scalar_one_or_none()
    if previous is None:
        abort(404)
    try:
        checkout = charge_again(order, previous, current_user.id)
    except CheckoutError as exc:
        flash(str(exc), "error")
    else:
        if checkout.state == CheckoutState.PAID:
            flash(_("The saved card was charged."), "success")
        else:
            flash(
                _(
                    "The saved card could not be charged: %(why)s",
                    why=attempt_error(checkout) or state_label(checkout.state),
                ),
                "error",
            )
    return redirect(url_for("orders.detail", order_id=order_id))


@bp.post("/orders/<int:order_id>/checkouts/<int:checkout_id>/retry-charge")
@admin_required
def retry_card_charge(order_id: int, checkout_id: int):
    """Charge the saved card again after a charge whose outcome was unknown, if Oen shows none."""
    checkout = get_attempt(order_id, checkout_id)
    try:
        checkout = retry_charge(checkout.id, current_user.id)
    except CheckoutError as exc:
        flash(str(exc), "error")
    else:
        if checkout.state == CheckoutState.PAID:
            flash(_("The card was charged."), "success")
        else:
            flash(
                _("The card could not be charged: %(why)s", why=attempt_error(checkout) or state_label(checkout.state)),
                "error",
            )
    return redirect(url_for("orders.detail", order_id=order_id))


@bp.post("/orders/<int:order_id>/checkouts/<int:checkout_id>/handled")
@admin_required
def attention_handled(order_id: int, checkout_id: int):
    """An admin marks a payment that needed attention as handled (its reason stays on the page)."""
    checkout = get_attempt(order_id, checkout_id)
    if mark_handled(checkout.id, current_user.id):
        flash(_("Payment %(reference)s marked as handled.", reference=checkout.reference), "success")
    else:
        flash(_("Payment %(reference)s needs no attention.", reference=checkout.reference), "info")
    return redirect(url_for("orders.detail", order_id=order_id))


# ---------------------------------------------------------------- customers


def find_link(token: str) -> Checkout | None:
    """The checkout behind a customer link, looked up once per request."""
    if "link" not in g:
        found = None
        if token and len(token) <= 64:
            found = db.session.execute(db.select(Checkout).filter_by(public_token=token)).scalar_one_or_none()
        if found is None and (order := link_order(token)) is not None:  # the order's own link: its current attempt
            found = open_checkout(order) or (order.checkouts[-1] if order.checkouts else None)
        g.link = found
    return g.link


def load_link(token: str) -> Checkout:
    """The checkout behind a customer link; unknown links are a 404."""
    checkout = find_link(token)
    if checkout is None:
        abort(404)
    return checkout


def link_limit_key() -> str:
    """A real link is limited per link (many customers may share one address: a carrier's, an office's); guesses at
    unknown links are limited per address."""
    token = (request.view_args or {}).get("token", "")
    if find_link(token) is not None or link_order(token) is not None:
        return f"link:{token}"
    return f"guess:{get_remote_address()}"


# Per link: far above what one customer does; per guessing address: a handful of mistyped links a minute.
LINK_LIMIT = "60 per minute"
GO_LIMIT = "30 per minute"


def link_state(checkout: Checkout) -> str:
    """What the customer's page should say: open, expired, paid_elsewhere (an attempt still open whose order was paid
    through another: nothing more is to be paid on it), or the final state."""
    if checkout.is_final:
        return checkout.state
    if checkout.order.is_paid:
        return "paid_elsewhere"
    if checkout.expires_at < utcnow():
        return CheckoutState.EXPIRED.value
    if checkout.state == CheckoutState.CREATING:
        return CheckoutState.FAILED.value
    return "open"


def provider_origin(url: str) -> str | None:
    """scheme://host[:port] of a provider page, only if it is a plain http(s) origin (it goes into a CSP header)."""
    parts = urlsplit(url)
    origin = f"{parts.scheme}://{parts.netloc}"
    return origin if ORIGIN_RE.fullmatch(origin) else None


@bp.get("/pay/<token>")
@limiter.limit(LINK_LIMIT, key_func=link_limit_key)
def pay(token: str):
    """The customer's summary page, then on to the provider."""
    order = link_order(token)
    if order is not None:  # the order's own link: pay, try again, choose a provider, or why it has ended
        return customer_page(order, token)
    checkout = load_link(token)
    if expire_if_due(checkout.id):  # its time is up: the provider is asked, then the link expires (or is paid)
        checkout = db.session.get(Checkout, checkout.id, populate_existing=True)
    status = link_state(checkout)
    if status == "open" and checkout.provider_url:
        # The pay button's POST is answered by a redirect to the provider's page on its own origin.
        origin = provider_origin(checkout.provider_url)
        if origin:
            g.form_action_origins = (origin,)
    return render_template("checkout/pay.html", checkout=checkout, order=checkout.order, status=status)


@bp.post("/pay/<token>/go")
@limiter.limit(GO_LIMIT, key_func=link_limit_key)
def go(token: str):
    """On to the provider: by redirect, or (O'Pay) by creating the trade now and relaying the answer."""
    checkout = load_link(token)
    if link_state(checkout) != "open":
        return redirect(url_for("checkout.pay", token=token))
    if not checkout.provider_rules.creates_on_visit:
        if not checkout.provider_url:
            abort(404)
        return redirect(checkout.provider_url, code=303)
    try:
        checkout = trade_page(checkout, request.remote_addr or "")
    except CheckoutError as exc:
        return render_template(
            "checkout/pay.html", checkout=checkout, order=checkout.order, status="open", error=str(exc)
        ), 502
    response = current_app.response_class(
        checkout.provider_page, status=200, content_type=checkout.provider_page_type or "text/html; charset=utf-8"
    )
    # O'Pay's page runs in an opaque origin: its scripts can reach nothing of the portal's.
    response.headers["Content-Security-Policy"] = (
        "sandbox allow-scripts allow-forms allow-top-navigation allow-popups; frame-ancestors 'none'"
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/pay/<token>/return")
@limiter.limit(LINK_LIMIT, key_func=link_limit_key)
def returned(token: str):
    """Where providers send the customer back: the state the portal knows, asking the provider while open.

    The page reloads itself while open, carrying when the customer first came back (`since`). A card the provider
    has not told the portal about (Oen's token notice lost or late) can be charged by nobody, so once the customer has
    waited CARD_WAIT the page says nothing was charged and offers to enter the card again, instead of waiting on.
    """
    checkout = load_link(token)
    if (checkout.is_open and checkout.state != CheckoutState.CREATING) or checkout.state in ENDED_HERE:
        # Also an attempt cancelled or expired here: its provider's page stays open, and the customer coming back
        # from it may just have paid there (told "cancelled, try again", they would pay twice).
        _changed, _error = refresh_checkout(checkout.id, source="return")
        checkout = db.session.get(Checkout, checkout.id, populate_existing=True)
    status = link_state(checkout)
    now = int(time.time())
    since = request.args.get("since", type=int)
    if since is None or not now - 86_400 <= since <= now:
        since = now  # first come back (or a value that cannot be when: counted from now)
    again = now - since >= CARD_WAIT.total_seconds() and card_not_heard(checkout)
    if again:
        g.form_action_origins = provider_origins(checkout.order)  # entering the card again leads to its page
    return render_template(
        "checkout/return.html",
        checkout=checkout,
        order=checkout.order,
        status=status,
        final=status != "open",
        since=since,
        card_not_heard=again,
        paid_twice=paid_twice(checkout),
    )


def paid_twice(checkout: Checkout) -> bool:
    """Whether the order was paid through this attempt and another, neither refunded yet (a provider page still open
    after the link was switched): the customer is to ask the shop to refund one. Once the shop has, it is not said."""

    def unrefunded(attempt: Checkout) -> bool:
        return attempt.state == CheckoutState.PAID and not attempt.refunded_amount

    return unrefunded(checkout) and any(c.id != checkout.id and unrefunded(c) for c in checkout.order.checkouts)
