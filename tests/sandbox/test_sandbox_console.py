"""Fault switches, latency, the console (masked, readable) and the sandbox's own headers."""

from __future__ import annotations

import time

import pytest
import requests

from sandbox import faults, settings
from sandbox.extensions import db
from sandbox.models import SandboxOenCheckout
from tests.support.accounts import SANDBOX_SHOP_A

TOKEN_A = SANDBOX_SHOP_A["oen"][1]
BODY = {"merchantId": "shopa", "successUrl": "https://shop.example/ok", "failureUrl": "https://shop.example/ko"}
HEADERS = {"Authorization": f"Bearer {TOKEN_A}"}


def checkout_token(sandbox, timeout=10):
    return requests.post(f"{sandbox.url}/oen/api/checkout-token", json=BODY, headers=HEADERS, timeout=timeout)


def checkouts(sandbox) -> int:
    with sandbox.ctx():
        return db.session.query(SandboxOenCheckout).count()


class TestFaults:
    def test_fail_next_answers_500_and_does_nothing_once(self, sandbox):
        with sandbox.ctx():
            faults.set("oen", "fail_next")
            assert faults.pending() == {"oen": {"fail_next": 1}}
        failed = checkout_token(sandbox)
        assert failed.status_code == 500 and failed.json()["code"] == "F0001"
        assert checkouts(sandbox) == 0
        assert checkout_token(sandbox).status_code == 200
        with sandbox.ctx():
            assert faults.pending() == {}

    def test_fail_after_next_carries_the_call_out(self, sandbox):
        with sandbox.ctx():
            faults.set("oen", "fail_after_next")
        assert checkout_token(sandbox).status_code == 500
        assert checkouts(sandbox) == 1

    def test_hang_next_outlasts_the_portal_timeout(self, sandbox):
        with sandbox.ctx():
            faults.set("oen", "hang_next")
        with pytest.raises(requests.Timeout):
            checkout_token(sandbox, timeout=1)
        deadline = time.monotonic() + 5
        while checkouts(sandbox) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert checkouts(sandbox) == 1  # carried out after the client gave up

    def test_faults_are_per_provider_and_clear(self, sandbox, wire):
        with sandbox.ctx():
            faults.set("mypay", "fail_next", count=2)
            faults.set("opay", "drop_next_callback")
        assert checkout_token(sandbox).status_code == 200
        answer = wire.mypay_post(sandbox.url, "api/queryorder", {"uid": 1, "key": "x"})
        assert answer.status_code == 500 and "text/html" in answer.headers["Content-Type"]
        with sandbox.ctx():
            assert faults.pending() == {"mypay": {"fail_next": 1}, "opay": {"drop_next_callback": 1}}
            faults.clear("mypay")
            assert faults.pending() == {"opay": {"drop_next_callback": 1}}
            faults.clear()
            assert faults.pending() == {}
            with pytest.raises(ValueError):
                faults.set("stripe", "fail_next")

    def test_latency_per_provider(self, sandbox_factory, wire):
        sandbox = sandbox_factory(SANDBOX_LATENCY_MS=0, SANDBOX_LATENCY_MS_OEN=300)
        started = time.monotonic()
        checkout_token(sandbox)
        assert time.monotonic() - started >= 0.3
        with sandbox.ctx():
            assert settings.latency_ms("mypay") == 0
            settings.set_latency("mypay", 250)
            assert settings.latency_ms("mypay") == 250
        started = time.monotonic()
        wire.mypay_post(sandbox.url, "api/queryorder", {"uid": 1, "key": "x"})
        assert time.monotonic() - started >= 0.25
        with sandbox.ctx():
            settings.set_latency("oen", None)
            assert settings.latency_ms("oen") == 300


