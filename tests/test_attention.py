"""A payment flagged 需要處理 says why, and an admin can mark it handled: the flag said nothing of its reason and stayed
for good, so staff could neither tell a second payment to refund from an amount to ask about, nor clear it once done."""

from __future__ import annotations

from html import unescape

import pytest

from portal.extensions import db
from portal.models import AuditEvent, Checkout
from portal.payments import apply_state, locked_checkout, write_transaction
from portal.providers.base import State
from tests.support.factories import make_checkout, make_order

EN = {"Accept-Language": "en"}


@pytest.fixture
def admin(client, auth):
    auth.login()
    return client


def _apply(checkout_id: int, state: State, amount: int | None = None) -> bool:
    with write_transaction():
        checkout = locked_checkout(checkout_id, with_order=True)
        return apply_state(checkout, state, source="callback", detail="{}", amount=amount)


def page(client, order_id: int, headers=EN) -> str:
    return unescape(client.get(f"/orders/{order_id}", headers=headers).get_data(as_text=True))


def paid_twice(app, seed) -> tuple[int, int]:
    """An order paid through one attempt, then through a second one still open: (order id, second attempt id)."""
    with app.app_context():
        order = make_order(seed.merchant_id)
        first, second = make_checkout(order, "oen"), make_checkout(order, "mypay")
        db.session.commit()
        assert _apply(first.id, State.PAID, first.amount)
        assert _apply(second.id, State.PAID, second.amount)
        return order.id, second.id


def test_each_reason_is_said_beside_the_flag(app, seed, admin):
    twice_order, twice = paid_twice(app, seed)
    with app.app_context():
        other = make_checkout(make_order(seed.merchant_id), "mypay")
        late = make_checkout(make_order(seed.merchant_id), "mypay")
        db.session.commit()
        other_order, late_order = other.order_id, late.order_id
        assert _apply(other.id, State.PAID_MISMATCH, other.amount - 100)
        assert _apply(late.id, State.EXPIRED)
        assert _apply(late.id, State.PAID, late.amount)
        reasons = {c.id: c.attention_reason for c in db.session.execute(db.select(Checkout)).scalars()}
    assert (reasons[twice], reasons[other.id], reasons[late.id]) == ("paid_twice", "amount_differs", "paid_after_end")
    assert "this is a double payment. Refund one of the two payments." in page(admin, twice_order)
    assert f'href="/orders/{twice_order}/refunds?payment={twice}"' in page(admin, twice_order)
    assert "another amount than was asked. Check the amount with the customer" in page(admin, other_order)
    assert "Paid after the link had expired or been cancelled. Ask the customer" in page(admin, late_order)
    assert "這筆訂單先前已由另一筆付款付清" in page(admin, twice_order, {"Accept-Language": "zh-TW"})


def test_an_admin_marks_it_handled_and_the_reason_stays(app, seed, admin):
    order_id, second = paid_twice(app, seed)
    assert "Needs attention" in page(admin, order_id)
    done = admin.post(f"/orders/{order_id}/checkouts/{second}/handled", headers=EN, follow_redirects=True)
    text = unescape(done.get_data(as_text=True))
    assert "marked as handled" in text and "Needs attention" not in text
    assert "Handled: The order had already been paid through another payment: this is a double payment.</span>" in text
    assert "Needs attention" not in unescape(admin.get("/orders", headers=EN).get_data(as_text=True))
    with app.app_context():
        assert db.session.get(Checkout, second).needs_attention is False
        entry = db.session.execute(db.select(AuditEvent).filter_by(action="attention_handled")).scalar_one()
        assert entry.merchant_id == seed.merchant_id and entry.detail["reason"] == "paid_twice"
        number = db.session.get(Checkout, second).order.number
    audit_page = unescape(admin.get("/settings/audit", headers=EN).get_data(as_text=True))
    assert "Payment that needed attention marked as handled" in audit_page and number in audit_page
    again = admin.post(f"/orders/{order_id}/checkouts/{second}/handled", headers=EN, follow_redirects=True)
    assert "needs no attention" in unescape(again.get_data(as_text=True))
    with app.app_context():
        assert db.session.execute(db.select(db.func.count()).select_from(AuditEvent).filter_by(
            action="attention_handled")).scalar_one() == 1  # fmt: skip


def test_the_same_word_again_does_not_raise_a_handled_flag_but_a_new_reason_does(app, seed, admin):
    """Every query of a MyPay payment reports its other amount again: a flag marked handled would come straight back."""
    with app.app_context():
        checkout = make_checkout(make_order(seed.merchant_id), "mypay")
        db.session.commit()
        checkout_id, order_id = checkout.id, checkout.order_id
        asked = checkout.amount
        assert _apply(checkout_id, State.PAID, asked - 100)
    admin.post(f"/orders/{order_id}/checkouts/{checkout_id}/handled")
    with app.app_context():
        _apply(checkout_id, State.PAID, asked - 100)
        checkout = db.session.get(Checkout, checkout_id)
        assert checkout.needs_attention is False and checkout.attention_reason == "amount_differs"


