"""What the providers say now: an order's transactions and the merchant's overview (portal.overview asks them)."""

from __future__ import annotations

import functools

from flask import Blueprint, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required

from portal.labels import PROVIDER_NAMES, state_label
from portal.orders import get_attempt, get_order
from portal.overview import CACHE_TTL_S, OVERVIEW_DEADLINE_S, apply_provider_state, order_rows, overview_rows
from portal.security import admin_required

bp = Blueprint("transactions", __name__)


@bp.get("/orders/<int:order_id>/transactions")
@login_required
def order(order_id: int):
    """What each provider says now about the order's payment attempts."""
    order = get_order(order_id)
    return render_template("transactions/order.html", order=order, rows=order_rows(order))


@bp.post("/orders/<int:order_id>/transactions/<int:checkout_id>/apply")
@admin_required
def apply(order_id: int, checkout_id: int):
    """Apply what the provider says to the portal's record, through the same function as callbacks."""
    checkout = get_attempt(order_id, checkout_id)
    changed, error = apply_provider_state(checkout.order, checkout)
    if error:
        flash(error, "error")
    elif changed:
        flash(_("The provider's state was applied."), "success")
    else:
        flash(_("Nothing changed: the portal's record already follows what the provider says."), "info")
    return redirect(url_for("transactions.order", order_id=order_id))


@bp.get("/transactions")
@login_required
def overview():
    """The merchant's latest checkouts with their live state at the provider."""
    return render_template(
        "transactions/overview.html",
        rows=overview_rows(current_user.merchant_id),
        ttl=int(CACHE_TTL_S),
        deadline=OVERVIEW_DEADLINE_S,
        # Fifty rows name a few states and three providers: each name translated once for the page, not once a row.
        state_label=functools.cache(state_label),
        provider_names={name: str(label) for name, label in PROVIDER_NAMES.items()},
    )
