"""E-invoice data on the order form and the order page; amounts typed as people type them (1,200, １２００)."""

from __future__ import annotations

import re
from html import unescape

import pytest
import responses

from portal.extensions import db
from portal.models import Order
from tests.support.pages import order_post, read_page
from tests.test_refunds import oen_query, paid, review


@pytest.fixture
def staff(client, auth):
    auth.login(email="staff@a.example")
    return client


def speak(client, language: str):
    client.get(f"/lang/{language}")
    return client


def saved(app) -> list[Order]:
    with app.app_context():
        orders = db.session.execute(db.select(Order).order_by(Order.id)).scalars().all()
        db.session.expunge_all()
        return orders


def invoice_of(order: Order) -> tuple:
    return (
        order.invoice_kind,
        order.invoice_carrier,
        order.invoice_tax_id,
        order.invoice_title,
        order.invoice_donation_code,
    )


# --- accepted and saved ----------------------------------------------------------------------------------------------

ACCEPTED = [
    ({}, (None, None, None, None, None)),
    ({"invoice_kind": ""}, (None, None, None, None, None)),
    ({"invoice_kind": "paper"}, ("paper", None, None, None, None)),
    ({"invoice_kind": "mobile", "invoice_carrier": "/abc+123"}, ("mobile", "/ABC+123", None, None, None)),
    (
        {"invoice_kind": "citizen", "invoice_carrier": "AB12345678901234"},
        ("citizen", "AB12345678901234", None, None, None),
    ),
    (
        {"invoice_kind": "business", "invoice_tax_id": "28915188", "invoice_title": "高鉅科技股份有限公司"},
        ("business", None, "28915188", "高鉅科技股份有限公司", None),
    ),
    ({"invoice_kind": "donation", "invoice_donation_code": "919"}, ("donation", None, None, None, "919")),
    # Without the script every field is posted: only the chosen kind's are kept.
    (
        {
            "invoice_kind": "donation",
            "invoice_carrier": "whatever",
            "invoice_tax_id": "1",
            "invoice_title": "x",
            "invoice_donation_code": "8585",
        },
        ("donation", None, None, None, "8585"),
    ),
]


@pytest.mark.parametrize(("fields", "expected"), ACCEPTED)
def test_invoice_data_is_saved_with_the_order(app, seed, staff, fields, expected):
    response = staff.post("/orders/new", data=order_post(**fields))
    assert response.status_code == 302, read_page(response.get_data(as_text=True)).errors()
    (order,) = saved(app)
    assert invoice_of(order) == expected


def test_the_order_page_shows_the_invoice_data(app, seed, staff):
    speak(staff, "zh_TW")
    data = order_post(invoice_kind="business", invoice_tax_id="28915188", invoice_title="高鉅科技股份有限公司")
    location = staff.post("/orders/new", data=data).headers["Location"]
    html = staff.get(location).get_data(as_text=True)
    assert 'data-invoice-kind="business"' in html
    assert "統一編號" in html and "28915188" in html and "高鉅科技股份有限公司" in html
    speak(staff, "en")
    html = staff.get(location).get_data(as_text=True)
    assert "Tax ID" in html and "28915188" in html


def test_the_order_page_shows_a_mobile_barcode(app, seed, staff):
    speak(staff, "zh_TW")
    location = staff.post("/orders/new", data=order_post(invoice_kind="mobile", invoice_carrier="/ABC+123")).headers[
        "Location"
    ]
    html = staff.get(location).get_data(as_text=True)
    assert "手機條碼" in html and "/ABC+123" in html


def test_an_order_without_invoice_data_shows_none(app, seed, staff):
    location = staff.post("/orders/new", data=order_post()).headers["Location"]
    assert "data-invoice-kind" not in staff.get(location).get_data(as_text=True)


def test_the_form_offers_every_kind_and_its_fields(staff):
    speak(staff, "zh_TW")
    html = staff.get("/orders/new").get_data(as_text=True)
    for value in ("paper", "mobile", "citizen", "business", "donation"):
        assert f'name="invoice_kind" type="radio" value="{value}"' in html or f'value="{value}"' in html
    for name in ("invoice_carrier", "invoice_tax_id", "invoice_title", "invoice_donation_code"):
        assert f'name="{name}"' in html
    for word in ("紙本發票", "手機條碼", "自然人憑證", "統一編號", "捐贈碼"):
        assert word in html


# --- refused, with the message on the field, in both languages ------------------------------------------------------

REFUSED = [
    # (kind, posted invoice_* fields, the field with the message, English, zh-TW)
    ("mobile", {"carrier": ""}, "invoice_carrier", "carrier number", "載具號碼"),
    ("mobile", {"carrier": "ABC+1234"}, "invoice_carrier", "/ followed by 7", "手機條碼"),
    ("mobile", {"carrier": "/AB_1234"}, "invoice_carrier", "/ followed by 7", "手機條碼"),
    ("citizen", {"carrier": "A1234567890123"}, "invoice_carrier", "2 capital letters", "自然人憑證"),
    ("business", {"tax_id": "", "title": "A"}, "invoice_tax_id", "enter the tax ID", "統一編號"),
    ("business", {"tax_id": "1234", "title": "A"}, "invoice_tax_id", "8 digits", "8 位數字"),
    ("business", {"tax_id": "28915189", "title": "A"}, "invoice_tax_id", "not a valid tax ID", "統一編號有誤"),
    ("business", {"tax_id": "28915188", "title": ""}, "invoice_title", "company name", "公司名稱"),
    ("donation", {"donation_code": ""}, "invoice_donation_code", "donation code", "捐贈碼"),
    ("donation", {"donation_code": "12"}, "invoice_donation_code", "3 to 7 digits", "3 到 7 位數字"),
]


