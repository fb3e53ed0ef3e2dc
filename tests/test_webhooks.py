"""Callbacks: stored first, verified, applied once, answered as each provider expects (providers mocked)."""

from __future__ import annotations

import json
import time

import pytest
import responses

from portal.extensions import db
from portal.models import Checkout, CheckoutEvent, WebhookEvent
from portal.security import encrypt_secret
from tests.support.accounts import OPAY_KEY
from tests.support.constants import PASSWORD
from tests.support.factories import make_checkout, make_order
from tests.support.providers import opay_notice


@pytest.fixture
def mypay_checkout(app, seed):
    with app.app_context():
        checkout = make_checkout(make_order(seed.merchant_id), provider="mypay")
        checkout.provider_checkout_id = "95227"
        checkout.provider_secret_enc = encrypt_secret("d2c55a2055cbe6f711f1e977039e2a8f")
        db.session.commit()
        return checkout.id, checkout.reference, checkout.amount


def _mypay_report(reference, amount, prc="250", key="d2c55a2055cbe6f711f1e977039e2a8f"):
    return {
        "uid": "95227",
        "key": key,
        "prc": prc,
        "finishtime": "20261122103000",
        "order_id": reference,
        "user_id": "u1",
        "cost": str(amount),
        "currency": "TWD",
        "pfn": "CREDITCARD",
        "retmsg": "交易成功",
        "cardno": "493817******0003",
    }


def _state(app, checkout_id):
    with app.app_context():
        checkout = db.session.get(Checkout, checkout_id)
        return checkout.state, checkout.order.state


@responses.activate
def test_mypay_paid_callback_is_confirmed_by_query_then_applied(app, client, mypay_checkout):
    checkout_id, reference, amount = mypay_checkout
    responses.post(app.config["MYPAY_API_URL"], json=_mypay_report(reference, amount))
    response = client.post("/webhooks/mypay", data=_mypay_report(reference, amount))
    assert response.status_code == 200 and response.data == b"8888"
    assert _state(app, checkout_id) == ("paid", "paid")
    assert len(responses.calls) == 1  # the api/queryorder confirmation
    with app.app_context():
        event = db.session.execute(db.select(WebhookEvent)).scalar_one()
        assert event.status == "applied" and event.checkout_id == checkout_id


@responses.activate
def test_mypay_callback_not_confirmed_by_query_changes_nothing(app, client, mypay_checkout):
    checkout_id, reference, amount = mypay_checkout
    responses.post(app.config["MYPAY_API_URL"], json=_mypay_report(reference, amount, prc="200"))
    response = client.post("/webhooks/mypay", data=_mypay_report(reference, amount))
    assert response.status_code == 200
    assert _state(app, checkout_id) == ("awaiting_payment", "awaiting_payment")


@responses.activate
def test_mypay_callback_with_the_query_down_asks_to_be_resent(app, client, mypay_checkout):
    checkout_id, reference, amount = mypay_checkout
    responses.post(app.config["MYPAY_API_URL"], status=500)
    response = client.post("/webhooks/mypay", data=_mypay_report(reference, amount))
    assert response.status_code == 503 and response.data != b"8888"
    assert _state(app, checkout_id)[0] == "awaiting_payment"


def test_mypay_forged_key_is_stored_refused_and_never_applied(app, client, mypay_checkout):
    checkout_id, reference, amount = mypay_checkout
    response = client.post("/webhooks/mypay", data=_mypay_report(reference, amount, key="0" * 32))
    assert response.status_code == 400 and response.data != b"8888"
    assert _state(app, checkout_id)[0] == "awaiting_payment"
    with app.app_context():
        event = db.session.execute(db.select(WebhookEvent)).scalar_one()
        assert event.status == "refused" and "key" in event.error
        assert event.merchant_id is not None  # so the merchant's admins see it
        assert "0" * 32 in event.body  # kept as received


@pytest.mark.parametrize(
    "body,content_type",
    [
        (b"", "application/x-www-form-urlencoded"),
        (b"\xff\xfe\x00garbage", "application/octet-stream"),
        (b"{not json", "application/json"),
        (b"order_id=NOPE&uid=1&key=2&prc=250", "application/x-www-form-urlencoded"),
    ],
)
@pytest.mark.parametrize("provider", ["oen", "mypay", "opay"])
def test_garbage_callbacks_are_refused_and_kept(app, client, seed, provider, body, content_type):
    response = client.post(f"/webhooks/{provider}", data=body, content_type=content_type)
    assert response.status_code == 400
    with app.app_context():
        event = db.session.execute(db.select(WebhookEvent)).scalar_one()
        assert event.status == "refused"


