"""The order's own link in a real browser (Chromium, a 390×844 phone, zh-TW), the sandbox in its own process: staff
e-mail the link and it arrives at an SMTP server; a declined customer tries again on the same link and pays; the
customer chooses the provider; staff cancel a link and make another. Screenshots go to test-output/screenshots/."""

from __future__ import annotations

import re

import pytest

from portal import worker
from portal.extensions import db
from portal.models import Checkout, Order
from tests.support.apps import LiveServer, start_live_portal, stop_live_portal
from tests.support.chromium import PHONE, assert_fits_width, login, shot, wait_for_state
from tests.support.factories import make_order
from tests.support.sandbox import SandboxProcess

pytestmark = pytest.mark.e2e


@pytest.fixture
def live_server(tmp_path, smtp):
    """As tests/e2e/conftest.py's, with the portal's mail going to the test's SMTP server."""
    listener = LiveServer()  # bound first: the sandbox is told its address
    sandbox = SandboxProcess(tmp_path / "sandbox.db", portal_url=listener.url).start()
    server = start_live_portal(tmp_path, sandbox, listener, MAIL_SERVER=smtp.host, MAIL_PORT=smtp.port)
    yield server
    stop_live_portal(server)


def new_order(live_server, payable_items=((1200, 1),)) -> int:
    with live_server.app.app_context():
        return make_order(live_server.seed.merchant_id, items=payable_items, shipping=0, email="hua@example.tw").id


def make_link(admin, order_id: int, provider: str) -> str:
    admin.goto(f"/orders/{order_id}")
    admin.check(f"form.provider-choice input[name=provider][value={provider}]")
    admin.click("form.provider-choice button.primary")
    admin.wait_for_selector("#customer-link")
    return admin.input_value("#customer-link")


def attempts(live_server, order_id: int) -> list[tuple[str, str, str]]:
    with live_server.app.app_context():
        rows = db.session.execute(db.select(Checkout).filter_by(order_id=order_id).order_by(Checkout.id)).scalars()
        return [(c.reference, c.provider, c.state) for c in rows]


def pay_on_mypay(page, provider_origin: str, card: str, expiry: str, cvc: str, password: str | None) -> None:
    page.wait_for_url(f"{provider_origin}/mypay/**")
    page.fill("#card_number", card)
    page.fill("#expiry", expiry)
    page.fill("#cvc", cvc)
    page.click("form:has(#card_number) button.sb-primary")
    if password:
        page.wait_for_url("**/3ds")
        page.fill("#password", password)
        page.click("button.sb-primary")


def test_staff_share_the_link_by_e_mail_line_and_qr(new_context, live_server, smtp):
    order_id = new_order(live_server)
    admin = new_context(viewport=PHONE).new_page()
    login(admin)
    link = make_link(admin, order_id, "oen")
    assert admin.input_value("#share input[name=email]") == "hua@example.tw"
    line = admin.get_attribute("[data-line-share]", "href")
    assert line.startswith("https://line.me/R/share?text=") and "%2Fpay%2F" in line
    # the phone's share sheet shows only where the browser has one
    has_share = admin.evaluate("typeof navigator.share === 'function'")
    assert admin.locator("[data-share-url]").is_visible() == has_share
    with admin.expect_download() as download:
        admin.click("[data-qr-download]")
    assert download.value.suggested_filename.endswith("-link.png")
    assert_fits_width(admin, "order page with sharing")
    shot(admin, "links-01-order-page-share")
    # the send button stands apart from the language above it and from the red cancel button below it (it touched both)
    language = admin.locator("#share select[name=locale]").bounding_box()
    send = admin.locator("form[data-send-link] button[type=submit]").bounding_box()
    cancel = admin.locator("[data-cancel-link]").bounding_box()
    assert send["y"] - (language["y"] + language["height"]) >= 6, (language, send)
    assert cancel["y"] - (send["y"] + send["height"]) >= 16, (send, cancel)

    admin.fill("#share input[name=email]", "buyer@example.tw")
    admin.select_option("#share select[name=locale]", "en")
    # a double submit: the same form (its one-time key) sent twice; each answer is the order page with its message
    pages = admin.evaluate(
        """async () => {
            const form = document.querySelector("form[data-send-link]");
            const pages = [];
            for (const _ of [1, 2]) {
                pages.push(await (await fetch(form.action, {method: "POST", body: new FormData(form)})).text());
            }
            return pages;
        }"""
    )
    assert 'class="flash flash-success"' in pages[0] and "buyer@example.tw" in pages[0]
    assert 'class="flash flash-info"' in pages[1] and "flash-success" not in pages[1]
    worker.run_once(live_server.app)
    [mail] = smtp.wait_for(1)
    assert mail["To"] == "buyer@example.tw"
    assert "payment link" in mail["Subject"]  # in the language chosen on the form
    assert link in mail.get_body(("plain",)).get_content()
    worker.run_once(live_server.app)
    assert len(smtp.messages) == 1


