"""Callbacks: stored first, verified, applied once, answered as each provider expects (providers mocked)."""

from __future__ import annotations

import json
import re
import time

import pytest
import responses

from portal.extensions import db
from portal.models import Checkout, CheckoutEvent, Merchant, WebhookEvent
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
        assert event.merchant_id is None  # filed under no merchant on its own word (item 7)
        assert "0" * 32 not in event.body and '"key": "[encrypted]"' in event.body  # MyPay's key is never kept


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
    with app.app_context():
        stored = db.session.execute(db.select(WebhookEvent)).scalar_one()
        checkout = db.session.get(Checkout, checkout_id)
        assert (stored.status, stored.checkout_id, stored.merchant_id) == ("applied", checkout_id, checkout.merchant_id)
        assert stored.processed_at is not None and stored.error is None


def test_the_callbacks_page_names_the_order_each_callback_was_applied_to(app, client, opay_checkout, seed):
    """The staff's list of callbacks says which order (and attempt) each was applied to, linked to the order; one
    refused names none."""
    checkout_id, reference, amount = opay_checkout
    assert client.post("/webhooks/opay", data=opay_notice(reference, amount)).data == b"1|OK"
    forged = opay_notice(reference, amount, key="0123456789abcdef")
    assert client.post("/webhooks/opay", data=forged).status_code == 400
    with app.app_context():
        order = db.session.get(Checkout, checkout_id).order
        number, order_id = order.number, order.id
        db.session.execute(db.update(WebhookEvent).values(merchant_id=seed.merchant_id))  # the refused one too
        db.session.commit()
    admin = app.test_client()
    admin.post("/login", data={"email": "admin@a.example", "password": PASSWORD})
    page = admin.get("/callbacks").get_data(as_text=True)
    cells = re.findall(r"<td data-label=\"[^\"]*\" data-callback-order>(.*?)</td>", page, re.S)
    assert len(cells) == 2
    assert f'href="/orders/{order_id}">{number}</a>' in cells[1] and reference in cells[1]  # the oldest: applied
    assert cells[0] == "—"  # refused


def test_a_second_paid_notice_is_kept_as_recorded(app, client, opay_checkout):
    """A notice that changes nothing (the attempt was already paid by an earlier one) is kept as recorded, though on
    SQLite it was verified beforehand and stored as it most likely ends (applied)."""
    checkout_id, reference, amount = opay_checkout
    assert client.post("/webhooks/opay", data=opay_notice(reference, amount)).data == b"1|OK"
    assert client.post("/webhooks/opay", data=opay_notice(reference, amount)).data == b"1|OK"  # another RqID
    assert _state(app, checkout_id) == ("paid", "paid")
    with app.app_context():
        rows = db.session.execute(db.select(WebhookEvent).order_by(WebhookEvent.id)).scalars().all()
        assert [(row.status, row.checkout_id, row.attempts) for row in rows] == [
            ("applied", checkout_id, 1),
            ("recorded", checkout_id, 1),
        ]


def test_the_callbacks_page_says_a_notice_that_changed_nothing_found_the_payment_already_so(app, opay_checkout, seed):
    """A paid notice for an attempt already paid (by an earlier notice, or by the customer's return page a moment
    before) is recorded without a change. The list said 「已記錄，狀態未變」, which reads as if the payment had not been
    taken: it says the attempt already was so. A late failure after the payment still reads as no change."""
    checkout_id, reference, amount = opay_checkout
    client = app.test_client()
    for rtn in ("1", "1", "10100058"):  # paid, paid again (another RqID), then a late failure
        assert client.post("/webhooks/opay", data=opay_notice(reference, amount, rtn=rtn)).data == b"1|OK"
    assert _state(app, checkout_id) == ("paid", "paid")
    with app.app_context():
        db.session.execute(db.update(WebhookEvent).values(merchant_id=seed.merchant_id))
        db.session.commit()
    admin = app.test_client()
    admin.post("/login", data={"email": "admin@a.example", "password": PASSWORD})
    badges = lambda page: re.findall(r'data-status="(\w+)">([^<]*)</span>', page.get_data(as_text=True))  # noqa: E731
    assert badges(admin.get("/callbacks", headers={"Accept-Language": "en"})) == [
        ("recorded", "Recorded, no change"),
        ("recorded", "Recorded, already so"),
        ("applied", "Applied"),
    ]
    admin.get("/lang/zh_TW")
    assert [label for _status, label in badges(admin.get("/callbacks"))] == [
        "已記錄，狀態未變",
        "已記錄，先前已是此狀態",
        "已套用",
    ]


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
        assert event.secret_enc is None  # refused: the token is not kept at all


