"""Issue 12, items 3–5 through the services: MyPay's actual_cost, unreadable answers to money calls, expiry."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from html import unescape

import pytest
import responses

from portal import refunds as refund_service
from portal.extensions import db
from portal.models import Checkout, Order, Refund, utcnow
from portal.payments import charge_card, reconcile_open_checkouts, refresh_checkout, refresh_order
from portal.security import encrypt_secret
from tests.support.accounts import OPAY_MERCHANT_ID
from tests.support.factories import make_checkout, make_order
from tests.support.providers import opay_notice

MYPAY_UID = "95201"
KEY_RE = re.compile(r'name="idempotency_key" value="([^"]+)"')


@pytest.fixture
def admin(client, auth):
    auth.login()
    return client


def text(response) -> str:
    return unescape(response.get_data(as_text=True))


def awaiting_mypay(app, seed, items=((1000, 1),)) -> tuple[int, int, str]:
    """An open MyPay checkout (uid and key known); returns (order id, checkout id, reference)."""
    with app.app_context():
        order = make_order(seed.merchant_id, items=items, shipping=0)
        checkout = make_checkout(order, "mypay")
        checkout.provider_checkout_id, checkout.provider_secret_enc = MYPAY_UID, encrypt_secret("k" * 32)
        db.session.commit()
        return order.id, checkout.id, checkout.reference


def mypay_answer(reference, prc="250", cost=1000, actual_cost=1000, **extra) -> dict:
    return {"uid": MYPAY_UID, "key": "k" * 32, "prc": prc, "order_id": reference, "cost": cost,
            "actual_cost": actual_cost, "pfn": "CREDITCARD", "finishtime": "20250301120000", **extra}  # fmt: skip


# ---------------------------------------------------------------- item 3: MyPay's amount paid is actual_cost


@pytest.mark.parametrize(("prc", "actual"), [("250", 900), ("290", 1000)])
def test_mypay_actual_cost_differs_or_290_paid_flagged_both_amounts_shown_refund_follows_paid(
    app, seed, admin, prc, actual
):
    order_id, checkout_id, ref = awaiting_mypay(app, seed)
    with responses.RequestsMock() as rsps:
        rsps.post(app.config["MYPAY_API_URL"], json=mypay_answer(ref, prc=prc, actual_cost=actual))
        with app.test_request_context():
            changed, error = refresh_checkout(checkout_id)
    assert changed and error is None
    with app.app_context():
        checkout = db.session.get(Checkout, checkout_id)
        assert checkout.state == "paid" and checkout.needs_attention
        assert checkout.paid_amount == actual and db.session.get(Order, order_id).paid_amount == actual
        assert refund_service.terms_for(checkout).refundable == actual
    page = text(admin.get(f"/orders/{order_id}", headers={"Accept-Language": "en"}))
    assert "Needs attention" in page and "NT$1,000" in page and f"NT${actual:,}" in page
    assert "需要處理" in text(admin.get(f"/orders/{order_id}", headers={"Accept-Language": "zh-TW"}))
    listing = text(admin.get("/orders", headers={"Accept-Language": "en"}))
    assert "Needs attention" in listing
    # what MyPay says it took reads as money on its live view too ("actually paid 900" before)
    with responses.RequestsMock() as rsps:
        rsps.post(app.config["MYPAY_API_URL"], json=mypay_answer(ref, prc=prc, actual_cost=actual))
        live = text(admin.get(f"/orders/{order_id}/transactions", headers={"Accept-Language": "en"}))
    assert f"actually paid NT${actual:,}" in live
    # its refunds' heading names what staff read, not MyPay's field names (they stay in its title, for support)
    assert ">Refunds and cancellations</h4>" in live and "(refund_order" not in live


def test_mypay_order_not_paid_yet_shows_its_amount_and_nothing_actually_paid(app, seed, admin):
    """MyPay reports actual_cost 0 until the customer pays: the live view read "Amount NT$0, actually paid NT$0" for
    an NT$1,000 order awaiting payment. It reads the order's amount, and nothing of what was actually paid."""
    order_id, _checkout_id, ref = awaiting_mypay(app, seed)
    with responses.RequestsMock() as rsps:
        rsps.post(app.config["MYPAY_API_URL"], json=mypay_answer(ref, prc="280", actual_cost=0))
        live = text(admin.get(f"/orders/{order_id}/transactions", headers={"Accept-Language": "en"}))
    amount = re.search(r"<dt>Amount</dt><dd>(.*?)</dd>", live, re.S).group(1)
    assert amount.strip() == "NT$1,000", amount
    assert "actually paid" not in live