class TestConsole:
    def test_shows_requests_and_callbacks_decrypted_with_secrets_masked(self, sandbox, wire):
        session = requests.Session()
        body = {**BODY, "successUrl": f"{sandbox.url}/ok", "failureUrl": f"{sandbox.url}/ko"}
        checkout_id = requests.post(
            f"{sandbox.url}/oen/api/checkout-token", json=body, headers=HEADERS, timeout=10
        ).json()["data"]["id"]
        page_url = f"{sandbox.url}/oen/checkout/shopa/subscription/create/{checkout_id}"
        page = session.get(page_url)
        form = {"csrf_token": wire.csrf_token(page.text), "card_number": "4012888818888333", "expiry": "12/39"}
        session.post(page_url, data={**form, "cvc": "123"}, allow_redirects=False)
        page = session.get(page_url.replace(checkout_id, checkout_token(sandbox).json()["data"]["id"]))
        form = {"csrf_token": wire.csrf_token(page.text), "card_number": "4242424242424242", "expiry": "12/39"}
        session.post(page.url, data={**form, "cvc": "123"}, allow_redirects=False)
        wire.mypay_post(sandbox.url, "api/queryorder", {"uid": 95201, "key": "k" * 32})
        with sandbox.ctx():
            token = db.session.execute(db.select(SandboxOenCheckout.token).where(SandboxOenCheckout.token.is_not(None)))
            token = token.scalar_one()
        console = requests.get(f"{sandbox.url}/", timeout=10).text
        for secret in ("4242424242424242", "4012888818888333", TOKEN_A, token, "k" * 32):
            assert secret not in console
        assert "••••••••••••4242" in console and "••••••••••••8333" in console
        assert "api/queryorder" in console  # the MyPay service field, decrypted
        assert "purpose" in console and "Bearer oen-" in console
        oen_only = requests.get(f"{sandbox.url}/?provider=oen", timeout=10).text
        assert "api/queryorder" not in oen_only

    def test_buttons_need_csrf_and_work(self, sandbox, wire):
        session = requests.Session()
        console = session.get(f"{sandbox.url}/", timeout=10)
        token = wire.csrf_token(console.text)
        assert (
            session.post(f"{sandbox.url}/console/fault", data={"provider": "oen", "kind": "fail_next"}).status_code
            == 400
        )
        done = session.post(
            f"{sandbox.url}/console/fault", data={"csrf_token": token, "provider": "oen", "kind": "hang_next"}
        )
        assert done.status_code == 200 and "hang_next × 1" in done.text
        session.post(f"{sandbox.url}/console/latency", data={"csrf_token": token, "provider": "opay", "ms": "40"})
        session.post(f"{sandbox.url}/console/oen-card-number", data={"csrf_token": token, "on": "0"})
        with sandbox.ctx():
            assert faults.pending() == {"oen": {"hang_next": 1}}
            assert settings.latency_ms("opay") == 40
            assert settings.oen_full_card_number() is False

    def test_resend_button(self, sandbox, wire):
        with sandbox.ctx():
            faults.set("oen", "drop_next_callback")
        body = {**BODY, "successUrl": f"{sandbox.url}/ok", "failureUrl": f"{sandbox.url}/ko"}
        answer = requests.post(f"{sandbox.url}/oen/api/checkout-token", json=body, headers=HEADERS, timeout=10)
        page_url = f"{sandbox.url}/oen/checkout/shopa/subscription/create/{answer.json()['data']['id']}"
        session = requests.Session()
        form = {"csrf_token": wire.csrf_token(session.get(page_url).text), "card_number": "4242424242424242"}
        session.post(page_url, data={**form, "expiry": "12/39", "cvc": "123"}, allow_redirects=False)
        assert sandbox.receiver.of("oen") == []
        console = session.get(f"{sandbox.url}/", timeout=10)
        assert "dropped" in console.text
        session.post(f"{sandbox.url}/console/callbacks/1/resend", data={"csrf_token": wire.csrf_token(console.text)})
        (hook,) = sandbox.receiver.of("oen")
        assert hook.json["success"] is True and hook.json["token"]


def test_its_own_origin_headers_and_health(sandbox):
    """The sandbox is its own app: console at /, provider pages may post to any site, nothing cached or framed."""
    console = requests.get(f"{sandbox.url}/", timeout=10)
    assert console.status_code == 200
    assert "form-action 'self' http: https:" in console.headers["Content-Security-Policy"]
    assert "script-src 'self'" in console.headers["Content-Security-Policy"]
    assert console.headers["X-Frame-Options"] == "DENY"
    assert console.headers["X-Content-Type-Options"] == "nosniff"
    assert console.headers["Cache-Control"] == "no-store"
    answer = requests.post(
        f"{sandbox.url}/oen/api/checkout-token", json=BODY, headers={"Authorization": "Bearer nobody"}, timeout=10
    )
    assert answer.status_code == 401 and answer.json()["code"] == "A0001"
    health = requests.get(f"{sandbox.url}/healthz", timeout=10)
    assert (health.status_code, health.text) == (200, "ok") and health.headers["Content-Type"].startswith("text/plain")
    css = requests.get(f"{sandbox.url}/static/sandbox.css", timeout=10)
    assert css.status_code == 200 and "no-store" not in css.headers.get("Cache-Control", "")
    assert requests.get(f"{sandbox.url}/sandbox", timeout=10).status_code == 404  # no /sandbox prefix any more


