"""Order → link → pay → callback → paid, for each provider, over real HTTP through the sandbox."""

from __future__ import annotations

import re
import threading
import time
from datetime import timedelta

import pytest
import requests

from portal.extensions import db
from portal.models import Checkout, CheckoutEvent, Order, WebhookEvent
from portal.payments import reconcile_open_checkouts
from sandbox import faults
from sandbox.models import SandboxCallback, SandboxMypayOrder, SandboxOenTransaction, SandboxOpayTrade
from tests.support.browser import STATE_RE, Browser
from tests.support.sandbox import sandbox_rows


@pytest.fixture
def browser(live_server):
    b = Browser(live_server.url)
    b.login()
    return b


def test_oen_card_payment_ends_paid(live_server, browser):
    order_id = browser.new_order(items=((800, 2),), shipping=100, vouchers=(("paid", 200), ("free", 100)))
    link = browser.create_link(order_id, "oen")
    result = browser.pay_oen(link)
    assert "/pay/" in result.url and result.url.endswith("/return")
    browser.wait_for_state(order_id, "paid")
    with live_server.app.app_context():
        checkout = db.session.execute(db.select(Checkout).filter_by(order_id=order_id)).scalar_one()
        assert checkout.paid_amount == 1400 and checkout.provider_transaction_id.startswith("P")
        assert checkout.card_token_enc and "token" not in checkout.card_token_enc
    # the customer's return page shows the result too
    assert STATE_RE.search(browser.get(link + "/return").text).group(1) == "paid"


def test_oen_3d_secure_card_ends_paid(live_server, browser):
    order_id = browser.new_order(items=((500, 1),))
    browser.pay_oen(browser.create_link(order_id, "oen"), card="4000 0000 0000 2503")
    browser.wait_for_state(order_id, "paid")


def test_oen_failed_card_notice_is_a_hint_oen_does_not_confirm(live_server, browser):
    # A "success": false token notice is Oen's webhook word only; Oen's transactions show nothing, so nothing moves.
    order_id = browser.new_order(items=((500, 1),))
    browser.pay_oen(browser.create_link(order_id, "oen"), card="4012 8888 1888 8333")
    time.sleep(1)
    assert browser.order_state(order_id) == "awaiting_payment"
    with live_server.app.app_context():
        event = db.session.execute(db.select(WebhookEvent).filter_by(provider="oen")).scalar_one()
        assert event.status == "unconfirmed"


def test_forged_oen_notices_for_a_paid_order_change_nothing(live_server, browser):
    order_id = browser.new_order(items=((1000, 1),))
    browser.pay_oen(browser.create_link(order_id, "oen"))
    browser.wait_for_state(order_id, "paid")
    with live_server.app.app_context():
        checkout = db.session.execute(db.select(Checkout).filter_by(order_id=order_id)).scalar_one()
        reference, hid, oen_id = checkout.reference, checkout.provider_transaction_id, checkout.provider_checkout_id
    charges = len(sandbox_rows(live_server.sandbox, SandboxOenTransaction))
    forged = [
        {"purpose": "charge", "merchantId": "shopa", "orderId": reference, "transactionHid": hid, "status": status}
        for status in ("refunded", "refundedPostPayout", "failed", "cancelled", "initiated")
    ] + [
        {
            "success": success,
            "purpose": "token",
            "merchantId": "shopa",
            "customId": reference,
            "id": oen_id,
            "token": "foreign-token",
            "transactionId": "T9",
            "message": None,
        }
        for success in (True, False)
    ]
    for body in forged:
        response = requests.post(live_server.url + "/webhooks/oen", json=body, timeout=30)
        assert response.status_code in (200, 400)
    assert browser.order_state(order_id) == "paid"
    assert len(sandbox_rows(live_server.sandbox, SandboxOenTransaction)) == charges  # nothing charged
    with live_server.app.app_context():
        checkout = db.session.get(Checkout, checkout.id)
        assert checkout.state == "paid" and checkout.refunded_amount == 0
        statuses = (
            db.session.execute(db.select(WebhookEvent.status).filter_by(provider="oen").order_by(WebhookEvent.id))
            .scalars()
            .all()
        )
        assert statuses[0] == "applied" and set(statuses[1:]) <= {"unconfirmed", "recorded", "refused"}
        assert statuses.count("unconfirmed") >= 4
    admin = Browser(live_server.url)
    admin.login("admin@a.example")
    assert "Not confirmed by the provider" in admin.get("/callbacks?status=unconfirmed").text


def test_oen_charge_under_100_fails_by_the_testing_rule(live_server, browser):
    order_id = browser.new_order(items=((60, 1),))
    browser.pay_oen(browser.create_link(order_id, "oen"))
    browser.wait_for_state(order_id, "failed")


