"""The order builder, its refusals, the order list and the order page."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from html import unescape

import pytest

from portal.extensions import db
from portal.models import ORDER_STATES, Order, OrderItem, User, Voucher, utcnow
from tests.support.apps import seed_merchants
from tests.support.constants import PASSWORD
from tests.support.factories import make_order
from tests.support.pages import order_post, read_page


@pytest.fixture
def staff(client, auth):
    """Logged in as merchant A's staff, interface in English."""
    auth.login(email="staff@a.example")
    client.get("/lang/en")
    return client


def order_count(app) -> int:
    with app.app_context():
        return db.session.execute(db.select(db.func.count(Order.id))).scalar_one()


def make_orders(app, merchant_id, count, **fields):
    """Orders straight into the database, the oldest first, one minute apart."""
    with app.app_context():
        start = utcnow() - timedelta(days=1)
        orders = []
        for i in range(count):
            values = {
                "number": f"T{merchant_id}{i:05d}",
                "customer_name": f"Customer {i}",
                "customer_email": f"c{i}@example.tw",
                "subtotal": 100,
                "payable": 100,
                "state": "draft",
                "created_at": start + timedelta(minutes=i),
            }
            values.update(fields)
            orders.append(Order(merchant_id=merchant_id, **values))
        db.session.add_all(orders)
        db.session.commit()
        return [o.id for o in orders]


# --- the builder: accepted -------------------------------------------------------------------------------------------


def test_builder_page_renders_with_one_item_row_and_the_script(staff):
    response = staff.get("/orders/new")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    page = read_page(html)
    assert {"customer_name", "customer_email", "shipping_fee", "note", "items-0-name", "items-0-quantity"} <= set(
        page.fields
    )
    assert "items-1-name" not in page.fields
    assert '<script src="/static/js/order_form.js"' in html
    assert "<script>" not in html
    assert 'name="add_item"' in html and 'name="add_voucher"' in html


def test_happy_path_saves_the_order_with_items_vouchers_and_totals(app, seed, staff):
    response = staff.post("/orders/new", data=order_post())
    assert response.status_code == 302
    order_id = int(response.headers["Location"].rsplit("/", 1)[1])
    with app.app_context():
        order = db.session.get(Order, order_id)
        assert order.merchant_id == seed.merchant_id
        assert order.state == "draft"
        assert re.fullmatch(r"A\d{6}0001", order.number)
        assert (order.customer_name, order.customer_email) == ("王小明", "ming@example.tw")
        assert order.note == "Leave at the door\r\nthanks" or order.note == "Leave at the door\nthanks"
        assert [(i.position, i.sku, i.name, i.unit_price, i.quantity) for i in order.items] == [
            (0, "TEA-01", "高山茶", 100, 2),
            (1, "", "Mooncake", 35, 3),
        ]
        assert [(v.kind, v.product_id, v.serial_number, v.name, v.amount) for v in order.vouchers] == [
            ("paid", "P-100", "SN-0001", "Gift card", 50),
            ("free", "P-200", "SN-0002", "Welcome voucher", 10),
        ]
        assert (order.subtotal, order.shipping_fee, order.voucher_total, order.payable) == (305, 60, 60, 305)
        staff_user = db.session.execute(db.select(User).filter_by(email="staff@a.example")).scalar_one()
        assert order.created_by_id == staff_user.id
    page = staff.get(response.headers["Location"])
    html = page.get_data(as_text=True)
    assert "saved" in html
    assert 'data-order-state="draft"' in html
    assert "NT$305" in html and "高山茶" in html and "SN-0002" in html


def test_order_numbers_follow_on_per_merchant(app, seed, client, auth):
    auth.login(email="staff@a.example")
    for _ in range(3):
        assert client.post("/orders/new", data=order_post()).status_code == 302
    auth.logout()
    auth.login(email="admin@b.example")
    assert client.post("/orders/new", data=order_post()).status_code == 302
    with app.app_context():
        numbers = db.session.execute(db.select(Order.merchant_id, Order.number).order_by(Order.id)).all()
    assert [n[-4:] for _, n in numbers] == ["0001", "0002", "0003", "0001"]
    assert numbers[3][0] == seed.other_merchant_id


def test_the_server_ignores_totals_sent_by_the_browser(app, seed, staff):
    data = order_post(subtotal="1", payable="1", voucher_total="0", **{"items-0-total": "1"})
    assert staff.post("/orders/new", data=data).status_code == 302
    with app.app_context():
        assert db.session.execute(db.select(Order.payable)).scalar_one() == 305


