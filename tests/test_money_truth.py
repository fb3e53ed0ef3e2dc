"""Issue 12, items 3–5 through the services: MyPay's actual_cost, unreadable answers to money calls, expiry."""

from __future__ import annotations

from html import unescape

import pytest
import responses

from portal import refunds as refund_service
from portal.extensions import db
from portal.models import Checkout, Order
from portal.payments import refresh_checkout
from portal.security import encrypt_secret
from tests.support.factories import make_checkout, make_order

MYPAY_UID = "95201"


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
    assert "needs attention" in page and "NT$1,000" in page and f"NT${actual:,}" in page
    assert "需要處理" in text(admin.get(f"/orders/{order_id}", headers={"Accept-Language": "zh-TW"}))
    listing = text(admin.get("/orders", headers={"Accept-Language": "en"}))
    assert "needs attention" in listing


def test_mypay_paid_in_full_is_not_flagged(app, seed, admin):
    order_id, checkout_id, ref = awaiting_mypay(app, seed)
    with responses.RequestsMock() as rsps:
        rsps.post(app.config["MYPAY_API_URL"], json=mypay_answer(ref))
        with app.test_request_context():
            refresh_checkout(checkout_id)
    with app.app_context():
        checkout = db.session.get(Checkout, checkout_id)
        assert checkout.state == "paid" and not checkout.needs_attention and checkout.paid_amount == 1000
    assert "needs attention" not in text(admin.get("/orders", headers={"Accept-Language": "en"}))
