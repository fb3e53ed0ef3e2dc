"""The order's own link: retry after a decline on the same link, the customer's choice of provider, staff switching and
cancelling, sharing it by e-mail (one mail per form) and as a QR image; over real HTTP through the sandbox."""

from __future__ import annotations

import re
import threading
from datetime import timedelta
from html import unescape
from urllib.parse import urljoin

import pytest
import requests

from portal import worker
from portal.extensions import db
from portal.models import AuditEvent, Checkout, Order, OutboxMessage
from tests.support.apps import LiveServer, start_live_portal, stop_live_portal
from tests.support.browser import STATE_RE, Browser, csrf_of
from tests.support.constants import PASSWORD
from tests.support.sandbox import LiveSandbox

DECLINED_MYPAY = "5204247750001471"  # MyPay's appendix 6 failure card: the sandbox declines it


@pytest.fixture
def browser(live_server):
    b = Browser(live_server.url)
    b.login()
    return b


def customer(live_server, language="en") -> Browser:
    return Browser(live_server.url, language=language)


def checkouts(live_server, order_id: int) -> list[Checkout]:
    with live_server.app.app_context():
        rows = db.session.execute(db.select(Checkout).filter_by(order_id=order_id).order_by(Checkout.id)).scalars()
        return [(c.id, c.reference, c.state, c.provider, c.needs_attention) for c in rows]


def order_row(live_server, order_id: int) -> Order:
    with live_server.app.app_context():
        order = db.session.get(Order, order_id)
        db.session.expunge(order)
        return order


def retry_form(page: str) -> dict:
    return {"csrf_token": csrf_of(page)}


# ---------------------------------------------------------------- the link belongs to the order


def test_a_declined_customer_retries_on_the_same_link_with_a_new_reference_and_pays(live_server, browser):
    order_id = browser.new_order(items=((1200, 1),))
    link = browser.create_link(order_id, "mypay")
    assert link == "/pay/" + order_row(live_server, order_id).link_token
    returned = browser.pay_mypay(link, card=DECLINED_MYPAY)
    browser.wait_for_state(order_id, "failed")
    # the return page leads back to the same link
    assert f'href="{link}" data-try-again' in customer(live_server).get(returned.url).text

    buyer = customer(live_server)
    page = buyer.get(link)
    assert page.status_code == 200
    assert "did not go through" in page.text and "Try again" in page.text
    assert 'data-link-status="retry"' in page.text
    went = buyer.post(link + "/retry", retry_form(page.text))
    assert "/mypay/" in went.url  # on to the provider's page for the new attempt
    [(first_id, first_ref, first_state, *_), (second_id, second_ref, second_state, *_)] = checkouts(
        live_server, order_id
    )
    assert first_ref != second_ref and (first_state, second_state) == ("failed", "awaiting_payment")
    assert browser.order_state(order_id) == "awaiting_payment"

    buyer.pay_mypay(link)  # the same link, now the new attempt's pay page
    browser.wait_for_state(order_id, "paid")
    states = {ref: state for _id, ref, state, *_ in checkouts(live_server, order_id)}
    assert states == {first_ref: "failed", second_ref: "paid"}
    assert order_row(live_server, order_id).link_token == link.rsplit("/", 1)[1]
    paid = customer(live_server).get(link)
    assert "has been paid" in paid.text and "Try again" not in paid.text
    # a late callback for the first attempt is applied to that attempt only (it stays failed: a forward-only state)
    with live_server.app.app_context():
        first = db.session.get(Checkout, first_id)
        assert first.state == "failed" and any(e.source.startswith("callback") for e in first.events)


