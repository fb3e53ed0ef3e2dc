"""MyPay: the decrypted envelope of every call field by field, every prc code, refunds in voucher mode, callbacks."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from urllib.parse import urlencode

import pytest
import requests
import responses
from Crypto.Cipher import AES
from Crypto.Util.Padding import pad

from portal.providers.base import (
    CallbackRequest,
    InvalidCallback,
    LineItem,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
    State,
)
from portal.providers.crypto import mypay_encrypt
from portal.providers.mypay import PRC, MyPayProvider
from tests.support.accounts import MYPAY_AGENT_KEY, MYPAY_AGENT_UID, MYPAY_NEXT_KEY, MYPAY_STORE_UID
from tests.support.providers import checkout_request, form_of, ref_of, voucher_request

API = "https://pay.usecase.cc/api/agent"
UID, KEY = "95227", "d2c55a2055cbe6f711f1e977039e2a8f"


@pytest.fixture
def mypay() -> MyPayProvider:
    provider = MyPayProvider(
        API, MYPAY_AGENT_UID, MYPAY_AGENT_KEY, MYPAY_STORE_UID, next_agent_key=MYPAY_NEXT_KEY, timeout=6
    )
    provider.http.sleep = lambda s: None
    return provider


def opened(mypay: MyPayProvider, call) -> tuple[dict, dict]:
    """The decrypted (service, data) of a recorded call, after checking the envelope's shape."""
    assert call.request.method == "POST" and call.request.url == API
    assert call.request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    fields = form_of(call.request)
    assert set(fields) == {"agent_uid", "service", "encry_data"}
    assert fields["agent_uid"] == MYPAY_AGENT_UID
    return mypay.decrypt_envelope(fields)


ORDER_OK = {
    "code": "200",
    "msg": "資料正確",
    "url": "http://pay.usecase.cc/payment/95227.html",
    "uid": 95227,
    "key": KEY,
}


# ---------------------------------------------------------------- api/orders


def test_create_order_without_vouchers(mypay, rsps):
    rsps.post(API, json=ORDER_OK)
    link = mypay.create_checkout(checkout_request())
    (call,) = rsps.calls
    service, data = opened(mypay, call)
    assert service == {"service_name": "api", "cmd": "api/orders"}
    assert data == {
        "store_uid": MYPAY_STORE_UID,
        "user_id": "cust-42",
        "order_id": "CK20240901A1",
        "ip": "203.0.113.7",
        "currency": "TWD",
        "items": [
            {"id": "SKU-1", "name": "手沖咖啡豆", "cost": 350, "amount": 2, "total": 700},
            {"id": "SKU-2", "name": "濾杯", "cost": 240, "amount": 1, "total": 240},
            {"id": "shipping", "name": "運費", "cost": 60, "amount": 1, "total": 60},
        ],
        "cost": 1000,
        "echo_0": "CK20240901A1",
        "user_name": "王小明",
        "user_email": "ming@example.com",
        "success_returl": "https://portal.example/pay/tok/return",
        "failure_returl": "https://portal.example/pay/tok/return?failed=1",
    }
    assert "voucher_type" not in data  # voucher mode stays off without vouchers
    assert link.url == "http://pay.usecase.cc/payment/95227.html"
    assert dict(link.provider_ids) == {"uid": "95227", "key": KEY}
    assert KEY not in json.dumps(dict(link.raw))


def test_create_order_with_vouchers(mypay, rsps):
    rsps.post(API, json=ORDER_OK)
    mypay.create_checkout(voucher_request(shipping_fee=80, amount=980))
    _, data = opened(mypay, rsps.calls[0])
    assert data["cost"] == 980
    assert data["items"][-1] == {"id": "shipping", "name": "運費", "cost": 80, "amount": 1, "total": 80}
    assert data["voucher_type"] == "1"
    assert data["voucher_paid"] == [
        {
            "product_id": "P01",
            "serial_number": "P1635306439",
            "name": "好食券",
            "cost": 50,
            "issuer": "1",
            "refund_return_type": "1",
        }
    ]
    assert data["voucher_free"] == [
        {"product_id": "F01", "serial_number": "F1635306439", "name": "VIP免費券", "cost": 50, "issuer": "3"}
    ]
    assert data["voucher_invoice_type"] == "1"
    assert sum(i["total"] for i in data["items"]) - 100 == data["cost"]


