"""Security headers on every kind of response, the session cookie, and the idle and absolute login timeouts."""

from __future__ import annotations

from datetime import timedelta
from http.cookies import SimpleCookie

import pytest
from flask_login.utils import encode_cookie

from portal.extensions import db
from portal.models import UserSession, utcnow
from tests.support.apps import make_app, seed_merchants
from tests.support.constants import PASSWORD
from tests.support.factories import make_checkout, make_order

HTTPS_BASE = "https://portal.example"


def csp_directives(response) -> dict[str, list[str]]:
    """The response's Content-Security-Policy as {directive: [sources]}."""
    policy = response.headers.get("Content-Security-Policy", "")
    directives = {}
    for part in policy.split(";"):
        words = part.split()
        if words:
            directives[words[0]] = words[1:]
    return directives


def assert_secure_headers(response, *, hsts: bool = False) -> None:
    """The headers every response carries (HSTS only when served over HTTPS)."""
    csp = csp_directives(response)
    assert csp, f"no Content-Security-Policy on {response.request.path}"
    policy = response.headers["Content-Security-Policy"]
    assert "'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy, policy
    assert csp.get("frame-ancestors") == ["'none'"], policy
    assert csp.get("object-src") == ["'none'"], policy
    assert csp.get("script-src") == ["'self'"], policy
    assert csp.get("base-uri") == ["'none'"], policy
    assert "*" not in csp.get("default-src", []), policy
    assert response.headers.get("X-Content-Type-Options") == "nosniff"
    assert response.headers.get("X-Frame-Options") == "DENY"
    assert response.headers.get("Referrer-Policy") in ("no-referrer", "same-origin", "strict-origin-when-cross-origin")
    if hsts:
        value = response.headers.get("Strict-Transport-Security", "")
        assert value.startswith("max-age="), value
        assert int(value.split(";")[0].split("=")[1]) >= 31536000
    else:
        assert "Strict-Transport-Security" not in response.headers


@pytest.fixture
def link_token(app, seed) -> str:
    """A live customer link of merchant A."""
    with app.app_context():
        return make_checkout(make_order(seed.merchant_id)).public_token


def login(client, email="admin@a.example"):
    response = client.post("/login", data={"email": email, "password": PASSWORD})
    assert response.status_code == 302, response.get_data(as_text=True)
    return response


# ---------------------------------------------------------------- headers


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/login", 200),
        ("GET", "/", 302),
        ("GET", "/orders", 302),
        ("GET", "/healthz", 200),
        ("GET", "/static/css/portal.css", 200),
        ("GET", "/static/js/copy.js", 200),
        ("GET", "/no/such/page", 404),
        ("GET", "/logout", 405),
        ("GET", "/pay/not-a-real-token", 404),
        ("POST", "/webhooks/oen", 400),
        ("GET", "/lang/en", 302),
    ],
)
def test_every_kind_of_anonymous_response_has_the_headers(client, seed, method, path, status):
    response = client.open(path, method=method)
    if path.startswith("/webhooks"):
        assert response.status_code < 500
    else:
        assert response.status_code == status
    assert_secure_headers(response)


