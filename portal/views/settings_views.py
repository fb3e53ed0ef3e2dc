"""Merchant settings, users and the audit trail (admins only, always the admin's own merchant)."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy.orm import selectinload

from portal import two_factor
from portal.accounts import (
    PROVIDER_SECRET_FIELDS,
    callback_urls,
    create_user,
    save_provider_settings,
    set_active,
    set_role,
)
from portal.extensions import db
from portal.forms import ProviderSettingsForm, UserCreateForm, UserRoleForm, UserStatusForm
from portal.labels import audit_references, describe, role_label
from portal.models import AuditEvent, Merchant, User
from portal.security import admin_required, audit

bp = Blueprint("settings", __name__)

AUDIT_PAGE_SIZE = 100
MAX_PAGE = 100_000

# --- Provider settings ----------------------------------------------------------------------------------------------


def current_merchant() -> Merchant:
    return db.session.get(Merchant, current_user.merchant_id)


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
            flash(_("Settings saved."), "success")
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


@bp.post("/settings/two-factor-requirement")
@admin_required
def two_factor_requirement():
    """Require two-factor sign-in of the merchant's admins, or stop requiring it."""
    if not UserStatusForm().validate_on_submit():
        abort(400)
    merchant = current_merchant()
    required = request.form.get("required") == "1"
    if required and not current_user.two_factor_enabled:
        flash(_("Turn on two-factor sign-in for yourself first."), "error")
        return redirect(url_for("auth.two_factor_setup"), code=303)
    if merchant.require_admin_two_factor != required:
        merchant.require_admin_two_factor = required
        audit("two_factor_requirement_changed", required=required)
        db.session.commit()
    flash(_("Admins must now use two-factor sign-in.") if required else _("Two-factor sign-in is optional."), "success")
    return redirect(url_for("settings.index"), code=303)


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
    role_from = user.role
    if set_role(user, form.role.data):
        audit("user_changed", target_user_id=user.id, email=user.email, role_from=role_from, role_to=user.role)
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


@bp.post("/settings/users/<int:user_id>/reset-two-factor")
@admin_required
def user_reset_two_factor(user_id: int):
    """Turn a user's two-factor sign-in off (a lost phone, no recovery code left); they can turn it on again."""
    user = get_user(user_id)
    if not UserStatusForm().validate_on_submit():
        abort(400)
    if user.two_factor_enabled:
        two_factor.turn_off(user)
        audit("two_factor_reset", target_user_id=user.id, email=user.email)
        db.session.commit()
        flash(_("Two-factor sign-in of %(email)s is reset.", email=user.email), "success")
    return redirect(url_for("settings.users"), code=303)


def _set_active(user: User, *, active: bool):
    if not UserStatusForm().validate_on_submit():
        abort(400)
    if user.id == current_user.id and not active:
        flash(_("You cannot deactivate your own account."), "error")
        return redirect(url_for("settings.users"), code=303)
    if set_active(user, active):
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
    references = audit_references(page.items, current_user.merchant_id)
    return render_template(
        "settings/audit.html", page=page, action=action, actions=list(actions), describe=describe, references=references
    )
