"""Provider callbacks (no CSRF; verified by the provider layer)."""

from flask import Blueprint

bp = Blueprint("webhooks", __name__)