def test_refusal_reason_is_shown_in_the_readers_language(app, client, mypay_checkout):
    from tests.support.apps import browser_default_client

    _checkout_id, reference, amount = mypay_checkout
    client.post("/webhooks/mypay", data=_mypay_report(reference, amount, key="0" * 32))
    with app.app_context():  # a refusal is filed under no merchant; an operator's view of it, here the merchant's
        db.session.execute(db.update(WebhookEvent).values(merchant_id=1))
        db.session.commit()
    english = app.test_client()
    english.post("/login", data={"email": "admin@a.example", "password": PASSWORD})
    assert "do not match the order MyPay created" in english.get("/callbacks").get_data(as_text=True)
    chinese = browser_default_client(app)
    chinese.post("/login", data={"email": "admin@a.example", "password": PASSWORD})
    page = chinese.get("/callbacks").get_data(as_text=True)
    assert "與 MyPay 建立的訂單不符" in page and "do not match the order MyPay created" not in page


# ---------------------------------------------------------------- Oen notices are hints (issue 12, item 1)


@pytest.fixture
def oen_paid_checkout(app, seed):
    with app.app_context():
        checkout = make_checkout(make_order(seed.merchant_id), provider="oen", state="paid")
        checkout.provider_checkout_id = "2eqe6kF33wbq9Dy1UNoMPzY7tal"
        checkout.provider_transaction_id = "P202210139EKASEJ7"
        checkout.paid_amount = checkout.amount
        checkout.card_token_enc = encrypt_secret("the-real-token")
        db.session.commit()
        return checkout.id, checkout.reference, checkout.amount


def _oen_rows(reference, amount, status="charged"):
    row = {
        "id": "P202210139EKASEJ7",
        "transactionId": "T1",
        "action": "onetime",
        "amount": amount,
        "status": status,
        "orderId": reference,
        "paymentInfo": {"cardType": "VISA", "cardNum": "4242424242424242", "method": "card"},
    }
    return {"code": "S0000", "data": {"transactions": [row]}}


def _oen_query_url(app, reference):
    return f"{app.config['OEN_API_URL']}/order/{reference}/transactions"


@responses.activate
@pytest.mark.parametrize("status", ["refunded", "failed", "cancelled", "refundedPostPayout", "charged", "initiated"])
def test_forged_oen_status_notice_for_a_paid_order_changes_nothing(app, client, oen_paid_checkout, status):
    checkout_id, reference, amount = oen_paid_checkout
    responses.get(_oen_query_url(app, reference), json=_oen_rows(reference, amount, "charged"))
    forged = {
        "purpose": "charge",
        "merchantId": "shopa",
        "orderId": reference,
        "transactionHid": "P202210139EKASEJ7",
        "status": status,
        "amount": amount,
    }
    response = client.post("/webhooks/oen", json=forged)
    assert response.status_code == 200
    assert _state(app, checkout_id) == ("paid", "paid")
    assert len(responses.calls) == 1  # Oen was asked
    with app.app_context():
        checkout = db.session.get(Checkout, checkout_id)
        assert checkout.refunded_amount == 0
        event = db.session.execute(db.select(WebhookEvent)).scalar_one()
        assert event.status == ("recorded" if status == "charged" else "unconfirmed")