def test_rows_with_gaps_in_their_numbers_are_read_in_order(app, seed, staff):
    data = order_post(items__1__name=None, items__1__sku=None, items__1__unit_price=None, items__1__quantity=None)
    data.update({"items-7-name": "Third", "items-7-unit_price": "5", "items-7-quantity": "1"})
    data.update({"items-3-name": "Second", "items-3-unit_price": "20", "items-3-quantity": "2"})
    assert staff.post("/orders/new", data=data).status_code == 302
    with app.app_context():
        order = db.session.execute(db.select(Order)).scalar_one()
        assert [i.name for i in order.items] == ["高山茶", "Second", "Third"]
        assert order.subtotal == 200 + 40 + 5


def test_blank_rows_are_skipped(app, seed, staff):
    data = order_post()
    data.update({"items-2-sku": "", "items-2-name": " ", "items-2-unit_price": "", "items-2-quantity": "1"})
    data.update({f"vouchers-2-{k}": "" for k in ("product_id", "serial_number", "name", "amount")})
    data["vouchers-2-kind"] = "paid"
    assert staff.post("/orders/new", data=data).status_code == 302
    with app.app_context():
        order = db.session.execute(db.select(Order)).scalar_one()
        assert (len(order.items), len(order.vouchers)) == (2, 2)


def test_an_order_without_vouchers_and_a_blank_shipping_fee(app, seed, staff):
    data = {k: v for k, v in order_post(shipping_fee="").items() if not k.startswith("vouchers-")}
    assert staff.post("/orders/new", data=data).status_code == 302
    with app.app_context():
        order = db.session.execute(db.select(Order)).scalar_one()
        assert (order.shipping_fee, order.voucher_total, order.payable) == (0, 0, 305)


def test_staff_and_admins_can_both_build_orders(app, seed, client, auth):
    for email in ("staff@a.example", "admin@a.example"):
        auth.login(email=email)
        assert client.post("/orders/new", data=order_post()).status_code == 302
        auth.logout()
    assert order_count(app) == 2


def test_builder_needs_a_login(app, seed, client):
    response = client.post("/orders/new", data=order_post())
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    assert client.get("/orders").status_code == 302
    assert order_count(app) == 0


# --- the builder: refused --------------------------------------------------------------------------------------------

ELEVEN_CHINESE = "商品編號一二三四五六七"  # 11 characters, 33 bytes in UTF-8

REFUSALS = [
    # (what is posted differently, the field that carries the message, a piece of the message)
    ({"items-0-unit_price": "100.5"}, "items-0-unit_price", "no decimals"),
    ({"items-0-unit_price": "-100"}, "items-0-unit_price", "Negative"),
    ({"items-0-unit_price": "²"}, "items-0-unit_price", "digits 0–9"),
    ({"items-0-unit_price": "1,00"}, "items-0-unit_price", "every three digits"),
    ({"items-0-unit_price": "１．５"}, "items-0-unit_price", "no decimals"),
    ({"items-0-unit_price": "－１００"}, "items-0-unit_price", "Negative"),
    ({"items-0-unit_price": "1e3"}, "items-0-unit_price", "exponent"),
    ({"items-0-unit_price": "NaN"}, "items-0-unit_price", "digits 0–9"),
    ({"items-0-unit_price": "inf"}, "items-0-unit_price", "digits 0–9"),
    ({"items-0-unit_price": "1 000"}, "items-0-unit_price", "spaces"),
    ({"items-0-unit_price": "+100"}, "items-0-unit_price", "+ sign"),
    ({"items-0-unit_price": ""}, "items-0-unit_price", "Please enter"),
    ({"items-0-unit_price": "1000001"}, "items-0-unit_price", "from 0 to 1,000,000"),
    ({"items-0-quantity": "0"}, "items-0-quantity", "from 1 to 9,999"),
    ({"items-0-quantity": "10000"}, "items-0-quantity", "from 1 to 9,999"),
    ({"items-1-quantity": "2.5"}, "items-1-quantity", "no decimals"),
    ({"shipping_fee": "-60"}, "shipping_fee", "Negative"),
    ({"shipping_fee": "1000001"}, "shipping_fee", "from 0 to 1,000,000"),
    ({"items-0-name": "<b>Tea</b>"}, "items-0-name", "HTML"),
    ({"items-0-name": "<script"}, "items-0-name", "HTML"),
    ({"customer_name": "Ming<img src=x onerror=alert(1)>"}, "customer_name", "HTML"),
    ({"customer_name": "Ming\x07"}, "customer_name", "control"),
    ({"items-0-name": "Tea\x00"}, "items-0-name", "control"),
    ({"items-0-name": "Tea\u202egnp.exe"}, "items-0-name", "control"),
    ({"customer_name": "x" * 101}, "customer_name", "At most 100 characters"),
    ({"customer_name": "   "}, "customer_name", "Please enter a name"),
    ({"items-0-name": ""}, "items-0-name", "Please enter a name"),
    ({"items-0-sku": "S" * 65}, "items-0-sku", "At most 64"),
    ({"customer_email": "not-an-address"}, "customer_email", "valid e-mail"),
    ({"customer_email": ""}, "customer_email", "e-mail"),
    ({"vouchers-0-amount": "366"}, "vouchers-0-amount", "at most NT$365"),
    ({"vouchers-1-amount": "316"}, "vouchers-1-amount", "at most NT$365"),
    ({"vouchers-0-amount": "0"}, "vouchers-0-amount", "at least 1"),
    ({"vouchers-1-serial_number": "SN-0001"}, "vouchers-1-serial_number", "already on this order"),
    ({"vouchers-0-product_id": ELEVEN_CHINESE}, "vouchers-0-product_id", "32 bytes"),
    ({"vouchers-0-product_id": ""}, "vouchers-0-product_id", "product id"),
    ({"vouchers-0-serial_number": ""}, "vouchers-0-serial_number", "serial number"),
    ({"vouchers-0-name": ""}, "vouchers-0-name", "Please enter a name"),
    ({"vouchers-0-kind": "gold"}, "vouchers-0-kind", "paid or free"),
    ({"vouchers-1-amount": "315"}, "vouchers-1-amount", "at least NT$1"),  # payable 0
]


