"""O'Pay: the Create and query envelopes field by field, the relayed page, and every check on the payment notice."""

from __future__ import annotations

import base64
import json
import re
from datetime import datetime
from urllib.parse import unquote, urlencode

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
    VoucherLine,
)
from portal.providers.crypto import opay_decrypt_json, opay_encrypt
from portal.providers.opay import OPayProvider, item_name
from tests.support.accounts import (
    OPAY_IV,
    OPAY_KEY,
    OPAY_MERCHANT_ID,
    OPAY_PLATFORM_ID,
    OPAY_PLATFORM_IV,
    OPAY_PLATFORM_KEY,
)
from tests.support.providers import checkout_request, form_of, ref_of

API = "https://payment-stage.opay.tw"
NOW = 1_725_177_744  # 2024-09-01 16:02:24 in Taipei


class Store:
    """An RqID store like the app's table: remembers each id once."""

    def __init__(self):
        self.seen: set[str] = set()

    def __call__(self, rqid: str) -> bool:
        if rqid in self.seen:
            return False
        self.seen.add(rqid)
        return True


@pytest.fixture
def store() -> Store:
    return Store()


@pytest.fixture
def opay(store) -> OPayProvider:
    provider = OPayProvider(API, OPAY_MERCHANT_ID, OPAY_KEY, OPAY_IV, timeout=8, clock=lambda: NOW, rqid_store=store)
    provider.http.sleep = lambda s: None
    return provider


@pytest.fixture
def platform(store) -> OPayProvider:
    return OPayProvider(
        API,
        OPAY_MERCHANT_ID,
        OPAY_KEY,
        OPAY_IV,
        OPAY_PLATFORM_ID,
        OPAY_PLATFORM_KEY,
        OPAY_PLATFORM_IV,
        clock=lambda: NOW,
        rqid_store=store,
    )


def opened(call, key=OPAY_KEY, iv=OPAY_IV) -> tuple[dict, dict]:
    assert call.request.method == "POST"
    assert call.request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    fields = form_of(call.request)
    return fields, opay_decrypt_json(fields["Data"], key, iv)


# ---------------------------------------------------------------- Create


def test_create_checkout_sends_nothing(opay, rsps):
    link = opay.create_checkout(checkout_request())
    assert link.url is None and dict(link.provider_ids) == {"merchant_trade_no": "CK20240901A1"}
    assert len(rsps.calls) == 0


def test_create_trade_request_field_by_field(opay, rsps):
    page = b"<html><body>WeChat pay</body></html>"
    rsps.post(f"{API}/WxAPI/Create", body=page, content_type="text/html; charset=utf-8")
    relayed = opay.create_trade(checkout_request())
    (call,) = rsps.calls
    assert call.request.url == f"{API}/WxAPI/Create"
    assert call.request.req_kwargs["timeout"] == (5.0, 8.0)
    fields, data = opened(call)
    assert set(fields) == {"MerchantID", "Timestamp", "RqID", "Revision", "Data"}
    assert fields["MerchantID"] == OPAY_MERCHANT_ID
    assert fields["Timestamp"] == str(NOW)
    assert re.fullmatch(r"[0-9A-F]{32}", fields["RqID"])
    assert fields["Revision"] == "1"
    assert data == {
        "MerchantID": OPAY_MERCHANT_ID,
        "ItemName": "%E6%89%8B%E6%B2%96%E5%92%96%E5%95%A1%E8%B1%86%20350%20%E5%85%83%20X2%23"
        "%E6%BF%BE%E6%9D%AF%20240%20%E5%85%83%20X1%23%E9%81%8B%E8%B2%BB%2060%20%E5%85%83%20X1",
        "MerchantTradeNo": "CK20240901A1",
        "MerchantTradeDate": "2024-09-01 16:02:24",
        "ReturnURL": "https://portal.example/webhooks/opay",
        "Amount": 1000,
        "ClientBackURL": "https://portal.example/pay/tok/return",
    }
    # PROVIDERS.md's example spacing; shipping is a line, so the lines add up to the amount
    assert unquote(data["ItemName"]) == "手沖咖啡豆 350 元 X2#濾杯 240 元 X1#運費 60 元 X1"
    assert relayed.status == 200 and relayed.body == page and relayed.content_type.startswith("text/html")