@responses.activate
def test_oen_refund_notice_confirmed_by_oen_is_applied(app, client, oen_paid_checkout):
    checkout_id, reference, amount = oen_paid_checkout
    rows = _oen_rows(reference, amount, "refunded")
    rows["data"]["transactions"][0]["refundAmount"] = amount
    responses.get(_oen_query_url(app, reference), json=rows)
    notice = {
        "purpose": "charge",
        "merchantId": "shopa",
        "orderId": reference,
        "transactionHid": "P202210139EKASEJ7",
        "status": "refunded",
    }
    assert client.post("/webhooks/oen", json=notice).status_code == 200
    assert _state(app, checkout_id)[0] == "refunded"
    with app.app_context():
        assert db.session.execute(db.select(WebhookEvent)).scalar_one().status == "applied"


@responses.activate
def test_forged_oen_failed_token_notice_changes_nothing(app, client, seed):
    with app.app_context():
        checkout = make_checkout(make_order(seed.merchant_id), provider="oen")
        checkout.provider_checkout_id = "chk1"
        db.session.commit()
        checkout_id, reference = checkout.id, checkout.reference
    responses.get(_oen_query_url(app, reference), json={"code": "S0000", "data": {"transactions": []}})
    forged = {"success": False, "purpose": "token", "merchantId": "shopa", "customId": reference, "id": "chk1"}
    assert client.post("/webhooks/oen", json=forged).status_code == 200
    assert _state(app, checkout_id)[0] == "awaiting_payment"
    with app.app_context():
        assert db.session.execute(db.select(WebhookEvent)).scalar_one().status == "unconfirmed"


@responses.activate
def test_oen_token_notice_for_a_paid_checkout_takes_no_token_and_charges_nothing(app, client, oen_paid_checkout):
    checkout_id, reference, amount = oen_paid_checkout
    forged = {
        "success": True,
        "purpose": "token",
        "merchantId": "shopa",
        "customId": reference,
        "id": "2eqe6kF33wbq9Dy1UNoMPzY7tal",
        "token": "attackers-token",
        "amount": 1,
    }
    client.post("/webhooks/oen", json=forged)
    assert [c.request.method for c in responses.calls if c.request.method == "POST"] == []  # nothing charged
    with app.app_context():
        checkout = db.session.get(Checkout, checkout_id)
        from portal.security import decrypt_secret

        assert decrypt_secret(checkout.card_token_enc) == "the-real-token"
        assert checkout.state == "paid"


@responses.activate
def test_oen_token_notice_is_charged_for_the_checkouts_amount_only(app, client, seed):
    with app.app_context():
        checkout = make_checkout(make_order(seed.merchant_id), provider="oen")
        checkout.provider_checkout_id = "chk2"
        db.session.commit()
        reference, amount = checkout.reference, checkout.amount
    responses.post(
        f"{app.config['OEN_API_URL']}/token/transactions", json={"code": "S0000", "data": {"id": "P1", "authCode": "1"}}
    )
    responses.get(_oen_query_url(app, reference), json=_oen_rows(reference, amount))
    notice = {
        "success": True,
        "purpose": "token",
        "merchantId": "shopa",
        "customId": reference,
        "id": "chk2",
        "token": "tok-123",
        "amount": 1,
    }
    client.post("/webhooks/oen", json=notice)
    charges = [c for c in responses.calls if c.request.method == "POST"]
    assert len(charges) == 1 and json.loads(charges[0].request.body)["amount"] == amount


def test_unconfirmed_status_is_labelled_in_both_languages(app):
    from portal.labels import CALLBACK_STATUS_LABELS

    assert "unconfirmed" in CALLBACK_STATUS_LABELS
    with app.test_request_context(headers={"Accept-Language": "zh-TW"}):
        assert str(CALLBACK_STATUS_LABELS["unconfirmed"]) != "Not confirmed by the provider, no change"


# ---------------------------------------------------------------- nothing secret at rest (issue 12, item 6)