def test_mypay_paid_in_full_is_not_flagged(app, seed, admin):
    order_id, checkout_id, ref = awaiting_mypay(app, seed)
    with responses.RequestsMock() as rsps:
        rsps.post(app.config["MYPAY_API_URL"], json=mypay_answer(ref))
        with app.test_request_context():
            refresh_checkout(checkout_id)
    with app.app_context():
        checkout = db.session.get(Checkout, checkout_id)
        assert checkout.state == "paid" and not checkout.needs_attention and checkout.paid_amount == 1000
    assert "Needs attention" not in text(admin.get("/orders", headers={"Accept-Language": "en"}))


# ---------------------------------------------------------------- item 4: an unreadable 2xx answer is "unknown"

HID = "P20250301ABCDEFGH"


def charging_oen(app, seed) -> tuple[int, str]:
    """An Oen checkout whose card token arrived (processing), not yet charged; returns (checkout id, reference)."""
    with app.app_context():
        order = make_order(seed.merchant_id, items=((1000, 1),), shipping=0)
        checkout = make_checkout(order, "oen", state="processing")
        checkout.provider_checkout_id, checkout.card_token_enc = "2ck", encrypt_secret("tok_secret")
        db.session.commit()
        return checkout.id, checkout.reference


def oen_transactions(app, rsps, reference, rows):
    url = app.config["OEN_API_URL"] + f"/order/{reference}/transactions"
    return rsps.get(url, json={"code": "S0000", "data": {"transactions": rows}})


def charged_row(reference):
    return {"id": HID, "amount": 1000, "status": "charged", "orderId": reference, "createdAt": "2025-03-01T04:00:00Z"}


@pytest.mark.parametrize("answer", [{"body": "not json"}, {"json": {"code": "S0000", "data": {"authCode": "1"}}}])
def test_an_unreadable_charge_answer_stays_unknown_then_a_query_settles_it_never_sent_again(app, seed, answer):
    checkout_id, ref = charging_oen(app, seed)
    with responses.RequestsMock() as rsps:
        charge = rsps.post(app.config["OEN_API_URL"] + "/token/transactions", status=200, **answer)
        oen_transactions(app, rsps, ref, [])  # Oen shows nothing yet
        with app.test_request_context():
            charge_card(checkout_id, source="callback")
            charge_card(checkout_id, source="callback")  # a second attempt (a resent notice) sends nothing
        assert charge.call_count == 1
    with app.app_context():
        checkout = db.session.get(Checkout, checkout_id)
        assert checkout.state == "processing" and "unknown_outcome" in checkout.last_error  # never "failed"
        assert any('"charge": "unknown"' in e.detail for e in checkout.events)
    with responses.RequestsMock() as rsps:
        oen_transactions(app, rsps, ref, [charged_row(ref)])
        with app.test_request_context():
            changed, error = refresh_checkout(checkout_id, source="reconcile")
    assert changed and error is None
    with app.app_context():
        checkout = db.session.get(Checkout, checkout_id)
        assert checkout.state == "paid" and checkout.provider_transaction_id == HID and checkout.paid_amount == 1000