def test_create_order_checks_before_sending(mypay, rsps):
    with pytest.raises(ProviderRejected, match="amount"):
        mypay.create_checkout(checkout_request(amount=999))
    with pytest.raises(ProviderRejected, match="50 bytes"):
        mypay.create_checkout(checkout_request(reference="A" * 51))
    long_id = voucher_request(vouchers=(voucher_request().vouchers[0].__class__("paid", "P" * 33, "S1", "券", 100),))
    with pytest.raises(ProviderRejected):
        mypay.create_checkout(long_id)
    assert len(rsps.calls) == 0


@pytest.mark.parametrize(
    ("body", "status", "cls", "code"),
    [
        ({"code": "100", "msg": "資料錯誤"}, 200, ProviderRejected, "100"),
        ({"code": "200", "msg": "ok"}, 200, ProviderError, "bad_response"),
        ("<html>", 200, ProviderError, "bad_response"),
        ("", 500, ProviderUnavailable, "http_500"),
        ("", 404, ProviderError, "http_404"),
    ],
)
def test_create_order_errors_are_typed_and_never_retried(mypay, rsps, body, status, cls, code):
    rsps.post(API, body=body if isinstance(body, str) else json.dumps(body), status=status)
    with pytest.raises(ProviderError) as caught:
        mypay.create_checkout(checkout_request())
    assert type(caught.value) is cls and caught.value.code == code
    assert caught.value.message_en and caught.value.message_zh
    assert len(rsps.calls) == 1


def test_create_order_timeout_is_not_retried(mypay, rsps):
    rsps.post(API, body=requests.exceptions.ReadTimeout())
    with pytest.raises(ProviderUnavailable):
        mypay.create_checkout(checkout_request())
    assert len(rsps.calls) == 1


def test_rejection_quotes_mypay(mypay, rsps):
    rsps.post(API, json={"code": "100", "msg": "資料錯誤"})
    with pytest.raises(ProviderRejected) as caught:
        mypay.create_checkout(checkout_request())
    assert "資料錯誤" in caught.value.message_en and "資料錯誤" in caught.value.message_zh


# ---------------------------------------------------------------- api/queryorder

QUERY_ANSWER = {
    "key": KEY,
    "prc": "250",
    "cardno": "493817******0003",
    "acode": "AA1234",
    "card_type": "1",
    "order_id": "1234567890",
    "user_id": "userid",
    "uid": 95217,
    "cost": 900,
    "currency": "TWD",
    "actual_cost": 900,
    "voucher_paid": [{"product_id": "P01", "serial_number": "P1634864897", "name": "好食券", "cost": 50}],
    "retmsg": "付款完成",
    "pfn": "CREDITCARD",
    "finishtime": "20211022090918",
    "appropriation_date": "20211208",
    "refund_order": [
        {
            "uid": 95232,
            "prc": "230",
            "cost": 900,
            "currency": "TWD",
            "actual_cost": 900,
            "retmsg": "退款完成",
            "finishtime": "20211022162732",
        }
    ],
    "cancel_order": [],
}


