"""Merchant settings, users and the audit trail (admins only, always the admin's own merchant)."""

from __future__ import annotations

import hmac
import json

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy.orm import selectinload

from portal.cli import create_user
from portal.extensions import db
from portal.filters import mask_cards
from portal.forms import (
    PROVIDER_ID_FIELDS,
    PROVIDER_SECRET_FIELDS,
    ProviderSettingsForm,
    UserCreateForm,
    UserRoleForm,
    UserStatusForm,
)
from portal.models import AuditEvent, Merchant, User, UserSession
from portal.security import admin_required, audit, decrypt_secret, encrypt_secret
from portal.views.checkout import provider_label
from portal.views.refunds import refund_state_label
from portal.views.webhooks import callback_error_text

bp = Blueprint("settings", __name__)

AUDIT_PAGE_SIZE = 100
MAX_PAGE = 100_000

ACTION_LABELS = {
    "login": _l("Logged in"),
    "login_failed": _l("Failed login"),
    "logout": _l("Logged out"),
    "order_created": _l("Order created"),
    "settings_changed": _l("Provider settings changed"),
    "user_created": _l("User created"),
    "user_changed": _l("User changed"),
    "card_token_read": _l("Card token read"),
    "callback_refused": _l("Callback refused"),
    "provider_state_applied": _l("Provider's state applied"),
    "refund_recorded": _l("Refund recorded by hand"),
    "refund_requested": _l("Refund requested"),
    # refunds.py writes refund_{state} when the provider's answer settles a requested refund
    "refund_succeeded": _l("Refund succeeded"),
    "refund_pending": _l("Refund accepted, money moves later"),
    "refund_failed": _l("Refund not made"),
    "refund_unknown": _l("Refund outcome unknown"),
    "refund_checked": _l("Refund checked with the provider"),
}

ROLE_LABELS = {"admin": _l("Admin"), "staff": _l("Staff")}

# The names in audit details (security.audit's keyword arguments); an unknown name shows as is.
DETAIL_LABELS = {
    "amount": _l("Amount"),
    "change": _l("Change"),
    "changed": _l("Changed"),
    "checkout": _l("Payment link"),
    "code": _l("Code"),
    "email": _l("E-mail"),
    "error": _l("Error"),
    "event_id": _l("Callback id"),
    "fields": _l("Settings"),
    "invoice_state": _l("E-invoice"),
    "manual_reference": _l("Provider's refund reference"),
    "message": _l("Message"),
    "number": _l("Order number"),
    "order_id": _l("Order id"),
    "provider": _l("Provider"),
    "provider_refunded": _l("Refunded at the provider"),
    "purpose": _l("Purpose"),
    "reason": _l("Reason"),
    "refund_id": _l("Refund id"),
    "role": _l("Role"),
    "role_from": _l("Role before"),
    "role_to": _l("Role after"),
    "state": _l("State"),
    "target_user_id": _l("User id"),
}

USER_CHANGE_LABELS = {"deactivated": _l("Deactivated"), "reactivated": _l("Reactivated")}
# MyPay's invoice_state on a refund: void the e-invoice (4) or issue an allowance (6)
INVOICE_REFUND_LABELS = {"4": _l("Void"), "6": _l("Allowance")}


@bp.app_template_filter("audit_action_label")
def audit_action_label(action: str) -> str:
    """An audit action as a person reads it; unknown actions show their code."""
    return str(ACTION_LABELS.get(action, action))


@bp.app_template_filter("role_label")
def role_label(role: str) -> str:
    return str(ROLE_LABELS.get(role, role))


# --- Provider settings ----------------------------------------------------------------------------------------------


def current_merchant() -> Merchant:
    return db.session.get(Merchant, current_user.merchant_id)


def save_provider_settings(merchant: Merchant, form: ProviderSettingsForm) -> list[str]:
    """Apply the form to the merchant; returns the names of the settings that changed (never their values)."""
    changed = []
    for name in PROVIDER_ID_FIELDS:
        value = form[name].data or None
        if value != getattr(merchant, name):
            setattr(merchant, name, value)
            changed.append(name)
    for name in PROVIDER_SECRET_FIELDS:
        column = f"{name}_enc"
        stored = getattr(merchant, column)
        if form[f"clear_{name}"].data:
            if stored is not None:
                setattr(merchant, column, None)
                changed.append(name)
        elif form[name].data and not _same_secret(stored, form[name].data):
            setattr(merchant, column, encrypt_secret(form[name].data))
            changed.append(name)
    return changed


