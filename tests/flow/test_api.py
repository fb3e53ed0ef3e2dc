"""The JSON API over real HTTP: keys of two merchants, idempotency keys, refunds, bad bodies, OpenAPI, the key pages."""

from __future__ import annotations

import re
import threading
from html import unescape

import pytest
import requests

from portal import api_keys
from portal.api_schemas import OrderOut
from portal.extensions import db
from portal.models import ApiKey, AuditEvent, IdempotencyRecord, Merchant, Order, Refund
from portal.order_json import order_payload
from sandbox.callbacks import wait_for_senders
from tests.flow.test_refund_flow import refund_calls
from tests.support.browser import Browser

ORDER = {
    "customer_name": "林小華",
    "customer_email": "buyer@example.com",
    "shipping_fee": 60,
    "note": "",
    "items": [{"sku": "T1", "name": "茶葉禮盒", "unit_price": 1200, "quantity": 2}],
    "vouchers": [{"kind": "paid", "product_id": "VP1", "serial_number": "SN-1", "name": "禮券", "amount": 100}],
}


class Api:
    """A merchant's system calling the API with one key."""

    def __init__(self, base: str, secret: str | None):
        self.base = base + "/api/v1"
        self.http = requests.Session()
        if secret:
            self.http.headers["Authorization"] = f"Bearer {secret}"

    def get(self, path: str, **kw) -> requests.Response:
        return self.http.get(self.base + path, timeout=30, **kw)

    def post(self, path: str, body=None, key: str | None = None, **kw) -> requests.Response:
        headers = kw.pop("headers", {})
        if key is not None:
            headers["Idempotency-Key"] = key
        return self.http.post(self.base + path, json=body, headers=headers, timeout=30, **kw)


def new_key(server, merchant_id: int, *, refunds: bool = False, name: str = "shop") -> str:
    with server.app.app_context():
        merchant = db.session.get(Merchant, merchant_id)
        return api_keys.create_key(merchant, name, can_refund=refunds, user_id=None).secret


def count(server, model, **filters) -> int:
    with server.app.app_context():
        return len(db.session.execute(db.select(model).filter_by(**filters)).scalars().all())


@pytest.fixture
def shop_a(live_server) -> Api:
    return Api(live_server.url, new_key(live_server, live_server.seed.merchant_id, refunds=True))


@pytest.fixture
def shop_b(live_server) -> Api:
    return Api(live_server.url, new_key(live_server, live_server.seed.other_merchant_id))