def test_only_this_machine_is_served_even_when_listening_wider(tmp_path):
    """Started with a public --host by mistake, the console (no login) still answers no other machine."""
    from sandbox import create_app

    app = create_app(
        {"TESTING": True, "SANDBOX_DATABASE_URL": f"sqlite:///{tmp_path / 'sb.db'}", "SANDBOX_SECRET_KEY": "k"}
    )
    client = app.test_client()
    assert client.get("/", environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code == 403
    assert client.post("/console/fault", environ_base={"REMOTE_ADDR": "10.0.0.8"}).status_code == 403
    assert client.get("/healthz", environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 200
    assert client.get("/healthz", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200


def test_the_sandbox_answers_the_browsers_own_icon_request(tmp_path):
    """A browser on a sandbox page asks for /favicon.ico on its own: it got a 404 (a red line in every walkthrough's
    network log); it is sent to the sandbox's icon, which its pages name too."""
    from sandbox import create_app

    app = create_app(
        {"TESTING": True, "SANDBOX_DATABASE_URL": f"sqlite:///{tmp_path / 'sb.db'}", "SANDBOX_SECRET_KEY": "k"}
    )
    client = app.test_client()
    moved = client.get("/favicon.ico")
    assert moved.status_code == 301 and moved.headers["Location"].endswith("/static/favicon.svg")
    icon = client.get("/static/favicon.svg")
    assert icon.status_code == 200 and icon.mimetype == "image/svg+xml"
    assert 'rel="icon"' in client.get("/").get_data(as_text=True)


def test_a_caught_mails_html_shows_with_its_own_styles_in_a_frame_that_runs_nothing(tmp_path):
    """The mail page framed the HTML part with srcdoc, which inherits the sandbox's CSP: every inline style of the
    portal's mails was refused (a dozen console errors a page) and the mail showed unstyled, its pay button a plain
    link. The HTML comes from a route of its own, whose CSP lets the mail's styles apply and nothing run or load."""
    from sandbox import create_app
    from sandbox import mail as mail_module
    from sandbox.models import CaughtMail

    app = create_app(
        {"TESTING": True, "SANDBOX_DATABASE_URL": f"sqlite:///{tmp_path / 'sb.db'}", "SANDBOX_SECRET_KEY": "k"}
    )
    raw = (
        b"From: shop@example.tw\r\nTo: buyer@example.tw\r\nSubject: Pay\r\n"
        b"Message-ID:\r\n <a-very-long-message-id-folded-onto-its-own-line@portal.example.tw>\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        b'<a style="color:#fff">Pay</a><script>x()</script>'
    )
    mail_id = mail_module.store(app, "shop@example.tw", ["buyer@example.tw"], raw)
    client = app.test_client()
    page = client.get(f"/mail/{mail_id}").get_data(as_text=True)
    assert "srcdoc" not in page and f'src="/mail/{mail_id}/html"' in page
    framed = client.get(f"/mail/{mail_id}/html")
    csp = framed.headers["Content-Security-Policy"]
    assert "style-src 'unsafe-inline'" in csp and "default-src 'none'" in csp and "script-src" not in csp
    assert "sandbox allow-popups" in csp and framed.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert '<a style="color:#fff">Pay</a>' in framed.get_data(as_text=True)
    assert client.get("/mail/999/html").status_code == 404
    # the JSON list's message id has no space left from its folded header
    with app.app_context():
        assert db.session.get(CaughtMail, mail_id).html
    [listed] = client.get("/mail/api/messages").get_json()
    assert listed["message_id"] == "<a-very-long-message-id-folded-onto-its-own-line@portal.example.tw>"
