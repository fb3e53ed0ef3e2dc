"""Settings → API keys (admins): create a key (shown once, on the page that answers the form), list, revoke."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy.exc import IntegrityError
from wtforms import BooleanField, StringField

from portal import api_keys
from portal.extensions import db
from portal.forms import PlainText, PortalForm, Required
from portal.forms.base import SentOnce, _strip
from portal.models import Merchant
from portal.security import admin_required

bp = Blueprint("api_keys", __name__)


class ApiKeyForm(SentOnce, PortalForm):
    name = StringField(
        _l("Name"),
        filters=[_strip],
        validators=[Required(_l("Please name the key (e.g. the system that uses it).")), PlainText(100)],
        description=_l("Where the key is used, e.g. “online shop” or “ERP”."),
    )
    can_refund = BooleanField(_l("May make refunds"))


SENT_AGAIN = _l(
    "This form was sent already: its key was made then and shown once. If you did not copy it, revoke it below and "
    "create another."
)


class RevokeForm(PortalForm):
    """CSRF only."""


def render_page(form: ApiKeyForm, *, new_key: str | None = None, status: int = 200):
    return (
        render_template(
            "settings/api_keys.html",
            form=form,
            revoke_form=RevokeForm(),
            keys=api_keys.merchant_keys(current_user.merchant_id),
            new_key=new_key,
        ),
        status,
    )


@bp.get("/settings/api-keys")
@admin_required
def index():
    return render_page(ApiKeyForm(formdata=None))


@bp.post("/settings/api-keys")
@admin_required
def create():
    form = ApiKeyForm()
    if not form.validate_on_submit():
        return render_page(form, status=400)
    merchant = db.session.get(Merchant, current_user.merchant_id)
    try:
        made = api_keys.create_key(
            merchant,
            form.name.data,
            can_refund=bool(form.can_refund.data),
            user_id=current_user.id,
            form_token=form.form_token.data,
        )
    except IntegrityError:  # this very form was sent before (a reload of the page that showed the key)
        db.session.rollback()
        flash(SENT_AGAIN, "warning")
        return redirect(url_for("api_keys.index"))
    # The key is on this answer only (no-store, like every page here); the list shows its prefix from now on.
    return render_page(ApiKeyForm(formdata=None), new_key=made.secret, status=201)


@bp.post("/settings/api-keys/<int:key_id>/revoke")
@admin_required
def revoke(key_id: int):
    if not RevokeForm().validate_on_submit():
        abort(400)
    key = api_keys.revoke_key(current_user.merchant_id, key_id, user_id=current_user.id)
    if key is None:
        abort(404)
    flash(_("The API key “%(name)s” is revoked: requests with it are refused from now on.", name=key.name), "success")
    return redirect(url_for("api_keys.index"))