WHOLE_CARDS = ("4242424242424242", "4938 1701 3000 0003", "5200-0000-0000-2151")


def luhn_runs(text: str) -> list[str]:
    """Every Luhn-valid 13–19 digit run in text (the redaction's own definition, checked independently here)."""
    from portal.payments.redaction import has_card_number

    found = []
    for match in re.finditer(r"\d(?:[ -]?\d)*", text or ""):
        digits = re.sub(r"\D", "", match.group(0))
        if has_card_number(digits):
            found.append(digits)
    return found


@pytest.mark.parametrize("provider", ["oen", "mypay", "opay"])
@pytest.mark.parametrize("content_type", ["application/json", "application/x-www-form-urlencoded", "text/plain"])
def test_a_stored_callback_never_holds_a_card_number_a_token_or_a_mypay_key(app, client, seed, provider, content_type):
    fields = {
        "merchantId": "shopa",
        "purpose": "charge",
        "cardNum": WHOLE_CARDS[0],
        "cardno": "493817******0003",
        "paymentInfo": json.dumps({"cardNum": "4012888818888333", "method": "card"}),
        "note": f"card {WHOLE_CARDS[1]} and {WHOLE_CARDS[2]}",
        "token": "tok_secret_value_123",
        "key": "d2c55a2055cbe6f711f1e977039e2a8f",
        "uid": "95227",
    }
    if content_type == "application/json":
        body = json.dumps({**fields, "paymentInfo": {"cardNum": "4012888818888333", "cardType": "VISA"}})
    else:
        from urllib.parse import urlencode

        body = urlencode(fields)
    client.post(f"/webhooks/{provider}", data=body, content_type=content_type)
    with app.app_context():
        event = db.session.execute(db.select(WebhookEvent)).scalar_one()
        stored = event.body
    assert luhn_runs(stored) == []
    for secret in ("tok_secret_value_123", "d2c55a2055cbe6f711f1e977039e2a8f", "4938170130", "493817", "40128888"):
        assert secret not in stored.replace(" ", "").replace("-", "")
    page = _admin_page(app)
    assert luhn_runs(page) == [] and "493817" not in page and "tok_secret_value_123" not in page


def _admin_page(app) -> str:
    admin = app.test_client()
    admin.post("/login", data={"email": "admin@a.example", "password": PASSWORD})
    with app.app_context():  # file the callback under the merchant so its page shows it
        db.session.execute(db.update(WebhookEvent).values(merchant_id=1))
        db.session.commit()
    return admin.get("/callbacks").get_data(as_text=True)


def test_callbacks_page_shows_no_more_than_the_last_four_digits(app, client, mypay_checkout):
    _checkout_id, reference, amount = mypay_checkout
    client.post("/webhooks/mypay", data=_mypay_report(reference, amount, key="0" * 32))
    page = _admin_page(app)
    assert "0003" in page and "493817" not in page and "0" * 32 not in page


def test_redaction_takes_any_depth_without_recursion():
    from portal.payments.redaction import scrub

    deep: object = {"cardNum": WHOLE_CARDS[0]}
    for _ in range(50_000):
        deep = {"a": [deep]}
    kept, found = scrub({"token": "t", "x": deep})
    assert found == {"token": "t"}
    node = kept["x"]
    for _ in range(50_000):
        node = node["a"][0]
    assert node == {"cardNum": "•••• 4242"}


@responses.activate
def test_a_callback_resent_after_the_query_was_down_is_processed_again(app, client, mypay_checkout):
    """MyPay resends the same body; once its query answers again, the resend is confirmed and applied."""
    checkout_id, reference, amount = mypay_checkout
    report = _mypay_report(reference, amount)
    responses.post(app.config["MYPAY_API_URL"], status=500)
    assert client.post("/webhooks/mypay", data=report).status_code == 503
    responses.replace(responses.POST, app.config["MYPAY_API_URL"], json=report)
    response = client.post("/webhooks/mypay", data=report)
    assert response.status_code == 200 and response.data == b"8888"
    assert _state(app, checkout_id) == ("paid", "paid")
    with app.app_context():
        event = db.session.execute(db.select(WebhookEvent)).scalar_one()
        assert (event.status, event.attempts, event.error) == ("applied", 2, None)