@pytest.mark.parametrize(("changes", "where", "message"), REFUSALS, ids=[f"{r[1]}={r[0]}" for r in REFUSALS])
def test_refused_input_returns_the_form_with_the_message_on_the_field(app, seed, staff, changes, where, message):
    data = order_post(**{k.replace("-", "__"): v for k, v in changes.items()})
    response = staff.post("/orders/new", data=data)
    assert response.status_code == 200
    page = read_page(response.get_data(as_text=True))
    errors = page.errors()
    assert where in errors, errors
    assert any(message in e for e in errors[where]), errors[where]
    # the user's input comes back as typed (text inputs; names and amounts are shown stripped at most)
    for name, value in data.items():
        if name in page.fields and name != "note" and value != "gold":  # a select shows only its choices
            assert page.value(name) in (value, value.strip()), name
    assert order_count(app) == 0


def test_product_id_of_32_bytes_is_accepted(app, seed, staff):
    data = order_post(vouchers__0__product_id="商品編號一二三四五六" + "AB")  # 30 + 2 bytes
    assert staff.post("/orders/new", data=data).status_code == 302


def test_payable_zero_without_vouchers_is_refused(app, seed, staff):
    data = {k: v for k, v in order_post(shipping_fee="0").items() if not k.startswith("vouchers-")}
    data.update({"items-0-unit_price": "0", "items-1-unit_price": "0"})
    page = read_page(staff.post("/orders/new", data=data).get_data(as_text=True))
    assert any("at least NT$1" in e for e in page.errors()["items-0-unit_price"])
    assert order_count(app) == 0


@pytest.mark.parametrize("items", ["none posted", "all blank"])
def test_an_order_needs_at_least_one_item(app, seed, staff, items):
    data = {k: v for k, v in order_post().items() if not k.startswith("items-")}
    if items == "all blank":
        data.update({"items-0-name": "", "items-0-unit_price": "", "items-0-quantity": "1"})
    response = staff.post("/orders/new", data=data)
    assert response.status_code == 200
    assert "Add at least one item." in read_page(response.get_data(as_text=True)).errors()["items-0-name"]
    assert order_count(app) == 0


def test_an_order_too_large_for_the_database_is_refused_on_the_field(app, seed, staff):
    data = order_post(items__0__unit_price="1000000", items__0__quantity="9999")
    page = read_page(staff.post("/orders/new", data=data).get_data(as_text=True))
    assert any("split it" in e for e in page.errors()["items-0-quantity"])
    assert order_count(app) == 0


def test_too_many_rows_are_refused_with_a_message(app, seed, staff):
    data = order_post()
    for i in range(2, 102):
        data.update({f"items-{i}-name": f"Item {i}", f"items-{i}-unit_price": "1", f"items-{i}-quantity": "1"})
    response = staff.post("/orders/new", data=data)
    assert response.status_code == 200
    assert any("At most 100 items" in e for e in read_page(response.get_data(as_text=True)).loose_errors)
    assert order_count(app) == 0


@pytest.mark.parametrize(
    "key",
    ["items-²-name", "items-１-name", "items-" + "9" * 5000 + "-name", "items--name", "items-0", "vouchers-x-amount"],
)
def test_odd_row_numbers_do_not_break_the_form(app, seed, staff, key):
    data = order_post()
    data[key] = "odd"
    assert staff.post("/orders/new", data=data).status_code in (200, 302)


# --- the builder without scripting: add and remove rows -----------------------------------------------------------


