"""Codes never reach the reader raw: provider names, audit actions and details, callback statuses and errors, MyPay's
transaction details show as labels in zh-TW by default and in English on request (the codes stay in attributes)."""

from __future__ import annotations

import ast
import re
import time
from datetime import datetime
from html import unescape
from pathlib import Path

import pytest
import responses

from portal import labels
from portal import overview as live
from portal.extensions import db
from portal.models import AuditEvent, Checkout, WebhookEvent
from portal.payments import NOT_READY, refresh_order
from portal.security import encrypt_secret
from tests.support.apps import browser_default_client
from tests.support.constants import PASSWORD
from tests.support.factories import make_checkout, make_order
from tests.support.providers import opay_notice

PORTAL = Path(__file__).resolve().parent.parent / "portal"


def visible(response) -> str:
    """The page's text without tags and attributes (codes may stay in value=, class= and data-*)."""
    html = response.get_data(as_text=True)
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S)
    return unescape(re.sub(r"<[^>]+>", " ", html))


@pytest.fixture
def zh(app, seed):
    """An admin whose browser sends no language preference: the portal's default, zh-TW."""
    client = browser_default_client(app)
    client.post("/login", data={"email": seed.admin, "password": PASSWORD})
    return client


@pytest.fixture
def en(app, seed):
    """An admin who asked for English (the test client's Accept-Language)."""
    client = app.test_client()
    client.post("/login", data={"email": seed.admin, "password": PASSWORD})
    return client


@pytest.fixture(autouse=True)
def fresh_cache(app):
    live.live_cache(app).forget()


# ---------------------------------------------------------------- the audit page


def audit_calls():
    """Every security.audit(...) call in portal/, parsed."""
    for path in PORTAL.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "audit":
                yield path, node