def test_unknown_provider_is_404(client):
    assert client.post("/webhooks/paypal", data={"a": "b"}).status_code == 404


@pytest.fixture
def opay_checkout(app, seed):
    with app.app_context():
        checkout = make_checkout(make_order(seed.merchant_id), provider="opay")
        return checkout.id, checkout.reference, checkout.amount


def test_opay_notice_is_applied_and_answered_1_ok(app, client, opay_checkout):
    checkout_id, reference, amount = opay_checkout
    response = client.post("/webhooks/opay", data=opay_notice(reference, amount))
    assert response.status_code == 200 and response.data == b"1|OK"
    assert _state(app, checkout_id) == ("paid", "paid")


@pytest.mark.parametrize(
    "change",
    [
        {"key": "0123456789abcdef"},  # wrong key
        {"timestamp": time.time() - 3600},  # stale
        {"amount_delta": 1},  # wrong amount
        {"reference": "CUNKNOWN0000000000000"},  # unknown trade
    ],
)
def test_opay_forged_notices_are_refused(app, client, opay_checkout, change):
    checkout_id, reference, amount = opay_checkout
    notice = opay_notice(
        change.get("reference", reference),
        amount + change.get("amount_delta", 0),
        timestamp=change.get("timestamp"),
        key=change.get("key", OPAY_KEY),
    )
    response = client.post("/webhooks/opay", data=notice)
    assert response.status_code == 400
    assert _state(app, checkout_id)[0] == "awaiting_payment"
    with app.app_context():
        assert db.session.execute(db.select(WebhookEvent.status)).scalar_one() == "refused"


def test_opay_replayed_rqid_is_refused(app, client, opay_checkout):
    checkout_id, reference, amount = opay_checkout
    first = opay_notice(reference, amount, rtn="0")  # not paid
    assert client.post("/webhooks/opay", data=first).status_code == 200
    replay = opay_notice(reference, amount, rqid=first["RqID"])  # same RqID, new body
    assert client.post("/webhooks/opay", data=replay).status_code == 400
    assert _state(app, checkout_id)[0] == "failed"


def test_the_same_callback_fifty_times_changes_state_once(app, client, opay_checkout):
    checkout_id, reference, amount = opay_checkout
    notice = opay_notice(reference, amount)
    replies = {client.post("/webhooks/opay", data=notice).data for _ in range(50)}
    assert replies == {b"1|OK"}
    with app.app_context():
        changes = (
            db.session.execute(
                db.select(CheckoutEvent).filter_by(checkout_id=checkout_id, source="callback", applied=True)
            )
            .scalars()
            .all()
        )
        assert len(changes) == 1
        event = db.session.execute(db.select(WebhookEvent)).scalar_one()
        assert event.attempts == 50


def test_a_callback_for_an_attempt_still_being_opened_asks_for_a_resend(app, client, seed):
    with app.app_context():
        checkout = make_checkout(make_order(seed.merchant_id), provider="opay", state="creating")
        reference, amount = checkout.reference, checkout.amount
    response = client.post("/webhooks/opay", data=opay_notice(reference, amount))
    assert response.status_code == 503


def test_oen_token_is_never_stored_in_clear(app, client, seed):
    body = {
        "success": True,
        "purpose": "token",
        "merchantId": "shopa",
        "customId": "CNOPE",
        "id": "x",
        "token": "tok_secret_value_123",
        "transactionId": "t",
        "message": None,
    }
    client.post("/webhooks/oen", data=json.dumps(body), content_type="application/json")
    with app.app_context():
        event = db.session.execute(db.select(WebhookEvent)).scalar_one()
        assert "tok_secret_value_123" not in event.body
        assert event.secret_enc and "tok_secret_value_123" not in event.secret_enc


def test_refusal_reason_is_shown_in_the_readers_language(app, client, mypay_checkout):
    from tests.support.apps import browser_default_client

    _checkout_id, reference, amount = mypay_checkout
    client.post("/webhooks/mypay", data=_mypay_report(reference, amount, key="0" * 32))
    english = app.test_client()
    english.post("/login", data={"email": "admin@a.example", "password": PASSWORD})
    assert "do not match the order MyPay created" in english.get("/callbacks").get_data(as_text=True)
    chinese = browser_default_client(app)
    chinese.post("/login", data={"email": "admin@a.example", "password": PASSWORD})
    page = chinese.get("/callbacks").get_data(as_text=True)
    assert "與 MyPay 建立的訂單不符" in page and "do not match the order MyPay created" not in page
