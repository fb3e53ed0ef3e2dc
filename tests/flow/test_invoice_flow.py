"""An order's e-invoice data reaches MyPay over real HTTP: the sandbox (its own process and port) shows what arrived."""

from __future__ import annotations

import re
from html import unescape

import pytest

from sandbox.models import SandboxMypayOrder
from tests.support.browser import Browser
from tests.support.sandbox import sandbox_rows


@pytest.fixture
def browser(live_server):
    b = Browser(live_server.url)
    b.login()
    return b


def order_with(browser: Browser, **invoice) -> int:
    form = {
        "customer_name": "林小華",
        "customer_email": "buyer@example.com",
        "shipping_fee": "0",
        "items-0-name": "高山茶",
        "items-0-unit_price": "1,200",  # as typed; the portal reads 1200
        "items-0-quantity": "１",
        **invoice,
    }
    response = browser.post("/orders/new", form)
    match = re.search(r"/orders/(\d+)$", response.url)
    assert match, response.text[:2000]
    return int(match.group(1))


def invoice_on_paypage(html: str) -> dict[str, str]:
    """The e-invoice fields the sandbox's PayPage lists as received."""
    return {name: unescape(value) for name, value in re.findall(r'data-invoice-field="([a-z_]+)">([^<]*)<', html)}


@pytest.mark.parametrize(
    ("invoice", "received"),
    [
        (
            {"invoice_kind": "mobile", "invoice_carrier": "/abc+123"},
            {
                "issue_invoice_state": "1",
                "invoice_ratetype": "1",
                "invoice_input_type": "1",
                "invoice_cloud_type": "2",
                "invoice_mobile_code": "/ABC+123",
            },
        ),
        (
            {"invoice_kind": "business", "invoice_tax_id": "28915188", "invoice_title": "高鉅科技股份有限公司"},
            {
                "issue_invoice_state": "1",
                "invoice_ratetype": "1",
                "invoice_input_type": "1",
                "invoice_cloud_type": "4",
                "invoice_tax_id": "28915188",
            },
        ),
        (
            {"invoice_kind": "donation", "invoice_donation_code": "919"},
            {
                "issue_invoice_state": "1",
                "invoice_ratetype": "1",
                "invoice_input_type": "2",
                "invoice_love_code": "919",
            },
        ),
    ],
)
def test_mypay_receives_the_orders_invoice_fields(live_server, browser, invoice, received):
    order_id = order_with(browser, **invoice)
    link = browser.create_link(order_id, "mypay")
    paypage = browser.open_provider(link)
    assert "電子發票" in paypage.text
    assert invoice_on_paypage(paypage.text) == received
    (order,) = sandbox_rows(live_server.sandbox, SandboxMypayOrder)
    assert order.cost == 1200
    assert {k: str(v) for k, v in order.request.items() if k.startswith(("invoice_", "issue_invoice"))} == received
    # and the payment goes on as any other
    browser.pay_mypay(link)
    browser.wait_for_state(order_id, "paid")


def test_mypay_receives_no_invoice_fields_without_invoice_data(live_server, browser):
    order_id = order_with(browser)
    paypage = browser.open_provider(browser.create_link(order_id, "mypay"))
    assert invoice_on_paypage(paypage.text) == {}
    (order,) = sandbox_rows(live_server.sandbox, SandboxMypayOrder)
    assert not [k for k in order.request if "invoice" in k]