def test_every_call_has_a_fresh_rqid_and_timestamp(rsps, store):
    now = iter([NOW, NOW, NOW + 5, NOW + 5])  # each Create reads the clock for its date and its Timestamp
    opay = OPayProvider(API, OPAY_MERCHANT_ID, OPAY_KEY, OPAY_IV, clock=lambda: next(now), rqid_store=store)
    rsps.post(f"{API}/WxAPI/Create", body="<html/>")
    opay.create_trade(checkout_request(created_at=None))
    opay.create_trade(checkout_request(created_at=None))
    first, second = (form_of(c.request) for c in rsps.calls)
    assert first["RqID"] != second["RqID"]
    assert (first["Timestamp"], second["Timestamp"]) == (str(NOW), str(NOW + 5))
    assert opened(rsps.calls[1])[1]["MerchantTradeDate"] == "2024-09-01 16:02:29"  # Taipei time from the clock


def test_platform_mode_uses_the_platform_key(platform, rsps):
    rsps.post(f"{API}/WxAPI/Create", body="<html/>")
    platform.create_trade(checkout_request())
    fields, data = opened(rsps.calls[0], OPAY_PLATFORM_KEY, OPAY_PLATFORM_IV)
    assert fields["PlatformID"] == OPAY_PLATFORM_ID and data["MerchantID"] == OPAY_MERCHANT_ID


ITEM_LINE = re.compile(r"(.+) (-?[0-9]+) 元 X([0-9]+)")


def item_lines_total(name: str) -> int:
    """What the lines O'Pay shows the customer add up to (every line must read `name price 元 Xqty`)."""
    total = 0
    for line in name.split("#"):
        found = ITEM_LINE.fullmatch(line)
        assert found, f"not an item line: {line!r}"
        total += int(found[2]) * int(found[3])
    return total


def test_a_long_item_list_keeps_within_40_characters_and_still_adds_up():
    items = tuple(LineItem(f"S{i}", "超長的商品名稱測試", 120, 1) for i in range(5))
    name = item_name(checkout_request(items=items, amount=660))
    assert name == "超長的商品名稱測試 120 元 X1#其他 540 元 X1"
    assert len(name) <= 40 and item_lines_total(name) == 660
    one = item_name(checkout_request(items=(LineItem("A", "極" * 60, 900, 1),), amount=960))
    assert len(one) == 40 and one.endswith(" 960 元 X1") and item_lines_total(one) == 960
    hashed = checkout_request(items=(LineItem("A", "a#b", 10, 1),), amount=10, shipping_fee=0)
    assert item_name(hashed) == "a b 10 元 X1"


@pytest.mark.parametrize(
    ("items", "shipping", "vouchers", "expected"),
    [
        ((LineItem("A", "咖啡豆", 350, 2),), 60, (), "咖啡豆 350 元 X2#運費 60 元 X1"),
        (
            (LineItem("A", "咖啡豆", 350, 2),),
            60,
            (VoucherLine("free", "P1", "SN1", "滿額券", 100),),
            "咖啡豆 350 元 X2#運費 60 元 X1#折抵滿額券 -100 元 X1",
        ),
        (
            (LineItem("A", "咖啡豆", 350, 2), LineItem("B", "濾杯", 240, 1)),
            80,
            (VoucherLine("paid", "P1", "SN1", "禮券", 200), VoucherLine("free", "P2", "SN2", "折價券", 50)),
            "咖啡豆 350 元 X2#其他 70 元 X1",
        ),
    ],
)
def test_item_name_lines_add_up_to_the_amount_charged(items, shipping, vouchers, expected):
    amount = sum(i.total for i in items) + shipping - sum(v.amount for v in vouchers)
    name = item_name(checkout_request(items=items, amount=amount, shipping_fee=shipping, vouchers=vouchers))
    assert name == expected
    assert len(name) <= 40 and item_lines_total(name) == amount