def test_query_request_and_transactions(mypay, rsps):
    rsps.post(API, json=QUERY_ANSWER)
    request = voucher_request()
    payment, refund = mypay.query(ref_of(request, uid="95217", key=KEY))
    service, data = opened(mypay, rsps.calls[0])
    assert service == {"service_name": "api", "cmd": "api/queryorder"}
    assert data == {"uid": "95217", "key": KEY}
    assert payment.kind == "payment" and payment.transaction_id == "95217" and payment.amount == 900
    assert payment.state is State.REFUNDED and payment.refunded_amount == 900
    assert payment.card_last4 == "0003" and payment.card_brand == "VISA" and payment.method == "CREDITCARD"
    assert "493817" not in repr(payment)
    assert payment.created_at.isoformat() == "2021-10-22T09:09:18+08:00"
    assert refund.kind == "refund" and refund.state is State.REFUNDED and refund.transaction_id == "95232"
    assert refund.amount == 900 and refund.refunded_at.isoformat() == "2021-10-22T16:27:32+08:00"


def test_query_partial_refund_and_cancel(mypay, rsps):
    answer = {**QUERY_ANSWER, "refund_order": [{"uid": 1, "prc": "230", "cost": 300}]}
    rsps.post(API, json=answer)
    payment, _ = mypay.query(ref_of(voucher_request(), uid="95217", key=KEY))
    assert payment.state is State.PARTIALLY_REFUNDED and payment.refunded_amount == 300
    rsps.replace(
        responses.POST,
        API,
        json={**QUERY_ANSWER, "refund_order": [], "cancel_order": [{"uid": 2, "prc": "220", "cost": 900}]},
    )
    payment, cancel = mypay.query(ref_of(voucher_request(), uid="95217", key=KEY))
    assert payment.state is State.CANCELLED and cancel.state is State.CANCELLED
    assert cancel.details["record"] == "cancel_order"


# The e-invoice and instalment fields of the document's api/queryorder example (the agent PayPage, voucher mode).
INVOICE_FIELDS = {
    "trans_type": 2,
    "nois": "6",
    "invoice_state": 6,
    "invoice_date": "20211022090918",
    "invoice_wordtrack": "SW",
    "invoice_number": "83037076",
    "invoice_rand_code": "8373",
    "invoice_seller_ban": "28915188",
    "invoice_buyer_ban": "",
    "invoice_left_qrcode": "SW830370761101022837300000359000003840000000028915188Zw9cxaRpHWtRiZAohYOP6g==:**********",
    "invoice_middle_barcode": "11010SW830370768373",
    "invoice_right_qrcode": "**VIP免費券:1:-50:好食券:1:-50",
    "invoice_title_type": 1,
    "invoice_title": "123",
    "invoice_print_type": 0,
    "invoice_amount": "900",
    "invoice_sales_amount": "900",
    "invoice_tax_amount": "0",
    "invoice_order_detail": '[{"Description":"好棒棒麻辣鍋湯包","Quantity":"1"}]',
    "invoice_ratetype": 1,
    "invoice_input_type": 1,
    "invoice_cloud_type": "2",
    "invoice_mobile_code": "/ABC+123",
    "invoice_tax_id": "",
    "invoice_natural_person": "",
    "invoice_m_post_zone": "100",
    "invoice_m_address": "台北市中正區",
    "invoice_love_code": "",
    "invoice_b2b_title": "",
    "invoice_allowance": [{"uid": 95232, "amount": "300", "order_detail": "[]"}],
}
NO_INVOICE = {  # a refund_order row of the document's example: no e-invoice of its own
    "invoice_state": 0,
    "invoice_date": "",
    "invoice_number": "",
    "invoice_rand_code": "",
    "invoice_amount": "0",
    "invoice_order_detail": "[]",
    "invoice_ratetype": 1,
    "invoice_input_type": 2,
    "invoice_allowance": [],
}


