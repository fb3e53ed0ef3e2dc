"""Oen Tech: every call's exact request, every documented code, the token webhook, secrets kept out of sight."""

from __future__ import annotations

import json

import pytest
import requests
import responses

from portal.providers.base import (
    CallbackRequest,
    InvalidCallback,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
    State,
)
from portal.providers.oen import CODES, OenProvider
from tests.support.providers import checkout_request, ref_of, voucher_request

API = "https://payment-api.testing.oen.tw"
TEMPLATE = "https://{merchant_id}.testing.oen.tw/checkout/subscription/create/{id}"
TOKEN = "crm-token-abc"
CARD_TOKEN = "xyz123456789token"
CHECKOUT_ID = "2eqe6kF33wbq9Dy1UNoMPzY7tal"


@pytest.fixture
def oen() -> OenProvider:
    provider = OenProvider(API, TEMPLATE, "mermer", TOKEN, timeout=4)
    provider.http.sleep = lambda s: None
    return provider


def ok(data: dict) -> dict:
    return {"code": "S0000", "data": data, "message": ""}


def sent(call) -> dict:
    return json.loads(call.request.body)


def assert_headers(call):
    assert call.request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert call.request.headers["Content-Type"] == "application/json"


# ---------------------------------------------------------------- checkout-token


def test_create_checkout_request_and_link(oen, rsps):
    rsps.post(f"{API}/checkout-token", json=ok({"id": CHECKOUT_ID}))
    link = oen.create_checkout(checkout_request())
    (call,) = rsps.calls
    assert call.request.method == "POST"
    assert call.request.url == f"{API}/checkout-token"
    assert_headers(call)
    assert sent(call) == {
        "merchantId": "mermer",
        "successUrl": "https://portal.example/pay/tok/return",
        "failureUrl": "https://portal.example/pay/tok/return?failed=1",
        "customId": "CK20240901A1",
    }
    assert call.request.req_kwargs["timeout"] == (4.0, 4.0)
    assert link.url == f"https://mermer.testing.oen.tw/checkout/subscription/create/{CHECKOUT_ID}"
    assert dict(link.provider_ids) == {"checkout_id": CHECKOUT_ID}


@pytest.mark.parametrize("failure", [requests.exceptions.ReadTimeout(), requests.exceptions.ConnectionError()])
def test_create_checkout_failures_are_unavailable_and_not_retried(oen, rsps, failure):
    rsps.post(f"{API}/checkout-token", body=failure)
    with pytest.raises(ProviderUnavailable):
        oen.create_checkout(checkout_request())
    assert len(rsps.calls) == 1


# (code, HTTP status, error class) for every code of the API reference, as Oen sends them.
DOCUMENTED = [
    ("A0001", 401, ProviderError),
    ("V0001", 400, ProviderError),
    ("V0002", 400, ProviderRejected),
    ("V0003", 400, ProviderRejected),
    ("T0001", 400, ProviderRejected),
    ("T0002", 400, ProviderRejected),
    ("T0003", 400, ProviderRejected),
    ("T0004", 400, ProviderRejected),
    ("T0005", 400, ProviderRejected),
    ("R0001", 400, ProviderRejected),
    ("K0001", 400, ProviderRejected),
    ("C026", 409, ProviderUnavailable),
    ("F0001", 500, ProviderUnavailable),
]


def test_every_code_has_a_message_in_both_languages():
    for code in ("S0000", "A0001", "V0001", "V0002", "T0001", "T0002", "T0003", "T0004", "T0005", "F0001"):
        _, en, zh = CODES[code]
        assert en and zh and en != zh
    assert {c for c, _, _ in DOCUMENTED} | {"S0000"} == set(CODES)


@pytest.mark.parametrize(("code", "status", "cls"), DOCUMENTED)
def test_every_documented_code_on_charge(oen, rsps, code, status, cls):
    rsps.post(f"{API}/token/transactions", status=status, json={"code": code, "message": "x", "data": {}})
    request = checkout_request()
    with pytest.raises(ProviderError) as caught:
        oen.charge(ref_of(request, checkout_id=CHECKOUT_ID), CARD_TOKEN, request)
    err = caught.value
    assert type(err) is cls
    assert err.code == code and err.provider == "oen"
    assert err.message_en == CODES[code][1] and err.message_zh == CODES[code][2]
    assert CARD_TOKEN not in str(err)
    assert len(rsps.calls) == 1  # a charge is never sent twice