def paid_mypay(app, seed) -> tuple[int, int, str]:
    order_id, checkout_id, ref = awaiting_mypay(app, seed)
    with app.app_context():
        checkout = db.session.get(Checkout, checkout_id)
        checkout.state, checkout.paid_amount = "paid", 1000
        refresh_order(checkout.order)
        db.session.commit()
    return order_id, checkout_id, ref


def confirm_refund(client, order_id, amount):
    fields = {"amount": str(amount), "reason": "退貨", "invoice_state": "6"}
    page = client.post(f"/orders/{order_id}/refunds", data=fields)
    key = KEY_RE.search(page.get_data(as_text=True))
    assert key, text(page)[:3000]
    fields["idempotency_key"] = key.group(1)
    return fields, client.post(f"/orders/{order_id}/refunds", data=fields)


@pytest.mark.parametrize("answer", [{"body": "<html>busy</html>"}, {"json": {"code": "B200", "msg": "執行成功"}}])
def test_an_unreadable_mypay_partial_refund_answer_is_unknown_never_sent_twice(app, seed, admin, answer):
    order_id, checkout_id, ref = paid_mypay(app, seed)
    with responses.RequestsMock() as rsps:
        sent = rsps.post(app.config["MYPAY_API_URL"], status=200, **answer)
        fields, done = confirm_refund(admin, order_id, 300)
        assert done.status_code == 302
        admin.post(f"/orders/{order_id}/refunds", data=fields)  # the same confirmation again
        again = admin.post(
            f"/orders/{order_id}/refunds", data={"amount": "800", "reason": "again", "invoice_state": "6"}
        )
        assert again.status_code == 409  # 300 of 1000 is taken while unknown: 800 is more than is left
        assert sent.call_count == 1
    with app.app_context():
        (refund,) = db.session.execute(db.select(Refund).filter_by(order_id=order_id)).scalars()
        assert refund.state == "unknown" and refund.amount == 300
        refund_id = refund.id
    with responses.RequestsMock() as rsps:
        shown = mypay_answer(ref, refund_order=[{"uid": "77", "prc": "230", "cost": 300, "actual_cost": 300}])
        rsps.post(app.config["MYPAY_API_URL"], json=shown)
        admin.post(f"/orders/{order_id}/refunds/{refund_id}/check")
    with app.app_context():
        assert db.session.get(Refund, refund_id).state == "succeeded"
        assert db.session.get(Order, order_id).refunded_amount == 300


# ---------------------------------------------------------------- item 5: expired links do not strand orders


def overdue(app, checkout_id):
    with app.app_context():
        checkout = db.session.get(Checkout, checkout_id)
        checkout.expires_at = utcnow() - timedelta(minutes=1)
        db.session.commit()


def state_of(app, checkout_id) -> tuple[str, bool, str]:
    with app.app_context():
        checkout = db.session.get(Checkout, checkout_id)
        return checkout.state, checkout.needs_attention, checkout.order.state


def opay_query_answer(app, reference, status="0"):
    trade = {"MerchantID": OPAY_MERCHANT_ID, "MerchantTradeNo": reference, "TradeStatus": status, "TradeAmt": "1000"}
    return {"RtnCode": 1, "RtnMsg": "OK", "Data": trade}


def test_mypay_link_awaiting_at_the_provider_expires_on_refresh_then_a_new_link_can_be_made(app, seed, admin):
    order_id, checkout_id, ref = awaiting_mypay(app, seed)
    overdue(app, checkout_id)
    with responses.RequestsMock() as rsps:
        asked = rsps.post(app.config["MYPAY_API_URL"], json=mypay_answer(ref, prc="200"))  # still awaiting payment
        admin.post(f"/orders/{order_id}/refresh")
        assert asked.call_count == 1  # the provider is asked first
    assert state_of(app, checkout_id) == ("expired", False, "expired")
    with app.app_context():
        expiry = [e for e in db.session.get(Checkout, checkout_id).events if e.to_state == "expired"]
        assert expiry and expiry[-1].applied and "awaiting_payment" in expiry[-1].detail  # the evidence
    page = text(admin.get(f"/orders/{order_id}", headers={"Accept-Language": "en"}))
    assert "provider-choice" in page  # the merchant may make a new link
    with responses.RequestsMock() as rsps:
        created = {
            "code": "200",
            "msg": "ok",
            "url": "https://pay.usecase.cc/payment/1.html",
            "uid": 1,
            "key": "k" * 32,
        }
        rsps.post(app.config["MYPAY_API_URL"], json=created)
        admin.post(f"/orders/{order_id}/checkout", data={"provider": "mypay"})
    with app.app_context():
        states = [c.state for c in db.session.get(Order, order_id).checkouts]
    assert states == ["expired", "awaiting_payment"]