def test_add_item_button_adds_an_empty_row_without_validating(app, seed, staff):
    data = order_post(items__0__unit_price="not yet", customer_email="")
    data["add_item"] = "1"
    response = staff.post("/orders/new", data=data)
    assert response.status_code == 200
    page = read_page(response.get_data(as_text=True))
    assert page.errors() == {}
    assert page.value("items-0-unit_price") == "not yet"
    assert page.value("items-1-name") == "Mooncake"
    assert page.value("items-2-name") == "" and page.value("items-2-quantity") == "1"
    assert "items-3-name" not in page.fields
    assert order_count(app) == 0


def test_add_voucher_button_adds_an_empty_voucher_row(app, seed, staff):
    data = {k: v for k, v in order_post().items() if not k.startswith("vouchers-")}
    data["add_voucher"] = "1"
    page = read_page(staff.post("/orders/new", data=data).get_data(as_text=True))
    assert page.errors() == {}
    assert page.value("vouchers-0-amount") == "" and page.value("vouchers-0-kind") == "paid"
    # and the new, still blank, row does not stop the order being saved
    data = {**data, "vouchers-0-kind": "paid", "vouchers-0-amount": ""}
    del data["add_voucher"]
    assert staff.post("/orders/new", data=data).status_code == 302


def test_remove_buttons_drop_the_row_and_keep_the_rest(app, seed, staff):
    data = order_post(remove_item="0")
    page = read_page(staff.post("/orders/new", data=data).get_data(as_text=True))
    assert page.errors() == {}
    assert page.value("items-0-name") == "Mooncake"
    assert "items-1-name" not in page.fields
    data = order_post(remove_voucher="0")
    page = read_page(staff.post("/orders/new", data=data).get_data(as_text=True))
    assert page.value("vouchers-0-serial_number") == "SN-0002"
    assert "vouchers-1-serial_number" not in page.fields
    # the last item row cannot go: an empty one takes its place
    data = {k: v for k, v in order_post(remove_item="0").items() if not k.startswith("items-1")}
    page = read_page(staff.post("/orders/new", data=data).get_data(as_text=True))
    assert page.value("items-0-name") == ""
    assert order_count(app) == 0


def test_add_row_stops_at_the_limit(app, seed, staff):
    data = {"add_voucher": "1"}
    for i in range(20):
        data.update({f"vouchers-{i}-kind": "paid", f"vouchers-{i}-amount": ""})
    response = staff.post("/orders/new", data=data)
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "vouchers-19-amount" in html and "vouchers-20-amount" not in html
    assert "as many rows as it can take" in html


def test_the_builder_shows_the_servers_totals_of_what_was_typed(staff):
    html = staff.post("/orders/new", data=order_post(add_item="1")).get_data(as_text=True)
    assert re.search(r'data-total="payable">NT\$305<', html)
    assert re.search(r'data-total="subtotal">NT\$305<', html)


# --- CSRF ---------------------------------------------------------------------------------------------------------


def test_builder_posts_need_the_csrf_token(csrf_app):
    seed_merchants(csrf_app)
    client = csrf_app.test_client()
    login_page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', login_page).group(1)
    client.post("/login", data={"email": "staff@a.example", "password": PASSWORD, "csrf_token": token})
    assert client.post("/orders/new", data=order_post()).status_code == 400
    assert client.post("/orders/new", data=order_post(add_item="1")).status_code == 400
    html = client.get("/orders/new").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1)
    assert client.post("/orders/new", data=order_post(csrf_token=token)).status_code == 302
    assert order_count(csrf_app) == 1


# --- list and detail ------------------------------------------------------------------------------------------------


def listed_numbers(html: str) -> list[str]:
    return re.findall(r'<a href="/orders/\d+">([^<]+)</a>', html)


def test_list_is_scoped_newest_first_and_paged_by_50(app, seed, staff):
    make_orders(app, seed.merchant_id, 120)
    make_orders(app, seed.other_merchant_id, 3, customer_name="Other shop customer")
    first = staff.get("/orders").get_data(as_text=True)
    numbers = listed_numbers(first)
    assert len(numbers) == 50
    assert numbers[0] == f"T{seed.merchant_id}00119" and numbers[-1] == f"T{seed.merchant_id}00070"
    assert "Other shop customer" not in first
    assert "Page 1" in first and 'rel="next"' in first and 'rel="prev"' not in first
    third_page = staff.get("/orders?page=3").get_data(as_text=True)
    third = listed_numbers(third_page)
    assert len(third) == 20 and third[-1] == f"T{seed.merchant_id}00000"
    assert 'rel="prev"' in third_page and 'rel="next"' not in third_page  # the last page offers no older one