def test_mypay_card_payment_with_vouchers_ends_paid(live_server, browser):
    order_id = browser.new_order(items=((1000, 1),), vouchers=(("paid", 50), ("free", 50)))
    link = browser.create_link(order_id, "mypay")
    result = browser.pay_mypay(link)
    assert result.url.endswith("/return")
    browser.wait_for_state(order_id, "paid")
    with live_server.app.app_context():
        checkout = db.session.execute(db.select(Checkout).filter_by(order_id=order_id)).scalar_one()
        assert checkout.paid_amount == 900


def test_mypay_failing_card_ends_failed(live_server, browser):
    order_id = browser.new_order(items=((1000, 1),))
    browser.pay_mypay(browser.create_link(order_id, "mypay"), card="5204247750001471", expiry="1122", cvc="111")
    state = browser.wait_for_state(order_id, "failed")
    assert state == "failed"


def test_opay_wechat_payment_ends_paid(live_server, browser):
    order_id = browser.new_order(items=((300, 1),))
    link = browser.create_link(order_id, "opay")
    browser.pay_opay(link)
    browser.wait_for_state(order_id, "paid")


def test_opay_failed_payment_ends_failed(live_server, browser):
    order_id = browser.new_order(items=((300, 1),))
    browser.pay_opay(browser.create_link(order_id, "opay"), action="fail")
    browser.wait_for_state(order_id, "failed")


def test_opay_is_not_offered_under_its_minimum(live_server, browser):
    order_id = browser.new_order(items=((5, 1),))
    page = browser.get(f"/orders/{order_id}").text
    assert re.search(r'value="opay"[^>]*disabled', page)
    response = browser.post(f"/orders/{order_id}/checkout", {"provider": "opay"})
    assert "/pay/" not in response.text
    with live_server.app.app_context():
        assert db.session.execute(db.select(Checkout).filter_by(order_id=order_id)).first() is None


def test_provider_down_while_creating_keeps_the_order_and_a_retry_works(live_server, browser):
    order_id = browser.new_order(items=((1000, 1),))
    with live_server.sandbox.ctx():
        faults.set("mypay", "fail_next")
    page = browser.post(f"/orders/{order_id}/checkout", {"provider": "mypay"}).text
    assert "flash-error" in page and "/pay/" not in page
    link = browser.create_link(order_id, "mypay")
    browser.pay_mypay(link)
    browser.wait_for_state(order_id, "paid")
    with live_server.app.app_context():
        states = (
            db.session.execute(db.select(Checkout.state).filter_by(order_id=order_id).order_by(Checkout.id))
            .scalars()
            .all()
        )
        assert states == ["failed", "paid"]


def test_dropped_callbacks_are_settled_by_reconcile(live_server, browser):
    paid = []
    for provider, pay in (("mypay", browser.pay_mypay), ("opay", browser.pay_opay)):
        with live_server.sandbox.ctx():
            faults.set(provider, "drop_next_callback", count=5)
        order_id = browser.new_order(items=((1000, 1),))
        link = browser.create_link(order_id, provider)
        pay(link, back=False)  # the customer closes the tab instead of coming back
        paid.append(order_id)
    with live_server.app.app_context():
        assert {db.session.get(Order, i).state for i in paid} == {"awaiting_payment"}
        summary = reconcile_open_checkouts()
        assert summary.changed == 2 and summary.errors == 0
        assert {db.session.get(Order, i).state for i in paid} == {"paid"}


def test_reconcile_command(live_server, browser):
    with live_server.sandbox.ctx():
        faults.set("opay", "drop_next_callback")
    order_id = browser.new_order(items=((1000, 1),))
    browser.pay_opay(browser.create_link(order_id, "opay"), back=False)
    result = live_server.app.test_cli_runner().invoke(args=["reconcile"])
    assert result.exit_code == 0 and "changed 1" in result.output
    assert browser.order_state(order_id) == "paid"


def test_refresh_button_asks_the_provider(live_server, browser):
    with live_server.sandbox.ctx():
        faults.set("mypay", "drop_next_callback", count=5)
    order_id = browser.new_order(items=((1000, 1),))
    browser.pay_mypay(browser.create_link(order_id, "mypay"), back=False)
    assert browser.order_state(order_id) == "awaiting_payment"
    browser.post(f"/orders/{order_id}/refresh")
    assert browser.order_state(order_id) == "paid"


