"""The e-invoice rules (portal/invoices.py): carriers, the tax ID and its checksum, donation codes."""

from __future__ import annotations

import pytest

from portal import invoices
from portal.invoices import Invoice, read_invoice, tax_id_checksum_ok
from portal.models import InvoiceKind


def test_the_kinds_are_the_models():
    assert tuple(kind.value for kind in InvoiceKind) == invoices.KINDS


@pytest.mark.parametrize(
    "tax_id",
    [
        "04595257",
        "22099131",
        "28915188",  # MyPay's test store, in its document
        "12345671",  # 7th digit 7, sum 35: divisible by 5, not by 10 (numbers issued since 2023)
        "04595252",  # sum 35
        "10458575",  # 7th digit 7, sum 30
        "10458574",  # 7th digit 7, sum 29: only sum + 1 divides (the 7th digit rule)
    ],
)
def test_tax_id_checksum_accepts(tax_id):
    assert tax_id_checksum_ok(tax_id)


@pytest.mark.parametrize(
    "tax_id",
    [
        "04595258",
        "22099132",
        "28915189",
        "10458573",  # 7th digit 7, sum 28: neither 28 nor 29 divides by 5
        "12345674",  # 7th digit 7, sum 38
        "1234567",
        "123456789",
        "2209913A",
        "",
    ],
)
def test_tax_id_checksum_refuses(tax_id):
    assert not tax_id_checksum_ok(tax_id)


@pytest.mark.parametrize(
    ("kind", "fields", "expected"),
    [
        ("paper", {}, Invoice("paper")),
        ("mobile", {"carrier": "/ABC+123"}, Invoice("mobile", carrier="/ABC+123")),
        ("mobile", {"carrier": " /abc.-12 "}, Invoice("mobile", carrier="/ABC.-12")),  # upper-cased
        ("mobile", {"carrier": "／ＡＢＣ１２３４"}, Invoice("mobile", carrier="/ABC1234")),  # full-width typed
        ("citizen", {"carrier": "AB12345678901234"}, Invoice("citizen", carrier="AB12345678901234")),
        ("citizen", {"carrier": "ab12345678901234"}, Invoice("citizen", carrier="AB12345678901234")),
        (
            "business",
            {"tax_id": "28915188", "title": " 高鉅科技股份有限公司 "},
            Invoice("business", tax_id="28915188", title="高鉅科技股份有限公司"),
        ),
        ("business", {"tax_id": "２８９１５１８８", "title": "A"}, Invoice("business", tax_id="28915188", title="A")),
        ("donation", {"donation_code": "919"}, Invoice("donation", donation_code="919")),
        ("donation", {"donation_code": "8585"}, Invoice("donation", donation_code="8585")),
        ("donation", {"donation_code": "1234567"}, Invoice("donation", donation_code="1234567")),
    ],
)
def test_read_invoice_accepts(kind, fields, expected):
    invoice, errors, _ = read_invoice(kind, **fields)
    assert errors == {}
    assert invoice == expected


def test_only_the_chosen_kinds_fields_are_read():
    invoice, errors, _ = read_invoice("donation", carrier="nonsense", tax_id="123", title="", donation_code="919")
    assert errors == {} and invoice == Invoice("donation", donation_code="919")


def test_no_kind_is_no_invoice_data():
    assert read_invoice("", carrier="/ABC+123") == (None, {}, {})
    assert read_invoice(None) == (None, {}, {})


@pytest.mark.parametrize(
    ("kind", "fields", "field", "code"),
    [
        ("gold", {}, "invoice_kind", "kind"),
        ("mobile", {"carrier": ""}, "invoice_carrier", "carrier_required"),
        ("mobile", {"carrier": "ABC+1234"}, "invoice_carrier", "mobile_format"),  # no slash
        ("mobile", {"carrier": "/ABC123"}, "invoice_carrier", "mobile_format"),  # 6 characters
        ("mobile", {"carrier": "/ABC12345"}, "invoice_carrier", "mobile_format"),  # 8 characters
        ("mobile", {"carrier": "/ABC_123"}, "invoice_carrier", "mobile_format"),
        ("mobile", {"carrier": "/ABC 123"}, "invoice_carrier", "mobile_format"),
        ("citizen", {"carrier": "A123456789012345"}, "invoice_carrier", "citizen_format"),
        ("citizen", {"carrier": "AB1234567890123"}, "invoice_carrier", "citizen_format"),  # 13 digits
        ("citizen", {"carrier": "/ABC+123"}, "invoice_carrier", "citizen_format"),
        ("business", {"tax_id": "", "title": "A"}, "invoice_tax_id", "tax_id_required"),
        ("business", {"tax_id": "1234567", "title": "A"}, "invoice_tax_id", "tax_id_format"),
        ("business", {"tax_id": "2891518A", "title": "A"}, "invoice_tax_id", "tax_id_format"),
        ("business", {"tax_id": "28915189", "title": "A"}, "invoice_tax_id", "tax_id_checksum"),
        ("business", {"tax_id": "28915188", "title": " "}, "invoice_title", "title_required"),
        ("business", {"tax_id": "28915188", "title": "公" * 101}, "invoice_title", "title_too_long"),
        ("business", {"tax_id": "28915188", "title": "<b>A</b>"}, "invoice_title", "title_characters"),
        ("donation", {"donation_code": ""}, "invoice_donation_code", "donation_required"),
        ("donation", {"donation_code": "12"}, "invoice_donation_code", "donation_format"),
        ("donation", {"donation_code": "12345678"}, "invoice_donation_code", "donation_format"),
        ("donation", {"donation_code": "91A"}, "invoice_donation_code", "donation_format"),
    ],
)
def test_read_invoice_refuses_on_the_field(kind, fields, field, code):
    invoice, errors, _ = read_invoice(kind, **fields)
    assert invoice is None
    assert errors[field] == code


def test_columns_and_back():
    invoice = Invoice("business", tax_id="28915188", title="高鉅科技")
    columns = invoices.columns(invoice)
    assert columns == {
        "invoice_kind": "business",
        "invoice_carrier": None,
        "invoice_tax_id": "28915188",
        "invoice_title": "高鉅科技",
        "invoice_donation_code": None,
    }

    class Row:
        pass

    row = Row()
    row.__dict__.update(columns)
    assert invoices.of_order(row) == invoice
    assert set(invoices.columns(None).values()) == {None}
