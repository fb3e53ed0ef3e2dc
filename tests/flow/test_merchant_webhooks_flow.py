"""The merchant's system hears of a payment made through the sandbox (its own server, real HTTP): a signed order.paid
for the order, once, delivered by the worker's webhook job; an endpoint that fails gets the retry."""

from __future__ import annotations

import pytest

from portal import merchant_webhooks, worker
from portal.extensions import db
from portal.models import Merchant, OutboxMessage, WebhookAttempt, utcnow
from tests.support.browser import Browser
from tests.support.hook_receiver import HookReceiver


@pytest.fixture
def browser(live_server):
    b = Browser(live_server.url)
    b.login()
    return b


@pytest.fixture
def receiver(live_server):
    hooks = HookReceiver()
    with live_server.app.app_context():
        merchant = db.session.execute(db.select(Merchant).filter_by(slug="shop-a")).scalar_one()
        _endpoint, hooks.secret = merchant_webhooks.create_endpoint(merchant.id, hooks.url + "/hooks", ["order.paid"])
        db.session.commit()
    yield hooks
    hooks.stop()


def _send(live_server) -> None:
    with live_server.app.app_context():
        worker.run_job(live_server.app, next(j for j in worker.jobs(live_server.app.config) if j.name == "webhooks"))


@pytest.mark.parametrize("provider", ["mypay", "opay"])
def test_a_sandbox_payment_reaches_the_merchants_system_signed_and_once(live_server, browser, receiver, provider):
    order_id = browser.new_order(items=((1000, 1),))
    link = browser.create_link(order_id, provider)
    (browser.pay_mypay if provider == "mypay" else browser.pay_opay)(link)
    browser.wait_for_state(order_id, "paid")
    _send(live_server)
    _send(live_server)  # a second run sends nothing more
    [delivery] = receiver.wait_for(1)
    assert delivery.verified and delivery.status == 200
    event = delivery.event
    assert event["type"] == "order.paid" and event["id"].startswith("evt_")
    assert event["data"]["order"]["id"] == order_id and event["data"]["order"]["state"] == "paid"
    assert event["data"]["order"]["paid_amount"] == 1000 and event["data"]["order"]["checkout"]["provider"] == provider
    assert delivery.headers["Portal-Event-Id"] == event["id"]
    assert len(receiver.deliveries) == 1


def test_a_failing_endpoint_gets_the_retry(live_server, browser, receiver):
    receiver.answer_next((500, 0))
    order_id = browser.new_order(items=((1000, 1),))
    browser.pay_opay(browser.create_link(order_id, "opay"))
    browser.wait_for_state(order_id, "paid")
    _send(live_server)
    receiver.wait_for(1)
    with live_server.app.app_context():
        message = db.session.execute(db.select(OutboxMessage).filter_by(kind="webhook")).scalar_one()
        assert message.state == "pending" and message.attempts == 1
        message.next_attempt_at = utcnow()  # the retry's delay has passed
        db.session.commit()
    _send(live_server)
    first, second = receiver.wait_for(2)
    assert (first.status, second.status) == (500, 200) and first.event["id"] == second.event["id"]
    with live_server.app.app_context():
        codes = db.session.execute(db.select(WebhookAttempt.status_code).order_by(WebhookAttempt.id)).scalars().all()
        assert codes == [500, 200]
