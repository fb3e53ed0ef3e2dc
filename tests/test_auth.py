"""Logging in and out, the limit on failed logins, roles and CSRF."""

from __future__ import annotations

import re

import pytest
from werkzeug.security import check_password_hash

from portal.api_keys import create_key, hash_key
from portal.extensions import db
from portal.merchant_webhooks import create_endpoint
from portal.models import ApiKey, AuditEvent, Merchant, MerchantEvent, Refund, User, UserSession
from tests.support.accounts import SHOP_A, portal_settings
from tests.support.apps import browser_default_client, seed_merchants
from tests.support.constants import PASSWORD
from tests.support.factories import make_checkout, make_order
from tests.support.pages import order_post

CSRF_REFUSAL = "The form has expired or was not sent from this site."


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
        """Every POST route but the provider callbacks, posted a form that would act on the user's own objects."""
        seed = seed_merchants(csrf_app)
        with csrf_app.app_context():
            awaiting = make_checkout(make_order(seed.merchant_id), provider="mypay")  # a link not paid yet
            awaiting.provider_url = "http://127.0.0.1:9/mypay/pay"  # where the pay button would lead
            paid = make_checkout(make_order(seed.merchant_id), provider="oen", state="paid")
            refund = Refund(
                checkout=paid,
                order_id=paid.order_id,
                merchant_id=seed.merchant_id,
                amount=100,
                reason="damaged",
                state="pending",
                idempotency_key="csrf-sweep-refund",
            )
            db.session.add(refund)
            db.session.commit()
            staff_id = db.session.execute(db.select(User.id).filter_by(email=seed.staff)).scalar_one()
            merchant = db.session.get(Merchant, seed.merchant_id)
            key_id = db.session.execute(
                db.select(ApiKey.id).filter_by(
                    key_hash=hash_key(create_key(merchant, "till", can_refund=False, user_id=None).secret)
                )
            ).scalar_one()
            endpoint, _secret = create_endpoint(seed.merchant_id, "https://erp.example.com/hooks")
            event = MerchantEvent(public_id="evt_csrf", merchant_id=seed.merchant_id, type="order.paid", data={})
            db.session.add(event)
            db.session.commit()
            owned = {"key_id": key_id, "endpoint_id": endpoint.id, "event_id": event.public_id}
            on_awaiting = {"order_id": awaiting.order_id, "checkout_id": awaiting.id, "token": awaiting.public_token}
            on_paid = {"order_id": paid.order_id, "checkout_id": paid.id, "refund_id": refund.id}
        # refunds and a charge retried act on a paid order; links, refreshes, the pay button and a saved card charged
        # again on one awaiting payment
        args_of = {"refunds.index": on_paid, "refunds.check": on_paid, "checkout.retry_card_charge": on_paid}
        form = {
            **order_post(),  # orders.new
            "provider": "mypay",  # checkout.create
            "from_checkout": str(on_paid["checkout_id"]),  # checkout.charge_saved_card
            "amount": "100",  # refunds.index
            "reason": "damaged",
            "email": "clerk@a.example",  # settings.users
            "password": "a-long-password-1",
            "role": "admin",  # settings.users, settings.user_role
            **portal_settings(SHOP_A),  # settings.index
        }
        form_of = {"auth.login": {"email": seed.admin, "password": PASSWORD}}
        client = csrf_app.test_client()
        page = client.get("/login").get_data(as_text=True)
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
        response = client.post("/login", data={"email": seed.admin, "password": PASSWORD, "csrf_token": token})
        assert response.status_code == 302
        # provider callbacks carry no CSRF token; they are verified instead
        expected = {r.endpoint for r in csrf_app.url_map.iter_rules() if "POST" in r.methods} - {"webhooks.receive"}
        checked = set()
        for rule in csrf_app.url_map.iter_rules():
            if rule.endpoint not in expected:
                continue
            values = {**on_awaiting, **owned, "user_id": staff_id, **args_of.get(rule.endpoint, {})}
            assert set(rule.arguments) <= set(values), f"{rule.rule}: no object to post to; add one above"
            url = rule.build({name: values[name] for name in rule.arguments}, append_unknown=False)[1]
            before = database_rows(csrf_app)
            response = client.post(url, data=form_of.get(rule.endpoint, form))
            if rule.rule.startswith("/api/"):
                # The JSON API takes no CSRF token because it takes no cookies: the logged-in browser is a stranger
                assert response.status_code == 401, (rule.rule, response.status_code)
            else:
                assert response.status_code == 400, (rule.rule, response.status_code)
                assert CSRF_REFUSAL in response.get_data(as_text=True), rule.rule
            assert database_rows(csrf_app) == before, f"{rule.rule} changed the database"
            checked.add(rule.endpoint)
        assert checked == expected and len(checked) >= 16, sorted(checked)
        assert client.get("/orders").status_code == 200  # still logged in: the refused logout did nothing either


def database_rows(app) -> dict[str, list]:
    """Every row of every table, to tell whether a request changed anything."""
    with app.app_context():
        return {table.name: db.session.execute(table.select()).all() for table in db.metadata.sorted_tables}


@pytest.mark.parametrize("body", ['"abc"', "[1, 2]", "{}", '{"email": ["x"]}', "not json"])
def test_json_bodies_to_login_are_refused_without_a_500(client, seed, body):
    response = client.post("/login", data=body, content_type="application/json")
    assert response.status_code == 200
    assert client.get("/orders").status_code == 302


def test_the_language_links_come_back_to_the_same_address(app, seed):
    """The links lead back to the page as it was: with its query, and without a stray "?" when it had none."""
    client = browser_default_client(app)
    page = client.get("/login").get_data(as_text=True)
    assert 'href="/lang/en?next=/login"' in page and "next=/login%3F" not in page
    page = client.get("/login?next=/orders").get_data(as_text=True)
    assert 'href="/lang/en?next=/login?next%3D/orders"' in page
    assert client.get("/lang/en?next=/login").headers["Location"] == "/login"


def test_the_favicon_browsers_ask_for_on_their_own_is_found(client):
    """A provider's page the portal relays (O'Pay's) names no icon: the browser asks /favicon.ico, which was a 404."""
    response = client.get("/favicon.ico", follow_redirects=True)
    assert response.status_code == 200 and response.mimetype == "image/svg+xml"
