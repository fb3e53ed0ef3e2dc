"""The order's customer link: its page for the customer (pay, try again, choose a provider, ended), and for staff its
cancel, its e-mail to the customer and its QR code as an image."""

from __future__ import annotations

import io
import re
import secrets
from types import SimpleNamespace
from urllib.parse import quote

import segno
from email_validator import EmailNotValidError, validate_email
from flask import Blueprint, Response, abort, current_app, flash, g, redirect, render_template, request, url_for
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required

from portal.extensions import db, limiter
from portal.labels import PROVIDER_NAMES
from portal.mail import LOCALES, customer_link, customer_locale, enqueue_mail, mail_enabled
from portal.models import CheckoutState, Order
from portal.orders import get_order
from portal.payments import CheckoutError, open_checkout
from portal.payments.attempts import expire_if_due
from portal.payments.links import (
    CHOICE,
    cancel_link,
    customer_providers,
    link_live,
    record_customer_locale,
    retry_link,
)
from portal.payments.locking import write_transaction
from portal.security import audit

bp = Blueprint("links", __name__)

SEND_KEY_RE = re.compile(r"[A-Za-z0-9_-]{16,64}")
# How each provider's page lets a customer pay, in their words.
CUSTOMER_METHODS = {
    "oen": _l("Credit card"),
    "mypay": _l("Credit card, ATM transfer or convenience store"),
    "opay": _l("WeChat Pay"),
}
PROVIDER_URL_SETTINGS = ("OEN_CHECKOUT_URL", "MYPAY_API_URL", "OPAY_API_URL")


def link_order(token: str) -> Order | None:
    """The order whose customer link this is, looked up once per request."""
    if "link_order" not in g:
        found = None
        if token and len(token) <= 64:
            found = db.session.execute(db.select(Order).filter_by(link_token=token)).scalar_one_or_none()
        g.link_order = found
    return g.link_order


def line_share_url(order: Order) -> str:
    """LINE's share page with a short message and the link."""
    text = _("Payment link for order %(number)s: %(link)s", number=order.number, link=customer_link(order))
    return "https://line.me/R/share?text=" + quote(text, safe="")


@bp.app_context_processor
def link_helpers():
    return {
        "order_link": customer_link,
        "link_live": link_live,
        "mail_enabled": mail_enabled,
        "line_share_url": line_share_url,
        "new_send_key": lambda: secrets.token_urlsafe(16),
        "customer_method": lambda name: CUSTOMER_METHODS.get(name, name),
    }


# ---------------------------------------------------------------- the customer


def provider_origins(order: Order) -> tuple[str, ...]:
    """The origins a retry or a pick may be redirected to (browsers check a form POST's redirects against CSP)."""
    from portal.views.checkout import provider_origin

    urls = [c.provider_url for c in order.checkouts if c.provider_url]
    for key in PROVIDER_URL_SETTINGS:
        template = current_app.config.get(key) or ""
        try:
            urls.append(template.format(merchant_id=order.merchant.oen_merchant_id or "x", id="x"))
        except (KeyError, IndexError, ValueError):
            continue
    return tuple(sorted({origin for origin in map(provider_origin, urls) if origin}))


def _reader_locale() -> str:
    return "en" if str(get_locale()).startswith("en") else "zh_TW"


def customer_page(order: Order, token: str):
    """GET /pay/<order's link token>: what the customer can do on the order's link now."""
    from portal.views.checkout import link_state, provider_origin

    attempt = open_checkout(order)
    if attempt is not None and expire_if_due(attempt.id):
        db.session.expire_all()
        attempt = open_checkout(order)
    record_customer_locale(order, _reader_locale())
    latest = order.checkouts[-1] if order.checkouts else None
    if order.is_paid:
        status = "paid"
        latest = next((c for c in reversed(order.checkouts) if c.is_paid), latest)
    elif order.link_ended_at is not None:
        status = "cancelled"
    elif attempt is not None and attempt.state != CheckoutState.CREATING and link_state(attempt) == "open":
        if attempt.provider_url and (origin := provider_origin(attempt.provider_url)):
            g.form_action_origins = (origin,)
        return render_template("checkout/pay.html", checkout=attempt, order=order, status="open")
    elif attempt is not None:
        status = "busy"  # being created, or a card charge the provider is still settling
    elif not link_live(order):
        status = "expired"
    elif order.link_provider == CHOICE:
        status = "choose"
    else:
        status = "retry" if latest is not None else "start"
    if status in ("choose", "retry", "start"):
        g.form_action_origins = provider_origins(order)
    summary = latest or SimpleNamespace(amount=order.payable)
    return render_template(
        "checkout/link.html",
        order=order,
        checkout=summary,
        latest=latest,
        status=status,
        token=token,
        choices=[(name, PROVIDER_NAMES[name]) for name in customer_providers(order)] if status == "choose" else [],
    )


