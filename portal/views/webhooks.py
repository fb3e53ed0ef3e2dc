"""Provider callbacks (no CSRF: each is verified as PROVIDERS.md says) and the admins' list of them."""

from __future__ import annotations

from flask import Blueprint, abort, render_template, request
from flask_babel import get_locale
from flask_babel import lazy_gettext as _l
from flask_login import current_user

from portal.extensions import csrf, db
from portal.models import WebhookEvent
from portal.payments import NO_MERCHANT, NOT_READY, receive_callback
from portal.providers.base import CallbackRequest
from portal.security import admin_required

bp = Blueprint("webhooks", __name__)

PROVIDERS = ("oen", "mypay", "opay")

# A stored callback's status; the code stays in the filter's value and the badge's CSS class.
CALLBACK_STATUS_LABELS = {
    "refused": _l("Refused"),
    "error": _l("Error"),
    "applied": _l("Applied"),
    "recorded": _l("Recorded, no change"),
    "received": _l("Received, not processed yet"),
}

# The portal's own reasons, stored in English (WebhookEvent.error is evidence), shown in the reader's language.
# Reasons from the provider layer (InvalidCallback, ProviderError) are shown as stored.
CALLBACK_ERRORS = {
    NO_MERCHANT: _l("The callback names no merchant known to this portal."),
    NOT_READY: _l("The payment link was still being opened; the provider will send the callback again."),
}


@bp.app_template_filter("callback_status_label")
def callback_status_label(status: str) -> str:
    return str(CALLBACK_STATUS_LABELS.get(status, status))


@bp.app_template_filter("callback_error_text")
def callback_error_text(error: str) -> str:
    """A stored callback error in the reader's language when it is one of the portal's own; otherwise as stored."""
    known = CALLBACK_ERRORS.get(error)
    return str(known) if known is not None else error


@bp.app_template_global("callback_error")
def callback_error(event: WebhookEvent) -> str:
    """Why a callback was refused or failed, in the reader's language where it is known in it."""
    if event.error_zh and not str(get_locale() or "").startswith("en"):
        return event.error_zh
    return callback_error_text(event.error or "")


@bp.post("/webhooks/<provider>")
@csrf.exempt
def receive(provider: str):
    """Store the callback, verify it, apply it, and answer only after the commit."""
    if provider not in PROVIDERS:
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
    """Every callback this merchant received, refused ones first."""
    status = request.args.get("status", "")
    stmt = db.select(WebhookEvent).where(WebhookEvent.merchant_id == current_user.merchant_id)
    if status in CALLBACK_STATUS_LABELS:
        stmt = stmt.where(WebhookEvent.status == status)
    events = db.session.execute(stmt.order_by(WebhookEvent.id.desc()).limit(200)).scalars().all()
    return render_template(
        "webhooks/callbacks.html", events=events, status=status, statuses=tuple(CALLBACK_STATUS_LABELS)
    )