def test_a_callback_resent_once_the_attempt_is_open_is_applied(app, client, seed):
    with app.app_context():
        checkout = make_checkout(make_order(seed.merchant_id), provider="opay", state="creating")
        checkout_id, reference, amount = checkout.id, checkout.reference, checkout.amount
    notice = opay_notice(reference, amount)
    assert client.post("/webhooks/opay", data=notice).status_code == 503
    with app.app_context():
        db.session.get(Checkout, checkout_id).state = "awaiting_payment"
        db.session.commit()
    response = client.post("/webhooks/opay", data=notice)
    assert response.status_code == 200 and response.data == b"1|OK"
    assert _state(app, checkout_id) == ("paid", "paid")


def test_a_failure_while_applying_keeps_the_callback_and_its_rqid_for_the_resend(
    app, client, opay_checkout, monkeypatch
):
    """Stored before processed: the failed processing is undone (its RqID too), the stored row says so, and the
    provider's resend of the same notice is applied."""
    from portal.payments import callbacks

    checkout_id, reference, amount = opay_checkout
    notice = opay_notice(reference, amount)
    real = callbacks.apply_state
    calls = []

    def broken_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            real(*args, **kwargs)  # writes, then fails: the writes must not stay
            raise RuntimeError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(callbacks, "apply_state", broken_once)
    response = client.post("/webhooks/opay", data=notice)
    assert response.status_code == 503
    assert _state(app, checkout_id) == ("awaiting_payment", "awaiting_payment")
    with app.app_context():
        event = db.session.execute(db.select(WebhookEvent)).scalar_one()
        assert (event.status, event.error) == ("error", "RuntimeError")
        assert not db.session.execute(db.select(CheckoutEvent).filter_by(checkout_id=checkout_id)).scalars().all()
    response = client.post("/webhooks/opay", data=notice)
    assert response.status_code == 200 and response.data == b"1|OK"
    assert _state(app, checkout_id) == ("paid", "paid")


def test_an_attempt_changed_after_a_notice_was_verified_is_applied_as_it_is_then(
    app, client, opay_checkout, monkeypatch
):
    """On SQLite a notice is verified before the write lock; if another writer changes its attempt in between, the
    notice is applied to the attempt as it is under the lock, not as it was read: staff cancelled the link meanwhile,
    so the payment that came anyway is kept and flagged for a person."""
    from sqlalchemy import text

    from portal.payments import callbacks

    checkout_id, reference, amount = opay_checkout
    real_end_reads = callbacks.end_reads
    changed: list[bool] = []

    def end_reads_then_change():
        real_end_reads()
        with db.engine.begin() as other:  # another writer, after the notice was verified and before its write lock
            other.execute(text("UPDATE checkout SET state = 'cancelled' WHERE id = :id"), {"id": checkout_id})
        changed.append(True)

    with app.app_context():
        if db.engine.dialect.name != "sqlite":
            pytest.skip("verified before the write lock on SQLite only; PostgreSQL verifies with the attempt locked")
    monkeypatch.setattr(callbacks, "end_reads", end_reads_then_change)
    response = client.post("/webhooks/opay", data=opay_notice(reference, amount))
    assert changed == [True]
    assert response.status_code == 200 and response.data == b"1|OK"
    assert _state(app, checkout_id) == ("paid", "paid")
    with app.app_context():
        assert db.session.get(Checkout, checkout_id).needs_attention is True


