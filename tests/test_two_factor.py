"""Two-factor sign-in (issue 12, item 15): enrolment by QR code, codes once, recovery codes, required of admins."""

from __future__ import annotations

import re
import time

import pyotp

from portal.extensions import db
from portal.models import AuditEvent, Merchant, User
from tests.support.constants import PASSWORD

KEY_RE = re.compile(r"data-two-factor-key>([A-Z2-7 ]+)<")


def user_row(app, email="admin@a.example") -> User:
    with app.app_context():
        user = db.session.execute(db.select(User).filter_by(email=email)).scalar_one()
        db.session.expunge(user)
        return user


def enrol(client) -> tuple[pyotp.TOTP, list[str]]:
    """Turn two-factor sign-in on as the logged-in user; returns the app's TOTP and the recovery codes."""
    page = client.get("/account/two-factor").get_data(as_text=True)
    assert "<svg" in page  # the QR code, made on the server
    totp = pyotp.TOTP(KEY_RE.search(page).group(1).replace(" ", ""))
    done = client.post("/account/two-factor", data={"code": totp.now()})
    assert done.status_code == 200
    codes = re.findall(r"<code>([A-Z2-9]{5}-[A-Z2-9]{5})</code>", done.get_data(as_text=True))
    assert len(codes) == 10
    return totp, codes


def audit_actions(app) -> list[str]:
    with app.app_context():
        return list(db.session.execute(db.select(AuditEvent.action).order_by(AuditEvent.id)).scalars())


def test_enrolment_then_login_needs_the_code_and_each_code_works_once(app, seed, client, auth):
    auth.login()
    totp, _codes = enrol(client)
    user = user_row(app)
    assert user.two_factor_enabled and user.totp_secret_enc and totp.secret not in user.totp_secret_enc
    client.post("/logout")
    first = auth.login()
    assert first.status_code == 302 and first.headers["Location"].endswith("/login/code")
    assert client.get("/orders").status_code == 302  # the password alone logs nobody in
    wrong = client.post("/login/code", data={"code": "000000" if totp.now() != "000000" else "111111"})
    assert wrong.status_code == 400 and "not right" in wrong.get_data(as_text=True)
    code = totp.at(time.time() + 30)  # the next step's code (the step after the enrolment's)
    ok = client.post("/login/code", data={"code": code})
    assert ok.status_code == 302 and ok.headers["Location"].endswith("/orders")
    assert client.get("/orders").status_code == 200
    # the same code again, in another login: refused (replay)
    client.post("/logout")
    auth.login()
    assert client.post("/login/code", data={"code": code}).status_code == 400
    assert "two_factor_enabled" in audit_actions(app) and "two_factor_used" in audit_actions(app)


def test_a_recovery_code_logs_in_once(app, seed, client, auth):
    auth.login()
    _totp, codes = enrol(client)
    client.post("/logout")
    auth.login()
    assert client.post("/login/code", data={"code": codes[0].lower()}).status_code == 302
    client.post("/logout")
    auth.login()
    assert client.post("/login/code", data={"code": codes[0]}).status_code == 400
    assert client.post("/login/code", data={"code": codes[1]}).status_code == 302


def test_the_second_step_expires_and_cannot_be_reached_without_the_password(app, seed, client, auth):
    assert client.get("/login/code").status_code == 302
    auth.login()
    totp, _ = enrol(client)
    client.post("/logout")
    auth.login()
    with client.session_transaction() as session:
        pending = dict(session["two_factor_pending"])
        pending["at"] -= 600  # five minutes have passed, and more
        session["two_factor_pending"] = pending
    response = client.post("/login/code", data={"code": totp.at(time.time() + 30)})
    assert response.status_code == 302 and response.headers["Location"].endswith("/login")


def test_turning_it_off_needs_the_password(app, seed, client, auth):
    auth.login()
    enrol(client)
    client.post("/account/two-factor/off", data={"password": "not-the-password"})
    assert user_row(app).two_factor_enabled
    client.post("/account/two-factor/off", data={"password": PASSWORD})
    assert not user_row(app).two_factor_enabled
    assert "two_factor_disabled" in audit_actions(app)


def test_a_merchant_can_require_it_of_admins_before_refunds_and_settings(app, seed, client, auth):
    auth.login()
    refused = client.post("/settings/two-factor-requirement", data={"required": "1"})
    assert refused.headers["Location"].endswith("/account/two-factor")  # yourself first
    enrol(client)
    client.post("/settings/two-factor-requirement", data={"required": "1"})
    with app.app_context():
        assert db.session.get(Merchant, seed.merchant_id).require_admin_two_factor
    assert client.get("/settings").status_code == 200  # this admin has it on
    other_admin = app.test_client()
    with app.app_context():
        db.session.execute(db.update(User).where(User.email == "staff@a.example").values(role="admin"))
        db.session.commit()
    other_admin.post("/login", data={"email": "staff@a.example", "password": PASSWORD})
    for path in ("/settings", "/settings/users", "/orders/1/refunds"):
        response = other_admin.get(path)
        assert response.status_code == 302 and response.headers["Location"].endswith("/account/two-factor"), path
    assert other_admin.get("/orders").status_code == 200  # the rest of the portal works as before
    assert "two_factor_requirement_changed" in audit_actions(app)


def test_an_admin_resets_a_users_two_factor_and_it_is_audited(app, seed, client, auth):
    staff = app.test_client()
    staff.post("/login", data={"email": "staff@a.example", "password": PASSWORD})
    enrol(staff)
    auth.login()
    staff_id = user_row(app, "staff@a.example").id
    assert "Reset two-factor sign-in" in client.get("/settings/users").get_data(as_text=True)
    client.post(f"/settings/users/{staff_id}/reset-two-factor")
    assert not user_row(app, "staff@a.example").two_factor_enabled
    assert "two_factor_reset" in audit_actions(app)