def test_the_list_never_counts_every_matching_order(app, seed, staff):
    """On a shop with 100,000 orders a count of every match reads them all on each visit; one row past the page says
    whether an older page exists."""
    from sqlalchemy import event

    make_orders(app, seed.merchant_id, 3)
    seen = []
    with app.app_context():
        engine = db.engine

        def remember(_conn, _cursor, statement, *_args):
            seen.append(statement.lower())

        event.listen(engine, "before_cursor_execute", remember)
        try:
            assert staff.get("/orders?q=t").status_code == 200
            assert staff.get("/orders?state=paid").status_code == 200
        finally:
            event.remove(engine, "before_cursor_execute", remember)
    order_queries = [s for s in seen if 'from "order"' in s or "from order" in s]
    assert order_queries and not [s for s in order_queries if "count(" in s]


@pytest.mark.parametrize("page", ["0", "-1", "abc", "1.5", "99999999999999999999", "", "²", "%00"])
def test_bad_page_numbers_do_not_fail(app, seed, staff, page):
    make_orders(app, seed.merchant_id, 3)
    response = staff.get(f"/orders?page={page}")
    assert response.status_code == 200


def test_list_filters_by_state(app, seed, staff):
    make_orders(app, seed.merchant_id, 2)
    paid = make_orders(app, seed.merchant_id, 1, number="PAID1", state="paid")
    html = staff.get("/orders?state=paid").get_data(as_text=True)
    assert listed_numbers(html) == ["PAID1"]
    assert 'class="badge badge-paid"' in html
    assert f'href="/orders/{paid[0]}"' in html
    assert len(listed_numbers(staff.get("/orders?state=nonsense").get_data(as_text=True))) == 3


@pytest.mark.parametrize(
    ("q", "found"),
    [
        ("alice", ["ALICE1"]),
        ("ALICE@shop", ["ALICE1"]),
        ("alice1", ["ALICE1"]),
        ("陳", ["CHEN1"]),
        ("%", []),
        ("_", []),
        ("<script>", []),
    ],
)
def test_list_searches_customer_name_email_and_order_number(app, seed, staff, q, found):
    make_orders(app, seed.merchant_id, 2)
    make_orders(app, seed.merchant_id, 1, number="ALICE1", customer_name="Alice Wu", customer_email="alice@shop.tw")
    make_orders(app, seed.merchant_id, 1, number="CHEN1", customer_name="陳大文", customer_email="chen@shop.tw")
    response = staff.get("/orders", query_string={"q": q})
    assert response.status_code == 200
    assert listed_numbers(response.get_data(as_text=True)) == found


def test_list_shows_every_state_as_a_badge(app, seed, staff):
    for state in ORDER_STATES:
        make_orders(app, seed.merchant_id, 1, number=f"S-{state}", state=state)
    html = staff.get("/orders").get_data(as_text=True)
    for state in ORDER_STATES:
        assert f'class="badge badge-{state}"' in html


def test_another_merchants_order_is_a_404(app, seed, staff):
    (theirs,) = make_orders(app, seed.other_merchant_id, 1)
    (ours,) = make_orders(app, seed.merchant_id, 1)
    assert staff.get(f"/orders/{theirs}").status_code == 404
    assert staff.get(f"/orders/{ours}").status_code == 200
    assert staff.get("/orders/999999").status_code == 404


def test_detail_shows_the_order_and_escapes_user_text(app, seed, staff):
    with app.app_context():
        order = Order(
            merchant_id=seed.merchant_id,
            number="D1",
            customer_name="<b>Bold</b>",
            customer_email="d@example.tw",
            shipping_fee=60,
            subtotal=1200,
            voucher_total=100,
            payable=1160,
            note="line one\n<i>two</i>",
            state="awaiting_payment",
        )
        order.items = [OrderItem(position=0, name="Tea", sku="T1", unit_price=600, quantity=2)]
        order.vouchers = [
            Voucher(position=0, kind="free", product_id="P", serial_number="S1", name="Coupon", amount=100)
        ]
        db.session.add(order)
        db.session.commit()
        order_id = order.id
    html = staff.get(f"/orders/{order_id}").get_data(as_text=True)
    assert 'data-order-state="awaiting_payment"' in html
    assert "&lt;b&gt;Bold&lt;/b&gt;" in html and "<b>Bold</b>" not in html
    assert "&lt;i&gt;two&lt;/i&gt;" in html
    for text in ("NT$1,200", "NT$60", "-NT$100", "NT$1,160", "Free voucher", "S1", "Tea"):
        assert text in html
    assert '<div class="table-wrap">' in html


def test_pages_speak_chinese_by_default(app, seed, client, auth):
    auth.login(email="staff@a.example")
    assert client.get("/orders").status_code == 200
    assert client.get("/orders/new").status_code == 200