@pytest.mark.parametrize("listening", [False, True], ids=["no endpoint", "an endpoint and a staff address"])
def test_an_opay_notice_holds_the_sqlite_write_lock_for_its_writes_only(
    app, client, seed, opay_checkout, monkeypatch, listening
):
    """SQLite has one write lock for every writer of the portal: a notice is verified before it asks for the lock
    (its merchant read, with whether a webhook endpoint listens and where staff hear of payments; its body decrypted;
    its attempt found), and under the lock only what the writes need is read. The order's event and the staff's mail
    still follow the merchant's settings."""
    from sqlalchemy import event

    from portal.merchant_webhooks import create_endpoint
    from portal.models import MerchantEvent, OutboxMessage
    from portal.providers.opay import OPayProvider

    with app.app_context():
        engine = db.engine
        if listening:
            create_endpoint(seed.merchant_id, "https://erp.example/hooks")
            db.session.get(Merchant, seed.merchant_id).notify_email = "orders@shop.example"
            db.session.commit()
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite's one write lock; PostgreSQL locks the attempt's row only")
    app.config["MAIL_SERVER"] = "127.0.0.1"  # mails are queued (the worker would send them)
    checkout_id, reference, amount = opay_checkout
    under_lock: list[bool] = [False]
    statements: list[tuple[bool, str]] = []
    decrypted: list[bool] = []

    def statement(_conn, _cursor, sql, *_args):
        if sql.startswith("BEGIN IMMEDIATE"):
            under_lock[0] = True
        statements.append((under_lock[0], sql))

    def committed(_conn):
        under_lock[0] = False

    real_decrypt = OPayProvider.decrypt

    def decrypt(self, *args, **kwargs):
        decrypted.append(under_lock[0])
        return real_decrypt(self, *args, **kwargs)

    monkeypatch.setattr(OPayProvider, "decrypt", decrypt)
    event.listen(engine, "before_cursor_execute", statement)
    event.listen(engine, "commit", committed)
    try:
        response = client.post("/webhooks/opay", data=opay_notice(reference, amount))
    finally:
        event.remove(engine, "before_cursor_execute", statement)
        event.remove(engine, "commit", committed)
    assert response.status_code == 200 and response.data == b"1|OK"
    assert _state(app, checkout_id) == ("paid", "paid")
    assert decrypted == [False]  # decrypted once, before the lock
    locked = [sql for held, sql in statements if held]
    assert locked and not any("FROM merchant" in sql for sql in locked)
    # Whether an endpoint listens was read with the merchant: its endpoints are read under the lock only if one does.
    assert any("FROM webhook_endpoint" in sql for sql in locked) == listening
    assert sum(1 for held, sql in statements if not held and "FROM merchant" in sql) == 1
    # Its attempt, with the order, read once before the lock (as the ORM objects it is applied to), compared under it.
    assert sum(1 for held, sql in statements if not held and "FROM checkout" in sql) == 1
    # The callback's row is written once: stored as it ends (applied, to its attempt), not stored then updated.
    writes = [re.match(r"(INSERT INTO|UPDATE) webhook_event\b", sql) for sql in locked]
    assert [found.group(0) for found in writes if found] == ["INSERT INTO webhook_event"]
    with app.app_context():
        events = db.session.execute(db.select(MerchantEvent.type).filter_by(merchant_id=seed.merchant_id)).scalars()
        topics = db.session.execute(db.select(OutboxMessage.topic).filter_by(merchant_id=seed.merchant_id)).scalars()
        assert list(events) == (["order.paid"] if listening else [])
        assert sorted(topics) == (["order.paid", "receipt", "staff_paid"] if listening else ["receipt"])