def test_opay_link_expires_on_the_customers_visit_after_asking_opay(app, seed, client):
    with app.app_context():
        checkout = make_checkout(make_order(seed.merchant_id, items=((1000, 1),), shipping=0), provider="opay")
        checkout_id, ref, token = checkout.id, checkout.reference, checkout.public_token
    overdue(app, checkout_id)
    with responses.RequestsMock() as rsps:
        asked = rsps.post(app.config["OPAY_API_URL"] + "/WxAPI/QueryTradeInfo", json=opay_query_answer(app, ref))
        page = client.get(f"/pay/{token}")
        assert asked.call_count == 1
    assert page.status_code == 200
    assert state_of(app, checkout_id)[0] == "expired"


def test_reconcile_expires_overdue_links_the_provider_still_awaits(app, seed):
    _order_id, checkout_id, ref = awaiting_mypay(app, seed)
    overdue(app, checkout_id)
    with responses.RequestsMock() as rsps:
        rsps.post(app.config["MYPAY_API_URL"], json=mypay_answer(ref, prc="260"))  # waiting at a convenience store
        with app.test_request_context():
            summary = reconcile_open_checkouts(merchant_id=seed.merchant_id)
    assert summary.changed == 1 and state_of(app, checkout_id)[0] == "expired"


def test_a_link_not_yet_due_is_not_expired(app, seed):
    _order_id, checkout_id, ref = awaiting_mypay(app, seed)
    with responses.RequestsMock() as rsps:
        rsps.post(app.config["MYPAY_API_URL"], json=mypay_answer(ref, prc="200"))
        with app.test_request_context():
            refresh_checkout(checkout_id)
    assert state_of(app, checkout_id)[0] == "awaiting_payment"


def test_a_late_opay_payment_after_expiry_is_applied_and_flagged(app, seed, client):
    with app.app_context():
        checkout = make_checkout(make_order(seed.merchant_id), provider="opay")
        checkout_id, ref, amount = checkout.id, checkout.reference, checkout.amount
    overdue(app, checkout_id)
    with responses.RequestsMock() as rsps:
        rsps.post(app.config["OPAY_API_URL"] + "/WxAPI/QueryTradeInfo", json=opay_query_answer(app, ref))
        with app.test_request_context():
            refresh_checkout(checkout_id)
    assert state_of(app, checkout_id)[0] == "expired"
    response = client.post("/webhooks/opay", data=opay_notice(ref, amount))
    assert response.status_code == 200 and response.data == b"1|OK"
    assert state_of(app, checkout_id) == ("paid", True, "paid")


def test_a_late_mypay_payment_after_expiry_is_applied_and_flagged(app, seed):
    _order_id, checkout_id, ref = awaiting_mypay(app, seed)
    overdue(app, checkout_id)
    with responses.RequestsMock() as rsps:
        rsps.post(app.config["MYPAY_API_URL"], json=mypay_answer(ref, prc="200"))
        with app.test_request_context():
            refresh_checkout(checkout_id)
        rsps.replace(responses.POST, app.config["MYPAY_API_URL"], json=mypay_answer(ref, prc="250"))
        with app.test_request_context():
            changed, _error = refresh_checkout(checkout_id, source="callback+query")
    assert changed and state_of(app, checkout_id) == ("paid", True, "paid")


