"""Refunds with the provider mocked (responses): rules, one call per confirmation, unknown outcomes, audit."""

from __future__ import annotations

import json
import re
from html import unescape
from pathlib import Path

import pytest
import requests
import responses

from portal import refunds as refund_service
from portal.extensions import db
from portal.models import AuditEvent, Checkout, Order, Refund
from portal.payments import refresh_order
from portal.security import encrypt_secret
from tests.support.factories import make_checkout, make_order

HID = "P20250301ABCDEFGH"
KEY_RE = re.compile(r'name="idempotency_key" value="([^"]+)"')


def paid(app, seed, provider="oen", *, items=((1000, 1),), vouchers=(), merchant_id=None):
    """A paid checkout of a new order; returns (order id, checkout id, reference)."""
    with app.app_context():
        order = make_order(merchant_id or seed.merchant_id, items=items, shipping=0, vouchers=vouchers)
        checkout = make_checkout(order, provider, state="paid")
        checkout.paid_amount = checkout.amount
        if provider == "oen":
            checkout.provider_checkout_id, checkout.provider_transaction_id = "2ck", HID
        elif provider == "mypay":
            checkout.provider_checkout_id, checkout.provider_secret_enc = "95201", encrypt_secret("k" * 32)
        else:
            checkout.provider_transaction_id = "25030112000012345678"
        refresh_order(order)
        db.session.commit()
        return order.id, checkout.id, checkout.reference


def oen_url(app, path: str) -> str:
    return app.config["OEN_API_URL"] + path


def oen_query(app, rsps, reference, *, method="card", status="charged", refunded=0):
    row = {"id": HID, "amount": 1000, "fee": 30, "status": status, "orderId": reference, "refundAmount": refunded,
           "paymentInfo": {"cardType": "VISA", "cardNum": "4242424242424242", "method": method},
           "createdAt": "2025-03-01T04:00:00.000Z"}  # fmt: skip
    rsps.get(oen_url(app, f"/order/{reference}/transactions"), json={"code": "S0000", "data": {"transactions": [row]}})


def oen_refund_ok(app, rsps, amount):
    data = {"id": HID, "status": "refunded", "refundAmount": amount, "refundedAt": "2025-03-01T05:00:00.000Z"}
    return rsps.post(oen_url(app, f"/refunds/{HID}"), json={"code": "S0000", "data": data})


def review(client, order_id, amount, reason="退貨", **extra):
    return client.post(f"/orders/{order_id}/refunds", data={"amount": str(amount), "reason": reason, **extra})


def confirm(client, order_id, amount, **extra):
    page = review(client, order_id, amount, **extra)
    key = KEY_RE.search(page.get_data(as_text=True))
    assert key, page.get_data(as_text=True)[:3000]
    fields = {"amount": str(amount), "reason": "退貨", "idempotency_key": key.group(1), **extra}
    return fields, client.post(f"/orders/{order_id}/refunds", data=fields)


def page_text(response) -> str:
    return unescape(response.get_data(as_text=True))


def refunds(app, order_id) -> list[tuple[str, int]]:
    with app.app_context():
        rows = db.session.execute(db.select(Refund).filter_by(order_id=order_id).order_by(Refund.id)).scalars()
        return [(r.state, r.amount) for r in rows]


def order_state(app, order_id) -> tuple[str, int]:
    with app.app_context():
        order = db.session.get(Order, order_id)
        return order.state, order.refunded_amount


@pytest.fixture
def admin(client, auth):
    auth.login()
    return client