def test_item_name_follows_the_documents_example():
    items = (LineItem("A", "手機", 20, 2), LineItem("B", "隨身碟", 60, 1))
    assert item_name(checkout_request(items=items, amount=100, shipping_fee=0)) == "手機 20 元 X2#隨身碟 60 元 X1"


@pytest.mark.parametrize(
    "over",
    [
        {"reference": "CK-2024"},
        {"reference": "訂單1"},
        {"reference": "A" * 65},
        {"reference": ""},
        {"amount": 5, "items": (LineItem("A", "糖", 5, 1),), "shipping_fee": 0},
        {"items": (LineItem("A", "<b>咖啡</b>", 940, 1),)},
        {"success_url": "https://x.example/<script>"},
    ],
)
def test_create_trade_refuses_before_sending(opay, rsps, over):
    with pytest.raises(ProviderRejected):
        opay.create_trade(checkout_request(**over))
    with pytest.raises(ProviderRejected):
        opay.create_checkout(checkout_request(**over))
    assert len(rsps.calls) == 0


def test_create_trade_json_refusal(opay, rsps):
    rsps.post(f"{API}/WxAPI/Create", json={"RtnCode": 10200047, "RtnMsg": "MerchantTradeNo 重複"})
    with pytest.raises(ProviderRejected) as caught:
        opay.create_trade(checkout_request())
    assert caught.value.code == "10200047" and "MerchantTradeNo 重複" in caught.value.message_en
    rsps.replace(responses.POST, f"{API}/WxAPI/Create", json={"RtnCode": 1, "RtnMsg": "OK"})
    assert json.loads(opay.create_trade(checkout_request()).body) == {"RtnCode": 1, "RtnMsg": "OK"}


@pytest.mark.parametrize("failure", [requests.exceptions.ReadTimeout(), requests.exceptions.ConnectionError()])
def test_create_trade_is_never_retried(opay, rsps, failure):
    rsps.post(f"{API}/WxAPI/Create", body=failure)
    with pytest.raises(ProviderUnavailable):
        opay.create_trade(checkout_request())
    rsps.replace(responses.POST, f"{API}/WxAPI/Create", status=500)
    with pytest.raises(ProviderUnavailable):
        opay.create_trade(checkout_request())
    rsps.replace(responses.POST, f"{API}/WxAPI/Create", status=400, body="bad")
    with pytest.raises(ProviderError):
        opay.create_trade(checkout_request())
    assert len(rsps.calls) == 3


def test_refund_says_there_is_no_api(opay, rsps):
    assert opay.supports_refund_api is False and opay.min_amount == 6
    with pytest.raises(ProviderRejected) as caught:
        opay.refund(ref_of(checkout_request()), 100, "")
    assert "vendor-stage.opay.tw" in caught.value.message_en and "廠商後台" in caught.value.message_zh
    assert len(rsps.calls) == 0


# ---------------------------------------------------------------- QueryTradeInfo


def trade(**over) -> dict:
    data = {
        "MerchantID": OPAY_MERCHANT_ID,
        "MerchantTradeNo": "CK20240901A1",
        "TradeNo": "1909021000001",
        "TradeAmt": 1000,
        "PaymentDate": "2024/09/01 16:05:00",
        "HandlingCharge": "10.25",
        "TradeDate": "2024/09/01 16:02:24",
        "TradeStatus": "1",
        "ItemName": "%E6%BF%BE%E6%9D%AF%20240%20%E5%85%83%20X1",
        "AllocateStatus": "0",
    }
    data.update(over)
    return data


def query_answer(data, code=1) -> dict:
    return {
        "MerchantID": OPAY_MERCHANT_ID,
        "Timestamp": NOW,
        "RqID": "X",
        "Revision": "1",
        "RtnCode": code,
        "RtnMsg": "OK",
        "Data": opay_encrypt(data, OPAY_KEY, OPAY_IV) if isinstance(data, dict) else data,
    }