@responses.activate
def test_a_link_the_provider_refuses_to_make_leaves_the_order_as_it_was_and_says_why_in_zh_tw(app, seed, client, auth):
    """MyPay down while the link is made: the order stays a draft (not "failed"), the attempt is kept with its reason,
    and the message is in the reader's language."""
    auth.login()
    client.get("/lang/zh_TW")
    with app.app_context():
        order = make_order(seed.merchant_id)
        db.session.commit()
        order_id = order.id
    with responses.RequestsMock() as rsps:
        rsps.post(app.config["MYPAY_API_URL"], status=503)
        page = client.post(f"/orders/{order_id}/checkout", data={"provider": "mypay"}, follow_redirects=True)
    text = page.get_data(as_text=True)
    assert 'data-order-state="draft"' in text
    assert "MyPay" in text and re.search(r"[\u4e00-\u9fff]", text.split("flash-error", 1)[1][:400])
    with app.app_context():
        order = db.session.get(Order, order_id)
        assert order.state == "draft"
        [checkout] = order.checkouts
        assert checkout.state == "failed" and checkout.opened_at is None and checkout.last_error


def test_a_link_the_provider_makes_awaits_payment_and_its_answer_is_recorded_without_the_order(app, seed, admin):
    """The provider's answer moves the attempt from "creating" to "awaiting payment", two open states: the order
    already awaits payment (derived when the attempt was stored, before the call), so recording the answer reads,
    locks and writes the attempt and its evidence only, not the order."""
    from sqlalchemy import event

    with app.app_context():
        order = make_order(seed.merchant_id)
        db.session.commit()
        order_id, engine = order.id, db.engine
    statements: list[str] = []
    created = {"code": "200", "msg": "ok", "url": "https://pay.usecase.cc/payment/1.html", "uid": 1, "key": "k" * 32}

    def answer(_request):
        statements.clear()  # what is left: the transaction after the call
        return 200, {}, json.dumps(created)

    def statement(_conn, _cursor, sql, *_args):
        statements.append(sql)

    def committed(_conn):
        statements.append("COMMIT")

    event.listen(engine, "before_cursor_execute", statement)
    event.listen(engine, "commit", committed)
    try:
        with responses.RequestsMock() as rsps:
            rsps.add_callback(responses.POST, app.config["MYPAY_API_URL"], callback=answer)
            page = admin.post(f"/orders/{order_id}/checkout", data={"provider": "mypay"}, follow_redirects=True)
    finally:
        event.remove(engine, "before_cursor_execute", statement)
        event.remove(engine, "commit", committed)
    assert 'data-order-state="awaiting_payment"' in page.get_data(as_text=True)
    with app.app_context():
        order = db.session.get(Order, order_id)
        [checkout] = order.checkouts
        assert (order.state, checkout.state, checkout.provider_checkout_id) == (
            "awaiting_payment",
            "awaiting_payment",
            "1",
        )
        assert checkout.opened_at is not None and [e.to_state for e in checkout.events][-1] == "awaiting_payment"
    after_call = statements[: next(i for i, sql in enumerate(statements) if sql.startswith("COMMIT")) + 1]
    # The move: an UPDATE (on PostgreSQL, with its evidence row, in one statement whose CTE is the UPDATE).
    assert any(re.match(r"(WITH moved AS\s*\(\s*)?UPDATE checkout", sql) for sql in after_call)
    assert not any('"order"' in sql for sql in after_call), after_call
    # Compared and set on "creating" by its id: the attempt is not read first.
    assert not any(sql.startswith("SELECT") for sql in after_call), after_call


