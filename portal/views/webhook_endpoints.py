"""Settings → Webhooks: the merchant's endpoints, their deliveries, and a resend (admins only, their own merchant)."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy.exc import IntegrityError

from portal import merchant_webhooks as hooks
from portal.extensions import db
from portal.forms.webhook_endpoints import EVENT_LABELS, URL_MESSAGES, WebhookActionForm, WebhookEndpointForm
from portal.models import MerchantEvent, WebhookAttempt, WebhookEndpoint
from portal.security import admin_required, audit

bp = Blueprint("webhook_endpoints", __name__)

DELIVERIES_SHOWN = 200


def get_endpoint(endpoint_id: int) -> WebhookEndpoint:
    """An endpoint of the admin's own merchant, or 404."""
    endpoint = db.session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None or endpoint.merchant_id != current_user.merchant_id:
        abort(404)
    return endpoint


def render_endpoints(form: WebhookEndpointForm | None = None, *, secret: str | None = None, shown_for=None):
    endpoints = (
        db.session.execute(
            db.select(WebhookEndpoint)
            .filter_by(merchant_id=current_user.merchant_id)
            .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
        )
        .scalars()
        .all()
    )
    refused = bool(form and form.errors)
    return (
        render_template(
            "settings/webhooks.html",
            endpoints=endpoints,
            form=form or WebhookEndpointForm(formdata=None),
            action_form=WebhookActionForm(formdata=None),
            event_labels=EVENT_LABELS,
            secret=secret,
            shown_for=shown_for,
        ),
        400 if refused else 200,
    )


@bp.get("/settings/webhooks")
@admin_required
def index():
    return render_endpoints()


SENT_AGAIN = _l(
    "This form was sent already: its endpoint was added then and its secret shown once. If you did not copy it, give "
    "the endpoint a new secret below."
)


@bp.post("/settings/webhooks")
@admin_required
def create():
    """Add an endpoint; the page shows its signing secret this once."""
    form = WebhookEndpointForm()
    if not form.validate_on_submit():
        return render_endpoints(form)
    problem = hooks.url_problem(form.url.data)
    if problem:
        form.url.errors = [*form.url.errors, URL_MESSAGES[problem]]
        return render_endpoints(form)
    sent = db.session.execute(
        db.select(WebhookEndpoint.id).filter_by(form_token=form.form_token.data)
    ).scalar_one_or_none()
    if sent is not None:  # this very form was sent before (a reload of the page that showed the secret)
        flash(SENT_AGAIN, "warning")
        return redirect(url_for("webhook_endpoints.index"))
    endpoint, secret = hooks.create_endpoint(
        current_user.merchant_id, form.url.data, form.events.data, form.description.data or "", current_user.id
    )
    endpoint.form_token = form.form_token.data
    audit(
        "webhook_endpoint_created",
        endpoint_id=endpoint.id,
        url=endpoint.url,
        events=endpoint.events,
        description=endpoint.description or "",
    )
    try:
        db.session.commit()
    except IntegrityError:  # the same form, sent twice at once
        db.session.rollback()
        flash(SENT_AGAIN, "warning")
        return redirect(url_for("webhook_endpoints.index"))
    flash(_("Endpoint added. Copy its signing secret now: it is shown only once."), "success")
    return render_endpoints(secret=secret, shown_for=endpoint.id)


def _action_allowed() -> None:
    if not WebhookActionForm().validate_on_submit():
        abort(400)


@bp.post("/settings/webhooks/<int:endpoint_id>/enable")
@admin_required
def enable(endpoint_id: int):
    """Enable the endpoint again (also after it was flagged for three days of failed deliveries)."""
    _action_allowed()
    endpoint = get_endpoint(endpoint_id)
    if not endpoint.enabled or endpoint.flagged_at:
        was_flagged = endpoint.flagged_at is not None
        endpoint.enabled = True
        endpoint.flagged_at = None
        endpoint.failing_since = None
        audit("webhook_endpoint_enabled", endpoint_id=endpoint.id, url=endpoint.url, flagged=was_flagged)
        db.session.commit()
    flash(_("Endpoint enabled: new events are sent to it."), "success")
    return redirect(url_for("webhook_endpoints.index"), code=303)