def assert_problem(response: requests.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["title"] and "errors" in body
    return body


# ---------------------------------------------------------------- orders, scoped to the key's merchant


def test_create_read_list_and_other_merchants_orders(live_server, shop_a, shop_b):
    created = shop_a.post("/orders", ORDER)
    assert created.status_code == 201, created.text
    order = created.json()
    assert order["payable"] == 1200 * 2 + 60 - 100 and order["state"] == "draft" and order["checkout"] is None
    assert order["items"][0]["name"] == "茶葉禮盒"
    assert shop_a.get(f"/orders/{order['id']}").json() == order

    # Another merchant's key: 404 on every route of the order, and its list never shows it.
    for path in (f"/orders/{order['id']}", f"/orders/{order['id']}/transactions"):
        assert_problem(shop_b.get(path), 404)
    assert_problem(shop_b.post(f"/orders/{order['id']}/checkout", {"provider": "oen"}), 404)
    assert shop_b.get("/orders").json()["data"] == []
    b_order = shop_b.post("/orders", ORDER | {"customer_name": "Other shop's buyer"}).json()
    assert_problem(shop_a.get(f"/orders/{b_order['id']}"), 404)
    assert [o["id"] for o in shop_b.get("/orders").json()["data"]] == [b_order["id"]]

    # Cursor pages: newest first, each order once, none of the other merchant's.
    ids = [order["id"]] + [
        shop_a.post("/orders", ORDER | {"customer_name": f"客人 {n}"}).json()["id"] for n in range(4)
    ]
    seen, cursor = [], None
    while True:
        page = shop_a.get("/orders", params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        assert len(page["data"]) <= 2
        seen += [o["id"] for o in page["data"]]
        cursor = page["next_cursor"]
        if not page["has_more"]:
            assert cursor is None
            break
    assert seen == sorted(ids, reverse=True)
    assert [o["id"] for o in shop_a.get("/orders", params={"q": "客人 3"}).json()["data"]] == [ids[4]]
    assert shop_a.get("/orders", params={"state": "paid"}).json()["data"] == []
    assert_problem(shop_a.get("/orders", params={"cursor": "not-a-cursor"}), 422)
    assert_problem(shop_a.get("/orders", params={"limit": "500"}), 422)


def test_order_with_its_link_then_checkout_and_transactions(live_server, shop_a):
    order = shop_a.post("/orders", ORDER | {"provider": "oen"}).json()
    link = order["checkout"]
    assert link["provider"] == "oen" and link["state"] == "awaiting_payment"
    assert link["url"].startswith(live_server.url + "/pay/") and link["expires_at"].endswith("Z")
    # The customer link opens the provider's page.
    page = requests.get(link["url"], timeout=30)
    assert page.status_code == 200

    live = shop_a.get(f"/orders/{order['id']}/transactions").json()
    assert [a["provider"] for a in live["attempts"]] == ["oen"]

    plain = shop_a.post("/orders", ORDER).json()
    opened = shop_a.post(f"/orders/{plain['id']}/checkout", {"provider": "mypay"})
    assert opened.status_code == 201, opened.text
    assert opened.json()["checkout"]["provider"] == "mypay"
    again = assert_problem(shop_a.post(f"/orders/{plain['id']}/checkout", {"provider": "oen"}), 409)
    assert again["errors"][0]["field"] == "provider"
    assert_problem(shop_a.post(f"/orders/{plain['id']}/checkout", {"provider": "paypal"}), 422)


def test_e_invoice_data_by_the_forms_rules(live_server, shop_a):
    business = {"kind": "business", "tax_id": "04595257", "title": "台灣茶業股份有限公司"}
    order = shop_a.post("/orders", ORDER | {"invoice": business})
    assert order.status_code == 201, order.text
    assert order.json()["invoice"] | {} == {**business, "carrier": None, "donation_code": None}
    mobile = shop_a.post("/orders", ORDER | {"invoice": {"kind": "mobile", "carrier": "/abc+123"}}).json()
    assert mobile["invoice"]["carrier"] == "/ABC+123"
    bad = assert_problem(shop_a.post("/orders", ORDER | {"invoice": {"kind": "business", "tax_id": "12345678"}}), 422)
    assert {e["field"] for e in bad["errors"]} == {"invoice.tax_id", "invoice.title"}
    assert_problem(shop_a.post("/orders", ORDER | {"invoice": {"kind": "paper", "vat": 5}}), 422)
    assert count(live_server, Order) == 2


def test_provider_that_cannot_take_the_order_creates_nothing(live_server, shop_a):
    before = count(live_server, Order)
    cheap = ORDER | {
        "items": [{"name": "糖果", "unit_price": 3}],
        "vouchers": [],
        "shipping_fee": 0,
        "provider": "opay",
    }
    body = assert_problem(shop_a.post("/orders", cheap), 422)
    assert body["errors"][0]["field"] == "provider" and "6" in body["errors"][0]["message"]
    assert count(live_server, Order) == before


def test_a_link_the_provider_refuses_leaves_one_order_however_often_the_request_is_retried(live_server, shop_a):
    """The order is made before the provider is asked: when MyPay fails then, the answer is still 201 with the order
    (no link, and why), kept for the Idempotency-Key, so the merchant's retry never makes a second order."""
    from sandbox import faults

    before = count(live_server, Order)
    with live_server.sandbox.ctx():
        faults.set("mypay", "fail_next")
    first = shop_a.post("/orders", ORDER | {"provider": "mypay"}, key="order-with-link-1")
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["checkout"] is None and body["state"] == "draft"
    assert body["checkout_error"]["title"] and "MyPay" in body["checkout_error"]["detail"]
    again = shop_a.post("/orders", ORDER | {"provider": "mypay"}, key="order-with-link-1")
    assert again.status_code == 201 and again.json() == body and again.headers.get("Idempotent-Replayed") == "true"
    assert count(live_server, Order) == before + 1
    link = shop_a.post(f"/orders/{body['id']}/checkout", {"provider": "mypay"}, key="link-for-it")
    assert link.status_code in (200, 201), link.text
    assert link.json()["checkout"]["url"]


# ---------------------------------------------------------------- idempotency keys


def test_idempotency_replay_and_another_body(live_server, shop_a):
    first = shop_a.post("/orders", ORDER, key="order-1001")
    again = shop_a.post("/orders", ORDER, key="order-1001")
    assert first.status_code == again.status_code == 201
    assert again.text == first.text and again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert count(live_server, Order) == 1

    other = assert_problem(shop_a.post("/orders", ORDER | {"note": "another"}, key="order-1001"), 422)
    assert "Idempotency-Key" in other["detail"]
    assert_problem(shop_a.post(f"/orders/{first.json()['id']}/checkout", {"provider": "oen"}, key="order-1001"), 422)
    assert count(live_server, Order) == 1

    # Refused answers are kept too; a 5xx would not be.
    bad = shop_a.post("/orders", {"items": []}, key="bad-1")
    assert bad.status_code == 422
    assert shop_a.post("/orders", {"items": []}, key="bad-1").text == bad.text
    # Keys are per API key: another key of the same shop may use the same text.
    second_key = Api(live_server.url, new_key(live_server, live_server.seed.merchant_id))
    assert second_key.post("/orders", ORDER, key="order-1001").json()["id"] != first.json()["id"]
    assert_problem(shop_a.post("/orders", ORDER, key="x" * 256), 422)


def test_ten_concurrent_requests_with_one_key_create_one_order(live_server, shop_a):
    answers: list[requests.Response] = []
    lock = threading.Lock()
    start = threading.Barrier(10)

    def send():
        api = Api(live_server.url, shop_a.http.headers["Authorization"].split(" ", 1)[1])
        start.wait()
        response = api.post("/orders", ORDER | {"provider": "oen"}, key="concurrent-order")
        with lock:
            answers.append(response)

    threads = [threading.Thread(target=send) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(answers) == 10
    assert count(live_server, Order) == 1
    created = [a for a in answers if a.status_code == 201]
    busy = [a for a in answers if a.status_code == 409]
    assert len(created) + len(busy) == 10 and created
    assert len({a.text for a in created}) == 1
    assert sum(1 for a in created if a.headers.get("Idempotent-Replayed") != "true") == 1
    for answer in busy:
        assert answer.headers["Retry-After"]
    # Once the first answer exists, every retry gets it.
    assert shop_a.post("/orders", ORDER | {"provider": "oen"}, key="concurrent-order").text == created[0].text
    with live_server.app.app_context():
        assert len(db.session.execute(db.select(Order)).scalar_one().checkouts) == 1


# ---------------------------------------------------------------- refunds


def test_refunds_need_the_permission_and_are_sent_once(live_server, shop_a):
    order = shop_a.post("/orders", ORDER | {"vouchers": [], "provider": "oen"}).json()
    customer = Browser(live_server.url)
    customer.pay_oen(order["checkout"]["url"])
    wait_for_senders(live_server.sandbox.app, timeout=15)
    assert shop_a.get(f"/orders/{order['id']}").json()["state"] == "paid"

    no_refunds = Api(live_server.url, new_key(live_server, live_server.seed.merchant_id, refunds=False))
    body = assert_problem(no_refunds.post(f"/orders/{order['id']}/refunds", {"amount": 100, "reason": "退貨"}), 403)
    assert "refund" in body["detail"]
    other_shop = Api(live_server.url, new_key(live_server, live_server.seed.other_merchant_id, refunds=True))
    assert_problem(other_shop.post(f"/orders/{order['id']}/refunds", {"amount": 100, "reason": "退貨"}), 404)

    too_much = assert_problem(shop_a.post(f"/orders/{order['id']}/refunds", {"amount": 999999, "reason": "x"}), 422)
    assert too_much["errors"][0]["field"] == "amount"
    assert_problem(shop_a.post(f"/orders/{order['id']}/refunds", {"amount": "100", "reason": "x"}), 422)

    refund = shop_a.post(f"/orders/{order['id']}/refunds", {"amount": 2460, "reason": "客戶退貨"}, key="refund-77")
    assert refund.status_code == 201, refund.text
    made = refund.json()
    assert made["amount"] == 2460 and made["state"] == "succeeded" and made["order"]["state"] == "refunded"
    replay = shop_a.post(f"/orders/{order['id']}/refunds", {"amount": 2460, "reason": "客戶退貨"}, key="refund-77")
    assert replay.text == refund.text and replay.headers["Idempotent-Replayed"] == "true"

    # Even with the idempotency record gone (expired and purged), the same key never sends a second refund.
    with live_server.app.app_context():
        db.session.execute(db.delete(IdempotencyRecord))
        db.session.commit()
    after_purge = shop_a.post(f"/orders/{order['id']}/refunds", {"amount": 2460, "reason": "客戶退貨"}, key="refund-77")
    assert after_purge.status_code == 200 and after_purge.json()["id"] == made["id"]
    assert refund_calls(live_server, "oen") == 1
    assert count(live_server, Refund) == 1


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("raw", "status", "field"),
    [
        (b"{not json", 400, None),
        (b"", 400, None),
        (b"[1, 2]", 400, None),
        (b'"text"', 400, None),
        (
            b'{"customer_name": "A", "customer_email": "a@example.com", "items": [{"name": "x", "unit_price": "100"}]}',
            422,
            "items.0.unit_price",
        ),
        (
            b'{"customer_name": "A", "customer_email": "a@example.com", "items": [{"name": "x", "unit_price": 100.5}]}',
            422,
            "items.0.unit_price",
        ),
        (
            b'{"customer_name": "A", "customer_email": "a@example.com", "items": [{"name": "x", "unit_price": true}]}',
            422,
            "items.0.unit_price",
        ),
        (
            b'{"customer_name": "A", "customer_email": "a@example.com", "shipping_fee": "60", "items": []}',
            422,
            "shipping_fee",
        ),
        (
            b'{"customer_name": "A", "customer_email": "a@example.com", "admin": true,'
            b' "items": [{"name": "x", "unit_price": 1}]}',
            422,
            "admin",
        ),
        (
            b'{"customer_name": 5, "customer_email": "a@example.com", "items": [{"name": "x", "unit_price": 1}]}',
            422,
            "customer_name",
        ),
        (
            b'{"customer_name": "A", "customer_email": "not-an-address", "items": [{"name": "x", "unit_price": 1}]}',
            422,
            "customer_email",
        ),
        (
            b'{"customer_name": "A", "customer_email": "a@example.com", "items": [{"name": "x", "unit_price": -1}]}',
            422,
            "items.0.unit_price",
        ),
        (
            b'{"customer_name": "A\\u0000", "customer_email": "a@example.com",'
            b' "items": [{"name": "x", "unit_price": 1}]}',
            422,
            "customer_name",
        ),
        (
            b'{"customer_name": "A", "customer_email": "a@example.com", "items": [{"name": "x", "unit_price": 100}],'
            b' "vouchers": [{"product_id": "p", "serial_number": "s", "name": "v", "amount": 500}]}',
            422,
            "vouchers.0.amount",
        ),
        (
            b'{"customer_name": "A", "customer_email": "a@example.com", "items": [{"name": "x", "unit_price": 1}],'
            b' "provider": "paypal"}',
            422,
            "provider",
        ),
    ],
)
def test_bad_bodies_create_nothing(live_server, shop_a, raw, status, field):
    response = shop_a.http.post(
        shop_a.base + "/orders", data=raw, headers={"Content-Type": "application/json"}, timeout=30
    )
    body = assert_problem(response, status)
    if field:
        assert field in [e["field"] for e in body["errors"]], body
    assert count(live_server, Order) == 0


def test_too_large_not_json_and_wrong_type_bodies(live_server, shop_a):
    huge = b'{"note": "' + b"x" * (1024 * 1024) + b'"}'
    assert_problem(
        shop_a.http.post(shop_a.base + "/orders", data=huge, headers={"Content-Type": "application/json"}), 413
    )
    assert_problem(shop_a.http.post(shop_a.base + "/orders", data={"customer_name": "A"}), 415)
    assert_problem(shop_a.get("/no-such-route"), 404)
    assert_problem(shop_a.http.delete(shop_a.base + "/orders"), 405)
    assert count(live_server, Order) == 0


def test_messages_in_traditional_chinese_when_asked(live_server, shop_a):
    body = {"customer_name": "A", "customer_email": "bad", "items": [{"name": "x", "unit_price": "1"}]}
    english = shop_a.post("/orders", body).json()
    chinese = shop_a.post("/orders", body, headers={"Accept-Language": "zh-TW"}).json()
    assert english["title"] == "Invalid request"
    assert chinese["title"] != english["title"] and re.search(r"[\u4e00-\u9fff]", chinese["title"])
    assert re.search(r"[\u4e00-\u9fff]", chinese["errors"][0]["message"])


# ---------------------------------------------------------------- keys


def test_missing_wrong_revoked_keys_and_cookies_are_refused(live_server, shop_a):
    for api in (Api(live_server.url, None), Api(live_server.url, "ptl_test_wrong"), Api(live_server.url, "x")):
        body = assert_problem(api.get("/orders"), 401)
        assert body["detail"]
        assert api.get("/orders").headers["WWW-Authenticate"].startswith("Bearer")

    # A signed-in browser's session cookie is no key.
    admin = Browser(live_server.url)
    admin.login("admin@a.example")
    assert_problem(admin.http.get(live_server.url + "/api/v1/orders"), 401)
    assert_problem(admin.http.post(live_server.url + "/api/v1/orders", json=ORDER), 401)

    secret = shop_a.http.headers["Authorization"].split(" ", 1)[1]
    assert shop_a.get("/orders").status_code == 200
    with live_server.app.app_context():
        key = db.session.execute(db.select(ApiKey).filter_by(key_hash=api_keys.hash_key(secret))).scalar_one()
        api_keys.revoke_key(key.merchant_id, key.id, user_id=None)
    assert_problem(shop_a.get("/orders"), 401)
    assert_problem(shop_a.post("/orders", ORDER, key="after-revoke"), 401)
    assert count(live_server, Order) == 0


def test_key_pages_show_the_key_once_and_audit_without_it(live_server):
    admin = Browser(live_server.url)
    admin.login("admin@a.example")
    made = admin.post("/settings/api-keys", {"name": "ERP", "can_refund": "y"})
    assert made.status_code == 201
    secret = unescape(re.search(r"data-api-key>([^<]+)<", made.text).group(1))
    assert secret.startswith("ptl_test_")
    assert Api(live_server.url, secret).get("/orders").status_code == 200

    listing = admin.get("/settings/api-keys")
    assert secret not in listing.text and secret[:16] in listing.text and "ERP" in listing.text
    assert "Never" not in listing.text  # the key was just used: its last use is shown
    with live_server.app.app_context():
        key = db.session.execute(db.select(ApiKey).filter_by(name="ERP")).scalar_one()
        assert key.can_refund and key.key_hash != secret and secret not in key.key_hash
        key_id = key.id
    assert admin.post(f"/settings/api-keys/{key_id}/revoke").status_code == 200
    assert_problem(Api(live_server.url, secret).get("/orders"), 401)
    assert "Revoked" in admin.get("/settings/api-keys").text
    with live_server.app.app_context():
        events = db.session.execute(db.select(AuditEvent).where(AuditEvent.action.like("api_key_%"))).scalars().all()
        assert [e.action for e in events] == ["api_key_created", "api_key_revoked"]
        assert all(secret not in str(e.detail) for e in events)
    assert secret not in admin.get("/settings/audit").text

    staff = Browser(live_server.url)
    staff.login("staff@a.example")
    assert staff.get("/settings/api-keys").status_code == 403
    assert staff.post("/settings/api-keys", {"name": "sneaky"}).status_code == 403
    other_admin = Browser(live_server.url)
    other_admin.login("admin@b.example")
    assert other_admin.post(f"/settings/api-keys/{key_id}/revoke").status_code == 404


# ---------------------------------------------------------------- the document


def test_openapi_document_and_its_page(live_server, shop_a):
    document = requests.get(live_server.url + "/api/v1/openapi.json", timeout=30).json()
    assert document["openapi"] == "3.1.0"
    expected = {
        "/api/v1/orders": {"get", "post"},
        "/api/v1/orders/{order_id}": {"get"},
        "/api/v1/orders/{order_id}/checkout": {"post"},
        "/api/v1/orders/{order_id}/refunds": {"post"},
        "/api/v1/orders/{order_id}/transactions": {"get"},
    }
    assert {path: set(methods) for path, methods in document["paths"].items()} == expected
    schemas = document["components"]["schemas"]
    order = shop_a.post("/orders", ORDER | {"provider": "oen"}).json()
    assert set(schemas["OrderOut"]["properties"]) == set(order)
    assert set(schemas["OrderOut"]["required"]) == set(order)
    assert set(schemas["CheckoutOut"]["properties"]) == set(order["checkout"])
    assert set(schemas["ItemOut"]["properties"]) == set(order["items"][0])
    assert set(schemas["OrderCreate"]["properties"]) >= {"customer_name", "items", "vouchers", "provider"}
    assert schemas["OrderCreate"]["additionalProperties"] is False
    post = document["paths"]["/api/v1/orders"]["post"]
    assert any(p["name"] == "Idempotency-Key" for p in post["parameters"])
    assert "application/problem+json" in post["responses"]["422"]["content"]
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"

    page = requests.get(live_server.url + "/api/v1/docs", timeout=30)
    assert page.status_code == 200
    assert not re.search(r"<script(?![^>]*\bsrc=)", page.text)  # no inline scripts (the CSP forbids them)
    for path in expected:
        assert path in unescape(page.text)
    assert "OrderOut" in page.text and "customer_email" in page.text


def test_order_schema_matches_order_payload(live_server, shop_a):
    """OrderOut is order_payload's shape: every field, with and without a link, vouchers and an invoice."""
    plain = shop_a.post("/orders", ORDER).json()
    linked = shop_a.post("/orders", ORDER | {"provider": "choice"}).json()
    with live_server.app.test_request_context():
        for order_id in (plain["id"], linked["id"]):
            order = db.session.get(Order, order_id)
            order.invoice_kind, order.invoice_carrier = "mobile", "/ABC+123"
            payload = order_payload(order)
            assert set(OrderOut.model_fields) == set(payload)
            assert OrderOut.model_validate(payload).model_dump(mode="json") == payload
            db.session.rollback()


def test_the_list_takes_the_order_lists_provider_and_date_filters(live_server, shop_a):
    made = shop_a.post("/orders", ORDER | {"provider": "opay"}).json()
    shop_a.post("/orders", ORDER)  # no link, so no provider
    by_provider = shop_a.get("/orders", params={"provider": "opay"}).json()["data"]
    assert [o["id"] for o in by_provider] == [made["id"]]
    today = made["created_at"][:10]  # UTC date; the Taipei day is the same or the next
    assert shop_a.get("/orders", params={"from": "2000-01-01", "to": "2000-01-02"}).json()["data"] == []
    assert len(shop_a.get("/orders", params={"from": today}).json()["data"]) >= 2
    body = assert_problem(shop_a.get("/orders", params={"from": "yesterday"}), 422)
    assert body["errors"][0]["field"] == "from"
