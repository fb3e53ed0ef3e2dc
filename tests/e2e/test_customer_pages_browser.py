"""The customer's pages in a real browser (Chromium, a 390×844 phone, zh-TW), the sandbox on its own origin: the shop's
name and contact set on the Settings page, a MyPay ATM transfer's virtual account on the portal's return page, and a
friendly page for a mistyped link. Screenshots go to test-output/screenshots/."""

from __future__ import annotations

import re

import pytest

from tests.support.browser import Browser
from tests.support.chromium import PHONE, assert_fits_width, login, shot

pytestmark = pytest.mark.e2e

PHONE_NUMBER = "02-2345-6789"
NOTE = "LINE ID: @teashop（週一至週五 10:00–18:00）"


def set_shop_contact(page) -> None:
    """The admin fills in the shop's contact on the Settings page."""
    page.goto("/settings")
    page.fill("[name=contact_phone]", PHONE_NUMBER)
    page.fill("[name=contact_email]", "service@teashop.example")
    page.fill("[name=contact_note]", NOTE)
    page.fill("[name=reminder_hours]", "12")
    page.click("form.settings-form button.primary")
    page.wait_for_selector(".flash-success")
    assert page.input_value("[name=contact_phone]") == PHONE_NUMBER


def test_mypay_atm_transfer_shows_its_virtual_account_on_the_return_page(new_context, live_server):
    admin = new_context(viewport=PHONE).new_page()
    login(admin)
    set_shop_contact(admin)

    staff = Browser(live_server.url)
    staff.login("admin@a.example")
    order_id = staff.new_order(items=((1200, 1),), shipping=60)
    link = live_server.url + staff.create_link(order_id, "mypay")

    # ---- the customer's page: the shop's name and contact, nothing of the back office
    customer = new_context(viewport=PHONE).new_page()
    customer.goto(link)
    assert customer.get_attribute("html", "lang") == "zh-Hant-TW"
    contact = customer.text_content("[data-shop-contact]")
    assert PHONE_NUMBER in contact and "service@teashop.example" in contact and "@teashop" in contact
    assert customer.get_attribute("[data-contact-phone]", "href") == "tel:0223456789"
    assert customer.locator("a[href*='/login'], a[href*='/orders'], header nav").count() == 0
    assert "ATM" in customer.text_content("form button.primary")  # MyPay's methods named on the button
    assert_fits_width(customer, "customer pay page")
    shot(customer, "customer-pay-page-shop-contact")

    # ---- MyPay's page, on the sandbox's own origin: ATM virtual account
    customer.click("form button.primary")
    customer.wait_for_url(f"{live_server.sandbox.url}/mypay/**")
    customer.click("button[name=method][value=E_COLLECTION]")
    customer.wait_for_selector("text=ATM 轉帳資訊")
    account = customer.text_content("dt:text-is('PinCode') + dd").strip()
    assert re.fullmatch(r"9[0-9]{13}", account), account
    customer.click("text=返回商店 Back to shop")

    # ---- back on the portal: the account, the bank, the amount and the deadline in Taipei time
    customer.wait_for_url(re.compile(r"/return$"))
    customer.wait_for_selector("[data-payment-code=atm]")
    assert customer.input_value("[data-virtual-account]") == account
    assert customer.text_content("[data-bank-code]").strip() == "822"
    assert customer.text_content("[data-pay-amount]").strip() == "NT$1,260"
    deadline = customer.text_content("[data-pay-deadline]")
    assert re.search(r"\d{4}-\d{2}-\d{2} 23:59", deadline) and "台北時間" in deadline
    assert "虛擬帳號" in customer.text_content(".pay-code") and "銀行代碼" in customer.text_content(".pay-code")
    copy = customer.locator(".pay-code button.copy")
    assert copy.is_visible()
    copy.click()
    customer.wait_for_selector(".pay-code button.copy.copied")
    assert PHONE_NUMBER in customer.text_content("[data-shop-contact]")
    assert_fits_width(customer, "customer return page with the ATM account")
    shot(customer, "customer-return-page-atm-account")

    # ---- without JavaScript the account is still there to select, and no dead copy button shows
    plain = new_context(viewport=PHONE, java_script_enabled=False).new_page()
    plain.goto(customer.url)
    assert plain.input_value("[data-virtual-account]") == account
    assert not plain.locator(".pay-code button.copy").is_visible()

    # ---- the staff's order page shows the same, until the transfer arrives
    admin.goto(f"/orders/{order_id}")
    assert admin.input_value("[data-virtual-account]") == account
    assert account in admin.text_content("[data-payment-code-summary]")
    shot(admin, "order-page-atm-account")


def test_a_mistyped_link_gets_a_friendly_page(new_context, live_server):
    context = new_context(viewport=PHONE)
    page = context.new_page()
    response = page.goto("/pay/this-is-not-a-link")
    assert response.status == 404
    assert "找不到這個付款連結" in page.text_content("h1") + page.text_content(".error-page")
    assert page.locator("a[href*='/login'], a[href*='/orders'], header nav").count() == 0
    assert "Traceback" not in page.content()
    assert_fits_width(page, "not-found page")
    shot(page, "customer-not-found-page")
    page.click("header .lang a")
    page.wait_for_url("**/pay/this-is-not-a-link")
    assert "We could not find this payment link" in page.text_content(".error-page")
    shot(page, "customer-not-found-page-en")
    context.problems[:] = [p for p in context.problems if "this-is-not-a-link" not in p]  # the 404s asked for