def test_a_number_taken_at_the_same_moment_is_retried(app, seed, staff, monkeypatch):
    import portal.orders as orders_service

    make_orders(app, seed.merchant_id, 1, number="TAKEN")
    numbers = iter(["TAKEN", "FRESH"])
    monkeypatch.setattr(orders_service, "next_order_number", lambda merchant_id: next(numbers))
    assert staff.post("/orders/new", data=order_post()).status_code == 302
    with app.app_context():
        order = db.session.execute(db.select(Order).filter_by(number="FRESH")).scalar_one()
        assert len(order.items) == 2
        assert order_count(app) == 2


def test_a_notice_recorded_but_not_applied_says_what_it_reported_not_a_move(app, seed, staff):
    """The history shows a provider's word that changed nothing (a MyPay hint after the payment was already applied, a
    late "failed" for a paid attempt) as what it reported, beside "recorded, not applied", not as an arrow from one
    state to another, which reads as a change; an applied move keeps its arrow."""
    from portal.payments.state import move, record
    from tests.support.factories import make_checkout, make_order

    with app.app_context():
        checkout = make_checkout(make_order(seed.merchant_id), provider="mypay")
        move(checkout, "paid", "callback", "{}")
        record(checkout, "callback", "paid", "failed", "{}", applied=False)
        db.session.commit()
        order_id = checkout.order_id
    html = staff.get(f"/orders/{order_id}").get_data(as_text=True)
    ignored = re.split(r'<li class="not-applied"[^>]*>', html)[1].split("</li>")[0]
    assert "reported Failed" in " ".join(ignored.split()) and "→" not in ignored
    assert "recorded, not applied" in ignored
    applied = html.split('<li class="applied">')[1].split("</li>")[0]
    assert "Awaiting payment → Paid" in " ".join(applied.split())


def test_a_providers_word_that_changed_nothing_says_what_it_was(app, seed, staff):
    """Rows recorded but not applied whose state stayed as it was: a query confirming the payment already applied
    reads "reported Paid" (it read a bare "Paid"), and a provider's error answer, a charge whose outcome is not known
    and a kept payment page say so, not "reported"."""
    from portal.payments.state import detail, move, record
    from tests.support.factories import make_checkout, make_order

    with app.app_context():
        checkout = make_checkout(make_order(seed.merchant_id), provider="mypay")
        move(checkout, "paid", "callback", "{}")
        record(checkout, "query", "paid", "paid", detail(provider_state="paid"), applied=False)
        record(checkout, "query", "paid", "paid", detail(provider_state="error"), applied=False)
        record(checkout, "callback", "paid", "paid", detail(callback=1, state="error"), applied=False)
        record(checkout, "charge", "paid", "paid", detail(charge="unknown", error="timeout"), applied=False)
        record(checkout, "create", "paid", "paid", detail(provider_page="received"), applied=False)
        db.session.commit()
        order_id = checkout.order_id
    html = staff.get(f"/orders/{order_id}", headers={"Accept-Language": "en"}).get_data(as_text=True)
    rows = [
        unescape(re.sub(r"<[^>]+>", " ", row.split("</li>")[0]))
        for row in re.split(r'<li class="not-applied"[^>]*>', html)
    ]
    rows = [" ".join(row.split()) for row in rows[1:]]
    said = [
        re.split(" (?:recorded, not applied|already so|details)", row.split(" · ")[2].split(": ", 1)[1])[0]
        for row in rows
    ]
    assert said == [
        "the provider's payment page was received",
        "the charge's outcome is not known yet",
        "the provider answered with an error",
        "the provider answered with an error",
        "reported Paid",
    ], rows
    # The query that found the attempt paid, as it already was, confirmed it: nothing was left unapplied.
    badges = [
        row.split(": ", 1)[1].removeprefix(said[n]).split(" details")[0].split()[:3] for n, row in enumerate(rows)
    ]
    assert [" ".join(b[:2]) if b[:1] == ["already"] else " ".join(b) for b in badges] == [
        "",  # the payment page, kept to show again: nothing was left out (it read "recorded, not applied")
        "recorded, not applied",
        "recorded, not applied",
        "recorded, not applied",
        "already so",
    ], rows
    # Only the rows that left something out are marked so (amber); the page and the confirmation are not.
    assert re.findall(r'<li class="not-applied"( data-confirms)?>', html) == [
        " data-confirms",
        "",
        "",
        "",
        " data-confirms",
    ]