def test_an_answer_for_an_attempt_ended_during_the_call_is_kept_and_not_applied(app, seed, admin):
    """The provider answers for an attempt that is no longer being created (staff switched the link while the call was
    under way): the attempt stays as it is now, the answer's page address is kept on it as evidence, and its history
    says the provider's answer was recorded, not applied."""
    with app.app_context():
        order = make_order(seed.merchant_id)
        db.session.commit()
        order_id = order.id
    url = "https://pay.usecase.cc/payment/7.html"
    created = {"code": "200", "msg": "ok", "url": url, "uid": 7, "key": "k" * 32}

    def answer(_request):
        with app.app_context():  # another connection, as the staff's switch would be
            db.session.execute(db.update(Checkout).where(Checkout.order_id == order_id).values(state="cancelled"))
            db.session.commit()
        return 200, {}, json.dumps(created)

    with responses.RequestsMock() as rsps:
        rsps.add_callback(responses.POST, app.config["MYPAY_API_URL"], callback=answer)
        admin.post(f"/orders/{order_id}/checkout", data={"provider": "mypay"})
    with app.app_context():
        [checkout] = db.session.get(Order, order_id).checkouts
        assert (checkout.state, checkout.provider_url, checkout.opened_at) == ("cancelled", url, None)
        last = checkout.events[-1]
        assert (last.source, last.from_state, last.to_state, last.applied) == (
            "create",
            "cancelled",
            "awaiting_payment",
            False,
        )


def test_opening_a_link_reads_the_orders_attempts_once_before_the_call(app, seed, admin):
    """The transaction before the provider call reads the order's attempts with the order, locked; deriving the order's
    state from them (with the new attempt) does not read them again."""
    from sqlalchemy import event

    with app.app_context():
        order = make_order(seed.merchant_id)
        db.session.commit()
        order_id, engine = order.id, db.engine
    created = {"code": "200", "msg": "ok", "url": "https://pay.usecase.cc/payment/1.html", "uid": 1, "key": "k" * 32}
    before_call: list[str] = []
    statements: list[str] = []

    def answer(_request):
        before_call[:] = statements
        return 200, {}, json.dumps(created)

    def statement(_conn, _cursor, sql, *_args):
        statements.append(sql)

    event.listen(engine, "before_cursor_execute", statement)
    try:
        with responses.RequestsMock() as rsps:
            rsps.add_callback(responses.POST, app.config["MYPAY_API_URL"], callback=answer)
            admin.post(f"/orders/{order_id}/checkout", data={"provider": "mypay"})
    finally:
        event.remove(engine, "before_cursor_execute", statement)
    reads = [sql for sql in before_call if sql.startswith("SELECT") and re.search(r"\bFROM checkout\b", sql)]
    assert len(reads) == 1, reads  # nor is the new attempt read back for the figures its INSERT left to defaults
    with app.app_context():
        order = db.session.get(Order, order_id)
        assert order.state == "awaiting_payment" and [c.state for c in order.checkouts] == ["awaiting_payment"]


def test_the_providers_error_on_an_attempt_reads_in_the_staffs_language(app, seed, client, auth):
    """MyPay down while the link is made: the attempt's row keeps the reason with its code, read in zh-TW by staff
    who read the portal in zh-TW (it was shown in English to everyone), in English by those who read English."""
    auth.login()
    with app.app_context():
        order = make_order(seed.merchant_id)
        db.session.commit()
        order_id = order.id
    client.get("/lang/zh_TW")
    with responses.RequestsMock() as rsps:
        rsps.post(app.config["MYPAY_API_URL"], status=500)
        client.post(f"/orders/{order_id}/checkout", data={"provider": "mypay"})

    def shown() -> str:
        page = client.get(f"/orders/{order_id}").get_data(as_text=True)
        return unescape(page.split("data-attempt-error>", 1)[1].split("</span>", 1)[0])

    zh = shown()
    assert zh.startswith("http_500: ") and "系統發生錯誤" in zh and "server error" not in zh
    client.get("/lang/en")
    assert shown().startswith("http_500: MyPay reported a server error")
    with app.app_context():
        [checkout] = db.session.get(Order, order_id).checkouts
        assert checkout.last_error.startswith("http_500: MyPay reported")  # the evidence stays in English
