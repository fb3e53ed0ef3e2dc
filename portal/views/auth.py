"""Log in and log out."""

from __future__ import annotations

from flask import Blueprint, flash, g, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_limiter.util import get_remote_address
from flask_login import current_user, login_required, login_user, logout_user

from portal.accounts import change_password
from portal.auth_session import end_session, start_session
from portal.extensions import db, limiter
from portal.forms import LoginForm, PasswordChangeForm
from portal.models import User
from portal.security import audit, verify_password, verify_password_or_dummy
from portal.urls import safe_next

bp = Blueprint("auth", __name__)


def _login_email() -> str:
    """The e-mail typed, normalised."""
    return (request.form.get("email") or "").strip().lower()


def _account_and_address() -> str:
    """Failed logins of one account from one address: what slows a guesser down without locking the user out."""
    return f"login:{_login_email()}:{get_remote_address()}"


def _account() -> str:
    """Failed logins of one account from anywhere: a generous cap on guessing spread over many addresses."""
    return f"login-account:{_login_email()}"


def _failed() -> bool:
    return bool(g.get("login_failed"))


@bp.route("/login", methods=["GET", "POST"])
# Failed logins only. Per account and address the waits grow (5 a minute, 10 in 15 minutes, 20 a day): a guesser is
# slowed down, while the user, from any other address, still logs in. Per address: one machine trying many accounts.
# Per account from everywhere: a high cap, so guessing spread over many addresses is bounded too.
@limiter.limit(
    "5 per minute;10 per 15 minutes;20 per day",
    key_func=_account_and_address,
    methods=["POST"],
    deduct_when=lambda r: _failed(),
)
@limiter.limit("30 per 15 minutes", methods=["POST"], deduct_when=lambda r: _failed())
@limiter.limit("200 per day", key_func=_account, methods=["POST"], deduct_when=lambda r: _failed())
def login():
    """The login form; the same answer whether or not the account exists."""
    if current_user.is_authenticated:
        return redirect(url_for("orders.index"))
    form = LoginForm()
    if form.validate_on_submit():
        email = form.email.data.strip().lower()
        user = db.session.execute(db.select(User).filter_by(email=email)).scalar_one_or_none()
        ok = verify_password_or_dummy(user.password_hash if user else None, form.password.data)
        if ok and user.active:
            lang = session.get("lang")
            session.clear()  # a fresh session: nothing from before the login survives
            if lang:
                session["lang"] = lang
            login_user(start_session(user))
            audit("login", merchant_id=user.merchant_id, user_id=user.id)
            db.session.commit()
            return redirect(safe_next(request.args.get("next")) or url_for("orders.index"))
        g.login_failed = True
        audit("login_failed", merchant_id=user.merchant_id if user else None, email=email)
        db.session.commit()
        form.password.errors.append(_("The e-mail or password is not right."))
    return render_template("auth/login.html", form=form)


@bp.post("/logout")
def logout():
    """End the login on the server and in the browser."""
    if current_user.is_authenticated:
        audit("logout")
        end_session(current_user.get_id())
        logout_user()
    lang = session.get("lang")
    session.clear()
    if lang:
        session["lang"] = lang
    flash(_("You have logged out."), "info")
    return redirect(url_for("auth.login"))


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
@limiter.limit("10 per 15 minutes", methods=["POST"], deduct_when=lambda r: _failed())
def password():
    """Change one's own password; every other login of the user ends."""
    user = db.session.get(User, current_user.id)
    form = PasswordChangeForm(user_inputs=(user.email, user.merchant.name or ""))
    if form.validate_on_submit():
        if verify_password(user.password_hash, form.current_password.data):
            change_password(user, form.new_password.data, keep_session_id=current_user.get_id())
            audit("password_changed")
            db.session.commit()
            flash(_("Your password is changed. Your other logins have ended."), "success")
            return redirect(url_for("auth.password"), code=303)
        g.login_failed = True
        form.current_password.errors.append(_("This is not your current password."))
    return render_template("auth/password.html", form=form), 400 if form.errors else 200
