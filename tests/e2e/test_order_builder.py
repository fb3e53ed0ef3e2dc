"""The order builder in Chromium: rows added and removed by the script, totals as the user types, a phone screen."""

from __future__ import annotations

import pytest

from portal.extensions import db
from portal.models import Order
from tests.support.constants import PASSWORD

pytestmark = pytest.mark.e2e


@pytest.fixture
def page(chromium, live_server):
    """A logged-in staff member's page on a small phone, in English, recording script errors and failed loads."""
    context = chromium.new_context(viewport={"width": 375, "height": 740}, locale="en-US")
    page = context.new_page()
    page.problems = []
    # Script errors and CSP refusals; failed loads are checked by response instead (the favicon 404 is fine).
    page.on(
        "console",
        lambda msg: (
            msg.type == "error"
            and not msg.text.startswith("Failed to load resource")
            and page.problems.append(msg.text)
        ),
    )
    page.on(
        "response",
        lambda r: r.status >= 400 and not r.url.endswith("/favicon.ico") and page.problems.append(r.url),
    )
    page.on("pageerror", lambda exc: page.problems.append(str(exc)))
    page.goto(f"{live_server.url}/login")
    page.fill("input[name=email]", "staff@a.example")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit].primary")
    page.goto(f"{live_server.url}/lang/en?next=/orders/new")
    yield page
    context.close()


def total(page, name: str) -> str:
    return page.text_content(f'[data-total="{name}"]').strip()


def test_rows_and_live_totals_with_the_script(page, live_server):
    assert page.url.endswith("/orders/new")
    page.fill("[name=customer_name]", "王小明")
    page.fill("[name=customer_email]", "ming@example.tw")
    page.fill("[name=items-0-name]", "Tea")
    page.fill("[name=items-0-unit_price]", "1200")
    page.fill("[name=items-0-quantity]", "2")
    assert total(page, "subtotal") == "NT$2,400"
    page.click("[data-add-row=items]")
    page.fill("[name=items-1-name]", "Cake")
    page.fill("[name=items-1-unit_price]", "35")
    page.fill("[name=items-1-quantity]", "3")
    page.fill("[name=shipping_fee]", "60")
    page.click("[data-add-row=vouchers]")
    page.fill("[name=vouchers-0-product_id]", "P1")
    page.fill("[name=vouchers-0-serial_number]", "SN1")
    page.fill("[name=vouchers-0-name]", "Gift")
    page.fill("[name=vouchers-0-amount]", "100")
    assert (total(page, "subtotal"), total(page, "shipping"), total(page, "vouchers"), total(page, "payable")) == (
        "NT$2,505",
        "NT$60",
        "-NT$100",
        "NT$2,465",
    )
    # a row added and removed again leaves a gap in the numbers, which the server accepts
    page.click("[data-add-row=items]")
    page.fill("[name=items-2-name]", "Biscuit")
    page.fill("[name=items-2-unit_price]", "1")
    page.click("[data-row=items]:nth-child(2) [data-remove-row]")
    assert page.locator("[data-row=items]").count() == 2
    assert total(page, "subtotal") == "NT$2,401"
    # nothing on the page is wider than a phone screen
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    page.click("button.primary[name=save]")
    page.wait_for_url("**/orders/*")
    assert page.get_attribute("[data-order-state]", "data-order-state") == "draft"
    assert page.problems == []
    with live_server.app.app_context():
        order = db.session.execute(db.select(Order)).scalar_one()
        assert [(i.name, i.unit_price, i.quantity) for i in order.items] == [("Tea", 1200, 2), ("Biscuit", 1, 1)]
        assert (order.subtotal, order.shipping_fee, order.voucher_total, order.payable) == (2401, 60, 100, 2361)


def test_refused_amount_keeps_the_input_and_shows_the_message(page, live_server):
    page.fill("[name=customer_name]", "Ming")
    page.fill("[name=customer_email]", "ming@example.tw")
    page.fill("[name=items-0-name]", "Tea")
    page.fill("[name=items-0-unit_price]", "１，０００")
    assert total(page, "subtotal") == "NT$1,000"  # full-width digits and commas read as the server reads them
    page.fill("[name=items-0-unit_price]", "１２．５")
    assert total(page, "subtotal") == "NT$0"  # the script, like the server, does not read decimals
    page.press("[name=items-0-name]", "Enter")  # Enter saves (the first submit button), it does not add a row
    page.wait_for_load_state()
    assert page.input_value("[name=items-0-unit_price]") == "１２．５"
    assert "no decimals" in page.text_content(".has-error .error")
    assert page.locator("[data-row=items]").count() == 1
    assert page.problems == []