def test_customer_pages_have_the_headers(client, link_token):
    for path in (f"/pay/{link_token}", f"/pay/{link_token}/return"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert_secure_headers(response)


def test_logged_in_pages_have_the_headers(client, seed):
    login(client)
    for path in ("/orders", "/orders/new", "/settings", "/settings/users", "/callbacks"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert_secure_headers(response)


def test_too_large_and_csrf_error_pages_have_the_headers(csrf_app):
    client = csrf_app.test_client()
    refused = client.post("/login", data={"email": "a@b.example", "password": "x"})
    assert refused.status_code == 400
    assert_secure_headers(refused)
    too_large = client.post("/webhooks/oen", data=b"x" * (2 * 1024 * 1024), content_type="application/json")
    assert too_large.status_code == 413
    assert_secure_headers(too_large)


def test_server_error_page_has_the_headers(app):
    app.config["PROPAGATE_EXCEPTIONS"] = False

    @app.get("/boom-for-test")
    def boom():
        raise RuntimeError("internal-detail-xyz")

    response = app.test_client().get("/boom-for-test")
    assert response.status_code == 500
    assert "internal-detail-xyz" not in response.get_data(as_text=True)
    assert_secure_headers(response)


def test_hsts_when_the_portal_is_served_over_https(tmp_path):
    app = make_app(tmp_path, PORTAL_BASE_URL=HTTPS_BASE, WTF_CSRF_ENABLED=False)
    client = app.test_client()
    for path in ("/login", "/orders", "/nope", "/static/css/portal.css"):
        assert_secure_headers(client.get(path, base_url=HTTPS_BASE), hsts=True)
    with app.app_context():
        db.engine.dispose()


def test_hsts_on_a_secure_request_even_with_an_http_base_url(client):
    assert_secure_headers(client.get("/login", base_url="https://localhost"), hsts=True)


def test_opay_relay_is_sandboxed_and_still_has_no_unsafe_inline(app, seed, client, monkeypatch):
    """O'Pay's page is relayed under its own CSP: an opaque origin (no allow-same-origin), never framed."""
    from portal.payments import attempts as checkout_service
    from portal.providers.base import RelayedPage

    page = b"<html><body><form id=f action='https://payment-stage.opay.tw/x'></form><script>f.submit()</script>"

    class FakeOPay:
        def create_trade(self, _trade):
            return RelayedPage(status=200, content_type="text/html; charset=utf-8", body=page)

    monkeypatch.setattr(checkout_service, "provider_for", lambda _merchant, _name: FakeOPay())
    with app.app_context():
        token = make_checkout(make_order(seed.merchant_id), provider="opay").public_token
    response = client.post(f"/pay/{token}/go")
    assert response.status_code == 200
    assert response.data == page
    policy = response.headers["Content-Security-Policy"]
    csp = csp_directives(response)
    assert "'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy
    assert "sandbox" in csp and "allow-same-origin" not in csp["sandbox"]
    assert csp.get("frame-ancestors") == ["'none'"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "Referrer-Policy" in response.headers


def test_pay_page_lets_its_button_lead_to_the_providers_origin_and_nowhere_else(app, seed, client):
    """The pay button's POST is answered by a redirect to the provider's page: browsers check that redirect against
    the form-action of the page that sent the form, so the page names the provider's origin (and only it)."""
    with app.app_context():
        checkout = make_checkout(make_order(seed.merchant_id), provider="mypay")
        checkout.provider_url = "https://pay.usecase.cc/payment/95227.html"
        token = checkout.public_token
        db.session.commit()
    response = client.get(f"/pay/{token}")
    assert response.status_code == 200
    assert_secure_headers(response)
    assert csp_directives(response)["form-action"] == ["'self'", "https://pay.usecase.cc"]
    go = client.post(f"/pay/{token}/go")
    assert (go.status_code, go.headers["Location"]) == (303, "https://pay.usecase.cc/payment/95227.html")
    # every other page keeps form-action 'self'
    assert csp_directives(client.get("/login"))["form-action"] == ["'self'"]


def test_a_provider_url_cannot_write_into_the_policy(app, seed, client):
    with app.app_context():
        checkout = make_checkout(make_order(seed.merchant_id), provider="mypay")
        checkout.provider_url = "https://evil.example; script-src 'unsafe-inline' */x"
        token = checkout.public_token
        db.session.commit()
    response = client.get(f"/pay/{token}")
    assert csp_directives(response)["form-action"] == ["'self'"]
    assert csp_directives(response)["script-src"] == ["'self'"]


# ---------------------------------------------------------------- cookies


def set_cookies(response) -> dict[str, dict]:
    """Every Set-Cookie of a response as {name: {attribute: value}} (flags map to True)."""
    cookies = {}
    for header in response.headers.getlist("Set-Cookie"):
        jar = SimpleCookie()
        jar.load(header)
        for name, morsel in jar.items():
            attrs = {key: morsel[key] for key in morsel if morsel[key]}
            lowered = header.lower()
            attrs["secure"] = "; secure" in lowered
            attrs["httponly"] = "; httponly" in lowered
            cookies[name] = attrs
    return cookies


def test_session_cookie_on_http_is_httponly_and_samesite(client, seed):
    cookies = set_cookies(login(client))
    assert set(cookies) == {"session"}, "only the session cookie (no remember-me cookie)"
    assert cookies["session"]["httponly"]
    assert cookies["session"]["samesite"] == "Lax"


def test_session_cookie_on_https_is_host_prefixed_secure_httponly_samesite(tmp_path):
    app = make_app(tmp_path, PORTAL_BASE_URL=HTTPS_BASE, WTF_CSRF_ENABLED=False)
    seed_merchants(app)
    client = app.test_client()
    response = client.post("/login", data={"email": "staff@a.example", "password": PASSWORD}, base_url=HTTPS_BASE)
    assert response.status_code == 302
    cookies = set_cookies(response)
    assert set(cookies) == {"__Host-session"}
    cookie = cookies["__Host-session"]
    assert cookie["secure"] and cookie["httponly"]
    assert cookie["samesite"] == "Lax"
    assert cookie["path"] == "/"
    assert "domain" not in cookie  # __Host- cookies must not name a domain
    # the login works on the next request over HTTPS
    assert client.get("/orders", base_url=HTTPS_BASE).status_code == 200
    assert app.config["REMEMBER_COOKIE_SECURE"] and app.config["REMEMBER_COOKIE_HTTPONLY"]
    assert app.config["REMEMBER_COOKIE_NAME"].startswith("__Host-")
    with app.app_context():
        db.engine.dispose()


def test_remember_cookie_is_never_set_and_one_for_an_ended_login_is_refused(app, client, seed):
    login(client)
    with app.app_context():
        session_id = db.session.execute(db.select(UserSession.id)).scalar_one()
        forged = encode_cookie(session_id)  # only possible with SECRET_KEY
    client.post("/logout")
    other = app.test_client()
    other.set_cookie(app.config["REMEMBER_COOKIE_NAME"], forged)
    assert other.get("/orders").status_code == 302


# ---------------------------------------------------------------- timeouts


def move_session(app, **ago) -> None:
    """Move the only login's timestamps into the past: created=timedelta, last_seen=timedelta."""
    with app.app_context():
        row = db.session.execute(db.select(UserSession)).scalar_one()
        now = utcnow()
        if "created" in ago:
            row.created_at = now - ago["created"]
        if "last_seen" in ago:
            row.last_seen_at = now - ago["last_seen"]
        db.session.commit()


def session_count(app) -> int:
    with app.app_context():
        return db.session.query(UserSession).count()


def test_idle_login_ends(app, client, seed):
    login(client)
    idle = timedelta(minutes=app.config["SESSION_IDLE_MINUTES"])
    move_session(app, last_seen=idle + timedelta(minutes=1))
    response = client.get("/orders")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    assert session_count(app) == 0  # ended on the server too


def test_activity_keeps_a_login_alive(app, client, seed):
    login(client)
    idle = timedelta(minutes=app.config["SESSION_IDLE_MINUTES"])
    move_session(app, created=idle * 2, last_seen=idle - timedelta(minutes=1))
    assert client.get("/orders").status_code == 200
    with app.app_context():
        row = db.session.execute(db.select(UserSession)).scalar_one()
        assert utcnow() - row.last_seen_at < timedelta(minutes=1)  # the request counted as activity
    move_session(app, last_seen=idle - timedelta(minutes=1))
    assert client.get("/orders").status_code == 200


def test_absolute_limit_ends_even_an_active_login(app, client, seed):
    login(client)
    absolute = timedelta(hours=app.config["SESSION_ABSOLUTE_HOURS"])
    move_session(app, created=absolute + timedelta(minutes=1), last_seen=timedelta(seconds=5))
    response = client.get("/orders")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    assert session_count(app) == 0


def test_login_just_inside_the_absolute_limit_works(app, client, seed):
    login(client)
    absolute = timedelta(hours=app.config["SESSION_ABSOLUTE_HOURS"])
    move_session(app, created=absolute - timedelta(minutes=1), last_seen=timedelta(seconds=5))
    assert client.get("/orders").status_code == 200


def test_timeouts_have_sane_defaults(app):
    assert 0 < app.config["SESSION_IDLE_MINUTES"] <= 240
    assert 0 < app.config["SESSION_ABSOLUTE_HOURS"] <= 24
    assert app.config["SESSION_IDLE_MINUTES"] < app.config["SESSION_ABSOLUTE_HOURS"] * 60


# ---------------------------------------------------------------- NUL bytes (PostgreSQL refuses them in text)


@pytest.mark.parametrize("path", ["/pay/%00", "/pay/%00/return", "/lang/%00", "/orders/1%00"])
def test_nul_bytes_in_paths_are_refused(client, seed, path):
    login(client)
    response = client.get(path)
    assert response.status_code in (400, 404)
    assert_secure_headers(response)


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("/login", {"email": "admin@a.example\x00", "password": "x"}),
        ("/orders/new", {"customer_name": "王\x00", "customer_email": "a@b.example", "shipping_fee": "0"}),
        ("/settings/users", {"email": "x\x00@a.example", "role": "staff", "password": "p" * 12}),
        ("/settings", {"oen_merchant_id": "a\x00", "oen_token": "t\x00"}),
    ],
)
def test_nul_bytes_in_forms_are_refused_on_the_field_never_a_server_error(client, seed, path, data):
    if path != "/login":
        login(client)
    response = client.post(path, data=data)
    assert response.status_code in (200, 400)
    assert_secure_headers(response)


@pytest.mark.parametrize(
    "path", ["/orders?q=%00", "/orders?q=a%00&state=%00", "/settings/audit?action=%00", "/callbacks?status=%00"]
)
def test_nul_bytes_in_query_parameters_are_dropped(client, seed, path):
    login(client)
    response = client.get(path)
    assert response.status_code == 200
    assert "\x00" not in response.get_data(as_text=True)


def test_crypto_package_is_pycryptodome_not_the_abandoned_pycrypto():
    """pyproject.toml tells bandit to skip B413 (pyCrypto imports): true only while Crypto is pycryptodome."""
    import Crypto
    from Crypto.Cipher import AES

    assert hasattr(AES, "MODE_GCM") and Crypto.version_info >= (3, 0)