def _same_secret(stored: str | None, plaintext: str) -> bool:
    """Whether the stored (encrypted) secret is this plaintext; an unreadable one never is."""
    try:
        current = decrypt_secret(stored)
    except ValueError:
        return False
    return current is not None and hmac.compare_digest(current.encode(), plaintext.encode())


def callback_urls() -> dict[str, str]:
    """The addresses each merchant registers at Oen (CRM) and MyPay (admin); O'Pay is told per request."""
    base = current_app.config["PORTAL_BASE_URL"].rstrip("/")
    return {provider: f"{base}/webhooks/{provider}" for provider in ("oen", "mypay", "opay")}


@bp.route("/settings", methods=["GET", "POST"])
@admin_required
def index():
    """The merchant's provider settings; secrets are shown only as set or not set."""
    merchant = current_merchant()
    form = ProviderSettingsForm(obj=merchant, merchant_id=merchant.id)
    if form.validate_on_submit():
        changed = save_provider_settings(merchant, form)
        if changed:
            audit("settings_changed", fields=changed)
            db.session.commit()
            flash(_("Provider settings saved."), "success")
        else:
            flash(_("Nothing was changed."), "info")
        return redirect(url_for("settings.index"), code=303)
    status = 400 if form.errors else 200
    secrets_set = {name: getattr(merchant, f"{name}_enc") is not None for name in PROVIDER_SECRET_FIELDS}
    return (
        render_template(
            "settings/index.html",
            form=form,
            merchant=merchant,
            secrets_set=secrets_set,
            callback_urls=callback_urls(),
        ),
        status,
    )


# --- Users ----------------------------------------------------------------------------------------------------------


def get_user(user_id: int) -> User:
    """A user of the admin's own merchant, or 404."""
    user = db.session.get(User, user_id)
    if user is None or user.merchant_id != current_user.merchant_id:
        abort(404)
    return user


def render_users(create_form: UserCreateForm | None = None, failed: tuple[int, UserRoleForm] | None = None):
    """The users page; a refused form comes back with its messages (status 400)."""
    users = (
        db.session.execute(db.select(User).filter_by(merchant_id=current_user.merchant_id).order_by(User.email))
        .scalars()
        .all()
    )
    role_forms = {user.id: UserRoleForm(formdata=None, data={"role": user.role}) for user in users}
    if failed:
        role_forms[failed[0]] = failed[1]
    refused = bool(failed) or bool(create_form and create_form.errors)
    return (
        render_template(
            "settings/users.html",
            users=users,
            role_forms=role_forms,
            create_form=create_form or UserCreateForm(formdata=None),
            status_form=UserStatusForm(formdata=None),
        ),
        400 if refused else 200,
    )


@bp.route("/settings/users", methods=["GET", "POST"])
@admin_required
def users():
    """The merchant's users; POST creates one."""
    if request.method == "GET":
        return render_users()
    form = UserCreateForm()
    if not form.validate_on_submit():
        return render_users(create_form=form)
    try:
        user = create_user(form.email.data, current_merchant(), form.role.data, form.password.data)
        db.session.flush()
    except ValueError:
        # Another admin took the address between the check and now.
        db.session.rollback()
        form.email.errors = [*form.email.errors, _("This e-mail address is already in use.")]
        return render_users(create_form=form)
    audit("user_created", target_user_id=user.id, email=user.email, role=user.role)
    db.session.commit()
    flash(_("User %(email)s created.", email=user.email), "success")
    return redirect(url_for("settings.users"), code=303)


@bp.post("/settings/users/<int:user_id>/role")
@admin_required
def user_role(user_id: int):
    """Change a user's role; an admin cannot demote themself."""
    user = get_user(user_id)
    form = UserRoleForm()
    if not form.validate_on_submit():
        return render_users(failed=(user.id, form))
    if user.id == current_user.id and form.role.data != "admin":
        form.role.errors = [*form.role.errors, _("You cannot take away your own admin role.")]
        return render_users(failed=(user.id, form))
    if form.role.data != user.role:
        audit("user_changed", target_user_id=user.id, email=user.email, role_from=user.role, role_to=form.role.data)
        user.role = form.role.data
        db.session.commit()
        flash(_("%(email)s is now %(role)s.", email=user.email, role=role_label(user.role)), "success")
    return redirect(url_for("settings.users"), code=303)