def test_query_details_carry_instalments_and_the_e_invoice(mypay, rsps):
    refund_row = {**QUERY_ANSWER["refund_order"][0], "cost": 300, **NO_INVOICE}
    rsps.post(API, json={**QUERY_ANSWER, **INVOICE_FIELDS, "refund_order": [refund_row]})
    payment, refund = mypay.query(ref_of(voucher_request(), uid="95217", key=KEY))
    assert payment.details == {
        "prc": "250",
        "pfn": "CREDITCARD",
        "acode": "AA1234",
        "actual_cost": "900",
        "cost": "900",
        "appropriation_date": "20211208",
        "retmsg": "付款完成",
        "trans_type": "2",
        "nois": "6",
        "invoice_state": "6",
        "invoice_date": "20211022090918",
        "invoice_wordtrack": "SW",
        "invoice_number": "83037076",
        "invoice_rand_code": "8373",
        "invoice_amount": "900",
        "invoice_input_type": "1",
        "invoice_cloud_type": "2",
        "invoice_mobile_code": "/ABC+123",
        "invoice_allowance": "95232: 300",
        "voucher_paid": "P1634864897",
    }
    # what the transactions page reads: "nois" for instalments, every "invoice…" key for the e-invoice
    assert not {"invoice_left_qrcode", "invoice_order_detail", "invoice_m_address"} & set(payment.details)
    assert not any(k.startswith("invoice") for k in refund.details)  # an empty invoice block is left out
    assert refund.details["prc"] == "230"


def test_query_without_instalments_or_invoice_adds_nothing(mypay, rsps):
    rsps.post(API, json={**QUERY_ANSWER, "trans_type": 1, "nois": "", **NO_INVOICE, "refund_order": []})
    (payment,) = mypay.query(ref_of(voucher_request(), uid="95217", key=KEY))
    assert payment.details["trans_type"] == "1"
    assert "nois" not in payment.details and not any(k.startswith("invoice") for k in payment.details)


def test_query_is_retried_then_errors_are_typed(mypay, rsps):
    ref = ref_of(voucher_request(), uid="95217", key=KEY)
    rsps.post(API, status=503)
    rsps.post(API, body=requests.exceptions.ConnectTimeout())
    rsps.post(API, json={**QUERY_ANSWER, "refund_order": []})
    assert mypay.query(ref)[0].state is State.PAID
    assert len(rsps.calls) == 3
    rsps.replace(responses.POST, API, json={"code": "100", "msg": "查無資料"})
    with pytest.raises(ProviderRejected):
        mypay.query(ref)
    rsps.replace(responses.POST, API, json={"nothing": 1})
    with pytest.raises(ProviderError, match="cannot read"):
        mypay.query(ref)


def test_query_without_an_order_asks_nothing(mypay, rsps):
    assert mypay.query(ref_of(checkout_request())) == []
    assert len(rsps.calls) == 0


# ---------------------------------------------------------------- api/refund

REFUND_OK = {
    "row_data": {
        "uid": 95217,
        "refund_uid": 95232,
        "key": KEY,
        "prc": "230",
        "cost": 900,
        "actual_cost": 900,
        "retmsg": "退款完成",
        "refund_type": 1,
        "cardno": "493817******0003",
    },
    "key": KEY,
    "uid": "95217",
    "code": "B200",
    "msg": "執行成功",
}


def test_refund_in_voucher_mode_is_full_and_lists_paid_vouchers(mypay, rsps):
    rsps.post(API, json=REFUND_OK)
    result = mypay.refund(ref_of(voucher_request(), uid="95217", key=KEY), 900, "客戶取消", invoice_state=6)
    service, data = opened(mypay, rsps.calls[0])
    assert service == {"service_name": "api", "cmd": "api/refund"}
    assert data == {
        "store_uid": MYPAY_STORE_UID,
        "uid": "95217",
        "key": KEY,
        "cost": 900,
        "voucher_paid": [{"product_id": "P01", "serial_number": "P1635306439"}],
        "invoice_state": 6,
    }
    assert result.state == "succeeded" and result.amount == 900 and result.provider_refund_id == "95232"
    assert "key" not in result.raw and result.raw["cardno"] == "0003"


