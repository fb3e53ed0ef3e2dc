"""A draft order edited and deleted, any order copied as a new draft; never a draft that has had a payment link."""

from __future__ import annotations

import re

import pytest

from portal.extensions import db
from portal.models import AuditEvent, Order, OrderItem, Voucher
from tests.support.apps import seed_merchants
from tests.support.constants import PASSWORD
from tests.support.factories import make_checkout, make_order
from tests.support.pages import order_post, read_page


@pytest.fixture
def staff(client, auth):
    auth.login(email="staff@a.example")
    client.get("/lang/en")
    return client


def saved_draft(app, staff) -> int:
    response = staff.post("/orders/new", data=order_post())
    assert response.status_code == 302
    return int(response.headers["Location"].rsplit("/", 1)[1])


def actions(app, action: str) -> list[dict]:
    with app.app_context():
        rows = db.session.execute(db.select(AuditEvent).filter_by(action=action)).scalars()
        return [row.detail for row in rows]


def test_the_edit_page_is_the_builder_filled_in_with_the_draft(app, seed, staff):
    order_id = saved_draft(app, staff)
    html = staff.get(f"/orders/{order_id}/edit").get_data(as_text=True)
    page = read_page(html)
    assert page.fields["customer_name"].value == "王小明"
    assert page.fields["shipping_fee"].value == "60"
    assert page.fields["items-1-name"].value == "Mooncake" and page.fields["items-1-quantity"].value == "3"
    assert page.fields["vouchers-0-serial_number"].value == "SN-0001"
    assert page.fields["note"].value.replace("\r\n", "\n").strip() == "Leave at the door\nthanks"
    assert f'action="/orders/{order_id}/edit"' in html
    assert "NT$305" in html  # the totals shown are the draft's


def test_editing_a_draft_replaces_it_and_recomputes_the_totals(app, seed, staff):
    order_id = saved_draft(app, staff)
    with app.app_context():
        number = db.session.get(Order, order_id).number
    data = order_post(
        customer_name="李美玲",
        items__0__quantity="5",
        items__1__name=None,
        items__1__unit_price=None,
        items__1__quantity=None,
        items__1__sku=None,
        vouchers__1__kind=None,
        vouchers__1__product_id=None,
        vouchers__1__serial_number=None,
        vouchers__1__name=None,
        vouchers__1__amount=None,
        payable="1",
    )
    response = staff.post(f"/orders/{order_id}/edit", data=data)
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/orders/{order_id}")
    with app.app_context():
        order = db.session.get(Order, order_id)
        assert order.number == number and order.state == "draft"
        assert order.customer_name == "李美玲"
        assert [(i.name, i.quantity) for i in order.items] == [("高山茶", 5)]
        assert [v.serial_number for v in order.vouchers] == ["SN-0001"]
        assert (order.subtotal, order.shipping_fee, order.voucher_total, order.payable) == (500, 60, 50, 510)
        assert db.session.execute(db.select(db.func.count(OrderItem.id))).scalar_one() == 1
    assert actions(app, "order_edited") == [
        {"order_id": order_id, "number": number, "payable_before": 305, "payable": 510}
    ]


def test_a_refused_edit_shows_the_message_and_changes_nothing(app, seed, staff):
    order_id = saved_draft(app, staff)
    response = staff.post(f"/orders/{order_id}/edit", data=order_post(items__0__unit_price="abc"))
    assert response.status_code == 200
    assert read_page(response.get_data(as_text=True)).fields["items-0-unit_price"].errors
    with app.app_context():
        assert db.session.get(Order, order_id).payable == 305
    assert actions(app, "order_edited") == []


def test_the_edit_row_buttons_work_without_saving(app, seed, staff):
    order_id = saved_draft(app, staff)
    html = staff.post(f"/orders/{order_id}/edit", data=order_post(add_item="1")).get_data(as_text=True)
    assert "items-2-name" in read_page(html).fields
    with app.app_context():
        assert len(db.session.get(Order, order_id).items) == 2


@pytest.mark.parametrize("state", ["awaiting_payment", "paid", "failed"])
def test_an_order_that_has_had_a_payment_link_cannot_be_edited_or_deleted(app, seed, staff, state):
    with app.app_context():
        order = make_order(seed.merchant_id)
        make_checkout(order, "oen", state)
        order_id = order.id
    page = staff.get(f"/orders/{order_id}").get_data(as_text=True)
    assert f"/orders/{order_id}/edit" not in page and f"/orders/{order_id}/delete" not in page
    assert f"/orders/{order_id}/duplicate" in page
    response = staff.get(f"/orders/{order_id}/edit", follow_redirects=True)
    assert "Only a draft that has no payment link yet can be changed." in response.get_data(as_text=True)
    assert staff.post(f"/orders/{order_id}/edit", data=order_post(customer_name="X")).status_code == 302
    response = staff.post(f"/orders/{order_id}/delete", follow_redirects=True)
    assert "can be deleted" in response.get_data(as_text=True)
    with app.app_context():
        order = db.session.get(Order, order_id)
        assert order is not None and order.customer_name == "王小明"
    assert actions(app, "order_deleted") == [] and actions(app, "order_edited") == []