def test_query_request_and_answer(opay, rsps):
    rsps.post(f"{API}/WxAPI/QueryTradeInfo", json=query_answer(trade()))
    (txn,) = opay.query(ref_of(checkout_request()))
    fields, data = opened(rsps.calls[0])
    assert rsps.calls[0].request.url == f"{API}/WxAPI/QueryTradeInfo"
    assert set(fields) == {"MerchantID", "Timestamp", "RqID", "Revision", "Data"}
    assert data == {"MerchantID": OPAY_MERCHANT_ID, "MerchantTradeNo": "CK20240901A1"}
    assert txn.state is State.PAID and txn.amount == 1000 and txn.transaction_id == "1909021000001"
    assert txn.created_at.isoformat() == "2024-09-01T16:02:24+08:00"
    assert txn.details["HandlingCharge"] == "10.25" and txn.details["ItemName"] == "濾杯 240 元 X1"


@pytest.mark.parametrize(
    ("status", "state"), [("0", State.AWAITING_PAYMENT), ("1", State.PAID), ("v342", State.EXPIRED), ("7", State.ERROR)]
)
def test_query_trade_status(opay, rsps, status, state):
    rsps.post(f"{API}/WxAPI/QueryTradeInfo", json=query_answer(trade(TradeStatus=status)))
    assert opay.query(ref_of(checkout_request()))[0].state is state


def test_query_form_answer_and_plain_data(opay, rsps):
    rsps.post(f"{API}/WxAPI/QueryTradeInfo", body=urlencode(query_answer(trade())))
    assert opay.query(ref_of(checkout_request()))[0].state is State.PAID
    rsps.replace(
        responses.POST,
        f"{API}/WxAPI/QueryTradeInfo",
        json=query_answer(trade(TradeAmt=999)) | {"Data": trade(TradeAmt=999)},
    )
    assert opay.query(ref_of(checkout_request()))[0].state is State.PAID_MISMATCH


def test_query_none_error_and_garbage(opay, rsps):
    url = f"{API}/WxAPI/QueryTradeInfo"
    rsps.post(url, json=query_answer("", code=0))
    assert opay.query(ref_of(checkout_request())) == []
    rsps.replace(responses.POST, url, json=query_answer("", code=99) | {"RtnMsg": "其他錯誤"})
    with pytest.raises(ProviderError) as caught:
        opay.query(ref_of(checkout_request()))
    assert caught.value.code == "99" and "其他錯誤" in caught.value.message_zh
    for answer in (query_answer("garbage!"), query_answer(trade(MerchantTradeNo="OTHER"))):
        rsps.replace(responses.POST, url, json=answer)
        with pytest.raises(ProviderError, match="cannot read"):
            opay.query(ref_of(checkout_request()))
    rsps.replace(responses.POST, url, body=b"\xff\xfe")
    with pytest.raises(ProviderError, match="cannot read"):
        opay.query(ref_of(checkout_request()))


def test_query_is_retried_with_a_new_rqid(opay, rsps):
    url = f"{API}/WxAPI/QueryTradeInfo"
    rsps.post(url, status=502)
    rsps.post(url, json=query_answer(trade()))
    opay.query(ref_of(checkout_request()))
    first, second = (form_of(c.request) for c in rsps.calls)
    assert first["RqID"] != second["RqID"]


# ---------------------------------------------------------------- payment notice


def notice(data: dict | None = None, *, key=OPAY_KEY, iv=OPAY_IV, **outer) -> CallbackRequest:
    data = (
        data
        if data is not None
        else {
            "MerchantID": OPAY_MERCHANT_ID,
            "MerchantTradeNo": "CK20240901A1",
            "RtnCode": 1,
            "RtnMsg": "交易成功",
            "TradeNo": "1909021000001",
            "TradeAmt": 1000,
            "PaymentDate": "2024/09/01 16:05:00",
            "TradeDate": "2024/09/01 16:02:24",
        }
    )
    fields = {
        "MerchantID": OPAY_MERCHANT_ID,
        "Timestamp": str(NOW - 30),
        "RqID": "1322628BD63B43279FB094A19451B81A",
        "Revision": "1",
        "RtnCode": "1",
        "RtnMsg": "OK",
        "Data": opay_encrypt(data, key, iv),
    }
    fields.update(outer)
    return CallbackRequest(body=urlencode(fields).encode(), content_type="application/x-www-form-urlencoded")


def lookup(reference):
    request = checkout_request()
    return ref_of(request) if reference == request.reference else None