def test_refund_partial_only_without_vouchers(mypay, rsps):
    with pytest.raises(ProviderRejected) as caught:
        mypay.refund(ref_of(voucher_request(), uid="1", key=KEY), 500, "")
    assert caught.value.code == "voucher_full_refund"
    assert len(rsps.calls) == 0
    rsps.post(API, json={**REFUND_OK, "row_data": {**REFUND_OK["row_data"], "cost": 400, "refund_type": 3}})
    items = [LineItem("SKU-1", "手沖咖啡豆", 200, 2)]
    result = mypay.refund(ref_of(checkout_request(), uid="1", key=KEY), 400, "", items=items)
    _, data = opened(mypay, rsps.calls[0])
    assert data == {
        "store_uid": MYPAY_STORE_UID,
        "uid": "1",
        "key": KEY,
        "cost": 400,
        "items": [{"id": "SKU-1", "name": "手沖咖啡豆", "cost": 200, "amount": 2, "total": 400}],
    }
    assert result.state == "pending"  # refund_type 3: manual cash refund


def test_refund_b500_and_pending_and_no_retry(mypay, rsps):
    ref = ref_of(checkout_request(), uid="1", key=KEY)
    rsps.post(API, json={"code": "B500", "msg": "執行失敗", "uid": "1", "key": KEY})
    with pytest.raises(ProviderRejected) as caught:
        mypay.refund(ref, 1000, "")
    assert caught.value.code == "B500" and "執行失敗" in caught.value.message_zh
    manual = {"prc": "230", "refund_type": "2", "refund_uid": "9", "cost": 1000}  # accepted; made by hand later
    rsps.replace(responses.POST, API, json={"code": "B200", "msg": "執行成功", "row_data": manual})
    assert mypay.refund(ref, 1000, "").state == "pending"
    rsps.replace(responses.POST, API, status=502)
    with pytest.raises(ProviderUnavailable):
        mypay.refund(ref, 1000, "")
    assert len(rsps.calls) == 3


def test_refund_checks_before_sending(mypay, rsps):
    with pytest.raises(ProviderRejected):
        mypay.refund(ref_of(checkout_request()), 10, "")
    with pytest.raises(ProviderRejected):
        mypay.refund(ref_of(checkout_request(), uid="1", key=KEY), 1001, "")
    with pytest.raises(ProviderRejected):
        mypay.refund(ref_of(checkout_request(), uid="1", key=KEY), 10, "", invoice_state=5)
    assert len(rsps.calls) == 0


# ---------------------------------------------------------------- callbacks


def report(**over) -> dict[str, str]:
    fields = {
        "uid": UID,
        "key": KEY,
        "prc": "250",
        "finishtime": "20211022090918",
        "order_id": "CK20240901A1",
        "user_id": "cust-42",
        "cost": "1000",
        "currency": "TWD",
        "actual_cost": "1000",
        "pfn": "CREDITCARD",
        "retmsg": "付款完成",
        "cardno": "493817******0003",
        "acode": "AA1234",
    }
    fields.update(over)
    return fields


def lookup(reference):
    request = checkout_request()
    return ref_of(request, uid=UID, key=KEY) if reference == request.reference else None


@pytest.mark.parametrize(("prc", "state"), [(code, entry[0]) for code, entry in PRC.items()])
def test_every_prc_code(mypay, prc, state):
    event = mypay.parse_callback(CallbackRequest(body=b"", form=report(prc=prc)), lookup)
    assert event.state is state
    assert event.verified and event.reply_body == "8888" and event.reply_status == 200
    assert event.message  # every code has a meaning to show