def test_two_tabs_retrying_at_once_open_one_attempt(live_server, browser):
    order_id = browser.new_order(items=((800, 1),))
    link = browser.create_link(order_id, "mypay")
    browser.pay_mypay(link, card=DECLINED_MYPAY)
    browser.wait_for_state(order_id, "failed")
    buyer = customer(live_server)
    form = retry_form(buyer.get(link).text)
    results = []

    def click():
        results.append(buyer.post(link + "/retry", form, allow_redirects=False).status_code)

    threads = [threading.Thread(target=click) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = checkouts(live_server, order_id)
    assert len([r for r in rows if r[2] == "awaiting_payment"]) == 1, rows
    assert len(rows) == 2 and all(code in (303, 307) for code in results)


def test_the_customer_chooses_among_the_merchants_providers(live_server, browser):
    order_id = browser.new_order(items=((1500, 1),))
    browser.post(f"/orders/{order_id}/checkout", {"provider": "choice"})
    token = order_row(live_server, order_id).link_token
    assert token and checkouts(live_server, order_id) == []
    assert browser.order_state(order_id) == "awaiting_payment"
    buyer = customer(live_server)
    page = buyer.get(f"/pay/{token}")
    assert 'data-link-status="choose"' in page.text
    offered = re.findall(r'name="provider" value="([a-z]+)"', page.text)
    assert sorted(offered) == ["mypay", "oen", "opay"]
    assert "Credit card" in page.text and "WeChat Pay" in page.text
    # a provider that is not offered is refused with a message, not a 500
    refused = buyer.post(f"/pay/{token}/retry", {**retry_form(page.text), "provider": "paypal"})
    assert refused.status_code == 200 and "Please choose how to pay" in refused.text
    assert checkouts(live_server, order_id) == []
    went = buyer.post(f"/pay/{token}/retry", {**retry_form(page.text), "provider": "oen"})
    assert "/oen/checkout/" in went.url
    [(_id, _ref, state, provider, _flag)] = checkouts(live_server, order_id)
    assert (state, provider) == ("awaiting_payment", "oen")


def test_the_customer_link_records_the_language_it_is_read_in(live_server, browser):
    order_id = browser.new_order()
    link = browser.create_link(order_id, "oen")
    customer(live_server, language="en").get(link)
    assert order_row(live_server, order_id).customer_locale == "en"
    customer(live_server, language="zh-TW").get(link)
    assert order_row(live_server, order_id).customer_locale == "zh_TW"


# ---------------------------------------------------------------- staff switch and cancel


def test_switching_provider_keeps_the_link_and_a_payment_on_the_old_page_is_applied_and_flagged(live_server, browser):
    order_id = browser.new_order(items=((900, 1),))
    link = browser.create_link(order_id, "mypay")
    buyer = customer(live_server)
    old_page = buyer.open_provider(link)  # the customer has MyPay's page open
    assert "/mypay/" in old_page.url
    again = browser.post(f"/orders/{order_id}/checkout", {"provider": "oen"}).text  # a second create click
    assert "already has a payment link" in again and len(checkouts(live_server, order_id)) == 1
    page = browser.post(f"/orders/{order_id}/checkout", {"provider": "oen", "switch": "1"}).text
    assert "/pay/" + order_row(live_server, order_id).link_token == link
    # the message says what happened: the same link, another provider (it said a link was "ready", as if new)
    assert "The link now pays through Oen Tech; the customer's link stays the same." in unescape(page)
    assert link in page
    rows = checkouts(live_server, order_id)
    assert [(r[3], r[2]) for r in rows] == [("mypay", "cancelled"), ("oen", "awaiting_payment")]
    assert "/oen/checkout/" in customer(live_server).open_provider(link).url  # the same link leads to Oen now
    # MyPay has no call to close its page: a payment there is applied to the cancelled attempt, and flagged
    action = urljoin(old_page.url, unescape(re.search(r'action="([^"]+/pay)"', old_page.text).group(1)))
    card = {"method": "CREDITCARD", "card_number": "4938170130000003", "expiry": "1228", "cvc": "985"}
    response = buyer.post(action, {"csrf_token": csrf_of(old_page.text), **card})
    buyer.post(response.url, {"csrf_token": csrf_of(response.text), "password": "nccc1234"})
    browser.wait_for_state(order_id, "paid")
    flagged = {r[3]: (r[2], r[4]) for r in checkouts(live_server, order_id)}
    assert flagged["mypay"] == ("paid", True)
    assert "Needs attention" in browser.get(f"/orders/{order_id}").text


def test_staff_cancel_a_link_then_make_a_new_one(live_server, browser):
    order_id = browser.new_order()
    link = browser.create_link(order_id, "mypay")
    page = browser.post(f"/orders/{order_id}/checkout/cancel").text
    assert STATE_RE.search(page).group(1) == "cancelled"
    assert "may still take a payment" in page and "flagged for attention" in page
    order = order_row(live_server, order_id)
    assert order.link_ended_at is not None
    assert [r[2] for r in checkouts(live_server, order_id)] == ["cancelled"]
    ended = customer(live_server).get(link)
    assert ended.status_code == 200 and "cancelled this payment link" in ended.text
    assert 'data-link-status="cancelled"' in ended.text and "/login" not in ended.text
    assert customer(live_server).post(link + "/go").url.endswith(link)  # nothing to pay on an ended link
    with live_server.app.app_context():
        [event] = db.session.execute(db.select(AuditEvent).filter_by(action="link_cancelled")).scalars()
        assert event.detail["order_id"] == order_id
    # a second cancel says so, and a new link has a new address
    assert "no open payment link" in browser.post(f"/orders/{order_id}/checkout/cancel").text
    new_link = browser.create_link(order_id, "oen")
    assert new_link != link
    assert browser.order_state(order_id) == "awaiting_payment"
    assert customer(live_server).get(link).status_code == 404
    assert "data-link-status" not in customer(live_server).get(new_link).text  # the open attempt's pay page
    browser.pay_oen(new_link)
    browser.wait_for_state(order_id, "paid")


def test_an_expired_link_says_so_and_offers_no_retry(live_server, browser):
    order_id = browser.new_order()
    link = browser.create_link(order_id, "mypay")
    browser.pay_mypay(link, card=DECLINED_MYPAY)
    browser.wait_for_state(order_id, "failed")
    with live_server.app.app_context():
        order = db.session.get(Order, order_id)
        order.link_expires_at -= timedelta(days=30)
        db.session.commit()
    page = customer(live_server).get(link)
    assert "has expired" in page.text and "Try again" not in page.text
    refused = customer(live_server).post(link + "/retry", retry_form(page.text))
    assert "can no longer be used" in refused.text and len(checkouts(live_server, order_id)) == 1


def test_bad_input_is_a_message_never_a_500(live_server, browser):
    order_id = browser.new_order()
    for provider in ("", "paypal", "x" * 5000):
        response = browser.post(f"/orders/{order_id}/checkout", {"provider": provider})
        assert response.status_code == 200 and "Choose Oen Tech" in response.text
    link = browser.create_link(order_id, "oen")
    page = browser.get(f"/orders/{order_id}").text
    key = re.search(r'name="send_key" value="([^"]+)"', page).group(1)
    for data in ({"email": "not-an-address", "send_key": key}, {"email": "a@b.example", "send_key": "<x>"}):
        response = browser.post(f"/orders/{order_id}/send-link", data)
        assert response.status_code == 200 and "flash-error" in response.text
    for path in (link + "x", "/pay/" + "a" * 500, link + "/retry"):
        assert customer(live_server).get(path).status_code in (404, 405)
    assert customer(live_server).post("/pay/nope/retry").status_code == 404


def test_another_merchants_order_is_404(live_server, browser):
    order_id = browser.new_order()
    browser.create_link(order_id, "oen")
    other = Browser(live_server.url)
    other.login("admin@b.example")
    assert other.post(f"/orders/{order_id}/checkout/cancel").status_code == 404
    assert other.post(f"/orders/{order_id}/send-link", {"email": "x@example.com"}).status_code == 404
    assert other.get(f"/orders/{order_id}/qr.png").status_code == 404
    assert other.get(f"/orders/{order_id}/qr.svg").status_code == 404
    assert other.post(f"/orders/{order_id}/checkout", {"provider": "choice"}).status_code == 404
    assert order_row(live_server, order_id).link_ended_at is None


def test_the_qr_code_is_an_image_of_the_link(live_server, browser):
    order_id = browser.new_order()
    assert browser.get(f"/orders/{order_id}/qr.png").status_code == 404  # no link yet
    browser.create_link(order_id, "oen")
    png = browser.get(f"/orders/{order_id}/qr.png?download=1")
    assert png.headers["Content-Type"] == "image/png" and png.content.startswith(b"\x89PNG")
    assert png.headers["Content-Disposition"].startswith("attachment;")
    svg = browser.get(f"/orders/{order_id}/qr.svg")
    assert svg.headers["Content-Type"].startswith("image/svg+xml") and b"<svg" in svg.content
    page = browser.get(f"/orders/{order_id}").text
    line = unescape(re.search(r'href="(https://line\.me/R/share\?text=[^"]+)"', page).group(1))
    assert "%2Fpay%2F" + order_row(live_server, order_id).link_token in line


# ---------------------------------------------------------------- e-mail


@pytest.fixture
def mail_server(tmp_path, smtp):
    listener = LiveServer()  # bound first: the sandbox is told its address
    sandbox = LiveSandbox(tmp_path / "sandbox.db", portal_url=listener.url)
    server = start_live_portal(tmp_path, sandbox, listener, MAIL_SERVER=smtp.host, MAIL_PORT=smtp.port)
    yield server
    stop_live_portal(server)


def test_the_link_is_e_mailed_once_however_often_the_form_is_sent(mail_server, smtp):
    staff = Browser(mail_server.url)
    staff.login()
    order_id = staff.new_order(email="buyer@example.com")
    link = staff.create_link(order_id, "oen")
    page = staff.get(f"/orders/{order_id}").text
    key = re.search(r'name="send_key" value="([^"]+)"', page).group(1)
    form = {"email": "other@example.com", "locale": "en", "send_key": key}
    first = staff.post(f"/orders/{order_id}/send-link", form)
    assert "will be e-mailed to other@example.com" in first.text
    second = staff.post(f"/orders/{order_id}/send-link", form)  # a double submit
    assert "already sent" in second.text
    worker.run_once(mail_server.app)
    [mail] = smtp.wait_for(1)
    assert mail["To"] == "other@example.com"
    assert link in mail.get_body(("plain",)).get_content()
    with mail_server.app.app_context():
        assert db.session.execute(db.select(db.func.count(OutboxMessage.id))).scalar() == 1
        [event] = db.session.execute(db.select(AuditEvent).filter_by(action="link_sent")).scalars()
        assert event.detail["to"] == "other@example.com"


def test_without_mail_the_order_page_and_the_form_say_so(live_server, browser):
    live_server.app.config["MAIL_SERVER"] = ""
    order_id = browser.new_order()
    browser.create_link(order_id, "oen")
    page = browser.get(f"/orders/{order_id}").text
    assert "data-mail-off" in page
    key = re.search(r'name="send_key" value="([^"]+)"', page).group(1)
    response = browser.post(f"/orders/{order_id}/send-link", {"email": "a@example.com", "send_key": key})
    assert "E-mail is not set up" in response.text


# ---------------------------------------------------------------- CSRF


def test_the_link_forms_need_their_csrf_token(csrf_app, seed):
    client = csrf_app.test_client()
    login_page = client.get("/login").get_data(as_text=True)
    client.post(
        "/login",
        data={"email": "staff@a.example", "password": PASSWORD, "csrf_token": csrf_of(login_page)},
    )
    with csrf_app.app_context():
        from tests.support.factories import make_order

        order = make_order(seed.merchant_id)
        order.link_token, order.link_provider = "tok-for-csrf-test-000000", "choice"
        order.link_expires_at = order.created_at + timedelta(days=7)
        db.session.commit()
        order_id = order.id
    for path in (
        f"/orders/{order_id}/checkout/cancel",
        f"/orders/{order_id}/send-link",
        "/pay/tok-for-csrf-test-000000/retry",
    ):
        assert client.post(path, data={"email": "a@example.com", "provider": "oen"}).status_code == 400
    with csrf_app.app_context():
        assert db.session.get(Order, order_id).link_ended_at is None


def test_a_card_oen_never_told_us_about_is_entered_again_on_a_new_attempt_and_paid(live_server, browser):
    """Over real HTTP, the sandbox as Oen in its own process: Oen's token notice is lost, so the customer back from the
    card page waits; after a while the page says nothing was charged and lets them enter the card again, on a new
    attempt at Oen, which is paid once. The lost notice, sent late, is recorded and charges nothing."""
    from sandbox import faults
    from sandbox.models import SandboxCallback, SandboxOenTransaction
    from tests.support.sandbox import sandbox_rows

    with live_server.sandbox.ctx():
        faults.set("oen", "drop_next_callback")
    order_id = browser.new_order(items=((1000, 1),))
    link = browser.create_link(order_id, "oen")
    customer = Browser(live_server.url)
    back = customer.pay_oen(link)
    assert "/return" in back.url and "data-card-again" not in back.text  # a late notice is the usual case: it waits
    since = int(re.search(r"since=(\d+)", back.text).group(1))
    with live_server.app.app_context():  # the attempt opened (and the customer came back) a few minutes ago
        [attempt] = db.session.get(Order, order_id).checkouts
        attempt.opened_at -= timedelta(minutes=5)
        db.session.commit()
        lost_for = attempt.reference
    page = customer.get(back.url.split("?")[0] + f"?since={since - 300}")
    assert "data-card-again" in page.text and "Nothing has been charged" in unescape(page.text)
    form = unescape(re.search(r'<form method="post" action="([^"]+/retry)"', page.text).group(1))
    again = customer.post(form, {"csrf_token": csrf_of(page.text), "card_again": "1", "provider": "oen"})
    assert "card_number" in again.text  # on Oen's card page again, for a new attempt
    paid = customer.post(
        again.url,
        {
            "csrf_token": csrf_of(again.text),
            "card_number": "4242 4242 4242 4242",
            "expiry": "12/30",
            "cvc": "123",
            "card_name": "LIN",
        },  # fmt: skip
    )
    assert "/return" in paid.url
    assert browser.wait_for_state(order_id, "paid") == "paid"
    with live_server.app.app_context():
        order = db.session.get(Order, order_id)
        assert [c.state for c in order.checkouts] == ["cancelled", "paid"] and order.state == "paid"
    lost = [c for c in sandbox_rows(live_server.sandbox, SandboxCallback, provider="oen") if lost_for in str(c.payload)]
    assert lost
    assert requests.post(live_server.url + "/webhooks/oen", json=lost[0].payload, timeout=30).status_code == 200
    assert len(sandbox_rows(live_server.sandbox, SandboxOenTransaction)) == 1  # charged once, for the new attempt
    with live_server.app.app_context():
        assert db.session.get(Order, order_id).checkouts[0].state == "cancelled"
