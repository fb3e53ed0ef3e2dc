"""Property tests through the test client: whatever is posted, the builder saves a right order or answers with
messages on the fields, never a 500 and never a half-saved order."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portal.extensions import db
from portal.models import Order, OrderItem, Voucher
from tests.support.pages import order_post, read_page

ROW_FIELDS = {
    "items": ("sku", "name", "unit_price", "quantity"),
    "vouchers": ("kind", "product_id", "serial_number", "name", "amount"),
}
TOP_FIELDS = ("customer_name", "customer_email", "shipping_fee", "note")
BUTTONS = {"add_item", "add_voucher", "remove_item", "remove_voucher"}

amounts = st.one_of(
    st.integers(-5, 2_000_000).map(str),
    st.sampled_from(["", " ", "1.5", "１００", "1e3", "NaN", "inf", "-0", "+1", " 7 ", "1,000", "0x1", "٣", "9" * 40]),
    st.text(max_size=12),
)
texts = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", "<b>x</b>", "a\x00b", "商品編號一二三四五六七", "x" * 101, "SN-1", "paid", "free"]),
)
row_index = st.one_of(st.integers(0, 4).map(str), st.sampled_from(["007", "99", "²", "-1", "", "x"]))


def field_name(draw) -> str:
    if draw(st.booleans()):
        return draw(st.sampled_from(TOP_FIELDS))
    group = draw(st.sampled_from(sorted(ROW_FIELDS)))
    return f"{group}-{draw(row_index)}-{draw(st.sampled_from(ROW_FIELDS[group]))}"


@st.composite
def changes(draw):
    """Some fields of a valid order changed, dropped or added, with values of any kind."""
    out = {}
    for _ in range(draw(st.integers(1, 6))):
        name = field_name(draw)
        value = draw(
            amounts if name.rsplit("-", 1)[-1] in ("unit_price", "quantity", "amount", "shipping_fee") else texts
        )
        out[name] = None if draw(st.integers(0, 9)) == 0 else value
    if draw(st.integers(0, 4)) == 0:
        key = draw(st.text(min_size=1, max_size=20).filter(lambda k: k not in BUTTONS and k != "csrf_token"))
        out[key] = draw(st.text(max_size=20))
    return out


@pytest.fixture
def staff(client, auth):
    auth.login(email="staff@a.example")
    client.get("/lang/en")
    return client


def check_answer(app, staff, data):
    """Either a saved order whose totals follow the rule, or the form back with messages and nothing saved."""
    with app.app_context():
        before = db.session.execute(db.select(db.func.count(Order.id))).scalar_one()
    response = staff.post("/orders/new", data=data)
    assert response.status_code in (200, 302), response.status_code
    with app.app_context():
        after = db.session.execute(db.select(db.func.count(Order.id))).scalar_one()
        if response.status_code == 302:
            assert after == before + 1
            order = db.session.get(Order, int(response.headers["Location"].rsplit("/", 1)[1]))
            items = db.session.execute(db.select(OrderItem).filter_by(order_id=order.id)).scalars().all()
            vouchers = db.session.execute(db.select(Voucher).filter_by(order_id=order.id)).scalars().all()
            assert items
            subtotal = sum(i.unit_price * i.quantity for i in items)
            assert order.subtotal == subtotal
            assert order.voucher_total == sum(v.amount for v in vouchers)
            assert order.payable == subtotal + order.shipping_fee - order.voucher_total >= 1
            assert all(1 <= i.quantity <= 9_999 and 0 <= i.unit_price <= 1_000_000 for i in items)
            assert len({v.serial_number for v in vouchers}) == len(vouchers)
            assert all(len(v.product_id.encode()) <= 32 and v.amount >= 1 for v in vouchers)
        else:
            assert after == before
            assert read_page(response.get_data(as_text=True)).errors(), "refused without a message"


FUZZ = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


@FUZZ
@given(changes())
def test_a_changed_valid_order_is_saved_right_or_refused_with_messages(app, seed, staff, change):
    data = order_post()
    for key, value in change.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    check_answer(app, staff, data)


@FUZZ
@given(st.dictionaries(st.text(max_size=25).filter(lambda k: k not in BUTTONS), st.text(max_size=30), max_size=8))
def test_any_post_at_all_is_answered(app, seed, staff, data):
    check_answer(app, staff, data)


@FUZZ
@given(
    st.dictionaries(st.sampled_from(sorted(BUTTONS)), st.one_of(st.text(max_size=8), st.just("0")), min_size=1),
    changes(),
)
def test_row_buttons_never_fail_and_never_save(app, seed, staff, buttons, change):
    data = {**order_post(), **{k: v for k, v in change.items() if v is not None}, **buttons}
    with app.app_context():
        before = db.session.execute(db.select(db.func.count(Order.id))).scalar_one()
    response = staff.post("/orders/new", data=data)
    assert response.status_code == 200
    with app.app_context():
        assert db.session.execute(db.select(db.func.count(Order.id))).scalar_one() == before


@pytest.mark.parametrize("body", ['"abc"', "[1, 2]", "5", "null", "{bad", '[["add_item", 1]]', '{"customer_name": 5}'])
def test_a_json_body_is_refused_as_an_empty_form(app, seed, staff, body):
    response = staff.post("/orders/new", data=body, content_type="application/json")
    assert response.status_code in (200, 400)
    with app.app_context():
        assert db.session.execute(db.select(db.func.count(Order.id))).scalar_one() == 0