def test_c026_is_an_unknown_outcome_not_a_failure(oen, rsps):
    rsps.post(f"{API}/token/transactions", status=409, json={"code": "C026", "message": "", "retryable": False})
    request = checkout_request()
    with pytest.raises(ProviderUnavailable) as caught:
        oen.charge(ref_of(request), CARD_TOKEN, request)
    # The app reads retryable as "outcome unknown: settle by query"; the message tells the merchant not to resend.
    assert caught.value.retryable is True
    assert "Do not charge again" in caught.value.message_en
    assert len(rsps.calls) == 1


def test_charge_refuses_a_ref_and_request_that_disagree(oen, rsps):
    request = checkout_request()
    with pytest.raises(ProviderRejected):
        oen.charge(ref_of(checkout_request(amount=999)), CARD_TOKEN, request)
    assert len(rsps.calls) == 0


def test_unknown_code_and_403_and_garbage(oen, rsps):
    rsps.post(f"{API}/checkout-token", status=400, json={"code": "Z9999", "message": "odd"})
    with pytest.raises(ProviderError) as caught:
        oen.create_checkout(checkout_request())
    assert caught.value.code == "Z9999" and "odd" in caught.value.message_en
    rsps.replace(responses.POST, f"{API}/checkout-token", status=403, json={"message": "Forbidden"})
    with pytest.raises(ProviderError) as caught:
        oen.create_checkout(checkout_request())
    assert caught.value.code == "http_403" and "IP" in caught.value.message_en
    for body in (b"<html>502</html>", b"[]", b'{"code": "S0000"}', b'{"code": "S0000", "data": {}}', b"{}"):
        rsps.replace(responses.POST, f"{API}/checkout-token", body=body, status=200)
        with pytest.raises(ProviderError) as caught:
            oen.create_checkout(checkout_request())
        assert type(caught.value) is ProviderError and caught.value.code == "bad_response"
    rsps.replace(responses.POST, f"{API}/checkout-token", body="Not Found", status=404)
    with pytest.raises(ProviderError) as caught:
        oen.create_checkout(checkout_request())
    assert caught.value.code == "http_404"


# ---------------------------------------------------------------- token charge


def test_charge_request_and_result(oen, rsps):
    rsps.post(f"{API}/token/transactions", json=ok({"id": "P202210139EKASEJ7", "authCode": "831000"}))
    request = checkout_request()
    txn = oen.charge(ref_of(request, checkout_id=CHECKOUT_ID), CARD_TOKEN, request)
    (call,) = rsps.calls
    assert call.request.method == "POST" and call.request.url == f"{API}/token/transactions"
    assert_headers(call)
    assert sent(call) == {
        "merchantId": "mermer",
        "amount": 1000,
        "currency": "TWD",
        "token": CARD_TOKEN,
        "orderId": "CK20240901A1",
        "userId": "cust-42",
        "userName": "王小明",
        "userEmail": "ming@example.com",
        "productDetails": [
            {"productionCode": "SKU-1", "description": "手沖咖啡豆", "quantity": 2, "unit": "件", "unitPrice": 350},
            {"productionCode": "SKU-2", "description": "濾杯", "quantity": 1, "unit": "件", "unitPrice": 240},
            {"productionCode": "SHIPPING", "description": "運費", "quantity": 1, "unit": "次", "unitPrice": 60},
        ],
    }
    assert txn.transaction_id == "P202210139EKASEJ7"
    assert txn.state is State.PAID and txn.amount == 1000 and txn.reference == "CK20240901A1"
    assert CARD_TOKEN not in repr(txn)


def test_charge_with_vouchers_adds_up_and_leaves_optional_fields_out(oen, rsps):
    rsps.post(f"{API}/token/transactions", json=ok({"id": "P1"}))
    request = voucher_request(customer_name="", customer_email="", customer_id="")
    oen.charge(ref_of(request), CARD_TOKEN, request)
    body = sent(rsps.calls[0])
    assert "userName" not in body and "userEmail" not in body and "userId" not in body
    assert sum(d["quantity"] * d["unitPrice"] for d in body["productDetails"]) == body["amount"] == 900
    assert body["productDetails"][-1] == {
        "productionCode": "VOUCHER",
        "description": "折價券",
        "quantity": 1,
        "unit": "張",
        "unitPrice": -100,
    }


