"""The portal in a real browser (Chromium) against a live server, the sandbox providers in their own process.

Admin builds an order (two items, a paid and a free voucher) with the add-row buttons, makes a payment link, the
customer pays on each provider's sandbox page from a phone, comes back, and the admin refunds through the refund pages;
in zh-TW (the default) and in English. Screenshots of the key pages go to test-output/screenshots/.
"""

from __future__ import annotations

import re

import pytest

from portal.extensions import db
from portal.models import Order
from tests.support.chromium import DESKTOP, PHONE, assert_fits_width, login, shot, wait_for_state

pytestmark = pytest.mark.e2e

# What the order is made of, and what the portal must make of it.
ITEMS = [("烏龍茶 Oolong tea 150g", "TEA-150", "450", "2"), ("鳳梨酥 Pineapple cake", "CAKE-6", "35", "6")]
SHIPPING = "80"
VOUCHERS = [
    ("paid", "禮券 Gift voucher", "GV100", "SN-GV-0001", "100"),
    ("free", "生日券 Birthday", "BD50", "SN-BD-0001", "50"),
]
SUBTOTAL, PAYABLE = 900 + 210, 900 + 210 + 80 - 150

# Visible words of each interface language.
WORDS = {
    "zh_TW": {"orders": "訂單", "payment": "付款", "refunds": "退款", "paid_msg": "已收到您的付款"},
    "en": {"orders": "Orders", "payment": "Payment", "refunds": "Refunds", "paid_msg": "Payment received"},
}
# Oen: one partial refund; MyPay with paid vouchers: in full only; O'Pay: recorded by hand (partial here).
REFUNDS = {"oen": (300, "partially_refunded"), "mypay": (PAYABLE, "refunded"), "opay": (200, "partially_refunded")}


def twd(amount: int) -> str:
    return f"NT${amount:,}"


def total(page, name: str) -> str:
    return page.text_content(f'[data-total="{name}"]').strip()


def fill_item(page, n: int, item) -> None:
    name, sku, price, qty = item
    page.fill(f"[name=items-{n}-name]", name)
    page.fill(f"[name=items-{n}-sku]", sku)
    page.fill(f"[name=items-{n}-unit_price]", price)
    page.fill(f"[name=items-{n}-quantity]", qty)


def fill_voucher(page, n: int, voucher) -> None:
    kind, name, product_id, serial, amount = voucher
    page.select_option(f"[name=vouchers-{n}-kind]", kind)
    page.fill(f"[name=vouchers-{n}-name]", name)
    page.fill(f"[name=vouchers-{n}-product_id]", product_id)
    page.fill(f"[name=vouchers-{n}-serial_number]", f"{serial}-{n}")
    page.fill(f"[name=vouchers-{n}-amount]", amount)


def build_order(page, prefix: str, serial_suffix: str = "") -> int:
    """Build the order with the script's add-row buttons, checking the live totals; returns the order id."""
    page.goto("/orders/new")
    page.fill("[name=customer_name]", "林小華")
    page.fill("[name=customer_email]", "hua@example.tw")
    fill_item(page, 0, ITEMS[0])
    assert total(page, "subtotal") == twd(900)
    assert page.text_content("[data-row=items] [data-line-total]").strip() == twd(900)
    page.click("[data-add-row=items]")
    assert page.locator("[data-row=items]").count() == 2
    fill_item(page, 1, ITEMS[1])
    page.fill("[name=shipping_fee]", SHIPPING)
    for n, voucher in enumerate(VOUCHERS):
        page.click("[data-add-row=vouchers]")
        kind, name, product_id, serial, amount = voucher
        fill_voucher(page, n, (kind, name, product_id, serial + serial_suffix, amount))
    assert page.locator("[data-row=vouchers]").count() == 2
    assert [total(page, t) for t in ("subtotal", "shipping", "vouchers", "payable")] == [
        twd(SUBTOTAL),
        twd(80),
        "-" + twd(150),
        twd(PAYABLE),
    ]
    assert_fits_width(page, "order builder")
    shot(page, f"{prefix}-02-order-builder")
    page.click("button.primary[name=save]")
    page.wait_for_url(re.compile(r"/orders/\d+$"))
    return int(page.url.rsplit("/", 1)[1])


def check_saved_order(live_server, order_id: int) -> None:
    with live_server.app.app_context():
        order = db.session.get(Order, order_id)
        assert [(i.name, i.sku, i.unit_price, i.quantity) for i in order.items] == [
            (name, sku, int(price), int(qty)) for name, sku, price, qty in ITEMS
        ]
        assert sorted((v.kind, v.amount) for v in order.vouchers) == [("free", 50), ("paid", 100)]
        assert (order.subtotal, order.shipping_fee, order.voucher_total, order.payable) == (SUBTOTAL, 80, 150, PAYABLE)