def test_paid_notice(opay, store):
    event = opay.parse_callback(notice(), lookup)
    assert event.state is State.PAID and event.verified and event.amount == 1000
    assert event.reply_body == "1|OK" and event.reply_status == 200
    assert event.reference == "CK20240901A1" and event.transaction_id == "1909021000001"
    assert event.raw["Data"]["TradeNo"] == "1909021000001"
    assert event.occurred_at.isoformat() == "2024-09-01T16:05:00+08:00"
    assert store.seen == {"1322628BD63B43279FB094A19451B81A"}


def test_unpaid_notice_is_failed(opay):
    data = {"MerchantID": OPAY_MERCHANT_ID, "MerchantTradeNo": "CK20240901A1", "RtnCode": 10300006, "RtnMsg": "失敗"}
    event = opay.parse_callback(notice(data), lookup)
    assert event.state is State.FAILED and event.message == "失敗"


def test_platform_notice_uses_the_platform_key(platform):
    event = platform.parse_callback(
        notice(key=OPAY_PLATFORM_KEY, iv=OPAY_PLATFORM_IV, PlatformID=OPAY_PLATFORM_ID), lookup
    )
    assert event.state is State.PAID
    with pytest.raises(InvalidCallback):
        platform.parse_callback(notice(PlatformID=OPAY_PLATFORM_ID, RqID="B"), lookup)  # merchant key, platform id


def test_reused_rqid_is_invalid(opay):
    opay.parse_callback(notice(), lookup)
    with pytest.raises(InvalidCallback, match="seen before"):
        opay.parse_callback(notice(), lookup)


def test_a_refused_notice_does_not_use_up_its_rqid(opay, store):
    with pytest.raises(InvalidCallback):
        opay.parse_callback(notice(Timestamp=str(NOW - 3600)), lookup)
    assert store.seen == set()
    assert opay.parse_callback(notice(), lookup).state is State.PAID


def test_no_rqid_store_means_no_notice_is_accepted():
    opay = OPayProvider(API, OPAY_MERCHANT_ID, OPAY_KEY, OPAY_IV, clock=lambda: NOW)
    with pytest.raises(InvalidCallback, match="RqID store"):
        opay.parse_callback(notice(), lookup)


def raw_data(plaintext: bytes, *, padded=True) -> str:
    body = pad(plaintext, 16) if padded else plaintext
    return base64.b64encode(AES.new(OPAY_KEY.encode(), AES.MODE_CBC, OPAY_IV.encode()).encrypt(body)).decode()


GOOD_DATA = notice().body.decode().split("Data=")[1]


@pytest.mark.parametrize(
    ("outer", "why"),
    [
        ({"Timestamp": str(NOW - 601)}, "stale timestamp"),
        ({"Timestamp": str(NOW + 601)}, "future timestamp"),
        ({"Timestamp": "soon"}, "unreadable timestamp"),
        ({"MerchantID": "2000133"}, "another merchant"),
        ({"PlatformID": "999"}, "unknown platform"),
        ({"RqID": ""}, "no RqID"),
        ({"Data": opay_encrypt({"MerchantTradeNo": "CK20240901A1"}, OPAY_PLATFORM_KEY, OPAY_IV)}, "wrong key"),
        ({"Data": unquote(GOOD_DATA)[:-10]}, "truncated base64"),
        ({"Data": raw_data(b"A" * 16, padded=False)}, "bad padding"),
        ({"Data": raw_data(b"%FF%FE%FD")}, "non-UTF-8"),
        ({"Data": raw_data(b"\xff\xfe")}, "non-UTF-8 before percent-decoding"),
        ({"Data": raw_data(b"%5B1%5D")}, "not an object"),
        ({"Data": ""}, "no data"),
    ],
)
def test_notices_that_do_not_verify_are_invalid(opay, store, outer, why):
    with pytest.raises(InvalidCallback):
        opay.parse_callback(notice(**outer), lookup)
    assert store.seen == set(), why


