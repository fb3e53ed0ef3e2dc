"""Customer checkout links (no login)."""

from flask import Blueprint

bp = Blueprint("checkout", __name__)