def test_a_query_confirming_the_state_says_so_in_chinese(app, seed, staff):
    """The customer's return page asks the provider after the callback paid the attempt: its answer, "paid", changes
    nothing. The row said 「已記錄，未套用」 (recorded, not applied), which reads as if a payment had been left out; it
    says the attempt already was so. A late "failed" after the payment still reads as not applied."""
    from portal.payments.state import detail, move, record
    from tests.support.factories import make_checkout

    with app.app_context():
        checkout = make_checkout(make_order(seed.merchant_id), provider="mypay")
        move(checkout, "paid", "callback", "{}")
        record(checkout, "return", "paid", "paid", detail(provider_state="paid"), applied=False)
        record(checkout, "callback", "paid", "failed", "{}", applied=False)
        db.session.commit()
        order_id = checkout.order_id
    staff.get("/lang/zh_TW")
    html = staff.get(f"/orders/{order_id}").get_data(as_text=True)
    rows = [
        unescape(re.sub(r"<[^>]+>", " ", row.split("</li>")[0]))
        for row in re.split(r'<li class="not-applied"[^>]*>', html)
    ]
    late, confirmed = (" ".join(row.split()) for row in rows[1:])
    assert "已是此狀態" in confirmed and "未套用" not in confirmed, confirmed
    assert "已記錄，未套用" in late and "已是此狀態" not in late, late
    # and it is not marked in amber as something left out: only the late "failed" is
    assert re.findall(r'<li class="not-applied"( data-confirms)?>', html) == ["", " data-confirms"]


def test_a_hint_that_the_query_then_confirmed_does_not_read_as_left_out(app, seed, staff):
    """A MyPay notice is a hint: kept, not applied, until MyPay's query says the same. When the query (the callback's,
    or the return page's in between) then paid the attempt, the hint's row still read amber 「已記錄，未套用」, as if a
    payment had been left out. It reads as confirmed afterwards, in grey; a hint the attempt never came to keeps its
    amber."""
    from portal.payments.state import detail, move, record
    from tests.support.factories import make_checkout

    with app.app_context():
        hinted = make_checkout(make_order(seed.merchant_id), provider="mypay")
        record(hinted, "callback", "awaiting_payment", "paid", detail(callback=1, state="paid"), applied=False)
        move(hinted, "paid", "callback+query", "{}")
        never = make_checkout(make_order(seed.merchant_id), provider="mypay")
        record(never, "callback", "awaiting_payment", "paid", detail(callback=2, state="paid"), applied=False)
        db.session.commit()
        hinted_order, never_order = hinted.order_id, never.order_id
    staff.get("/lang/zh_TW")
    html = staff.get(f"/orders/{hinted_order}").get_data(as_text=True)
    row = unescape(re.sub(r"<[^>]+>", " ", re.split(r'<li class="not-applied"[^>]*>', html)[1].split("</li>")[0]))
    assert "之後已確認" in row and "未套用" not in row, row
    assert re.findall(r'<li class="not-applied"( data-confirms)?>', html) == [" data-confirms"]
    html = staff.get(f"/orders/{never_order}").get_data(as_text=True)
    assert re.findall(r'<li class="not-applied"( data-confirms)?>', html) == [""]
    assert "已記錄，未套用" in unescape(html)


def test_the_history_is_one_timeline_across_attempts(app, seed, staff):
    """A late word about an earlier attempt (Oen's card token arriving after the customer entered the card again)
    shows at its time, above the new attempt's rows: it was listed under its own attempt, below them, as if it had
    come first."""
    from portal.payments.state import detail, record
    from tests.support.factories import make_checkout

    start = utcnow() - timedelta(minutes=10)
    with app.app_context():
        order = make_order(seed.merchant_id)
        first = make_checkout(order, provider="oen")
        db.session.commit()
        record(first, "create", "creating", "awaiting_payment", "{}", created_at=start)
        record(first, "card_again", "awaiting_payment", "cancelled", "{}", created_at=start + timedelta(minutes=3))
        second = make_checkout(order, provider="oen")
        db.session.commit()
        at = start + timedelta(minutes=3, seconds=5)
        record(second, "create", "creating", "awaiting_payment", "{}", created_at=at)
        record(second, "charge", "awaiting_payment", "paid", "{}", created_at=start + timedelta(minutes=4))
        late = detail(card_token="received")
        record(
            first, "callback", "cancelled", "cancelled", late, applied=False, created_at=start + timedelta(minutes=5)
        )
        db.session.commit()
        order_id, names = order.id, {first.reference: "first", second.reference: "second"}
    html = staff.get(f"/orders/{order_id}", headers={"Accept-Language": "en"}).get_data(as_text=True)
    timeline = html.split('<ol class="timeline">')[1].split("</ol>")[0]
    rows = [names[reference] for reference in re.findall(r"<code>(\w+)</code>", timeline)]
    assert rows == ["first", "second", "second", "first", "first"], timeline