def test_charge_is_never_retried(oen, rsps):
    rsps.post(f"{API}/token/transactions", status=503)
    request = checkout_request()
    with pytest.raises(ProviderUnavailable):
        oen.charge(ref_of(request), CARD_TOKEN, request)
    assert len(rsps.calls) == 1


def test_charge_refuses_a_missing_token_without_calling(oen, rsps):
    request = checkout_request()
    with pytest.raises(ProviderRejected):
        oen.charge(ref_of(request), "", request)
    assert len(rsps.calls) == 0


# ---------------------------------------------------------------- order query


def oen_row(**over) -> dict:
    row = {
        "id": "P20240412CIK7KPPH",
        "transactionId": "2ezXfrdyypKEajH1J7nO3qOQH73",
        "action": "onetime",
        "amount": 1000,
        "fee": 30,
        "paymentInfo": {"cardType": "Visa", "cardNum": "4242424242424242", "method": "card", "cardName": "王小明"},
        "status": "charged",
        "userId": "OEN00001",
        "userName": "王小明",
        "userEmail": "test@oen.tw",
        "orderId": "CK20240901A1",
        "note": "備註",
        "createdAt": "2024-04-12T07:54:46.755Z",
        "refundAmount": 0,
    }
    row.update(over)
    return row


def test_query_follows_page_tokens_and_cuts_card_numbers(oen, rsps):
    url = f"{API}/order/CK20240901A1/transactions"
    rsps.get(
        url, match=[responses.matchers.query_param_matcher({})], json=ok({"transactions": [oen_row()], "page": "tok-2"})
    )
    second = oen_row(id="P2", status="refunded", refundAmount=400, refundedAt="2024-04-13T01:00:00.000Z")
    rsps.get(
        url,
        match=[responses.matchers.query_param_matcher({"page": "tok-2"})],
        json=ok({"transactions": [second], "page": None}),
    )
    txns = oen.query(ref_of(checkout_request(), checkout_id=CHECKOUT_ID))
    assert [c.request.method for c in rsps.calls] == ["GET", "GET"]
    assert rsps.calls[1].request.url == f"{url}?page=tok-2"
    assert_headers(rsps.calls[0])
    first, refunded = txns
    assert first.card_last4 == "4242" and "4242424242424242" not in repr(first)
    assert first.state is State.PAID and first.fee == 30 and first.card_brand == "Visa" and first.method == "card"
    assert first.created_at.isoformat() == "2024-04-12T07:54:46.755000+00:00"
    assert refunded.state is State.PARTIALLY_REFUNDED and refunded.refunded_amount == 400
    assert refunded.refunded_at is not None


@pytest.mark.parametrize(
    ("status", "refund", "state"),
    [
        ("initiated", 0, State.AWAITING_PAYMENT),
        ("charging", 0, State.AWAITING_PAYMENT),
        ("authorized", 0, State.AUTHORISED),
        ("charged", 0, State.PAID),
        ("claimed", 0, State.PAID),
        ("failed", 0, State.FAILED),
        ("cancelled", 0, State.CANCELLED),
        ("refunded", 1000, State.REFUNDED),
        ("refundedPostPayout", 1000, State.REFUNDED),
        ("refunded", 10, State.PARTIALLY_REFUNDED),
        ("mystery", 0, State.ERROR),
    ],
)
def test_query_states(oen, rsps, status, refund, state):
    rsps.get(
        f"{API}/order/CK20240901A1/transactions",
        json=ok({"transactions": [oen_row(status=status, refundAmount=refund)]}),
    )
    (txn,) = oen.query(ref_of(checkout_request()))
    assert txn.state is state


def test_query_stops_when_the_page_token_repeats(oen, rsps):
    rsps.get(f"{API}/order/CK20240901A1/transactions", json=ok({"transactions": [], "page": "same"}))
    assert oen.query(ref_of(checkout_request())) == []
    assert len(rsps.calls) == 2


def test_query_is_retried_and_garbage_is_an_error(oen, rsps):
    url = f"{API}/order/CK20240901A1/transactions"
    rsps.get(url, status=502)
    rsps.get(url, json=ok({"transactions": []}))
    assert oen.query(ref_of(checkout_request())) == []
    assert len(rsps.calls) == 2
    rsps.replace(responses.GET, url, json=ok({"transactions": "nope"}))
    with pytest.raises(ProviderError, match="cannot read"):
        oen.query(ref_of(checkout_request()))