@pytest.mark.parametrize(
    "data",
    [
        {"MerchantID": "2000133", "MerchantTradeNo": "CK20240901A1", "RtnCode": 1, "TradeAmt": 1000},
        {"MerchantID": OPAY_MERCHANT_ID, "MerchantTradeNo": "UNKNOWN1", "RtnCode": 1, "TradeAmt": 1000},
        {"MerchantID": OPAY_MERCHANT_ID, "MerchantTradeNo": "CK20240901A1", "RtnCode": 1, "TradeAmt": 999},
        {"MerchantID": OPAY_MERCHANT_ID, "MerchantTradeNo": "CK20240901A1", "RtnCode": 1},
    ],
)
def test_notices_that_match_no_open_trade_are_invalid(opay, data):
    with pytest.raises(InvalidCallback):
        opay.parse_callback(notice(data), lookup)


def test_provider_repr_hides_the_keys(platform):
    text = repr(platform)
    assert OPAY_KEY not in text and OPAY_IV not in text and OPAY_PLATFORM_KEY not in text


@pytest.mark.parametrize("url", ["", "https://portal.example/" + "x" * 200])
def test_create_trade_needs_a_short_return_url(opay, rsps, url):
    with pytest.raises(ProviderRejected) as caught:
        opay.create_trade(checkout_request(notify_url=url))
    assert caught.value.code == "return_url"
    assert len(rsps.calls) == 0


def test_trade_date_is_taipei_time_when_create_is_sent_not_when_the_link_was_made(rsps, store):
    """Issue 12, item 2: MerchantTradeDate is the Taipei wall time of the Create call (UTC+8), read from the clock;
    the link's creation time (a week earlier, in UTC, naive) is never sent as if it were local."""
    sent_at = NOW + 7 * 24 * 3600 + 61  # a week after the link was made: 2024-09-08 16:03:25 in Taipei
    opay = OPayProvider(API, OPAY_MERCHANT_ID, OPAY_KEY, OPAY_IV, clock=lambda: sent_at, rqid_store=store)
    rsps.post(f"{API}/WxAPI/Create", body="<html/>")
    link_made_utc = datetime(2024, 9, 1, 8, 2, 24)  # the link's creation, UTC without a zone
    opay.create_trade(checkout_request(created_at=link_made_utc))
    fields, data = opened(rsps.calls[0])
    assert data["MerchantTradeDate"] == "2024-09-08 16:03:25"
    assert fields["Timestamp"] == str(sent_at)


def test_item_name_adds_up_for_any_order():
    import random

    rng = random.Random(14)
    names = ("咖啡豆", "濾杯", "Drip bag", "超長的商品名稱測試一二三四五六七八九十", "a#b", "茶")
    for _ in range(500):
        items = tuple(
            LineItem(f"S{i}", rng.choice(names), rng.randint(0, 5000), rng.randint(1, 12))
            for i in range(rng.randint(1, 6))
        )
        shipping = rng.choice((0, 60, 120))
        subtotal = sum(i.total for i in items) + shipping
        vouchers = tuple(
            VoucherLine("free", f"P{n}", f"SN{n}", "券", rng.randint(1, max(1, subtotal // 4)))
            for n in range(rng.randint(0, 2))
        )
        amount = subtotal - sum(v.amount for v in vouchers)
        if amount < 6:
            continue
        name = item_name(checkout_request(items=items, amount=amount, shipping_fee=shipping, vouchers=vouchers))
        assert len(name) <= 40, name
        assert item_lines_total(name) == amount, name


@pytest.mark.parametrize(
    ("charge", "fee"), [("10.25", 10), ("34.65", 35), ("12.50", 13), ("0", 0), (18, 18), ("", None), ("abc", None)]
)
def test_query_keeps_the_handling_charge_as_a_whole_dollar_fee(opay, rsps, charge, fee):
    """O'Pay reports its fee to the cent (HandlingCharge, "10.25" in its document): kept as the nearest whole NT$
    (half up), as every amount here is. It was read as a whole amount or not at all, so no O'Pay fee reached the
    dashboard's takings."""
    rsps.post(f"{API}/WxAPI/QueryTradeInfo", json=query_answer(trade(HandlingCharge=charge)))
    (txn,) = opay.query(ref_of(checkout_request()))
    assert txn.fee == fee
