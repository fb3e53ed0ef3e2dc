"""Logging in and out, the limit on failed logins, roles and CSRF."""

from __future__ import annotations

import re

import pytest
from werkzeug.security import check_password_hash

from portal.extensions import db
from portal.models import AuditEvent, User, UserSession
from tests.support.apps import browser_default_client, seed_merchants
from tests.support.constants import PASSWORD


def test_login_right_goes_to_orders(client, auth):
    response = auth.login()
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/orders")
    assert client.get("/orders").status_code == 200


@pytest.mark.parametrize("email", ["admin@a.example", "nobody@a.example"])
def test_login_wrong_answers_the_same_whether_or_not_the_account_exists(client, auth, email):
    response = auth.login(email=email, password="wrong-password")
    assert response.status_code == 200
    assert "The e-mail or password is not right." in response.get_data(as_text=True) or "不正確" in response.get_data(
        as_text=True
    )
    assert client.get("/orders").status_code == 302  # still not logged in


def test_wrong_login_pages_are_identical_for_known_and_unknown_accounts(client, auth):
    known = auth.login(email="admin@a.example", password="nope-nope").get_data(as_text=True)
    unknown = auth.login(email="ghost@a.example", password="nope-nope").get_data(as_text=True)
    strip = lambda html: re.sub(r'value="[^"]*"', "", html)  # noqa: E731  (the typed e-mail is echoed back)
    assert strip(known) == strip(unknown)


def test_failed_logins_are_limited_per_account_and_address(client, auth):
    for _ in range(5):
        assert auth.login(password="wrong-password").status_code == 200
    # the 6th attempt within a minute from that address is refused, even with the right password (the user, from
    # any other address, is not: tests/test_hardening.py)
    assert auth.login().status_code == 429
    # another account from the same address is not locked by this one
    assert auth.login(email="staff@a.example").status_code == 302


def test_successful_logins_do_not_count_towards_the_limit(client, auth):
    for _ in range(12):
        assert auth.login().status_code == 302
        auth.logout()


def test_failed_logins_are_limited_per_address(client, seed):
    for i in range(30):
        client.post("/login", data={"email": f"user{i}@x.example", "password": "wrong"})
    assert client.post("/login", data={"email": "admin@a.example", "password": PASSWORD}).status_code == 429


def test_old_cookie_is_refused_after_logout(app, client, auth):
    auth.login()
    stolen = client.get_cookie("session").value
    assert client.get("/orders").status_code == 200
    auth.logout()
    with app.app_context():
        assert db.session.query(UserSession).count() == 0
    other = app.test_client()
    other.set_cookie("session", stolen)
    response = other.get("/orders")
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


def test_login_starts_a_fresh_session(client, auth):
    with client.session_transaction() as s:
        s["planted"] = "by-an-attacker"
    auth.login()
    with client.session_transaction() as s:
        assert "planted" not in s


@pytest.mark.parametrize(
    "target,expected",
    [
        ("/orders?state=paid", "/orders?state=paid"),
        ("https://evil.example/", "/orders"),
        ("//evil.example/", "/orders"),
        ("/\\evil.example", "/orders"),
        ("javascript:alert(1)", "/orders"),
    ],
)
def test_next_only_leads_to_this_site(client, auth, target, expected):
    response = auth.login(query_string={"next": target})
    assert response.headers["Location"] == expected


def test_logins_and_failures_are_audited(app, client, auth):
    auth.login(password="wrong-password")
    auth.login()
    with app.app_context():
        actions = [e.action for e in db.session.query(AuditEvent).order_by(AuditEvent.id)]
    assert actions == ["login_failed", "login"]


def test_passwords_are_hashed_with_scrypt_n_at_least_2_16(tmp_path):
    from tests.support.apps import make_app

    app = make_app(tmp_path, PASSWORD_HASH_METHOD=None)
    app.config.pop("PASSWORD_HASH_METHOD")
    seed_merchants(app)
    with app.app_context():
        user = db.session.execute(db.select(User).filter_by(email="admin@a.example")).scalar_one()
        method, n = user.password_hash.split("$")[0].split(":")[:2]
        assert method == "scrypt" and int(n) >= 2**16
        assert check_password_hash(user.password_hash, PASSWORD)


def test_anonymous_is_sent_to_login(client, seed):
    response = client.get("/orders")
    assert response.status_code == 302
    assert "/login?next=%2Forders" in response.headers["Location"]


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.data == b"ok"


def test_language_switch_is_remembered(app, seed):
    client = browser_default_client(app)
    assert "登入" in client.get("/login").get_data(as_text=True)
    client.get("/lang/en")
    assert "Log in" in client.get("/login").get_data(as_text=True)
    client.get("/lang/zh_TW")
    assert "登入" in client.get("/login").get_data(as_text=True)


def test_english_browser_gets_english(client, seed):
    page = client.get("/login", headers={"Accept-Language": "en-US,en;q=0.9"}).get_data(as_text=True)
    assert "Log in" in page


class TestCsrf:
    """With CSRF protection on, every form POST without a token is refused and nothing changes."""

    def test_login_without_token_is_refused(self, csrf_app):
        seed_merchants(csrf_app)
        client = csrf_app.test_client()
        response = client.post("/login", data={"email": "admin@a.example", "password": PASSWORD})
        assert response.status_code == 400
        assert client.get("/orders").status_code == 302

    def test_every_form_post_without_token_is_refused(self, csrf_app):
        seed_merchants(csrf_app)
        client = csrf_app.test_client()
        page = client.get("/login").get_data(as_text=True)
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
        response = client.post("/login", data={"email": "admin@a.example", "password": PASSWORD, "csrf_token": token})
        assert response.status_code == 302
        exempt = {"webhooks."}  # provider callbacks carry no CSRF token; they are verified instead
        checked = 0
        for rule in csrf_app.url_map.iter_rules():
            if "POST" not in rule.methods or rule.endpoint.startswith(tuple(exempt)):
                continue
            url = re.sub(r"<(?:int:)?[a-z_]+>", "1", rule.rule)
            with csrf_app.app_context():
                before = db.session.query(AuditEvent).count()
            response = client.post(url, data={"amount": "1", "reason": "x"})
            assert response.status_code in (400, 404), (rule.rule, response.status_code)
            with csrf_app.app_context():
                assert db.session.query(AuditEvent).count() == before
            checked += 1
        assert checked >= 2


@pytest.mark.parametrize("body", ['"abc"', "[1, 2]", "{}", '{"email": ["x"]}', "not json"])
def test_json_bodies_to_login_are_refused_without_a_500(client, seed, body):
    response = client.post("/login", data=body, content_type="application/json")
    assert response.status_code == 200
    assert client.get("/orders").status_code == 302