def test_a_draft_is_deleted_after_confirming(app, seed, staff):
    order_id = saved_draft(app, staff)
    page = staff.get(f"/orders/{order_id}").get_data(as_text=True)
    assert f'href="/orders/{order_id}/delete"' in page
    confirm = staff.get(f"/orders/{order_id}/delete").get_data(as_text=True)
    assert "This cannot be undone." in confirm and 'method="post"' in confirm
    with app.app_context():
        number = db.session.get(Order, order_id).number
    response = staff.post(f"/orders/{order_id}/delete")
    assert response.status_code == 302 and response.headers["Location"].endswith("/orders")
    with app.app_context():
        assert db.session.get(Order, order_id) is None
        assert db.session.execute(db.select(db.func.count(OrderItem.id))).scalar_one() == 0
        assert db.session.execute(db.select(db.func.count(Voucher.id))).scalar_one() == 0
    assert actions(app, "order_deleted") == [{"order_id": order_id, "number": number, "payable": 305}]
    assert staff.get(f"/orders/{order_id}").status_code == 404


@pytest.mark.parametrize("state", ["draft", "paid", "refunded"])
def test_any_order_is_copied_as_a_new_draft_opened_in_the_builder(app, seed, staff, state):
    with app.app_context():
        order = make_order(seed.merchant_id, items=((1200, 2), (35, 3)), shipping=80, vouchers=(("paid", 100),))
        order.note = "gift wrap"
        order.invoice_kind = "mobile"
        order.invoice_carrier = "/ABC1234"
        if state != "draft":
            make_checkout(order, "mypay", state)
        db.session.commit()
        source_id, source_number = order.id, order.number
    response = staff.post(f"/orders/{source_id}/duplicate")
    assert response.status_code == 302
    copy_id = int(re.search(r"/orders/(\d+)/edit$", response.headers["Location"]).group(1))
    assert copy_id != source_id
    with app.app_context():
        copy = db.session.get(Order, copy_id)
        assert copy.state == "draft" and copy.number != source_number and not copy.checkouts
        assert (copy.customer_name, copy.customer_email, copy.note) == ("王小明", "buyer@example.com", "gift wrap")
        assert [(i.name, i.unit_price, i.quantity) for i in copy.items] == [("商品0", 1200, 2), ("商品1", 35, 3)]
        assert [(v.kind, v.serial_number, v.amount) for v in copy.vouchers] == [("paid", "SN0", 100)]
        assert (copy.shipping_fee, copy.payable) == (80, 2485)
        assert (copy.invoice_kind, copy.invoice_carrier) == ("mobile", "/ABC1234")
        assert (copy.paid_amount, copy.refunded_amount) == (0, 0)
    page = staff.get(response.headers["Location"]).get_data(as_text=True)
    assert read_page(page).fields["items-0-unit_price"].value == "1200"
    assert actions(app, "order_duplicated") == [{"order_id": copy_id, "number": copy.number, "source": source_number}]


def test_another_merchants_order_is_404_for_edit_delete_and_copy(app, seed, staff):
    with app.app_context():
        theirs = make_order(seed.other_merchant_id).id
    assert staff.get(f"/orders/{theirs}/edit").status_code == 404
    assert staff.post(f"/orders/{theirs}/edit", data=order_post()).status_code == 404
    assert staff.get(f"/orders/{theirs}/delete").status_code == 404
    assert staff.post(f"/orders/{theirs}/delete").status_code == 404
    assert staff.post(f"/orders/{theirs}/duplicate").status_code == 404
    with app.app_context():
        assert db.session.get(Order, theirs).customer_name == "王小明"
        assert db.session.execute(db.select(db.func.count(Order.id))).scalar_one() == 1


def test_edit_delete_and_copy_need_the_csrf_token(csrf_app):
    seed = seed_merchants(csrf_app)
    with csrf_app.app_context():
        order_id = make_order(seed.merchant_id).id
    client = csrf_app.test_client()
    login_page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', login_page).group(1)
    client.post("/login", data={"email": "staff@a.example", "password": PASSWORD, "csrf_token": token})
    assert client.post(f"/orders/{order_id}/delete").status_code == 400
    assert client.post(f"/orders/{order_id}/duplicate").status_code == 400
    assert client.post(f"/orders/{order_id}/edit", data=order_post(customer_name="X")).status_code == 400
    with csrf_app.app_context():
        assert db.session.execute(db.select(db.func.count(Order.id))).scalar_one() == 1
        assert db.session.get(Order, order_id).customer_name == "王小明"
    page = client.get(f"/orders/{order_id}/delete").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    assert client.post(f"/orders/{order_id}/delete", data={"csrf_token": token}).status_code == 302
    with csrf_app.app_context():
        assert db.session.get(Order, order_id) is None