def test_prc_table_of_providers_md():
    expected = {
        "100": State.FAILED,
        "200": State.AWAITING_PAYMENT,
        "220": State.CANCELLED,
        "230": State.REFUNDED,
        "245": State.AUTHORISED,
        "247": State.AUTHORISED,
        "250": State.PAID,
        "260": State.AWAITING_PAYMENT,
        "265": State.AWAITING_PAYMENT,
        "270": State.AWAITING_PAYMENT,
        "280": State.AWAITING_PAYMENT,
        "282": State.AWAITING_PAYMENT,
        "284": State.AWAITING_PAYMENT,
        "290": State.PAID_MISMATCH,
        "300": State.FAILED,
        "380": State.EXPIRED,
        "400": State.ERROR,
        "600": State.PAID,
        "A0001": State.AWAITING_PAYMENT,
        "A0002": State.FAILED,
    }
    assert {code: PRC[code][0] for code in expected} == expected
    assert all(en and zh and en != zh for _, en, zh in PRC.values())


def test_callback_as_form_body_and_as_json(mypay):
    as_form = CallbackRequest(body=urlencode(report()).encode(), content_type="application/x-www-form-urlencoded")
    as_json = CallbackRequest(body=json.dumps(report()).encode(), content_type="application/json")
    for request in (as_form, as_json, CallbackRequest(body=b"", form=report())):
        event = mypay.parse_callback(request, lookup)
        assert event.state is State.PAID and event.amount == 1000 and event.reference == "CK20240901A1"
        assert event.transaction_id == UID
        assert event.dedupe_key == f"mypay:{UID}:250:20211022090918"
        assert "key" not in event.raw and event.raw["cardno"] == "0003"
        assert event.occurred_at.isoformat() == "2021-10-22T09:09:18+08:00"


def test_paid_for_another_amount_needs_attention(mypay):
    event = mypay.parse_callback(CallbackRequest(body=b"", form=report(cost="999")), lookup)
    assert event.state is State.PAID_MISMATCH


@pytest.mark.parametrize(
    "over",
    [
        {"key": "0" * 32},  # wrong MyPay key
        {"key": KEY[:-1]},
        {"key": ""},
        {"uid": "95228"},
        {"order_id": "UNKNOWN"},
        {"order_id": ""},
        {"prc": ""},
    ],
)
def test_callbacks_that_do_not_verify_are_invalid(mypay, over):
    with pytest.raises(InvalidCallback):
        mypay.parse_callback(CallbackRequest(body=b"", form=report(**over)), lookup)


def test_unreadable_callbacks_are_invalid(mypay):
    for body, ctype in ((b"\xff\xfe", ""), (b"{", "application/json"), (b"[1]", "application/json"), (b"a=%ZZ&&", "")):
        with pytest.raises(InvalidCallback):
            mypay.parse_callback(CallbackRequest(body=body, content_type=ctype), lookup)


def envelope_of(fields: dict, key: str) -> dict[str, str]:
    return {
        "agent_uid": MYPAY_AGENT_UID,
        "service": mypay_encrypt({"service_name": "api", "cmd": "report"}, key),
        "encry_data": mypay_encrypt(fields, key),
    }


def test_encrypted_callback_with_current_or_next_key(mypay):
    for key in (MYPAY_AGENT_KEY, MYPAY_NEXT_KEY):
        event = mypay.parse_callback(CallbackRequest(body=b"", form=envelope_of(report(), key)), lookup)
        assert event.state is State.PAID


@pytest.mark.parametrize(
    "mangle",
    [
        lambda f: {**f, "encry_data": mypay_encrypt(report(), "W" * 32)},  # wrong agent key
        lambda f: {**f, "encry_data": f["encry_data"][:-8]},  # truncated base64
        lambda f: {**f, "encry_data": f["encry_data"][:24] + "AAAA" + f["encry_data"][28:]},  # bad padding or JSON
        lambda f: {**f, "agent_uid": "999"},
    ],
)
def test_encrypted_callback_that_does_not_open_is_invalid(mypay, mangle):
    fields = mangle(envelope_of(report(), MYPAY_AGENT_KEY))
    with pytest.raises(InvalidCallback):
        mypay.parse_callback(CallbackRequest(body=b"", form=fields), lookup)


def test_provider_repr_hides_the_agent_keys(mypay):
    assert MYPAY_AGENT_KEY not in repr(mypay) and MYPAY_NEXT_KEY not in repr(mypay)


