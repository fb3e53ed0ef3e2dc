"""The dashboard: the shop's takings today and over recent days (staff and admins; the user's merchant only)."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask_login import current_user, login_required

from portal.dashboard import PERIODS, build
from portal.labels import PROVIDER_NAMES

bp = Blueprint("dashboard", __name__)


@bp.get("/dashboard")
@login_required
def index():
    """Takings (paid less refunds and provider fees) by Taipei day, per provider, with a chart; open links."""
    board = build(current_user.merchant_id)
    return render_template(
        "dashboard/index.html", board=board, periods=[key for key, _n in PERIODS], provider_names=PROVIDER_NAMES
    )