# ---------------------------------------------------------------- the customer on each provider's sandbox page


def pay_oen(page, prefix: str, provider_origin: str) -> None:
    """Oen's hosted card page, with a card that asks for 3-D Secure."""
    page.wait_for_url(f"{provider_origin}/oen/checkout/**")
    page.fill("#card_number", "4000 0000 0000 2503")
    page.fill("#expiry", "12/30")
    page.fill("#cvc", "123")
    page.fill("#card_name", "LIN HSIAO HUA")
    shot(page, f"{prefix}-05-provider-page")
    page.click("button.sb-primary")
    page.wait_for_url("**/3ds")
    shot(page, f"{prefix}-05b-provider-3ds")
    page.click("button[name=decision][value=approve]")


def pay_mypay(page, prefix: str, provider_origin: str) -> None:
    """MyPay's PayPage: the test card of appendix 6, then its 3-D password."""
    page.wait_for_url(f"{provider_origin}/mypay/**")
    page.fill("#card_number", "4938170130000003")
    page.fill("#expiry", "1228")
    page.fill("#cvc", "985")
    shot(page, f"{prefix}-05-provider-page")
    page.click("form:has(#card_number) button.sb-primary")
    page.wait_for_url("**/3ds")
    page.fill("#password", "nccc1234")
    shot(page, f"{prefix}-05b-provider-3ds")
    page.click("button.sb-primary")


def pay_opay(page, prefix: str, provider_origin: str) -> None:
    """O'Pay: the relayed Create answer leads on (meta refresh) to the WeChat Pay page."""
    page.wait_for_url(f"{provider_origin}/opay/**", wait_until="domcontentloaded")
    page.wait_for_selector("button[name=action][value=pay]")
    shot(page, f"{prefix}-05-provider-page")
    page.click("button[name=action][value=pay]")


PAY = {"oen": pay_oen, "mypay": pay_mypay, "opay": pay_opay}


# ---------------------------------------------------------------- the main flow