@bp.post("/settings/webhooks/<int:endpoint_id>/disable")
@admin_required
def disable(endpoint_id: int):
    _action_allowed()
    endpoint = get_endpoint(endpoint_id)
    if endpoint.enabled:
        endpoint.enabled = False
        audit("webhook_endpoint_disabled", endpoint_id=endpoint.id, url=endpoint.url)
        db.session.commit()
    flash(_("Endpoint disabled: no events are sent to it until it is enabled."), "success")
    return redirect(url_for("webhook_endpoints.index"), code=303)


@bp.post("/settings/webhooks/<int:endpoint_id>/delete")
@admin_required
def delete(endpoint_id: int):
    """Delete the endpoint and its delivery log; deliveries still queued for it are dropped."""
    _action_allowed()
    endpoint = get_endpoint(endpoint_id)
    if request.form.get("confirm") != "yes":
        flash(_("Tick the box to confirm the deletion."), "error")
        return redirect(url_for("webhook_endpoints.index"), code=303)
    url = endpoint.url
    db.session.execute(db.delete(WebhookAttempt).where(WebhookAttempt.endpoint_id == endpoint.id))
    db.session.delete(endpoint)
    audit("webhook_endpoint_deleted", endpoint_id=endpoint_id, url=url)
    db.session.commit()
    flash(_("Endpoint deleted."), "success")
    return redirect(url_for("webhook_endpoints.index"), code=303)


@bp.post("/settings/webhooks/<int:endpoint_id>/roll-secret")
@admin_required
def roll_secret(endpoint_id: int):
    """A new signing secret, shown once; the old one stops at once."""
    _action_allowed()
    endpoint = get_endpoint(endpoint_id)
    secret = hooks.roll_secret(endpoint)
    audit("webhook_secret_rolled", endpoint_id=endpoint.id, url=endpoint.url)
    db.session.commit()
    flash(_("New signing secret made; the old one no longer works. Copy it now: it is shown only once."), "success")
    return render_endpoints(secret=secret, shown_for=endpoint.id)


@bp.get("/settings/webhooks/<int:endpoint_id>")
@admin_required
def deliveries(endpoint_id: int):
    """The endpoint's delivery attempts, newest first."""
    endpoint = get_endpoint(endpoint_id)
    rows = db.session.execute(
        db.select(WebhookAttempt, MerchantEvent)
        .join(MerchantEvent, MerchantEvent.id == WebhookAttempt.event_id)
        .where(WebhookAttempt.endpoint_id == endpoint.id)
        .order_by(WebhookAttempt.attempted_at.desc(), WebhookAttempt.id.desc())
        .limit(DELIVERIES_SHOWN)
    ).all()
    return render_template(
        "settings/webhook_deliveries.html",
        endpoint=endpoint,
        rows=rows,
        shown=DELIVERIES_SHOWN,
        event_labels=EVENT_LABELS,
        action_form=WebhookActionForm(formdata=None),
    )


@bp.post("/settings/webhooks/<int:endpoint_id>/events/<event_id>/resend")
@admin_required
def resend(endpoint_id: int, event_id: str):
    """Deliver the event to the endpoint again, now (a new delivery, marked as a resend)."""
    _action_allowed()
    endpoint = get_endpoint(endpoint_id)
    event = db.session.execute(
        db.select(MerchantEvent).filter_by(public_id=event_id[:40], merchant_id=current_user.merchant_id)
    ).scalar_one_or_none()
    if event is None:
        abort(404)
    if not endpoint.enabled:
        flash(_("Enable the endpoint first: a disabled endpoint gets no deliveries."), "error")
        return redirect(url_for("webhook_endpoints.deliveries", endpoint_id=endpoint.id), code=303)
    hooks.resend(event, endpoint)
    audit("webhook_resent", endpoint_id=endpoint.id, event=event.public_id, event_type=event.type)
    db.session.commit()
    flash(_("Event %(event)s will be sent again in a moment.", event=event.public_id), "success")
    return redirect(url_for("webhook_endpoints.deliveries", endpoint_id=endpoint.id), code=303)