def test_a_declined_customer_retries_on_the_same_link_and_pays(new_context, live_server):
    order_id = new_order(live_server)
    admin = new_context(viewport=PHONE).new_page()
    login(admin)
    link = make_link(admin, order_id, "mypay")

    customer = new_context(viewport=PHONE).new_page()
    customer.goto(link)
    shot(customer, "links-02-customer-pay")
    customer.click("form button.primary")
    pay_on_mypay(customer, live_server.sandbox.url, "5204247750001471", "1122", "111", None)  # declined
    customer.wait_for_url(re.compile(r"/pay/[A-Za-z0-9_-]+/return"))
    customer.wait_for_selector('.status-box[data-order-state="failed"]', timeout=20_000)

    shot(customer, "links-03a-customer-declined")
    customer.click("[data-try-again]")  # back to the same link
    customer.wait_for_url(link)
    customer.wait_for_selector("[data-retry]")
    assert customer.get_attribute("[data-link-status]", "data-link-status") == "retry"
    assert "再試一次" in customer.text_content("[data-retry]")
    assert_fits_width(customer, "customer retry page")
    shot(customer, "links-03-customer-retry")
    customer.click("[data-retry]")
    pay_on_mypay(customer, live_server.sandbox.url, "4938170130000003", "1228", "985", "nccc1234")
    customer.wait_for_url(re.compile(r"/pay/[A-Za-z0-9_-]+/return"))
    customer.wait_for_selector('.status-box[data-order-state="paid"]', timeout=20_000)

    [(first_ref, _, first_state), (second_ref, _, second_state)] = attempts(live_server, order_id)
    assert first_ref != second_ref and (first_state, second_state) == ("failed", "paid")
    admin.goto(f"/orders/{order_id}")
    wait_for_state(admin, "paid")
    with live_server.app.app_context():
        assert link.endswith("/pay/" + db.session.get(Order, order_id).link_token)


def test_the_customer_chooses_then_staff_cancel_the_link_and_make_another(new_context, live_server):
    order_id = new_order(live_server)
    admin = new_context(viewport=PHONE).new_page()
    login(admin)
    link = make_link(admin, order_id, "choice")

    customer = new_context(viewport=PHONE).new_page()
    customer.goto(link)
    customer.wait_for_selector("form.pay-choice")
    offered = customer.eval_on_selector_all("input[name=provider]", "els => els.map(e => e.value)")
    assert sorted(offered) == ["mypay", "oen", "opay"]
    assert "信用卡" in customer.text_content("form.pay-choice")
    assert_fits_width(customer, "customer choice page")
    shot(customer, "links-04-customer-choice")

    admin.click("[data-cancel-link]")
    admin.wait_for_selector("[data-link-ended]")
    wait_for_state(admin, "cancelled", reload=False)
    customer.reload()
    assert customer.get_attribute("[data-link-status]", "data-link-status") == "cancelled"
    assert customer.locator("form button.primary").count() == 0
    assert "取消" in customer.text_content(".status-box")
    assert_fits_width(customer, "customer cancelled page")
    shot(customer, "links-05-customer-cancelled")

    new_link = make_link(admin, order_id, "oen")
    assert new_link != link
    wait_for_state(admin, "awaiting_payment", reload=False)
    customer.goto(new_link)
    assert customer.locator("form button.primary").is_visible()
    shot(customer, "links-06-customer-new-link")
