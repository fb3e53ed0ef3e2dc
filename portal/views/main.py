"""Home, health check and the language switch."""

from flask import Blueprint, redirect, request, session, url_for
from flask_login import current_user
from sqlalchemy import text

from portal.extensions import db
from portal.urls import safe_next

bp = Blueprint("main", __name__)


@bp.get("/")
def index():
    """Logged-in users go to their orders; others to the login page."""
    if current_user.is_authenticated:
        return redirect(url_for("orders.index"))
    return redirect(url_for("auth.login"))


@bp.get("/favicon.ico")
def favicon():
    """Browsers ask for /favicon.ico on their own (a provider's page the portal relays names no icon): the portal's."""
    return redirect(url_for("static", filename="favicon.svg"), code=301)


@bp.get("/healthz")
def healthz():
    """`ok` when the database answers."""
    try:
        db.session.execute(text("SELECT 1"))
    except Exception:  # any database failure means "not healthy"
        db.session.rollback()
        return "database unavailable", 503, {"Content-Type": "text/plain; charset=utf-8"}
    return "ok", 200, {"Content-Type": "text/plain; charset=utf-8"}


@bp.get("/lang/<code>")
def set_language(code: str):
    """Remember the chosen interface language and go back where the user was."""
    from portal import LOCALES

    if code in LOCALES:
        session["lang"] = code
    return redirect(safe_next(request.args.get("next")) or url_for("main.index"))
