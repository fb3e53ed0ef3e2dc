"""The customer is told of a refund once it is made, by mail, in their language: not while it is unsettled or after it
was refused, and once however often it is confirmed. Against a real SMTP server, sent by the worker."""

from __future__ import annotations

import time

import pytest
import requests
import responses

from portal import worker
from portal.extensions import db
from portal.models import Checkout, Order, OutboxMessage, Refund
from tests.test_refunds import HID, confirm, oen_query, oen_refund_ok, oen_url, paid


@pytest.fixture
def app(mail_app):
    """The portal with mail on, for the other fixtures (seed, client, auth) too."""
    return mail_app


@pytest.fixture
def admin(client, auth):
    auth.login()
    return client


def _text(message) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


def _html(message) -> str:
    return message.get_body(preferencelist=("html",)).get_content()


def _refund_mails(app) -> list[tuple[str, str]]:
    with app.app_context():
        rows = db.session.execute(db.select(OutboxMessage).filter_by(topic="refund")).scalars().all()
        return [(m.state, m.payload["to"]) for m in rows]


def _paid(app, seed, smtp, provider="oen", *, last4=None, locale=None) -> tuple[int, int, str]:
    """A paid order (tests.test_refunds.paid) whose receipt has gone out, so only what follows is in smtp.messages."""
    order_id, checkout_id, ref = paid(app, seed, provider)
    with app.app_context():
        checkout = db.session.get(Checkout, checkout_id)
        checkout.card_last4 = last4
        db.session.get(Order, order_id).customer_locale = locale
        db.session.commit()
    worker.run_once(app)
    # the receipt (its language was chosen when the payment enqueued it, before the locale was set here)
    assert [m["Subject"] for m in smtp.wait_for(1)] == [_subject(app, order_id, "receipt", None)]
    smtp.clear()
    return order_id, checkout_id, ref


def _subject(app, order_id, topic, locale) -> str:
    with app.app_context():
        number = db.session.get(Order, order_id).number
    if locale == "en":
        return f"Shop A: {topic} for order {number}"
    return f"Shop A：訂單 {number} 的" + {"receipt": "付款收據", "refund": "退款通知"}[topic]


def test_a_refund_made_at_the_provider_is_mailed_to_the_customer_once(app, seed, admin, smtp):
    order_id, _checkout_id, ref = _paid(app, seed, smtp, last4="4242")
    with responses.RequestsMock() as rsps:
        oen_query(app, rsps, ref)
        oen_refund_ok(app, rsps, 400)
        fields, done = confirm(admin, order_id, 400)
        assert done.status_code == 302
        admin.post(f"/orders/{order_id}/refunds", data=fields)  # the same confirmation again: nothing more
    assert worker.run_once(app)
    worker.run_once(app)
    [mail] = smtp.wait_for(1)
    time.sleep(0.3)
    assert len(smtp.messages) == 1
    with app.app_context():
        number = db.session.get(Order, order_id).number
    assert mail["To"] == "buyer@example.com"
    assert mail["Subject"] == _subject(app, order_id, "refund", None)
    text = _text(mail)
    assert f"Shop A 已退還訂單 {number} 的款項 NT$400。" in text
    assert "退回至：應援科技 · 卡號末四碼 4242" in text
    assert "已付款：NT$1,000" in text and "累計已退款：NT$400" in text
    assert "4242424242424242" not in text + _html(mail)  # the provider's whole card number is never in a mail
    assert "NT$400" in _html(mail)
    assert _refund_mails(app) == [("sent", "buyer@example.com")]


def test_no_mail_while_the_outcome_is_unknown_and_one_when_a_query_shows_it_made(app, seed, admin, smtp):
    order_id, _checkout_id, ref = _paid(app, seed, smtp, locale="en")
    with responses.RequestsMock() as rsps:
        oen_query(app, rsps, ref)
        rsps.post(oen_url(app, f"/refunds/{HID}"), body=requests.ReadTimeout("slow"))
        confirm(admin, order_id, 1000)
    worker.run_once(app)
    assert _refund_mails(app) == [] and smtp.messages == []
    with app.app_context():
        refund_id = db.session.execute(db.select(Refund.id).filter_by(order_id=order_id)).scalar_one()
    with responses.RequestsMock() as rsps:
        oen_query(app, rsps, ref, status="refunded", refunded=1000)
        admin.post(f"/orders/{order_id}/refunds/{refund_id}/check")
        admin.post(f"/orders/{order_id}/refunds/{refund_id}/check")  # again: settled, so neither asked nor mailed
    worker.run_once(app)
    [mail] = smtp.wait_for(1)
    assert mail["Subject"] == _subject(app, order_id, "refund", "en")
    text = _text(mail)
    assert "has refunded NT$1,000 for order" in text and "Refunded in all: NT$1,000" in text
    assert "a few business days" in text
    assert _refund_mails(app) == [("sent", "buyer@example.com")]


def test_a_refused_refund_sends_no_mail(app, seed, admin, smtp):
    order_id, _checkout_id, _ref = _paid(app, seed, smtp, "mypay")
    with responses.RequestsMock() as rsps:
        rsps.post(app.config["MYPAY_API_URL"], json={"code": "B500", "msg": "執行失敗"})
        confirm(admin, order_id, 500, invoice_state="6")
    worker.run_once(app)
    time.sleep(0.3)
    assert _refund_mails(app) == [] and smtp.messages == []


def test_a_refund_made_in_the_providers_back_office_names_the_provider(app, seed, admin, smtp):
    """O'Pay's refunds are made in its back office and recorded here with its reference: the money goes back through
    O'Pay all the same. The mail said the shop had returned it directly, not through the provider."""
    order_id, _checkout_id, _ref = _paid(app, seed, smtp, "opay", locale="en")
    with responses.RequestsMock():  # nothing is called: the refund was made at O'Pay
        confirm(admin, order_id, 1000, manual_reference="OPAYRF1")
    worker.run_once(app)
    [mail] = smtp.wait_for(1)
    text = _text(mail)
    assert "has refunded NT$1,000 for order" in text and "Refunded to: O'Pay" in text
    assert "directly" not in text and "OPAYRF1" not in text