def test_refund_items_must_add_up(mypay, rsps):
    with pytest.raises(ProviderRejected) as caught:
        mypay.refund(ref_of(checkout_request(), uid="1", key=KEY), 400, "", items=[LineItem("A", "a", 100, 1)])
    assert caught.value.code == "refund_items"
    assert len(rsps.calls) == 0


@pytest.mark.parametrize(
    "items",
    [
        [LineItem("A", "a", 500, 1), LineItem("B", "b", -100, 1)],
        [LineItem("A", "a", 400, 1), LineItem("B", "b", 100, 0)],
        [LineItem("A", " ", 400, 1)],
    ],
    ids=["negative price", "zero quantity", "no name"],
)
def test_refund_items_must_be_real_lines(mypay, rsps, items):
    with pytest.raises(ProviderRejected) as caught:
        mypay.refund(ref_of(checkout_request(), uid="1", key=KEY), 400, "", items=items)
    assert caught.value.code == "refund_items"
    assert len(rsps.calls) == 0


def test_refund_items_message_gives_both_totals(mypay, rsps):
    with pytest.raises(ProviderRejected) as caught:
        mypay.refund(ref_of(checkout_request(), uid="1", key=KEY), 400, "", items=[LineItem("A", "a", 100, 3)])
    assert "300" in caught.value.message_en and "400" in caught.value.message_en
    assert "300" in caught.value.message_zh and "400" in caught.value.message_zh


def test_refund_items_without_sku_get_a_line_number(mypay, rsps):
    rsps.post(API, json={**REFUND_OK, "row_data": {**REFUND_OK["row_data"], "cost": 400}})
    items = [LineItem("", "手沖咖啡豆", 350, 1), LineItem("", "運費", 50, 1)]
    mypay.refund(ref_of(checkout_request(), uid="1", key=KEY), 400, "", items=items)
    _, data = opened(mypay, rsps.calls[0])
    assert data["items"] == [
        {"id": "1", "name": "手沖咖啡豆", "cost": 350, "amount": 1, "total": 350},
        {"id": "2", "name": "運費", "cost": 50, "amount": 1, "total": 50},
    ]


def test_full_refund_leaves_items_to_mypay(mypay, rsps):
    # The document: a full refund carries no items; MyPay fills them in itself.
    rsps.post(API, json={**REFUND_OK, "row_data": {**REFUND_OK["row_data"], "cost": 1000}})
    items = [LineItem("SKU-1", "手沖咖啡豆", 350, 2), LineItem("SKU-2", "濾杯", 240, 1), LineItem("", "運費", 60, 1)]
    mypay.refund(ref_of(checkout_request(), uid="1", key=KEY), 1000, "", items=items)
    _, data = opened(mypay, rsps.calls[0])
    assert "items" not in data and data["cost"] == 1000
    with pytest.raises(ProviderRejected):  # still checked: items that do not add up are a caller's mistake
        mypay.refund(ref_of(checkout_request(), uid="1", key=KEY), 1000, "", items=items[:1])
    assert len(rsps.calls) == 1


def sealed(plaintext: bytes, *, padded: bool = True) -> str:
    """Raw AES-256-CBC under the agent key, for plaintexts the envelope helper would never produce."""
    iv = bytes(16)
    body = pad(plaintext, 16) if padded else plaintext
    return base64.b64encode(iv + AES.new(MYPAY_AGENT_KEY.encode(), AES.MODE_CBC, iv).encrypt(body)).decode()


@pytest.mark.parametrize(
    "encry_data",
    [sealed(b"C" * 32, padded=False), sealed(b"\xff\xfe\xfd"), sealed(b"[1, 2]"), sealed(b"not json")],
    ids=["bad padding", "non-UTF-8", "not an object", "not JSON"],
)
def test_encrypted_callback_with_bad_plaintext_is_invalid(mypay, encry_data):
    with pytest.raises(InvalidCallback):
        mypay.parse_callback(
            CallbackRequest(body=b"", form={"agent_uid": MYPAY_AGENT_UID, "encry_data": encry_data}), lookup
        )


