"""E-invoice data in a real browser (Chromium, a 390×844 phone, zh-TW), the sandbox in its own process: staff enter a
business tax ID on one order and a mobile barcode on another; each reaches MyPay's PayPage. Screenshots go to
test-output/screenshots/."""

from __future__ import annotations

import re

import pytest

from tests.support.chromium import PHONE, assert_fits_width, login, shot

pytestmark = pytest.mark.e2e


def fill_order(page, price: str) -> None:
    page.goto("/orders/new")
    page.fill("[name=customer_name]", "林小華")
    page.fill("[name=customer_email]", "hua@example.tw")
    page.fill("[name=items-0-name]", "高山茶")
    page.fill("[name=items-0-unit_price]", price)
    page.fill("[name=items-0-quantity]", "1")


def save(page) -> int:
    page.click(".actions button.primary")
    page.wait_for_url(re.compile(r"/orders/\d+$"))
    return int(page.url.rsplit("/", 1)[1])


def paypage_invoice(customer, link: str, provider_origin: str) -> dict[str, str]:
    """The customer follows the link to MyPay; the e-invoice fields its PayPage lists as received."""
    customer.goto(link)
    customer.click("form button.primary")
    customer.wait_for_url(f"{provider_origin}/mypay/**")
    cells = customer.locator("[data-invoice-field]")
    return {cells.nth(i).get_attribute("data-invoice-field"): cells.nth(i).inner_text() for i in range(cells.count())}


def make_link(page, order_id: int) -> str:
    page.goto(f"/orders/{order_id}")
    page.check("form.provider-choice input[name=provider][value=mypay]")
    page.click("form.provider-choice button.primary")
    page.wait_for_selector("#customer-link")
    return page.input_value("#customer-link")


def test_a_tax_id_and_a_mobile_barcode_reach_mypay(new_context, live_server):
    staff = new_context(viewport=PHONE).new_page()
    login(staff, "staff@a.example")

    # A business's invoice: the script shows the tax ID and company name only.
    fill_order(staff, "１，２００")  # full-width, as a Chinese input method types it
    assert not staff.is_visible("[name=invoice_tax_id]")  # no kind chosen yet: no fields
    staff.check("input[name=invoice_kind][value=business]")
    assert staff.is_visible("[name=invoice_tax_id]") and staff.is_visible("[name=invoice_title]")
    assert not staff.is_visible("[name=invoice_carrier]") and not staff.is_visible("[name=invoice_donation_code]")
    staff.fill("[name=invoice_tax_id]", "28915189")  # one digit wrong
    staff.fill("[name=invoice_title]", "高鉅科技股份有限公司")
    staff.click(".actions button.primary")
    staff.wait_for_selector(".has-error [name=invoice_tax_id]")
    assert "統一編號有誤" in staff.text_content(".field:has([name=invoice_tax_id])")
    assert staff.input_value("[name=items-0-unit_price]") == "1200"  # shown back as the portal reads it
    assert staff.is_visible("[name=invoice_tax_id]")  # the chosen kind's fields stay shown
    assert_fits_width(staff, "order form with an e-invoice error")
    shot(staff, "invoice-01-tax-id-refused")
    staff.fill("[name=invoice_tax_id]", "28915188")
    business_order = save(staff)
    facts = staff.text_content("[data-invoice-kind=business]")
    assert "統一編號" in facts and "28915188" in facts and "高鉅科技股份有限公司" in facts
    shot(staff, "invoice-02-order-page-tax-id")
    business_link = make_link(staff, business_order)

    # A mobile barcode carrier, typed in lower case.
    fill_order(staff, "NT$1,200")
    staff.check("input[name=invoice_kind][value=mobile]")
    assert staff.is_visible("[name=invoice_carrier]") and not staff.is_visible("[name=invoice_tax_id]")
    staff.fill("[name=invoice_carrier]", "/abc+123")
    assert staff.text_content('[data-total="payable"]').strip() == "NT$1,200"
    shot(staff, "invoice-03-mobile-barcode")
    mobile_order = save(staff)
    assert "/ABC+123" in staff.text_content("[data-invoice-kind=mobile]")
    mobile_link = make_link(staff, mobile_order)

    customer = new_context(viewport=PHONE).new_page()
    origin = live_server.sandbox.url
    business = paypage_invoice(customer, business_link, origin)
    assert business["invoice_tax_id"] == "28915188" and business["invoice_input_type"] == "1"
    assert business["invoice_cloud_type"] == "4" and business["issue_invoice_state"] == "1"
    shot(customer, "invoice-04-mypay-paypage-tax-id")
    mobile = paypage_invoice(customer, mobile_link, origin)
    assert mobile["invoice_mobile_code"] == "/ABC+123" and mobile["invoice_cloud_type"] == "2"
    assert "invoice_tax_id" not in mobile


def test_without_scripts_every_invoice_field_shows(new_context, live_server):
    staff = new_context(viewport=PHONE, java_script_enabled=False).new_page()
    login(staff, "staff@a.example")
    staff.goto("/orders/new")
    for name in ("invoice_carrier", "invoice_tax_id", "invoice_title", "invoice_donation_code"):
        assert staff.is_visible(f"[name={name}]"), name
    assert_fits_width(staff, "order form without scripts")