def test_oen_refund_is_confirmed_then_sent_once_and_applied(app, seed, admin):
    order_id, _checkout_id, ref = paid(app, seed)
    with responses.RequestsMock() as rsps:
        oen_query(app, rsps, ref)
        page = review(admin, order_id, 400)
        text = page_text(page)
        assert f"A refund of NT$400 for transaction {HID}" in text and 'data-refund-amount="400"' in text
        assert "POST /refunds" not in text
        assert "(partial: paid NT$1,000)" in text
        assert not [c for c in rsps.calls if c.request.method == "POST"]  # the confirmation sends nothing
        refund_call = oen_refund_ok(app, rsps, 400)
        key = KEY_RE.search(page.get_data(as_text=True)).group(1)
        fields = {"amount": "400", "reason": "退貨", "idempotency_key": key, "checkout_id": ""}
        done = admin.post(f"/orders/{order_id}/refunds", data=fields)
        assert done.status_code == 302
        again = admin.post(f"/orders/{order_id}/refunds", data=fields, follow_redirects=True)
        assert "submitted already" in page_text(again)
        assert refund_call.call_count == 1
        assert json.loads(refund_call.calls[0].request.body) == {"merchantId": "shopa", "amount": 400, "reason": "退貨"}
    assert refunds(app, order_id) == [("succeeded", 400)]
    assert order_state(app, order_id) == ("partially_refunded", 400)
    # Oen's own status word is not said again, untranslated, under the refund's state (「退款成功」 then "refunded")
    listed = page_text(admin.get(f"/orders/{order_id}/refunds", headers={"Accept-Language": "zh-TW"}))
    row = re.search(r'<tr data-refund-state="succeeded">.*?</tr>', listed, re.S).group(0)
    assert "refunded" not in re.sub(r"<[^>]+>", " ", row), row
    # in the colour of a refunded payment on the order page (purple), not of a payment taken (green)
    assert '<span class="badge badge-succeeded">已退款</span>' in row, row
    css = (Path(app.root_path).parent / "static" / "css" / "portal.css").read_text()
    rule = next(line for line in css.splitlines() if re.search(r"\.badge-succeeded\b", line))
    assert ".badge-refunded" in rule and ".badge-paid" not in rule, rule
    with app.app_context():
        actions = db.session.execute(db.select(AuditEvent.action).order_by(AuditEvent.id)).scalars().all()
        assert actions[-2:] == ["refund_requested", "refund_succeeded"]
        checkout = db.session.execute(db.select(Checkout).filter_by(order_id=order_id)).scalar_one()
        assert checkout.events[-1].source == "refund"


def test_oen_non_card_payment_is_refused_with_crm_advice(app, seed, admin):
    order_id, _c, ref = paid(app, seed)
    with responses.RequestsMock() as rsps:
        oen_query(app, rsps, ref, method="atm")
        page = review(admin, order_id, 100)
    assert page.status_code == 409 and "refund it in Oen Tech's CRM" in page_text(page)
    assert refunds(app, order_id) == []


def test_oen_refund_already_shown_at_oen_is_refused(app, seed, admin):
    order_id, _c, ref = paid(app, seed)
    with responses.RequestsMock() as rsps:
        oen_query(app, rsps, ref, status="refunded", refunded=1000)
        page = review(admin, order_id, 100)
    assert page.status_code == 409 and "allows only one" in page_text(page)


def test_oen_query_failure_refuses_without_sending(app, seed, admin):
    order_id, _c, ref = paid(app, seed)
    app.config["PROVIDER_TIMEOUT_S"] = 1
    with responses.RequestsMock() as rsps:
        rsps.get(oen_url(app, f"/order/{ref}/transactions"), body=requests.ConnectionError("down"))
        page = review(admin, order_id, 100)
    assert page.status_code == 409 and "nothing was sent" in page_text(page)


def test_timeout_leaves_the_refund_unknown_never_resent_until_a_query_settles_it(app, seed, admin):
    order_id, _c, ref = paid(app, seed)
    with responses.RequestsMock() as rsps:
        oen_query(app, rsps, ref)
        refund_call = rsps.post(oen_url(app, f"/refunds/{HID}"), body=requests.ReadTimeout("slow"))
        fields, done = confirm(admin, order_id, 1000)
        assert done.status_code == 302
        assert "will not be sent again" in page_text(admin.get(f"/orders/{order_id}/refunds"))
        admin.post(f"/orders/{order_id}/refunds", data=fields)  # the same confirmation again
        other = review(admin, order_id, 1000)  # a new one
        assert other.status_code == 409
        assert refund_call.call_count == 1
    assert refunds(app, order_id) == [("unknown", 1000)]
    assert order_state(app, order_id) == ("paid", 0)
    with app.app_context():
        refund_id = db.session.execute(db.select(Refund.id).filter_by(order_id=order_id)).scalar_one()
    # a query that does not show it yet: still unknown (it may still be under way at the provider)
    with responses.RequestsMock() as rsps:
        oen_query(app, rsps, ref)
        admin.post(f"/orders/{order_id}/refunds/{refund_id}/check")
    assert refunds(app, order_id) == [("unknown", 1000)]
    # the provider shows it: succeeded, and the order follows
    with responses.RequestsMock() as rsps:
        oen_query(app, rsps, ref, status="refunded", refunded=1000)
        checked = admin.post(f"/orders/{order_id}/refunds/{refund_id}/check", follow_redirects=True)
    assert "it is made" in page_text(checked)
    assert refunds(app, order_id) == [("succeeded", 1000)]
    assert order_state(app, order_id) == ("refunded", 1000)