@bp.post("/settings/users/<int:user_id>/deactivate")
@admin_required
def user_deactivate(user_id: int):
    """Deactivate a user and end all of their logins at once; an admin cannot deactivate themself."""
    return _set_active(get_user(user_id), active=False)


@bp.post("/settings/users/<int:user_id>/reactivate")
@admin_required
def user_reactivate(user_id: int):
    """Let a deactivated user log in again."""
    return _set_active(get_user(user_id), active=True)


def _set_active(user: User, *, active: bool):
    if not UserStatusForm().validate_on_submit():
        abort(400)
    if user.id == current_user.id and not active:
        flash(_("You cannot deactivate your own account."), "error")
        return redirect(url_for("settings.users"), code=303)
    if user.active != active:
        user.active = active
        if not active:
            db.session.execute(db.delete(UserSession).where(UserSession.user_id == user.id))
        audit(
            "user_changed",
            target_user_id=user.id,
            email=user.email,
            change="reactivated" if active else "deactivated",
        )
        db.session.commit()
    if active:
        flash(_("%(email)s can log in again.", email=user.email), "success")
    else:
        flash(_("%(email)s is deactivated and logged out.", email=user.email), "success")
    return redirect(url_for("settings.users"), code=303)


# --- The audit trail (read only: there is deliberately no route that edits or deletes an entry) ----------------------


def setting_label(name: str) -> str:
    """A provider setting's name (settings_changed lists them) as its form field is labelled."""
    field = getattr(ProviderSettingsForm, name, None)
    args = getattr(field, "args", None)
    return str(args[0]) if args else name


def _detail_value(action: str, key: str, value) -> str | None:
    """A detail value that is a code, as a person reads it; None when the value is shown as stored."""
    if isinstance(value, bool):
        return _("Yes") if value else _("No")
    if key in ("role", "role_from", "role_to"):
        return role_label(str(value))
    if key == "provider":
        return provider_label(str(value))
    if key == "change":
        return str(USER_CHANGE_LABELS.get(value, value))
    if key == "fields" and isinstance(value, list | tuple):
        return ", ".join(setting_label(str(v)) for v in value)
    if key == "invoice_state":
        return str(INVOICE_REFUND_LABELS.get(str(value), value))
    if key == "state" and action.startswith("refund"):
        return refund_state_label(str(value))
    if key == "reason" and action == "callback_refused" and isinstance(value, str):
        return callback_error_text(value)
    return None


def describe(detail: dict | None, action: str = "") -> list[tuple[str, str]]:
    """An audit entry's detail as (label, text) pairs in the reader's language, with anything card-like masked.

    The names are translated; values that are codes (roles, providers, states) show as labels, anything else as
    stored.
    """
    pairs = []
    for key, value in (detail or {}).items():
        text = _detail_value(action, str(key), value)
        if text is None:
            text = _stored_text(value)
        pairs.append((str(DETAIL_LABELS.get(str(key), key)), mask_cards(text)))
    return pairs


def _stored_text(value) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return "" if value is None else str(value)


@bp.get("/settings/audit", endpoint="audit")
@admin_required
def audit_log():
    """The merchant's audit entries, newest first, 100 a page, filtered by action."""
    action = (request.args.get("action") or "").strip()[:40]
    page_number = min(max(request.args.get("page", 1, type=int), 1), MAX_PAGE)
    stmt = db.select(AuditEvent).where(AuditEvent.merchant_id == current_user.merchant_id)
    if action:
        stmt = stmt.where(AuditEvent.action == action)
    stmt = stmt.options(selectinload(AuditEvent.user)).order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc())
    page = db.paginate(stmt, page=page_number, per_page=AUDIT_PAGE_SIZE, error_out=False)
    actions = db.session.execute(
        db.select(AuditEvent.action)
        .where(AuditEvent.merchant_id == current_user.merchant_id)
        .distinct()
        .order_by(AuditEvent.action)
    ).scalars()
    return render_template("settings/audit.html", page=page, action=action, actions=list(actions), describe=describe)