def test_staff_cannot_mark_it_handled(app, seed, client, auth):
    order_id, second = paid_twice(app, seed)
    auth.login(seed.staff)
    assert client.post(f"/orders/{order_id}/checkouts/{second}/handled").status_code == 403
    assert "Mark as handled" not in page(client, order_id)
    assert "Ask an admin to refund one of the two payments." in page(client, order_id)  # staff may not refund
    with app.app_context():
        assert db.session.get(Checkout, second).needs_attention is True


def test_the_dashboard_lists_the_payments_that_need_attention_until_handled(app, seed, admin, client, auth):
    """The flag showed only on the order and in the orders list: a shop had to page through its orders to find a
    payment to refund. The dashboard lists them, each with its order and why."""
    order_id, second = paid_twice(app, seed)
    with app.app_context():
        number, reference = db.session.get(Checkout, second).order.number, db.session.get(Checkout, second).reference
    board = unescape(admin.get("/dashboard", headers=EN).get_data(as_text=True))
    listed = board.split('data-attention-count="1"')[1].split("</section>")[0]
    assert f'href="/orders/{order_id}">Order {number}</a>' in listed and reference in listed
    assert "this is a double payment" in listed
    admin.post(f"/orders/{order_id}/checkouts/{second}/handled")
    assert "data-attention-count" not in admin.get("/dashboard").get_data(as_text=True)
    auth.logout()
    auth.login(seed.other_admin)
    order_id, second = paid_twice(app, seed)
    assert "data-attention-count" not in client.get("/dashboard").get_data(as_text=True)  # another shop's payment


def test_an_admin_of_a_shop_with_no_contact_is_told_customers_cannot_reach_it(app, seed, admin, client, auth):
    """The customer told of a double payment, or of a link that ended, is asked to contact the shop: with no phone or
    e-mail set, they are shown none. The shop's admin reads so on the dashboard, with the way to the setting."""
    from portal.models import Merchant

    with app.app_context():
        merchant = db.session.get(Merchant, seed.merchant_id)
        merchant.contact_phone = merchant.contact_email = None
        db.session.commit()
    board = unescape(admin.get("/dashboard", headers=EN).get_data(as_text=True))
    assert "data-no-shop-contact" in board and 'href="/settings#shop-contact"' in board
    assert "Customers see no phone number or e-mail address of the shop" in board
    auth.logout()
    auth.login(seed.staff)
    assert "data-no-shop-contact" not in client.get("/dashboard").get_data(as_text=True)  # staff cannot set it
    with app.app_context():
        db.session.get(Merchant, seed.merchant_id).contact_phone = "02-2345-6789"
        db.session.commit()
    auth.logout()
    auth.login()
    assert "data-no-shop-contact" not in client.get("/dashboard").get_data(as_text=True)


def test_a_customer_asked_to_contact_a_shop_with_no_contact_is_told_where_to_turn(app, seed, client):
    """The double payment's box asks the customer to contact the shop; with no phone or e-mail set, the page showed
    the shop's name and nothing else. Its footer says to ask the shop where the order was placed."""
    from portal.models import Merchant

    _order_id, second = paid_twice(app, seed)
    with app.app_context():
        token = db.session.get(Checkout, second).public_token
        merchant = db.session.get(Merchant, seed.merchant_id)
        merchant.contact_phone = merchant.contact_email = merchant.contact_note = None
        db.session.commit()
    returned = unescape(client.get(f"/pay/{token}/return", headers=EN).get_data(as_text=True))
    assert "data-paid-twice" in returned
    assert "Questions about your order? Please ask Shop A, where you placed it." in returned
    with app.app_context():
        db.session.get(Merchant, seed.merchant_id).contact_phone = "02-2345-6789"
        db.session.commit()
    returned = unescape(client.get(f"/pay/{token}/return", headers=EN).get_data(as_text=True))
    assert "where you placed it" not in returned and "02-2345-6789" in returned


def test_the_api_and_the_webhooks_say_which_payments_need_attention_until_handled(app, seed, admin, client):
    """A shop that works through the API never learnt that an order had been paid twice: the flag showed only in the
    portal. The order the API answers (portal.order_json, which each webhook's data.order is too) says whether a
    payment needs a person, which and why, until an admin marks it handled."""
    from portal import api_keys
    from portal.models import Merchant

    order_id, second = paid_twice(app, seed)
    with app.app_context():
        key = api_keys.create_key(db.session.get(Merchant, seed.merchant_id), "erp", can_refund=False, user_id=None)
        reference = db.session.get(Checkout, second).reference
    bearer = {"Authorization": f"Bearer {key.secret}"}
    order = client.get(f"/api/v1/orders/{order_id}", headers=bearer).get_json()
    assert order["needs_attention"] is True
    assert order["attention"] == [{"reference": reference, "provider": "mypay", "reason": "paid_twice"}]
    listed = client.get("/api/v1/orders", headers=bearer).get_json()["data"]
    assert [o["needs_attention"] for o in listed if o["id"] == order_id] == [True]
    admin.post(f"/orders/{order_id}/checkouts/{second}/handled")
    order = client.get(f"/api/v1/orders/{order_id}", headers=bearer).get_json()
    assert (order["needs_attention"], order["attention"]) == (False, [])