def test_a_refused_refund_is_failed_and_frees_the_amount(app, seed, admin):
    order_id, _c, ref = paid(app, seed, "mypay")
    with responses.RequestsMock() as rsps:
        rsps.post(app.config["MYPAY_API_URL"], json={"code": "B500", "msg": "執行失敗"})
        _fields, done = confirm(admin, order_id, 500, invoice_state="6")
        assert "MyPay refused the refund" in page_text(admin.get(f"/orders/{order_id}/refunds"))
    assert done.status_code == 302 and refunds(app, order_id) == [("failed", 500)]
    with app.app_context():
        assert db.session.execute(db.select(Refund.options)).scalar_one() == {"invoice_state": "6"}
        checkout = db.session.execute(db.select(Checkout).filter_by(order_id=order_id)).scalar_one()
        assert refund_service.terms_for(checkout).refundable == 1000


def test_mypay_voucher_orders_refund_in_full_only(app, seed, admin):
    order_id, _c, _ref = paid(app, seed, "mypay", vouchers=(("paid", 100), ("free", 50)))
    page = review(admin, order_id, 100)
    assert page.status_code == 409 and "only be refunded in full at MyPay: NT$850" in page_text(page)
    full = review(admin, order_id, 850)
    assert full.status_code == 200 and 'data-voucher="SN0"' in full.get_data(as_text=True)
    assert 'data-voucher="SN1"' not in full.get_data(as_text=True)  # the free voucher is not listed


def test_opay_needs_the_back_office_reference_and_calls_nothing(app, seed, admin):
    order_id, _c, _ref = paid(app, seed, "opay")
    with responses.RequestsMock():  # any HTTP call would fail the test
        missing = review(admin, order_id, 100)
        assert missing.status_code == 409 and "Enter the reference" in page_text(missing)
        _fields, done = confirm(admin, order_id, 1000, manual_reference="OPAYRF1")
    assert done.status_code == 302
    assert refunds(app, order_id) == [("succeeded", 1000)]
    assert order_state(app, order_id) == ("refunded", 1000)
    with app.app_context():
        event = db.session.execute(db.select(AuditEvent).filter_by(action="refund_recorded")).scalar_one()
        assert event.detail["manual_reference"] == "OPAYRF1" and event.detail["amount"] == 1000


def test_reason_and_amount_are_required(app, seed, admin):
    order_id, _c, _ref = paid(app, seed, "opay")
    for amount, reason, message in (("", "x", "Please enter a whole number"), ("10", "", "Please say why")):
        page = review(admin, order_id, amount, reason=reason, manual_reference="R")
        assert page.status_code == 400 and message in page_text(page)


def test_nothing_to_refund_on_an_unpaid_order(app, seed, admin):
    with app.app_context():
        order = make_order(seed.merchant_id)
        make_checkout(order, "mypay", state="awaiting_payment")
        order_id = order.id
    assert "no paid payment to refund" in page_text(admin.get(f"/orders/{order_id}/refunds"))
    assert review(admin, order_id, 10).status_code == 409


def test_staff_get_403_and_other_merchants_404(app, seed, client, auth):
    order_id, _c, _ref = paid(app, seed, "opay")
    other_id, _c2, _r2 = paid(app, seed, "opay", merchant_id=seed.other_merchant_id)
    auth.login("staff@a.example")
    assert client.get(f"/orders/{order_id}/refunds").status_code == 403
    assert client.post(f"/orders/{order_id}/refunds", data={"amount": "1", "reason": "x"}).status_code == 403
    auth.logout()
    auth.login()
    assert client.get(f"/orders/{other_id}/refunds").status_code == 404
    assert client.post(f"/orders/{other_id}/refunds/1/check").status_code == 404


