"""MyPay ATM virtual accounts and convenience-store codes: read from the callback and from api/queryorder, kept on
the attempt, shown to the customer (return page) and to staff (order page); a card's last four digits, never more."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
import responses

from portal.extensions import db
from portal.models import Checkout
from portal.providers.mypay import offline_payment
from portal.security import encrypt_secret
from tests.support.factories import make_checkout, make_order

KEY = "d2c55a2055cbe6f711f1e977039e2a8f"
ACCOUNT = "91234567890123"


@pytest.fixture
def mypay_checkout(app, seed):
    with app.app_context():
        checkout = make_checkout(make_order(seed.merchant_id), provider="mypay")
        checkout.provider_checkout_id = "95227"
        checkout.provider_secret_enc = encrypt_secret(KEY)
        db.session.commit()
        return checkout.id, checkout.reference, checkout.amount, checkout.public_token


def report(reference, amount, prc="270", method="E_COLLECTION", content=None, **extra):
    fields = {
        "uid": "95227",
        "key": KEY,
        "prc": prc,
        "finishtime": "20261127103000",
        "order_id": reference,
        "user_id": "u1",
        "cost": str(amount),
        "actual_cost": str(amount),
        "currency": "TWD",
        "pfn": method,
        "retmsg": "虛擬帳號取號成功,等待繳費",
        "cardno": "",
        "bank_id": "822" if method == "E_COLLECTION" else "",
        "expired_date": "20261130235959",
        "result_type": 4,
        "result_content_type": method,
        "result_content": json.dumps(
            content if content is not None else {"PinCode": ACCOUNT, "LimitDate": "20261130235959", "BankCode": "822"}
        ),
    }
    fields.update(extra)
    return fields


def stored(app, checkout_id) -> Checkout:
    with app.app_context():
        checkout = db.session.get(Checkout, checkout_id)
        db.session.expunge(checkout)
        return checkout


@responses.activate
def test_a_waiting_atm_report_is_kept_without_a_query_and_shown_on_the_return_page(app, client, mypay_checkout):
    checkout_id, reference, amount, token = mypay_checkout
    reply = client.post("/webhooks/mypay", data=report(reference, amount))
    assert reply.status_code == 200 and reply.data == b"8888"
    assert len(responses.calls) == 0  # "waiting for the transfer" is applied as reported
    checkout = stored(app, checkout_id)
    assert checkout.payment_code == {"kind": "atm", "bank_code": "822", "account": ACCOUNT}
    assert checkout.payment_code_expires_at == datetime(2026, 11, 30, 15, 59, 59)  # 23:59:59 in Taipei, kept in UTC

    # The return page asks MyPay again while the attempt is open: MyPay says the same.
    responses.post(app.config["MYPAY_API_URL"], json=report(reference, amount))
    page = client.get(f"/pay/{token}/return").get_data(as_text=True)
    assert f'value="{ACCOUNT}"' in page
    assert "data-bank-code>822<" in page
    assert f"NT${amount:,}" in page
    assert "2026-11-30 23:59" in page and "Taipei time" in page
    assert 'http-equiv="refresh"' not in page  # the page does not reload under a customer copying the account
    zh = client.get(f"/pay/{token}/return", headers={"Accept-Language": "zh-TW"}).get_data(as_text=True)
    assert "虛擬帳號" in zh and "台北時間" in zh and "銀行代碼" in zh


@responses.activate
def test_a_store_code_read_by_query_is_kept_and_shown_to_customer_and_staff(app, client, auth, mypay_checkout):
    checkout_id, reference, amount, token = mypay_checkout
    code = {
        "PinCode": "LLL12345ABCDEF",
        "LimitDate": "20261201235959",
        "BarCode1": "151201A01",
        "BarCode2": "ABCDEF1234567890",
        "BarCode3": "1201AB000001000",
        "BarcodeEndDate": "20261201235959",
    }
    responses.post(
        app.config["MYPAY_API_URL"],
        json=report(reference, amount, prc="260", method="IBON", content=code, expired_date="20261201235959"),
    )
    page = client.get(f"/pay/{token}/return").get_data(as_text=True)
    checkout = stored(app, checkout_id)
    assert checkout.payment_code == {
        "kind": "cvs",
        "store": "IBON",
        "pin_code": "LLL12345ABCDEF",
        "barcodes": ["151201A01", "ABCDEF1234567890", "1201AB000001000"],
    }
    assert checkout.payment_code_expires_at == datetime(2026, 12, 1, 15, 59, 59)
    assert 'value="LLL12345ABCDEF"' in page and "7-ELEVEN ibon" in page and "2026-12-01 23:59" in page
    auth.login()
    staff_page = client.get(f"/orders/{checkout.order_id}").get_data(as_text=True)
    assert "LLL12345ABCDEF" in staff_page and "2026-12-01 23:59" in staff_page


@responses.activate
def test_a_card_payment_keeps_only_the_last_four_digits(app, client, auth, mypay_checkout):
    checkout_id, reference, amount, _token = mypay_checkout
    paid = report(reference, amount, prc="250", method="CREDITCARD", content={}, cardno="493817******0003")
    paid["result_content"] = "{}"
    responses.post(app.config["MYPAY_API_URL"], json=paid)
    assert client.post("/webhooks/mypay", data=paid).status_code == 200
    checkout = stored(app, checkout_id)
    assert checkout.state == "paid"
    assert checkout.card_last4 == "0003"
    assert checkout.payment_code is None
    auth.login()
    staff_page = client.get(f"/orders/{checkout.order_id}").get_data(as_text=True)
    assert "card ending in 0003" in staff_page and "493817" not in staff_page


@responses.activate
def test_a_code_payable_after_the_links_expiry_keeps_the_attempt_open(app, client, mypay_checkout):
    checkout_id, reference, amount, token = mypay_checkout
    far = {"PinCode": ACCOUNT, "LimitDate": "20991231235959", "BankCode": "822"}
    client.post("/webhooks/mypay", data=report(reference, amount, content=far, expired_date="20991231235959"))
    checkout = stored(app, checkout_id)
    assert checkout.expires_at == datetime(2099, 12, 31, 15, 59, 59)
    responses.post(app.config["MYPAY_API_URL"], json=report(reference, amount, content=far))
    page = client.get(f"/pay/{token}/return").get_data(as_text=True)
    assert f'value="{ACCOUNT}"' in page and "expired" not in page


@pytest.mark.parametrize(
    "fields",
    [
        {"result_content_type": "E_COLLECTION", "result_content": "not json"},
        {"result_content_type": "E_COLLECTION", "result_content": json.dumps({"PinCode": "<script>x</script>"})},
        {"result_content_type": "E_COLLECTION", "result_content": json.dumps(["PinCode"])},
        {"result_content_type": "IBON", "result_content": json.dumps({"PinCode": {"a": 1}, "BarCode1": None})},
        {"result_content_type": "CREDITCARD", "result_content": json.dumps({"PinCode": "123"})},
        {"result_content_type": ["E_COLLECTION"], "result_content": 5},
        {},
    ],
)
def test_odd_payment_info_is_left_out(fields):
    assert offline_payment(fields) == (None, None)


def test_a_bad_deadline_keeps_the_code_without_one():
    code, deadline = offline_payment(
        {"result_content_type": "e_collection", "result_content": {"PinCode": ACCOUNT}, "expired_date": "soon"}
    )
    assert code == {"kind": "atm", "bank_code": "", "account": ACCOUNT} and deadline is None