def action_codes(node: ast.expr) -> set[str]:
    """The action strings an audit call's first argument can be."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.IfExp):
        return action_codes(node.body) | action_codes(node.orelse)
    if isinstance(node, ast.JoinedStr) and ast.unparse(node) == "f'refund_{state}'":
        # refunds._record_outcome: the states a provider's answer settles a requested refund on
        return {f"refund_{s}" for s in ("succeeded", "pending", "failed", "unknown")}
    raise AssertionError(f"an audit action the test cannot read: {ast.unparse(node)}")


def test_every_audited_action_has_a_label():
    actions = set().union(*(action_codes(call.args[0]) for _path, call in audit_calls()))
    assert {"login", "order_created", "refund_recorded", "refund_requested", "refund_checked"} <= actions
    missing = sorted(actions - set(labels.ACTION_LABELS))
    assert not missing, f"audit actions without a label: {missing}"


def test_every_audited_detail_name_has_a_label():
    names = {kw.arg for _path, call in audit_calls() for kw in call.keywords if kw.arg}
    names -= {"merchant_id", "user_id"}  # columns of the entry, not its detail
    names.add("invoice_state")  # refunds: **plan.options()
    assert {"email", "role_from", "role_to", "refund_id", "reason"} <= names
    # database ids are never shown as such: labels.describe shows what they stand for, or leaves them out
    missing = sorted(names - set(labels.DETAIL_LABELS) - set(labels.ID_DETAILS))
    assert not missing, f"audit detail names without a label: {missing}"


def add_audit(app, merchant_id):
    with app.app_context():
        for minute, (action, detail) in enumerate(
            [
                ("refund_requested", {"refund_id": 7, "provider": "oen", "amount": 300, "invoice_state": "6"}),
                ("refund_succeeded", {"refund_id": 7, "amount": 300, "code": None}),
                ("refund_checked", {"refund_id": 7, "provider_refunded": 300, "state": "succeeded"}),
                ("provider_state_applied", {"checkout": "CABC", "changed": True, "error": None}),
                ("user_changed", {"email": "clerk@a.example", "role_from": "staff", "role_to": "admin"}),
                ("callback_refused", {"event_id": 3, "reason": NOT_READY}),
            ]
        ):
            db.session.add(
                AuditEvent(
                    merchant_id=merchant_id, action=action, detail=detail, created_at=datetime(2024, 1, 1, 0, minute)
                )
            )
        db.session.commit()


def test_audit_page_speaks_zh_tw_by_default(app, seed, zh):
    add_audit(app, seed.merchant_id)
    page = zh.get("/settings/audit")
    text = visible(page)
    assert page.status_code == 200
    for label in ("已送出退款", "退款成功", "已向金流商查詢退款", "已套用金流商狀態", "變更使用者", "登入"):
        assert label in text, label
    for label in ("金流商", "應援科技", "開立折讓", "原角色", "新角色", "員工", "管理員", "有無變更", "是"):
        assert label in text, label
    assert "退款 ID" not in text and "ID" not in text  # refund 7 is an internal id: not shown
    assert "付款連結仍在建立中" in text  # a callback_refused reason the portal wrote
    # a payment's reference is named as the order page names it (「參考編號」), not as its link (「付款連結」)
    assert "<dt>參考編號</dt><dd>CABC</dd>" in page.get_data(as_text=True)
    for code in ("refund_requested", "refund_succeeded", "provider_state_applied", "role_from", "refund_id", "oen"):
        assert not re.search(rf"\b{code}\b", text), code
    # the filter keeps the codes as values, shown as labels
    assert '<option value="refund_succeeded">退款成功</option>' in page.get_data(as_text=True)


def test_audit_page_in_english_on_request(app, seed, en):
    add_audit(app, seed.merchant_id)
    text = visible(en.get("/settings/audit"))
    for label in (
        "Refund requested",
        "Refund succeeded",
        "Refund checked with the provider",
        "Provider's state applied",
    ):
        assert label in text, label
    for label in ("Oen Tech", "Allowance", "Role before", "Role after", "Staff", "Admin", "Yes"):
        assert label in text, label
    assert "Refund id" not in text and "Callback id" not in text
    assert "退款" not in text


# ---------------------------------------------------------------- the callbacks page


def add_callbacks(app, merchant_id):
    with app.app_context():
        for n, (status, error) in enumerate(
            [
                ("refused", "The notice names no open trade."),
                ("error", NOT_READY),
                ("applied", None),
                ("recorded", None),
                ("received", None),
            ]  # fmt: skip
        ):
            db.session.add(
                WebhookEvent(
                    provider="opay",
                    dedupe_key=f"opay:{n}",
                    headers={},
                    body="{}",
                    status=status,
                    error=error,
                    merchant_id=merchant_id,
                )  # fmt: skip
            )
        db.session.commit()


def test_callbacks_page_speaks_zh_tw_by_default(app, seed, zh):
    add_callbacks(app, seed.merchant_id)
    page = zh.get("/callbacks")
    html, text = page.get_data(as_text=True), visible(page)
    assert page.status_code == 200
    for label in ("已拒絕", "錯誤", "已套用", "已記錄，狀態未變", "已收到，尚未處理", "歐付寶"):
        assert label in text, label
    assert "付款連結仍在建立中；金流商會再次傳送通知。" in text  # the portal's own reason, translated
    assert NOT_READY not in text
    assert "The notice names no open trade." in text  # a provider-layer reason, as stored
    for code in ("refused", "applied", "recorded", "received"):
        assert not re.search(rf"\b{code}\b", text), code
        assert f'class="badge badge-{code}"' in html
    for code in ("applied", "recorded", "received"):
        assert f'<option value="{code}"' in html
    assert '<option value="applied" selected>已套用</option>' in zh.get("/callbacks?status=applied").get_data(
        as_text=True
    )
    # A refusal is filed under no merchant (what it names is its own word): no use offering it as a filter.
    assert '<option value="refused"' not in html


def test_callbacks_page_in_english_on_request(app, seed, en):
    add_callbacks(app, seed.merchant_id)
    text = visible(en.get("/callbacks"))
    for label in ("Refused", "Error", "Applied", "Recorded, no change", "Received, not processed yet", "O'Pay"):
        assert label in text, label
    assert "The payment link was still being opened; the provider will send the callback again." in text
    assert "已拒絕" not in text


def test_callback_error_text_translates_only_the_portals_own_reasons(app):
    from portal.payments import NO_MERCHANT
    from portal.views.webhooks import callback_error_text

    with app.test_request_context(headers={"Accept-Language": "zh-TW"}):
        assert callback_error_text(NO_MERCHANT) == "金流通知中的商店不是本平台的商店。"
        assert callback_error_text("invalid_callback: something else") == "invalid_callback: something else"
    with app.test_request_context(headers={"Accept-Language": "en"}):
        assert callback_error_text(NO_MERCHANT) == NO_MERCHANT


def test_mypays_every_method_reads_as_not_chosen_yet(app):
    """MyPay reports pfn "all" until the customer picks a method on its page: the live view showed the bare word
    「all」 under 付款方式 on zh-TW pages."""
    from portal.labels import payment_method_label

    with app.test_request_context(headers={"Accept-Language": "zh-TW"}):
        assert payment_method_label("all") == "尚未選擇（提供所有付款方式）"
        assert payment_method_label("CREDITCARD") == "信用卡"
    with app.test_request_context(headers={"Accept-Language": "en"}):
        assert payment_method_label("ALL") == "Not chosen yet (every method offered)"


# ---------------------------------------------------------------- provider names on the order page


def order_with_attempts(app, seed) -> int:
    with app.app_context():
        order = make_order(seed.merchant_id)
        make_checkout(order, "oen", "failed")
        make_checkout(order, "opay", "awaiting_payment")
        return order.id


def test_order_page_names_the_providers_in_zh_tw_by_default(app, seed, zh):
    order_id = order_with_attempts(app, seed)
    text = visible(zh.get(f"/orders/{order_id}"))
    assert "應援科技" in text and "歐付寶" in text
    assert "Oen Tech" not in text and "O'Pay" not in text


def test_order_page_names_the_providers_in_english_on_request(app, seed, en):
    order_id = order_with_attempts(app, seed)
    text = visible(en.get(f"/orders/{order_id}"))
    assert "Payment link via O'Pay" in text and "Oen Tech" in text
    assert "應援科技" not in text and "歐付寶" not in text


# ---------------------------------------------------------------- the transactions pages


def mypay_paid_order(app, seed) -> int:
    with app.app_context():
        checkout = make_checkout(make_order(seed.merchant_id, items=((1000, 1),), shipping=0), "mypay", "paid")
        checkout.provider_checkout_id = "95201"
        checkout.provider_secret_enc = encrypt_secret("k" * 32)
        checkout.paid_amount = 1000
        refresh_order(checkout.order)
        db.session.commit()
        return checkout.order_id


MYPAY_ANSWER = {
    "prc": "250", "uid": "95201", "cost": 1000, "pfn": "CREDITCARD", "retmsg": "", "card_type": "1",
    "finishtime": "20250301120000", "cardno": "4938170130000003", "refund_order": [], "cancel_order": [],
    "trans_type": 2, "nois": "3", "invoice_state": 6, "invoice_date": "20250301", "invoice_wordtrack": "AB",
    "invoice_number": "12345678", "invoice_rand_code": "9527", "invoice_amount": "1000", "invoice_input_type": 2,
    "invoice_love_code": "168001", "invoice_allowance": [{"uid": "95702", "amount": 300}],
    "appropriation_date": "20250310",
}  # fmt: skip


def mypay_page(app, client, order_id):
    with responses.RequestsMock() as rsps:
        rsps.post(app.config["MYPAY_API_URL"], json=MYPAY_ANSWER)
        return client.get(f"/orders/{order_id}/transactions")


def test_mypay_details_speak_zh_tw_by_default(app, seed, zh):
    page = mypay_page(app, zh, mypay_paid_order(app, seed))
    html, text = page.get_data(as_text=True), visible(page)
    assert page.status_code == 200
    for label in ("交易類型", "分期", "發票狀態", "已開立折讓", "開立日期", "字軌", "發票號碼", "隨機碼", "開立類型",
                  "捐贈發票", "捐贈碼", "折讓"):  # fmt: skip
        assert label in text, label
    assert "12345678" in text and "9527" in text and "95702: 300" in text
    assert "2025-03-01" in text and "2025-03-10" in text  # the invoice's date and the payout date, as dates
    assert "20250301" not in text and "20250310" not in text
    for code in ("invoice_state", "invoice_number", "invoice_rand_code", "invoice_allowance", "trans_type"):
        assert code not in text, code
    assert 'data-field="invoice_state" data-code="6"' in html


def test_mypay_details_in_english_on_request(app, seed, en):
    text = visible(mypay_page(app, en, mypay_paid_order(app, seed)))
    for label in ("Transaction type", "Instalment payment", "Invoice state", "Allowance issued", "Invoice number",
                  "Random code", "Donated", "Donation code", "Allowances"):  # fmt: skip
        assert label in text, label
    assert "已開立折讓" not in text


class Broken:
    def query(self, _ref):
        raise RuntimeError("an answer nobody can read")


def opay_order(app, seed) -> int:
    with app.app_context():
        order = make_order(seed.merchant_id)
        make_checkout(order, "opay", "awaiting_payment")
        return order.id


def test_an_unreadable_answer_names_the_provider_in_the_readers_language(app, seed, zh, en, monkeypatch):
    monkeypatch.setattr(live, "query_client", lambda _provider, _settings: Broken())
    order_id = opay_order(app, seed)
    assert "歐付寶 回傳的資料無法解讀。" in visible(zh.get(f"/orders/{order_id}/transactions"))
    assert "O'Pay sent an answer the portal cannot read." in visible(en.get(f"/orders/{order_id}/transactions"))


def test_provider_layer_messages_name_the_provider_in_zh_tw(app, seed, zh):
    order_id = opay_order(app, seed)
    with responses.RequestsMock() as rsps:
        rsps.post(app.config["OPAY_API_URL"] + "/WxAPI/QueryTradeInfo", status=500)
        text = visible(zh.get(f"/orders/{order_id}/transactions"))
    assert "歐付寶 系統發生錯誤" in text and "O'Pay" not in text


def test_overview_names_the_providers_in_the_readers_language(app, seed, zh, en, monkeypatch):
    monkeypatch.setattr(live, "OVERVIEW_DEADLINE_S", 0.2)
    opay_order(app, seed)

    def slow(_provider, _settings):
        class Slow:
            def query(self, _ref):
                import time

                time.sleep(0.6)
                return []

        return Slow()

    monkeypatch.setattr(live, "query_client", slow)
    zh_text = visible(zh.get("/transactions"))
    assert "歐付寶" in zh_text and "O'Pay" not in zh_text
    # the late answer still lands in the cache: let it, then forget it, so the English page asks (and waits) again
    checkout_id = next(iter(live.live_cache(app)._items), None)
    deadline = time.monotonic() + 5
    while checkout_id is None and time.monotonic() < deadline:
        time.sleep(0.05)
        checkout_id = next(iter(live.live_cache(app)._items), None)
    live.live_cache(app).forget()
    en_text = visible(en.get("/transactions"))
    assert "O'Pay did not answer within 0.2 seconds." in en_text


def test_the_checkout_stays_queryable(app, seed):
    """The pages above rely on an O'Pay attempt awaiting payment being asked (not skipped as never sent)."""
    with app.app_context():
        order = make_order(seed.merchant_id)
        checkout = make_checkout(order, "opay", "awaiting_payment")
        assert live.queryable(db.session.get(Checkout, checkout.id))


def test_a_callback_that_came_too_early_shows_on_the_callbacks_page_translated(app, seed, zh):
    with app.app_context():
        checkout = make_checkout(make_order(seed.merchant_id), provider="opay", state="creating")
        reference, amount = checkout.reference, checkout.amount
    assert zh.post("/webhooks/opay", data=opay_notice(reference, amount)).status_code == 503
    with app.app_context():
        event = db.session.execute(db.select(WebhookEvent)).scalar_one()
        assert event.error == NOT_READY and event.merchant_id == seed.merchant_id  # English evidence, the merchant's
    text = visible(zh.get("/callbacks?status=error"))
    assert "錯誤" in text and "付款連結仍在建立中；金流商會再次傳送通知。" in text