def test_the_confirmation_carries_a_csrf_token(csrf_app):
    from tests.support.apps import seed_merchants
    from tests.support.constants import PASSWORD

    seed = seed_merchants(csrf_app)
    order_id, _c, _ref = paid(csrf_app, seed, "opay")
    client = csrf_app.test_client()
    login = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', login).group(1)
    client.post("/login", data={"email": seed.admin, "password": PASSWORD, "csrf_token": token})
    assert review(client, order_id, 100, manual_reference="R").status_code == 400  # no token: refused
    form = client.get(f"/orders/{order_id}/refunds").get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', form).group(1)
    page = review(client, order_id, 100, manual_reference="R", csrf_token=token)
    assert page.status_code == 200 and 'name="csrf_token"' in page.get_data(as_text=True)


def test_oen_partial_refund_warns_that_the_rest_is_given_up_and_then_nothing_is_refundable(app, seed, admin):
    """Oen Tech refunds a payment once: the confirmation says what a partial refund gives up, and afterwards the
    refund page shows nothing left to refund (not the unrefunded remainder)."""
    order_id, _checkout_id, ref = paid(app, seed)
    with responses.RequestsMock() as rsps:
        oen_query(app, rsps, ref)
        text = page_text(review(admin, order_id, 400))
        assert 'data-gives-up="600"' in text
        assert "the other NT$600 of this payment can never be refunded" in text
        oen_refund_ok(app, rsps, 400)
        key = KEY_RE.search(text).group(1)
        fields = {"amount": "400", "reason": "退貨", "idempotency_key": key, "checkout_id": ""}
        assert admin.post(f"/orders/{order_id}/refunds", data=fields).status_code == 302
    after = page_text(admin.get(f"/orders/{order_id}/refunds"))
    assert re.search(r'data-total="refundable">NT\$0<', after)
    assert "allows one refund per transaction" in after


def test_a_full_oen_refund_gives_nothing_up(app, seed, admin):
    order_id, _checkout_id, ref = paid(app, seed)
    with responses.RequestsMock() as rsps:
        oen_query(app, rsps, ref)
        text = page_text(review(admin, order_id, 1000))
    assert "data-gives-up" not in text and "(full refund)" in text


def test_a_partial_mypay_refund_gets_an_allowance_not_a_void_of_the_whole_invoice(app, seed, admin):
    """MyPay voids the e-invoice unless told otherwise; part of the money back leaves an invoice for the rest, so the
    refund asks for an allowance (6) whatever the form said, and a full refund keeps the admin's choice."""
    order_id, _c, _ref = paid(app, seed, "mypay")
    text = page_text(review(admin, order_id, 400, invoice_state="4"))
    assert 'data-invoice-state="6"' in text
    full = page_text(review(admin, order_id, 1000, invoice_state="4"))
    assert 'data-invoice-state="4"' in full


def test_a_refund_of_the_rest_is_not_called_partial(app, seed, admin):
    """After a first refund, the one that takes what is left refunds the payment in full: the confirmation says so
    (it said "partial"), and a smaller one is still partial."""
    order_id, _c, _ref = paid(app, seed, "opay")
    _fields, done = confirm(admin, order_id, 400, manual_reference="R-1")
    assert done.status_code == 302 and refunds(app, order_id) == [("succeeded", 400)]
    rest = page_text(review(admin, order_id, 600, manual_reference="R-2"))
    assert "(the rest: NT$400 of the NT$1,000 paid was refunded before)" in rest and "partial" not in rest
    part = page_text(review(admin, order_id, 500, manual_reference="R-2"))
    assert "(partial: paid NT$1,000)" in part


def test_mypay_orders_with_free_vouchers_only_say_nothing_of_paid_vouchers(app, seed, admin):
    order_id, _c, _ref = paid(app, seed, "mypay", vouchers=(("free", 50),))
    page = review(admin, order_id, 100)
    text = page_text(page)
    assert page.status_code == 409 and "Orders with vouchers can only be refunded in full at MyPay: NT$950." in text
    assert "paid voucher" not in text