def test_query_masks_a_whole_card_number_in_every_shape(oen, rsps):
    rows = [
        oen_row(paymentInfo={"cardNum": "4012 8888 1888 8333"}),
        oen_row(paymentInfo={"cardNum": "401288******8333"}),
    ]
    rsps.get(f"{API}/order/CK20240901A1/transactions", json=ok({"transactions": rows}))
    assert [t.card_last4 for t in oen.query(ref_of(checkout_request()))] == ["8333", "8333"]


# ---------------------------------------------------------------- refund and subscription


def test_refund_by_hid(oen, rsps):
    data = oen_row(id="P20240411AN3KW7BK", status="refunded", refundAmount=600, refundedAt="2024-04-11T10:45:22.076Z")
    rsps.post(f"{API}/refunds/P20240411AN3KW7BK", json=ok(data))
    ref = ref_of(checkout_request(), checkout_id=CHECKOUT_ID, transaction_id="P20240411AN3KW7BK")
    result = oen.refund(ref, 600, "客戶取消訂單")
    (call,) = rsps.calls
    assert call.request.method == "POST" and call.request.url == f"{API}/refunds/P20240411AN3KW7BK"
    assert_headers(call)
    assert sent(call) == {"merchantId": "mermer", "amount": 600, "reason": "客戶取消訂單"}
    assert result.state == "succeeded" and result.amount == 600 and result.provider_refund_id == "P20240411AN3KW7BK"
    assert result.raw["paymentInfo"]["cardNum"] == "4242"


def test_refund_options_and_pending(oen, rsps):
    rsps.post(f"{API}/refunds/P1", json=ok(oen_row(id="P1", status="refunding")))
    remit = {
        "bankCode": "004",
        "bankName": "臺灣銀行",
        "branchCode": "0017",
        "branchName": "營業部",
        "account": "1",
        "accountName": "王小明",
    }
    ref = ref_of(checkout_request(), transaction_id="P1")
    result = oen.refund(ref, 1000, "", remit_info=remit, product_details=[{"productionCode": "SKU-1"}])
    assert sent(rsps.calls[0]) == {
        "merchantId": "mermer",
        "amount": 1000,
        "remitInfo": remit,
        "productDetails": [{"productionCode": "SKU-1"}],
    }
    assert result.state == "pending"


@pytest.mark.parametrize(
    ("amount", "ids"),
    [(0, {"transaction_id": "P1"}), (1001, {"transaction_id": "P1"}), (10, {"checkout_id": CHECKOUT_ID})],
)
def test_refund_refused_before_calling(oen, rsps, amount, ids):
    with pytest.raises(ProviderRejected):
        oen.refund(ref_of(checkout_request(), **ids), amount, "")
    assert len(rsps.calls) == 0


def test_refund_rejections_and_no_retry(oen, rsps):
    ref = ref_of(checkout_request(), transaction_id="P1")
    rsps.post(f"{API}/refunds/P1", status=400, json={"code": "V0002", "message": "already refunded"})
    with pytest.raises(ProviderRejected) as caught:
        oen.refund(ref, 10, "")
    assert caught.value.code == "V0002"
    rsps.replace(responses.POST, f"{API}/refunds/P1", body=requests.exceptions.ReadTimeout())
    with pytest.raises(ProviderUnavailable):
        oen.refund(ref, 10, "")
    assert len(rsps.calls) == 2


def test_cancel_subscription(oen, rsps):
    data = {"id": "S202404112CYPRJPZ", "status": "cancelled", "period": 1, "reason": "客戶自行取消"}
    rsps.put(f"{API}/subscriptions/S202404112CYPRJPZ", json=ok(data))
    assert oen.cancel_subscription("S202404112CYPRJPZ", "客戶自行取消") == data
    (call,) = rsps.calls
    assert call.request.method == "PUT"
    assert_headers(call)
    assert sent(call) == {"merchantId": "mermer", "reason": "客戶自行取消"}


# ---------------------------------------------------------------- webhooks


def webhook(**over) -> CallbackRequest:
    body = {
        "success": True,
        "purpose": "token",
        "merchantId": "mermer",
        "transactionId": CHECKOUT_ID,
        "message": None,
        "customId": "CK20240901A1",
        "token": CARD_TOKEN,
        "id": CHECKOUT_ID,
        "paymentInfo": "4242",
    }
    body.update(over)
    return CallbackRequest(body=json.dumps(body).encode(), content_type="application/json")


def lookup_for(**ids):
    ref = ref_of(checkout_request(), **(ids or {"checkout_id": CHECKOUT_ID}))
    return lambda reference: ref if reference == ref.reference else None


