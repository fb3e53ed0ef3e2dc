"""Log in and log out."""

from __future__ import annotations

import time

from flask import Blueprint, flash, g, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_limiter.util import get_remote_address
from flask_login import current_user, login_required, login_user, logout_user

from portal import two_factor
from portal.accounts import change_password
from portal.auth_session import end_session, start_session
from portal.extensions import db, limiter
from portal.forms import LoginForm, PasswordChangeForm, TwoFactorCodeForm, TwoFactorOffForm
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
            fresh_session()
            next_url = safe_next(request.args.get("next")) or url_for("orders.index")
            if user.two_factor_enabled:
                # The password was right; the login starts only after the second factor.
                session[PENDING] = {"user": user.id, "at": int(time.time()), "next": next_url}
                return redirect(url_for("auth.login_code"))
            return finish_login(user, next_url)
        g.login_failed = True
        audit("login_failed", merchant_id=user.merchant_id if user else None, email=email)
        db.session.commit()
        form.password.errors.append(_("The e-mail or password is not right."))
    return render_template("auth/login.html", form=form)


PENDING = "two_factor_pending"
PENDING_MAX_S = 300


def fresh_session() -> None:
    """A fresh session: nothing from before the login survives (the chosen language does)."""
    lang = session.get("lang")
    session.clear()
    if lang:
        session["lang"] = lang


def finish_login(user: User, next_url: str, **detail):
    login_user(start_session(user))
    audit("login", merchant_id=user.merchant_id, user_id=user.id, **detail)
    db.session.commit()
    return redirect(next_url)


def _pending_user() -> User | None:
    """The user who gave the right password and still owes the second factor, for five minutes at most."""
    pending = session.get(PENDING)
    if not isinstance(pending, dict) or time.time() - int(pending.get("at", 0)) > PENDING_MAX_S:
        return None
    user = db.session.get(User, pending.get("user"))
    return user if user is not None and user.active and user.two_factor_enabled else None


def _pending_key() -> str:
    pending = session.get(PENDING)
    return f"login-code:{pending.get('user') if isinstance(pending, dict) else ''}"


@bp.route("/login/code", methods=["GET", "POST"])
@limiter.limit(
    "5 per minute;10 per 15 minutes", key_func=_pending_key, methods=["POST"], deduct_when=lambda r: _failed()
)
def login_code():
    """The second step of a login with two-factor sign-in: a code from the app, or a recovery code."""
    user = _pending_user()
    if user is None:
        session.pop(PENDING, None)
        flash(_("Please log in again."), "info")
        return redirect(url_for("auth.login"))
    form = TwoFactorCodeForm()
    if form.validate_on_submit():
        used = two_factor.verify(user, form.code.data)
        if used:
            next_url = session[PENDING]["next"]
            fresh_session()
            audit("two_factor_used", merchant_id=user.merchant_id, user_id=user.id, method=used)
            return finish_login(user, next_url)
        g.login_failed = True
        audit("two_factor_failed", merchant_id=user.merchant_id, user_id=user.id)
        db.session.commit()
        form.code.errors.append(_("This code is not right, or was used already."))
    return render_template("auth/login_code.html", form=form), 400 if form.errors else 200


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


@bp.route("/account/two-factor", methods=["GET", "POST"])
@login_required
def two_factor_setup():
    """Turn two-factor sign-in on: scan the QR code, type the app's code; the recovery codes are shown once."""
    user = db.session.get(User, current_user.id)
    form = TwoFactorCodeForm()
    if user.two_factor_enabled:
        return render_template(
            "auth/two_factor.html", user=user, off_form=TwoFactorOffForm(), left=two_factor.recovery_codes_left(user)
        )
    if request.method == "GET" or two_factor.enrolment_uri(user) is None:
        uri = two_factor.start_enrolment(user)
        db.session.commit()
    else:
        uri = two_factor.enrolment_uri(user)
        if form.validate_on_submit():
            codes = two_factor.confirm_enrolment(user, form.code.data)
            if codes:
                audit("two_factor_enabled")
                db.session.commit()
                return render_template("auth/recovery_codes.html", codes=codes)
            form.code.errors.append(_("This code is not right. Type the code the app shows now."))
    return render_template(
        "auth/two_factor.html", user=user, form=form, qr=two_factor.qr_svg(uri), secret=_secret_text(uri)
    ), 400 if form.errors else 200


@bp.post("/account/two-factor/off")
@login_required
def two_factor_off():
    """Turn one's own two-factor sign-in off, with the password."""
    user = db.session.get(User, current_user.id)
    form = TwoFactorOffForm()
    if form.validate_on_submit() and verify_password(user.password_hash, form.password.data):
        two_factor.turn_off(user)
        audit("two_factor_disabled")
        db.session.commit()
        flash(_("Two-factor sign-in is off."), "success")
    else:
        flash(_("This is not your current password."), "error")
    return redirect(url_for("auth.two_factor_setup"), code=303)


def _secret_text(uri: str) -> str:
    """The secret in groups of four, for typing into an app that cannot scan."""
    from urllib.parse import parse_qs, urlsplit

    secret = parse_qs(urlsplit(uri).query).get("secret", [""])[0]
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))