@pytest.mark.parametrize("lang", ["zh_TW", "en"])
@pytest.mark.parametrize("provider", ["oen", "mypay", "opay"])
def test_order_link_pay_and_refund(new_context, live_server, provider, lang):
    words = WORDS[lang]
    prefix = f"{lang}-{provider}"

    # ---- the admin, on a phone, in zh-TW by default; English through the header's link
    admin = new_context(viewport=PHONE).new_page()
    login(admin, name=f"{prefix}-01-login")
    if lang == "en":
        admin.click("header .lang a")
        admin.wait_for_url("**/orders")
        assert admin.get_attribute("html", "lang") == "en"
    else:
        assert admin.get_attribute("html", "lang") == "zh-Hant-TW"
    assert admin.text_content("header nav a").strip() == words["orders"], f"the interface does not speak {lang}"

    order_id = build_order(admin, prefix, serial_suffix=f"-{provider}-{lang}")
    assert admin.get_attribute("[data-order-state]", "data-order-state") == "draft"
    check_saved_order(live_server, order_id)
    assert total(admin, "payable") == twd(PAYABLE)

    # ---- a payment link with the provider, shown as text and as a QR code
    admin.check(f"input[name=provider][value={provider}]")
    admin.click("form.provider-choice button.primary")
    admin.wait_for_selector("#customer-link")
    assert admin.text_content("section.payment h2").strip() == words["payment"]
    assert admin.get_attribute("[data-order-state]", "data-order-state") == "awaiting_payment"
    assert admin.locator(".qr svg").is_visible()
    link = admin.input_value("#customer-link")
    assert re.fullmatch(rf"{re.escape(live_server.url)}/pay/[A-Za-z0-9_-]+", link), link
    assert_fits_width(admin, "order page with the link")
    shot(admin, f"{prefix}-03-order-page-with-link")

    # ---- the customer: a fresh phone browser, no login
    customer = new_context(viewport=PHONE).new_page()
    customer.goto(link)
    if lang == "en":
        customer.click("header .lang a")
        customer.wait_for_url(link)
    assert customer.locator("header nav").count() == 0  # nothing of the merchant's back office
    assert "測試環境" in customer.text_content(".env-banner")  # simulated providers are never mistaken for real ones
    assert twd(PAYABLE) in customer.text_content(".customer .totals")
    assert_fits_width(customer, "customer pay page")
    shot(customer, f"{prefix}-04-customer-pay-page")
    customer.click("form button.primary")
    # the pay button leads to the provider's own origin (the sandbox's process and port), as in production
    assert live_server.sandbox.url != live_server.url
    PAY[provider](customer, prefix, live_server.sandbox.url)

    # ---- back on the portal's return page, which refreshes itself until the provider has answered
    customer.wait_for_url(re.compile(r"/pay/[A-Za-z0-9_-]+/return"))
    customer.wait_for_selector('.status-box[data-order-state="paid"]', timeout=20_000)
    assert words["paid_msg"] in customer.text_content(".status-box")
    assert twd(PAYABLE) in customer.text_content(".status-box")
    assert_fits_width(customer, "customer return page")
    shot(customer, f"{prefix}-06-return-page")

    # ---- the admin sees it paid
    admin.reload()
    wait_for_state(admin, "paid")
    assert_fits_width(admin, "order page, paid")
    shot(admin, f"{prefix}-07-order-page-paid")

    # ---- and refunds: form, confirmation, done
    amount, final_state = REFUNDS[provider]
    admin.click(f'section.payment a[href$="/orders/{order_id}/refunds"]')
    admin.wait_for_url(f"**/orders/{order_id}/refunds")
    assert words["refunds"] in admin.text_content("h1")
    admin.fill("[name=amount]", str(amount))
    admin.fill("[name=reason]", "客戶退貨 returned by the customer")
    if provider == "opay":
        admin.fill("[name=manual_reference]", "RF20250301001")
    assert_fits_width(admin, "refund form")
    shot(admin, f"{prefix}-08-refund-form")
    admin.click("form.refund-form button.primary")
    admin.wait_for_selector("[data-refund-amount]")
    assert admin.get_attribute("[data-refund-amount]", "data-refund-amount") == str(amount)
    assert admin.get_attribute("dl.confirm", "data-provider") == provider
    if provider == "mypay":  # the paid voucher is listed, the free one is not
        assert admin.locator("tr[data-voucher]").count() == 1
    assert_fits_width(admin, "refund confirmation")
    shot(admin, f"{prefix}-09-refund-confirmation")
    admin.click("form.actions button.danger")
    admin.wait_for_selector(".flash-success")
    assert admin.get_attribute("[data-order-state]", "data-order-state") == final_state
    assert admin.get_attribute("tr[data-refund-state]", "data-refund-state") == "succeeded"
    shot(admin, f"{prefix}-10-refund-done")

    admin.goto(f"/orders/{order_id}")
    wait_for_state(admin, final_state, reload=False)
    admin.click(f'section.payment a[href$="/orders/{order_id}/transactions"]')
    admin.wait_for_selector("section.checkout-live")
    assert admin.get_attribute("[data-order-state]", "data-order-state") == final_state
    assert_fits_width(admin, "transactions page")
    shot(admin, f"{prefix}-11-transactions")

    # ---- the customer's page says paid (the refund is the shop's business) and stays in the chosen language
    customer.goto(link)
    assert customer.get_attribute("[data-order-state]", "data-order-state") == final_state
    assert customer.get_attribute("html", "lang") == ("en" if lang == "en" else "zh-Hant-TW")
    with live_server.app.app_context():
        order = db.session.get(Order, order_id)
        assert (order.state, order.paid_amount, order.refunded_amount) == (final_state, PAYABLE, amount)


# ---------------------------------------------------------------- the builder without JavaScript


def test_order_builder_without_javascript(new_context, live_server):
    page = new_context(viewport=DESKTOP, java_script_enabled=False).new_page()
    login(page)
    page.goto("/orders/new")
    page.fill("[name=customer_name]", "陳大文")
    page.fill("[name=customer_email]", "tai@example.tw")
    fill_item(page, 0, ITEMS[0])
    page.click("button[name=add_item]")  # a round trip: the server adds the row and keeps what was typed
    page.wait_for_selector("[name=items-1-name]")
    assert page.input_value("[name=items-0-name]") == ITEMS[0][0]
    assert total(page, "subtotal") == twd(900)  # the server's totals of what was typed so far
    fill_item(page, 1, ITEMS[1])
    page.fill("[name=shipping_fee]", SHIPPING)
    for n, voucher in enumerate(VOUCHERS):
        page.click("button[name=add_voucher]")
        page.wait_for_selector(f"[name=vouchers-{n}-name]")
        fill_voucher(page, n, voucher)
    page.click("button[name=add_item]")  # a third, empty row is left out on saving
    page.wait_for_selector("[name=items-2-name]")
    assert [total(page, t) for t in ("subtotal", "shipping", "vouchers", "payable")] == [
        twd(SUBTOTAL),
        twd(80),
        "-" + twd(150),
        twd(PAYABLE),
    ]
    shot(page, "nojs-order-builder")
    page.click("[data-row=items]:nth-child(3) button[name=remove_item]")
    page.wait_for_load_state()
    assert page.locator("[data-row=items]").count() == 2
    page.click("button.primary[name=save]")
    page.wait_for_url(re.compile(r"/orders/\d+$"))
    assert page.get_attribute("[data-order-state]", "data-order-state") == "draft"
    check_saved_order(live_server, int(page.url.rsplit("/", 1)[1]))
