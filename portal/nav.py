"""The top navigation: each entry shown once its endpoint exists."""

from flask import current_app
from flask_babel import lazy_gettext as _l

# (endpoint, label, admins only)
NAV = (
    ("dashboard.index", _l("Dashboard"), False),
    ("orders.new", _l("New order"), False),
    ("transactions.overview", _l("Transactions"), False),
    ("webhooks.callbacks", _l("Callbacks"), True),
    ("settings.index", _l("Settings"), True),
    ("settings.audit", _l("Audit"), True),
)


def nav_links():
    """The entries whose endpoints are registered."""
    return [entry for entry in NAV if entry[0] in current_app.view_functions]