def test_customer_return_page_asks_the_provider_while_open(live_server, browser):
    with live_server.sandbox.ctx():
        faults.set("mypay", "drop_next_callback", count=5)
    order_id = browser.new_order(items=((1000, 1),))
    link = browser.create_link(order_id, "mypay")
    result = browser.pay_mypay(link, back=False)
    customer = Browser(live_server.url)  # no login
    page = customer.get(link + "/return?prc=300&status=failed").text  # the query string is never trusted
    assert STATE_RE.search(page).group(1) == "paid"
    assert result.status_code == 302


def test_one_oen_token_callback_twenty_times_at_once_charges_once(live_server, browser):
    with live_server.sandbox.ctx():
        faults.set("oen", "drop_next_callback")
    order_id = browser.new_order(items=((1000, 1),))
    browser.pay_oen(browser.create_link(order_id, "oen"))
    payload = sandbox_rows(live_server.sandbox, SandboxCallback, provider="oen")[-1].payload
    url = live_server.url + "/webhooks/oen"
    replies = []

    def send():
        replies.append(requests.post(url, json=payload, timeout=30).status_code)

    threads = [threading.Thread(target=send) for _ in range(20)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert replies == [200] * 20
    for _ in range(30):
        replies.append(requests.post(url, json=payload, timeout=30).status_code)
    assert set(replies) == {200}
    assert browser.order_state(order_id) == "paid"
    assert len(sandbox_rows(live_server.sandbox, SandboxOenTransaction)) == 1
    with live_server.app.app_context():
        checkout = db.session.execute(db.select(Checkout).filter_by(order_id=order_id)).scalar_one()
        moves = (
            db.session.execute(
                db.select(CheckoutEvent).filter_by(checkout_id=checkout.id, applied=True, to_state="paid")
            )
            .scalars()
            .all()
        )
        assert len(moves) == 1
        assert db.session.execute(db.select(WebhookEvent).filter_by(provider="oen")).scalar_one().attempts == 50


def test_unknown_link_is_404_and_expired_link_is_clear(live_server, browser):
    customer = Browser(live_server.url)
    assert customer.get("/pay/not-a-real-token").status_code == 404
    order_id = browser.new_order(items=((1000, 1),))
    link = browser.create_link(order_id, "mypay")
    with live_server.app.app_context():
        checkout = db.session.execute(db.select(Checkout).filter_by(order_id=order_id)).scalar_one()
        from datetime import timedelta

        checkout.expires_at = checkout.expires_at - timedelta(days=30)
        db.session.commit()
    page = customer.get(link)
    assert page.status_code == 200 and 'data-order-state="expired"' in page.text
    assert not customer.post(link + "/go").url.startswith(live_server.sandbox.url)


def test_opay_link_opened_twice_shows_the_same_trade_and_pays(live_server, browser):
    order_id = browser.new_order(items=((300, 1),))
    link = browser.create_link(order_id, "opay")
    first = browser.open_provider(link)
    second = browser.open_provider(link)  # the customer comes back and presses pay again
    assert first.status_code == second.status_code == 200
    assert first.text == second.text  # the same O'Pay trade, not a second Create with the same trade number
    assert "sandbox" in second.headers["Content-Security-Policy"]
    browser.pay_opay(link)
    browser.wait_for_state(order_id, "paid")
    assert len(sandbox_rows(live_server.sandbox, SandboxOpayTrade)) == 1


def test_forged_oen_token_webhook_is_refused_and_charges_nothing(live_server, browser):
    order_id = browser.new_order(items=((1000, 1),))
    browser.create_link(order_id, "oen")
    with live_server.app.app_context():
        checkout = db.session.execute(db.select(Checkout).filter_by(order_id=order_id)).scalar_one()
        forged = {
            "success": True,
            "purpose": "token",
            "merchantId": "shopa",
            "transactionId": "T1",
            "message": None,
            "customId": checkout.reference,
            "id": "not-the-checkout-id",
            "token": "stolen",
        }
    response = requests.post(live_server.url + "/webhooks/oen", json=forged, timeout=30)
    assert response.status_code == 400
    assert browser.order_state(order_id) == "awaiting_payment"
    assert sandbox_rows(live_server.sandbox, SandboxOenTransaction) == []
    with live_server.app.app_context():
        event = db.session.execute(db.select(WebhookEvent).filter_by(provider="oen")).scalar_one()
        assert event.status == "refused" and "stolen" not in event.body
        assert event.merchant_id is None  # filed under no merchant on its own word


def test_provider_hanging_while_creating_keeps_the_attempt_and_a_retry_works(live_server, browser):
    order_id = browser.new_order(items=((1000, 1),))
    with live_server.sandbox.ctx():
        faults.set("oen", "hang_next")
    page = browser.post(f"/orders/{order_id}/checkout", {"provider": "oen"}).text
    assert "flash-error" in page and "/pay/" not in page
    browser.pay_oen(browser.create_link(order_id, "oen"))
    browser.wait_for_state(order_id, "paid")
    with live_server.app.app_context():
        rows = db.session.execute(
            db.select(Checkout.state, Checkout.last_error).filter_by(order_id=order_id).order_by(Checkout.id)
        ).all()
        assert [r.state for r in rows] == ["failed", "paid"] and rows[0].last_error


def test_admin_charges_the_saved_card_again_for_the_same_customer(live_server, browser):
    first = browser.new_order(items=((1000, 1),), email="regular@example.com")
    browser.pay_oen(browser.create_link(first, "oen"))
    browser.wait_for_state(first, "paid")
    second = browser.new_order(items=((700, 1),), email="Regular@example.com")
    stranger = browser.new_order(items=((700, 1),), email="someone-else@example.com")
    assert "charge-again" not in browser.get(f"/orders/{second}").text  # staff are not offered it
    with live_server.app.app_context():
        previous = db.session.execute(db.select(Checkout).filter_by(order_id=first)).scalar_one().id
    assert browser.post(f"/orders/{second}/charge-again", {"from_checkout": previous}).status_code == 403
    admin = Browser(live_server.url)
    admin.login("admin@a.example")
    assert "charge-again" in admin.get(f"/orders/{second}").text
    assert "charge-again" not in admin.get(f"/orders/{stranger}").text
    admin.post(f"/orders/{second}/charge-again", {"from_checkout": previous})
    assert admin.order_state(second) == "paid"
    refused = admin.post(f"/orders/{stranger}/charge-again", {"from_checkout": previous})
    assert "flash-error" in refused.text and admin.order_state(stranger) == "draft"
    assert len(sandbox_rows(live_server.sandbox, SandboxOenTransaction)) == 2
    with live_server.app.app_context():
        from portal.models import AuditEvent

        reads = db.session.execute(db.select(AuditEvent).filter_by(action="card_token_read")).scalars().all()
        assert len(reads) >= 2 and all("token" not in str(r.detail).lower().replace("card_token", "") for r in reads)


def test_ten_staff_clicks_at_once_open_one_link(live_server, browser):
    order_id = browser.new_order(items=((1000, 1),))
    cookies = browser.http.cookies

    def click():
        session = requests.Session()
        session.cookies.update(cookies)
        session.post(f"{live_server.url}/orders/{order_id}/checkout", data={"provider": "mypay"}, timeout=30)

    threads = [threading.Thread(target=click) for _ in range(10)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    with live_server.app.app_context():
        states = db.session.execute(db.select(Checkout.state).filter_by(order_id=order_id)).scalars().all()
        assert states == ["awaiting_payment"]
    assert len(sandbox_rows(live_server.sandbox, SandboxMypayOrder)) == 1  # one order at MyPay too


def test_a_charge_lost_in_transit_is_retried_by_an_admin_once_oen_shows_none(live_server, browser):
    order_id = browser.new_order(items=((1000, 1),))
    link = browser.create_link(order_id, "oen")
    with live_server.sandbox.ctx():
        faults.set("oen", "fail_next")  # the charge answers HTTP 500 and is not carried out
    browser.pay_oen(link, back=False)  # (coming back would query Oen first and use up the fault)
    time.sleep(1.5)
    assert browser.order_state(order_id) == "awaiting_payment"
    with live_server.app.app_context():
        checkout = db.session.execute(db.select(Checkout).filter_by(order_id=order_id)).scalar_one()
        assert checkout.state == "processing" and checkout.last_error
        checkout_id = checkout.id
    admin = Browser(live_server.url)
    admin.login("admin@a.example")
    retry = f"/orders/{order_id}/checkouts/{checkout_id}/retry-charge"
    assert "retry-charge" in admin.get(f"/orders/{order_id}").text
    assert browser.post(retry).status_code == 403  # staff may not
    too_soon = admin.post(retry)
    assert "two minutes" in too_soon.text and admin.order_state(order_id) == "awaiting_payment"
    with live_server.app.app_context():
        checkout = db.session.get(Checkout, checkout_id)
        checkout.charge_started_at -= timedelta(minutes=3)
        db.session.commit()
    cookies = admin.http.cookies

    def click():
        session = requests.Session()
        session.cookies.update(cookies)
        session.post(live_server.url + retry, timeout=30)

    threads = [threading.Thread(target=click) for _ in range(5)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert admin.order_state(order_id) == "paid"
    assert len(sandbox_rows(live_server.sandbox, SandboxOenTransaction)) == 1  # five admins' clicks, one charge
