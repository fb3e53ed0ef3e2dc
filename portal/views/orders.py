"""Orders: list, detail and the order builder."""

from flask import Blueprint
from flask_login import login_required

bp = Blueprint("orders", __name__)


@bp.get("/orders")
@login_required
def index():
    """Placeholder until the order list lands."""
    return "orders"