# ---------------------------------------------------------------- the amount paid is actual_cost (issue 12, item 3)


def test_query_amount_paid_is_actual_cost_and_a_difference_needs_attention(mypay, rsps):
    answer = {**QUERY_ANSWER, "prc": "250", "cost": 900, "actual_cost": 850, "refund_order": []}
    rsps.post(API, json=answer)
    (payment,) = mypay.query(ref_of(voucher_request(), uid="95217", key=KEY))
    assert payment.amount == 850  # what the customer paid, not the order's cost
    assert payment.state is State.PAID_MISMATCH  # kept paid, flagged for a person
    assert payment.details["cost"] == "900" and payment.details["actual_cost"] == "850"


def test_query_prc_290_is_paid_but_needs_attention_with_both_amounts(mypay, rsps):
    answer = {**QUERY_ANSWER, "prc": "290", "cost": 900, "actual_cost": 950, "refund_order": []}
    rsps.post(API, json=answer)
    (payment,) = mypay.query(ref_of(voucher_request(), uid="95217", key=KEY))
    assert payment.state is State.PAID_MISMATCH and payment.amount == 950
    assert payment.details["cost"] == "900" and payment.details["actual_cost"] == "950"


def test_query_refunds_are_measured_against_actual_cost(mypay, rsps):
    answer = {**QUERY_ANSWER, "cost": 900, "actual_cost": 850, "refund_order": [{"uid": 1, "prc": "230", "cost": 850}]}
    rsps.post(API, json=answer)
    payment, _refund = mypay.query(ref_of(voucher_request(), uid="95217", key=KEY))
    assert payment.state is State.REFUNDED and payment.refunded_amount == 850


def test_query_without_actual_cost_falls_back_to_cost(mypay, rsps):
    answer = {k: v for k, v in QUERY_ANSWER.items() if k != "actual_cost"}
    rsps.post(API, json={**answer, "refund_order": []})
    (payment,) = mypay.query(ref_of(voucher_request(), uid="95217", key=KEY))
    assert payment.amount == 900 and payment.state is State.PAID


def test_refund_follows_what_was_actually_paid(mypay, rsps):
    rsps.post(API, json={"code": "B200", "msg": "ok", "row_data": {"prc": "230", "refund_uid": "9", "cost": 850}})
    ref = replace(ref_of(voucher_request(), uid="95217", key=KEY), paid_amount=850)  # cost 900, actual_cost 850
    with pytest.raises(ProviderRejected):
        mypay.refund(ref, 900, "more than was paid")
    assert len(rsps.calls) == 0
    result = mypay.refund(ref, 850, "in full")
    assert result.state == "succeeded" and opened(mypay, rsps.calls[0])[1]["cost"] == 850


# ---------------------------------------------------------------- an unreadable 2xx answer to a refund (item 4)


@pytest.mark.parametrize(
    "answer",
    [
        {"body": "<html>proxy error page</html>"},  # not JSON
        {"json": {"code": "B200", "msg": "執行成功"}},  # accepted, without row_data
        {"json": {"code": "B200", "msg": "執行成功", "row_data": {"refund_uid": "9"}}},  # row_data without prc
        {"json": {"msg": "?"}},  # no code
    ],
)
def test_an_unreadable_answer_to_a_refund_is_unknown_never_failed(mypay, rsps, answer):
    rsps.post(API, status=200, **answer)
    with pytest.raises(ProviderUnavailable) as caught:
        mypay.refund(ref_of(checkout_request(), uid="1", key=KEY), 300, "partial")
    assert caught.value.retryable and caught.value.code == "unknown_outcome"
    assert len(rsps.calls) == 1  # never sent again
