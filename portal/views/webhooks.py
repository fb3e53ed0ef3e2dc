"""Provider callbacks (no CSRF: each is verified as PROVIDERS.md says) and the admins' list of them."""

from __future__ import annotations

from flask import Blueprint, abort, render_template, request
from flask_limiter.util import get_remote_address
from flask_login import current_user

from portal.extensions import csrf, db, limiter
from portal.labels import CALLBACK_STATUS_LABELS, callback_error_text, reads_english
from portal.models import CallbackStatus, Checkout, CheckoutEvent, Order, WebhookEvent
from portal.payments import receive_callback
from portal.providers import NAMES
from portal.providers.base import CallbackRequest
from portal.security import admin_required

bp = Blueprint("webhooks", __name__)


@bp.app_template_global("callback_error")
def callback_error(event: WebhookEvent) -> str:
    """Why a callback was refused or failed, in the reader's language where it is known in it."""
    if event.error_zh and not reads_english():
        return event.error_zh
    return callback_error_text(event.error or "")


def webhook_limit_key() -> str:
    """Per provider and address: one misbehaving sender never blocks another provider's callbacks."""
    return f"webhook:{(request.view_args or {}).get('provider', '')}:{get_remote_address()}"


# Generous: providers resend (MyPay five times, Oen and O'Pay on any failure), and one address may carry many shops.
WEBHOOK_LIMIT = "120 per minute"


@bp.post("/webhooks/<provider>")
@csrf.exempt
@limiter.limit(WEBHOOK_LIMIT, key_func=webhook_limit_key)
def receive(provider: str):
    """Store the callback, verify it, apply it, and answer only after the commit."""
    if provider not in NAMES:
        abort(404)
    body = request.get_data(cache=True)
    form = {}
    if request.mimetype == "application/x-www-form-urlencoded":
        form = {k: v for k, v in request.form.items()}
    callback = CallbackRequest(
        body=body,
        headers={k: v for k, v in request.headers.items()},
        form=form,
        content_type=request.content_type or "",
        remote_addr=request.remote_addr or "",
    )
    reply = receive_callback(provider, callback)
    return reply.body, reply.status, {"Content-Type": "text/plain; charset=utf-8"}


@bp.get("/callbacks")
@admin_required
def callbacks():
    """The callbacks filed under this merchant, newest first. A refused one is filed under no merchant (what it names
    is its own word, not verified), so it is not among them, nor among the statuses to filter by."""
    status = request.args.get("status", "")
    # Each with the order and the attempt it was applied to, if any (a refused one names none), the attempt's state now,
    # and the state the callback said (its evidence row in the attempt's history, found by the attempt's index).
    said = (
        db.select(CheckoutEvent.to_state)
        .where(CheckoutEvent.checkout_id == WebhookEvent.checkout_id, CheckoutEvent.webhook_event_id == WebhookEvent.id)
        .order_by(CheckoutEvent.id)
        .limit(1)
        .correlate(WebhookEvent)
        .scalar_subquery()
    )
    stmt = (
        db.select(WebhookEvent, Order.id, Order.number, Checkout.reference, Checkout.state, said)
        .outerjoin(Checkout, Checkout.id == WebhookEvent.checkout_id)
        .outerjoin(Order, Order.id == Checkout.order_id)
        .where(WebhookEvent.merchant_id == current_user.merchant_id)
    )
    if status in CALLBACK_STATUS_LABELS:
        stmt = stmt.where(WebhookEvent.status == status)
    rows = db.session.execute(stmt.order_by(WebhookEvent.id.desc()).limit(200)).all()
    statuses = tuple(name for name in CALLBACK_STATUS_LABELS if name != CallbackStatus.REFUSED)
    return render_template("webhooks/callbacks.html", rows=rows, status=status, statuses=statuses)