def test_an_order_paid_twice_whose_second_payment_is_refunded_reads_paid(app, seed, admin):
    """Paid twice, and the second payment given back in full: the order read 「部分退款」 (partially refunded), as if
    part of what was bought had been refunded, while the shop still held the whole price once. It reads paid, with
    both payments and the refund as they are; a refund that then takes from the price itself makes it partially
    refunded."""
    order_id, oen_id, ref = paid(app, seed, "oen")
    with app.app_context():
        order = db.session.get(Order, order_id)
        second = make_checkout(order, "opay", state="paid")
        second.paid_amount, second.needs_attention = second.amount, True
        refresh_order(order)
        db.session.commit()
        opay_id = second.id
    with responses.RequestsMock():  # O'Pay's refund is made in its back office and recorded here
        _fields, done = confirm(admin, order_id, 1000, checkout_id=str(opay_id), manual_reference="OPAYRF1")
    assert done.status_code == 302
    assert order_state(app, order_id) == ("paid", 1000)
    page = page_text(admin.get(f"/orders/{order_id}"))
    assert re.search(r'<span class="badge badge-paid" data-order-state="paid">Paid</span>', page)
    listed = page_text(admin.get("/orders"))
    assert '<span class="badge badge-paid">Paid</span>' in listed and "badge-partially_refunded" not in listed
    with responses.RequestsMock() as rsps:  # then part of the price itself goes back
        oen_query(app, rsps, ref)
        oen_refund_ok(app, rsps, 300)
        confirm(admin, order_id, 300, checkout_id=str(oen_id))
    assert order_state(app, order_id) == ("partially_refunded", 1300)


def test_an_order_paid_twice_lets_the_admin_choose_the_payment_to_refund(app, seed, admin):
    """Paid twice (a provider page still open after the link was switched): the refund page offered only the newest
    payment, O'Pay's (refunded in its back office), and the Oen card payment, flagged for attention, could not be
    chosen. Each paid payment is offered; the one chosen is the one reviewed and sent."""
    order_id, oen_id, ref = paid(app, seed, "oen")
    with app.app_context():
        order = db.session.get(Order, order_id)
        second = make_checkout(order, "opay", state="paid")
        second.paid_amount, second.needs_attention = second.amount, True
        second.provider_transaction_id = "25030112000012345678"
        refresh_order(order)
        db.session.commit()
        opay_id = second.id
    page = page_text(admin.get(f"/orders/{order_id}/refunds"))
    assert "This order has 2 paid payments" in page
    assert f'data-payment="{oen_id}"' in page and f'data-payment="{opay_id}"' in page
    assert "Needs attention" in page
    chosen = page_text(admin.get(f"/orders/{order_id}/refunds?payment={oen_id}"))
    assert re.search(rf'name="checkout_id"[^>]*value="{oen_id}"', chosen) and 'data-provider="oen"' in chosen
    with responses.RequestsMock() as rsps:
        oen_query(app, rsps, ref)
        oen_refund_ok(app, rsps, 1000)
        _fields, done = confirm(admin, order_id, 1000, checkout_id=str(oen_id))
    assert done.status_code == 302
    with app.app_context():
        refund = db.session.execute(db.select(Refund).filter_by(order_id=order_id)).scalar_one()
        assert (refund.checkout_id, refund.amount, refund.state) == (oen_id, 1000, "succeeded")
    # Back on the page, the refunded payment says so, and no payment is chosen for the admin: the form stood on the
    # one left, pre-filled with its whole amount (and, for MyPay, the e-invoice voided), two clicks from refunding
    # the payment the shop keeps. It opens on the payment the admin chooses.
    page = page_text(admin.get(f"/orders/{order_id}/refunds"))
    assert 'name="checkout_id"' not in page and "data-choose-payment" in page and 'name="amount"' not in page
    assert re.search(r'data-total="refundable">—<', page)
    chosen = page_text(admin.get(f"/orders/{order_id}/refunds?payment={opay_id}"))
    assert re.search(rf'name="checkout_id"[^>]*value="{opay_id}"', chosen) and 'data-provider="opay"' in chosen
    refunded_badge = rf'data-payment="{oen_id}"[^<]*<code>[^<]*</code>[^<]*</a>\s*<span class="badge badge-refunded">'
    assert re.search(refunded_badge, page)
    # The refunds table names the payment each refund was of, and the totals say whose refundable amount they show
    # (the order's paid and refunded beside one payment's refundable read as if NT$1,000 of NT$2,000 were left).
    row = re.search(r'<tr data-refund-state="succeeded">.*?</tr>', page, re.S).group(0)
    assert re.search(rf'data-label="Payment">Oen Tech · <code>{ref}</code>', row), row
    assert "Refundable on the chosen payment" in page