def test_an_opay_notice_on_postgresql_is_stored_once_after_its_attempt_is_locked(app, client, opay_checkout):
    """PostgreSQL: a notice is verified in its transaction with its attempt locked, then stored as it ends (applied,
    to its attempt) in one INSERT; a resend waits at that lock for its original. Not stored, then updated."""
    from sqlalchemy import event

    with app.app_context():
        engine = db.engine
    if engine.dialect.name == "sqlite":
        pytest.skip("PostgreSQL's path; SQLite verifies before its write lock (the test above)")
    checkout_id, reference, amount = opay_checkout
    statements: list[str] = []

    def statement(_conn, _cursor, sql, *_args):
        statements.append(sql)

    event.listen(engine, "before_cursor_execute", statement)
    try:
        response = client.post("/webhooks/opay", data=opay_notice(reference, amount))
    finally:
        event.remove(engine, "before_cursor_execute", statement)
    assert response.status_code == 200 and response.data == b"1|OK"
    assert _state(app, checkout_id) == ("paid", "paid")
    # Stored with its RqID remembered, in one statement: the INSERT is the statement's CTE.
    writes = [i for i, sql in enumerate(statements) if re.search(r"(INSERT INTO|UPDATE) webhook_event\b", sql)]
    assert [re.search(r"(INSERT INTO|UPDATE) webhook_event", statements[i])[0] for i in writes] == [
        "INSERT INTO webhook_event"
    ]
    assert "INSERT INTO seen_nonce" in statements[writes[0]]
    # The attempt's move and its evidence row: one statement too.
    [moved] = [sql for sql in statements if "UPDATE checkout" in sql]
    assert "INSERT INTO checkout_event" in moved
    assert not any(sql.startswith(("INSERT INTO checkout_event", "INSERT INTO seen_nonce")) for sql in statements)
    # Five statements in all (and BEGIN, COMMIT; the pool sends no ping to a live connection): the merchant; the
    # attempt and its order, locked; the store with the RqID; the move with its evidence, answering the order's
    # attempts as they are after it; the order with its receipt (the order's UPDATE the receipt's INSERT's CTE).
    assert len(statements) == 5, statements
    [receipt] = [sql for sql in statements if "INSERT INTO outbox_message" in sql]
    assert receipt.startswith('WITH changed AS \n(UPDATE "order"') and receipt == statements[-1]
    assert "FROM checkout \nWHERE checkout.order_id" in moved
    locking = [i for i, sql in enumerate(statements) if "FROM checkout" in sql and "FOR UPDATE" in sql]
    assert locking and locking[0] < writes[0]
    with app.app_context():
        stored = db.session.execute(db.select(WebhookEvent).order_by(WebhookEvent.id.desc())).scalars().first()
        assert (stored.status, stored.checkout_id) == ("applied", checkout_id)


@pytest.mark.parametrize(
    "provider, form",
    [
        ("oen", {"merchantId": "\x00", "id": "x"}),
        ("opay", {"MerchantID": "30\x0002607", "Data": "x", "RqID": "r"}),
    ],
    ids=["Oen merchant id", "O'Pay merchant id"],
)
def test_a_callback_naming_a_merchant_with_a_nul_character_is_refused_not_a_server_error(app, client, provider, form):
    """PostgreSQL cannot compare a NUL character with any stored text: looking up the merchant such a callback names
    failed with a server error (found by tests/unit/providers/test_callback_fuzz.py). No merchant has such an id."""
    response = client.post(f"/webhooks/{provider}", data=form)
    assert (response.status_code, response.data) == (400, b"refused")
    with app.app_context():
        stored = db.session.execute(db.select(WebhookEvent).order_by(WebhookEvent.id.desc())).scalars().first()
        assert (stored.provider, stored.status) == (provider, "refused")


def test_an_opay_notice_with_a_nul_character_in_its_rqid_is_refused_and_changes_nothing(app, client, opay_checkout):
    """O'Pay's RqID is remembered to catch replays; one with a NUL character cannot be stored on PostgreSQL, and no
    request id of O'Pay's has one: the notice is refused, its attempt left as it was."""
    checkout_id, reference, amount = opay_checkout
    response = client.post("/webhooks/opay", data=opay_notice(reference, amount, rqid="A1\x00B2"))
    assert (response.status_code, response.data) == (400, b"refused")
    assert _state(app, checkout_id) == ("awaiting_payment", "awaiting_payment")