def _limit_key() -> str:
    from portal.views.checkout import link_limit_key

    return link_limit_key()


@bp.post("/pay/<token>/retry")
@limiter.limit("30 per minute", key_func=_limit_key)
def retry(token: str):
    """The customer tries again on the same link (or makes their pick): a new attempt, then on to the provider."""
    order = link_order(token)
    if order is None:
        abort(404)
    provider = request.form.get("provider") or None
    card_again = request.form.get("card_again") == "1"
    try:
        checkout = retry_link(order, provider, request.remote_addr or "", card_again=card_again)
    except CheckoutError as exc:
        flash(str(exc), "error")
        return redirect(url_for("checkout.pay", token=token), code=303)
    # The same POST (with its CSRF token) goes on to the provider, as the pay button's does.
    return redirect(url_for("checkout.go", token=checkout.public_token), code=307)


# ---------------------------------------------------------------- staff


@bp.post("/orders/<int:order_id>/checkout/cancel")
@login_required
def cancel(order_id: int):
    """End the order's open link; a new one may follow."""
    order = get_order(order_id)
    try:
        cancel_link(order, current_user.id)
    except CheckoutError as exc:
        flash(str(exc), "error")
    else:
        flash(_("The payment link is cancelled. You can make a new one."), "success")
    return redirect(url_for("orders.detail", order_id=order_id))


@bp.post("/orders/<int:order_id>/send-link")
@login_required
def send_link(order_id: int):
    """E-mail the order's link to the customer (once per form: the hidden send_key makes a double submit one mail)."""
    order = get_order(order_id)
    back = redirect(url_for("orders.detail", order_id=order_id) + "#share")
    address = (request.form.get("email") or order.customer_email or "").strip()
    key = request.form.get("send_key") or ""
    if not mail_enabled():
        flash(_("E-mail is not set up on this portal. Copy the link, share it by LINE or show the QR code."), "error")
        return back
    if order.is_paid or not link_live(order):
        flash(_("This order has no open payment link."), "error")
        return back
    try:
        address = validate_email(address, check_deliverability=False).normalized if len(address) <= 254 else ""
    except EmailNotValidError:
        address = ""
    if not address:
        flash(_("Please enter a valid e-mail address."), "error")
        return back
    if not SEND_KEY_RE.fullmatch(key):
        flash(_("The form was out of date. Please send it again."), "error")
        return back
    chosen = request.form.get("locale")
    with write_transaction():
        locked = db.session.get(Order, order_id, populate_existing=True, with_for_update=True)
        locale = customer_locale(locked, chosen if chosen in LOCALES else None)
        sent = enqueue_mail("link", locked, to=address, dedupe_key=f"link:{locked.id}:{key}", locale=locale)
        if sent:
            audit("link_sent", merchant_id=locked.merchant_id, order_id=locked.id, to=address, locale=locale)
    if sent:
        flash(_("The payment link will be e-mailed to %(email)s in a moment.", email=address), "success")
    else:
        flash(_("This e-mail was already sent."), "info")
    return back


@bp.get("/orders/<int:order_id>/qr.<any(png, svg):kind>")
@login_required
def qr_image(order_id: int, kind: str):
    """The order's customer link as a QR code image, to download or print."""
    order = get_order(order_id)
    if not order.link_token:
        abort(404)
    buffer = io.BytesIO()
    segno.make(customer_link(order), error="m").save(buffer, kind=kind, scale=10, border=4)
    response = Response(buffer.getvalue(), mimetype="image/png" if kind == "png" else "image/svg+xml")
    name = re.sub(r"[^A-Za-z0-9_-]", "", order.number) or str(order.id)
    disposition = "attachment" if request.args.get("download") else "inline"
    response.headers["Content-Disposition"] = f'{disposition}; filename="order-{name}-link.{kind}"'
    response.headers["Cache-Control"] = "private, no-store"
    return response