def test_the_historys_details_read_as_labelled_facts_not_stored_json(app, seed, staff):
    """Each history row's details showed the stored evidence as JSON (「{"amount": 1060, "provider": "mypay"}」, states
    and providers as codes, times in UTC). They read as labels and values in the reader's language: providers and
    states by name, amounts in NT$, the link's expiry in Taipei time; no database id of the portal's own."""
    from portal.payments.state import detail, record
    from tests.support.factories import make_checkout

    with app.app_context():
        checkout = make_checkout(make_order(seed.merchant_id), provider="mypay")
        record(checkout, "create", "creating", "creating", detail(provider="mypay", amount=1060))
        record(checkout, "switch", "awaiting_payment", "cancelled", detail(to="opay", user_id=7))
        record(checkout, "callback", "awaiting_payment", "paid", detail(callback=12, state="paid", amount=1060))
        expiry = detail(expires_at=datetime(2026, 3, 1, 4, 0, 0), provider_state="none")
        record(checkout, "expiry", "awaiting_payment", "expired", expiry)
        txns = [{"id": "T1", "state": "refunded", "amount": 1060}]
        record(checkout, "query", "paid", "refunded", detail(provider_state="refunded", transactions=txns))
        record(checkout, "refund", "paid", "refunded", '{"by": "refund 3", "paid": 1060, "refunded": 1060}')
        db.session.commit()
        order_id = checkout.order_id
    staff.get("/lang/zh_TW")
    html = staff.get(f"/orders/{order_id}").get_data(as_text=True)
    timeline = html.split('<ol class="timeline">')[1].split("</ol>")[0]
    details = [
        " ".join(unescape(re.sub(r"<[^>]+>", " ", row)).split())
        for row in re.findall(r'<dl class="facts small">(.*?)</dl>', timeline, re.S)
    ]
    assert details == [
        "已付款 NT$1,060 已退款 NT$1,060",
        "金流商回報 已退款 金流商交易紀錄 T1 已退款 NT$1,060",
        "連結到期時間 2026-03-01 12:00:00 金流商回報 查無紀錄",
        "金額 NT$1,060 金流通知 #12 通知內容 已付款",
        "改用 歐付寶",
        "金額 NT$1,060 金流商 MyPay",
    ], details
    assert "{" not in timeline and "refund 3" not in timeline and "user_id" not in timeline


@pytest.mark.parametrize(("current", "expected"), [("oen", "mypay"), ("opay", "oen"), ("choice", "oen")])
def test_switching_a_live_link_does_not_preselect_its_own_provider(app, seed, staff, current, expected):
    """On an order whose link is live with O'Pay, "Switch the link to" must not have Oen Tech ticked as if it were the
    link's provider, nor the link's own provider: the first other provider that can take the order is, and the link's
    own is named as such."""
    with app.app_context():
        order = make_order(seed.merchant_id)
        order.link_token, order.link_provider = f"tok-{current}", current
        order.link_expires_at = utcnow() + timedelta(hours=1)
        db.session.commit()
        order_id = order.id
    page = staff.get(f"/orders/{order_id}").get_data(as_text=True)
    form = page.split('name="switch"', 1)[1].split("</form>", 1)[0]
    assert re.findall(r'value="(\w+)"\s*checked', form) == [expected]
    labels = re.findall(r'<label class="choice[^"]*">(.*?)</label>', form, re.S)
    marked = [label for label in labels if "data-current-provider" in label]
    assert len(marked) == 1 and f'value="{current}"' in marked[0]


@pytest.mark.parametrize("typed", ["T{m}00002", "t{m}00002", " T{m}00002 "])
def test_a_whole_order_number_finds_that_order_by_its_index(app, seed, staff, typed):
    """A number typed whole (in any case) finds that order; the list reads it by the (merchant, number) index, not by
    reading every order of the shop for the text inside names, e-mails and numbers (379 ms at 100,000 on SQLite)."""
    from sqlalchemy import event

    make_orders(app, seed.merchant_id, 5)
    make_orders(app, seed.other_merchant_id, 5)
    number = f"T{seed.merchant_id}00002"
    seen: list[tuple[str, object]] = []
    with app.app_context():
        engine = db.engine

        def remember(_conn, _cursor, statement, parameters, *_args):
            seen.append((statement, parameters))

        event.listen(engine, "before_cursor_execute", remember)
        try:
            response = staff.get("/orders", query_string={"q": typed.format(m=seed.merchant_id)})
        finally:
            event.remove(engine, "before_cursor_execute", remember)
        assert listed_numbers(response.get_data(as_text=True)) == [number]
        listing = [(s, p) for s, p in seen if "LIMIT" in s and "customer_name" in s and 'FROM "order"' in s]
        assert listing and "LIKE" not in listing[0][0]
        if engine.dialect.name == "sqlite":
            statement, parameters = listing[0]
            with engine.connect() as connection:
                plan = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
            assert any("number=?" in row[-1] for row in plan), plan
            assert not any(row[-1].startswith("SCAN") and "order" in row[-1] for row in plan), plan