def test_token_webhook_success(oen):
    event = oen.parse_callback(webhook(), lookup_for())
    assert event.state is State.AWAITING_PAYMENT and event.verified
    assert event.card_token == CARD_TOKEN
    assert event.reference == "CK20240901A1" and event.amount == 1000
    assert event.reply_body == "" and event.reply_status == 200
    assert CARD_TOKEN not in repr(event)
    assert CARD_TOKEN not in json.dumps(dict(event.raw), ensure_ascii=False)
    assert "token" not in event.raw


def test_token_webhook_failure(oen):
    event = oen.parse_callback(webhook(success=False, token=None, message="3DS_ABANDONED"), lookup_for())
    assert event.state is State.FAILED and event.card_token == "" and event.message == "3DS_ABANDONED"


@pytest.mark.parametrize(
    "over",
    [
        {"merchantId": "someone-else"},
        {"id": "another-checkout-id"},
        {"customId": "UNKNOWN"},
        {"customId": ""},
        {"success": "yes"},
        {"success": True, "token": ""},
        {"purpose": "refund"},
        {"merchantId": None},
    ],
)
def test_token_webhook_that_does_not_match_is_invalid(oen, over):
    with pytest.raises(InvalidCallback):
        oen.parse_callback(webhook(**over), lookup_for())


@pytest.mark.parametrize("body", [b"not json", b"[1]", b"\xff\xfe", b"", b"{"])
def test_unreadable_webhooks_are_invalid(oen, body):
    with pytest.raises(InvalidCallback):
        oen.parse_callback(CallbackRequest(body=body, content_type="application/json"), lookup_for())


def test_charge_webhook_needs_the_hid_the_charge_returned(oen):
    body = {
        "purpose": "charge",
        "merchantId": "mermer",
        "orderId": "CK20240901A1",
        "transactionHid": "P1",
        "status": "charged",
        "success": True,
        "amount": 1000,
        "paymentInfo": "4242424242424242",
    }
    request = CallbackRequest(body=json.dumps(body).encode(), content_type="application/json")
    event = oen.parse_callback(request, lookup_for(checkout_id=CHECKOUT_ID, transaction_id="P1"))
    assert event.state is State.PAID and event.transaction_id == "P1"
    assert event.raw["paymentInfo"] == "4242"
    with pytest.raises(InvalidCallback):
        oen.parse_callback(request, lookup_for(checkout_id=CHECKOUT_ID))


def test_provider_repr_hides_the_api_token(oen):
    assert TOKEN not in repr(oen)


def test_charge_refuses_items_that_do_not_add_up(oen, rsps):
    request = checkout_request(amount=999)
    with pytest.raises(ProviderRejected) as caught:
        oen.charge(ref_of(request), CARD_TOKEN, request)
    assert caught.value.code == "amount_mismatch"
    assert len(rsps.calls) == 0


# ---------------------------------------------------------------- an unreadable 2xx answer to a money call (item 4)

UNREADABLE = [
    {"body": "<html>gateway says hi</html>"},  # not JSON
    {"json": {"code": "S0000", "data": {"authCode": "831000"}}},  # success without data.id
    {"json": {"code": "S0000"}},  # success without data
    {"json": {"message": "ok"}},  # no code at all
]


@pytest.mark.parametrize("answer", UNREADABLE)
def test_an_unreadable_answer_to_a_charge_is_unknown_never_failed(oen, rsps, answer):
    rsps.post(f"{API}/token/transactions", status=200, **answer)
    request = checkout_request()
    with pytest.raises(ProviderUnavailable) as caught:
        oen.charge(ref_of(request), CARD_TOKEN, request)
    assert caught.value.retryable and caught.value.code == "unknown_outcome"
    assert len(rsps.calls) == 1  # never sent again


@pytest.mark.parametrize("answer", [UNREADABLE[0], UNREADABLE[2], UNREADABLE[3]])
def test_an_unreadable_answer_to_a_refund_is_unknown_never_failed(oen, rsps, answer):
    rsps.post(f"{API}/refunds/P202210139EKASEJ7", status=200, **answer)
    ref = ref_of(checkout_request(), transaction_id="P202210139EKASEJ7")
    with pytest.raises(ProviderUnavailable) as caught:
        oen.refund(ref, 100, "")
    assert caught.value.code == "unknown_outcome" and len(rsps.calls) == 1