@pytest.mark.parametrize(("kind", "fields", "where", "english", "chinese"), REFUSED)
def test_refused_invoice_data_gets_a_message_on_the_field(app, seed, staff, kind, fields, where, english, chinese):
    fields = {"invoice_kind": kind, **{f"invoice_{name}": value for name, value in fields.items()}}
    for language, words in (("en", english), ("zh_TW", chinese)):
        speak(staff, language)
        response = staff.post("/orders/new", data=order_post(**fields))
        assert response.status_code == 200
        page = read_page(response.get_data(as_text=True))
        errors = page.errors()
        assert where in errors, errors
        assert any(words in e for e in errors[where]), (language, errors[where])
        assert page.value(where) is not None
    assert saved(app) == []


def test_an_unknown_kind_is_refused_never_a_500(app, seed, staff):
    speak(staff, "en")
    response = staff.post("/orders/new", data=order_post(invoice_kind="gold"))
    assert response.status_code == 200
    assert "Choose how the customer takes the invoice" in unescape(response.get_data(as_text=True))
    assert saved(app) == []


def test_the_carrier_is_shown_back_upper_cased(app, seed, staff):
    speak(staff, "en")
    data = order_post(invoice_kind="mobile", invoice_carrier="/abc+123", customer_email="nope")
    page = read_page(staff.post("/orders/new", data=data).get_data(as_text=True))
    assert page.value("invoice_carrier") == "/ABC+123"
    assert "customer_email" in page.errors()


# --- amounts typed as people type them -------------------------------------------------------------------------------


def test_amounts_with_commas_full_width_digits_and_nt_dollar_are_accepted(app, seed, staff):
    data = order_post(
        items__0__unit_price="1,200",
        items__0__quantity="２",
        items__1__unit_price="ＮＴ＄３５",
        shipping_fee="NT$60",
        vouchers__0__amount="１，０００",
        vouchers__1__amount=" 10 ",
    )
    assert staff.post("/orders/new", data=data).status_code == 302
    (order,) = saved(app)
    # 1200 × 2 + 35 × 3 + 60 − 1000 − 10
    assert (order.subtotal, order.shipping_fee, order.voucher_total, order.payable) == (2505, 60, 1010, 1555)


def test_the_normalised_amount_is_shown_back(app, seed, staff):
    speak(staff, "en")
    data = order_post(items__0__unit_price="１，２００", shipping_fee="NT$60", customer_name="")
    page = read_page(staff.post("/orders/new", data=data).get_data(as_text=True))
    assert "customer_name" in page.errors()
    assert page.value("items-0-unit_price") == "1200"
    assert page.value("shipping_fee") == "60"


@pytest.mark.parametrize(
    ("typed", "english", "chinese"),
    [
        ("１２．５", "no decimals", "不可有小數"),
        ("-1,200", "Negative", "負數"),
        ("1,20", "every three digits", "每三位"),
    ],
)
def test_decimals_and_negatives_are_still_refused(app, seed, staff, typed, english, chinese):
    for language, words in (("en", english), ("zh_TW", chinese)):
        speak(staff, language)
        page = read_page(staff.post("/orders/new", data=order_post(items__0__unit_price=typed)).get_data(as_text=True))
        assert any(words in e for e in page.errors()["items-0-unit_price"]), page.errors()
    assert saved(app) == []


def test_refund_amount_typed_with_commas_or_full_width_digits(app, seed, client, auth):
    auth.login()
    speak(client, "en")
    order_id, _checkout_id, ref = paid(app, seed, items=((1500, 1),))
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        oen_query(app, rsps, ref)
        for typed in ("1,000", "１０００", "NT$1,000", "１，０００"):
            page = review(client, order_id, typed)
            text = unescape(page.get_data(as_text=True))
            assert page.status_code == 200 and 'data-refund-amount="1000"' in text, typed
        for typed, message in (("10.5", "no decimals"), ("-100", "Negative"), ("1,00", "every three digits")):
            page = review(client, order_id, typed)
            assert page.status_code == 400 and message in unescape(page.get_data(as_text=True)), typed


def test_a_drafts_invoice_data_is_edited_changed_and_removed(app, seed, staff):
    location = staff.post("/orders/new", data=order_post(invoice_kind="mobile", invoice_carrier="/abc+123")).headers[
        "Location"
    ]
    order_id = int(location.rsplit("/", 1)[1])
    html = staff.get(f"/orders/{order_id}/edit").get_data(as_text=True)
    assert read_page(html).value("invoice_carrier") == "/ABC+123"
    assert re.search(r'<input checked[^>]*value="mobile"', html)
    changed = staff.post(
        f"/orders/{order_id}/edit", data=order_post(invoice_kind="donation", invoice_donation_code="919")
    )
    assert changed.status_code == 302
    (order,) = saved(app)
    assert invoice_of(order) == ("donation", None, None, None, "919")
    assert staff.post(f"/orders/{order_id}/edit", data=order_post()).status_code == 302
    (order,) = saved(app)
    assert invoice_of(order) == (None, None, None, None, None)
