"""Staff tables and the navigation in Chromium (zh-TW, a 390×844 phone and a 1280×800 laptop): every table's cells
within the screen, on a phone each row a card whose cells show their column's name, the navigation one compact bar;
no console or CSP error (the context fixture fails the test on any). Screenshots go to test-output/screenshots/."""

from __future__ import annotations

import pytest

from portal import api_keys
from portal.extensions import db
from portal.merchant_webhooks import create_endpoint
from portal.models import Checkout, Merchant
from tests.flow.test_refund_flow import refund
from tests.support.browser import Browser
from tests.support.chromium import PHONE, assert_fits_width, login, shot
from tests.support.factories import make_checkout, make_order

pytestmark = pytest.mark.e2e
LAPTOP = {"width": 1280, "height": 800}

# Each table cell: inside the screen's width, visible, and (on a phone) showing its column's name before its content;
# a cell marked blank is empty (it may be hidden).
CELLS = """() => Array.from(document.querySelectorAll('main table')).filter(t => t.offsetParent !== null).map(t => {
  const heads = Array.from(t.querySelectorAll('thead th')).map(th => th.textContent.trim());
  return Array.from(t.querySelectorAll('tbody tr')).flatMap(tr => {
    const cells = Array.from(tr.children);
    return cells.filter(c => c.tagName === 'TD' && !c.hasAttribute('colspan')).map(td => {
      const r = td.getBoundingClientRect();
      const before = getComputedStyle(td, '::before');
      return {table: t.className, column: heads[cells.indexOf(td)] ?? null, label: td.dataset.label ?? null,
              blank: td.classList.contains('blank'), text: td.textContent.trim(),
              shown: before.display !== 'none' ? before.content : 'none',
              left: r.left, right: r.right, width: r.width, height: r.height};
    });
  });
})"""


def check_tables(page, what: str, phone: bool) -> int:
    """Checks every visible table on the page; returns how many cells were checked."""
    assert_fits_width(page, what)
    width = page.evaluate("window.innerWidth")
    cells = [cell for table in page.evaluate(CELLS) for cell in table]
    assert cells, f"{what}: no table cells"
    for cell in cells:
        where = f"{what}, table {cell['table']!r}, column {cell['column']!r}"
        assert cell["label"] is not None, f"{where}: cell without data-label"
        if cell["column"]:  # the data-label names the column its header names
            assert cell["label"] == cell["column"], where
        if cell["blank"]:  # a cell with nothing in it, hidden on a phone rather than showing a label alone
            assert cell["text"] == "", f"{where}: a cell marked blank holds {cell['text']!r}"
            continue
        assert cell["width"] > 0 and cell["height"] > 0, f"{where}: cell not visible"
        assert cell["left"] >= -1 and cell["right"] <= width + 1, f"{where}: cell outside the screen: {cell}"
        if phone and cell["label"]:
            assert cell["shown"] == f'"{cell["label"]}"', f"{where}: label not shown on a phone ({cell['shown']})"
    return len(cells)


def check_navigation(page, viewport, phone: bool) -> float:
    header = page.locator("header.topbar").bounding_box()
    if phone:
        assert header["height"] <= 0.12 * viewport["height"], f"navigation {header['height']}px high on a phone"
        # brand, the entries, who is logged in, logout and the language switch: all inside the one bar
        for selector in ("a.brand", "nav.nav", ".who", "button.link", ".lang a"):
            box = page.locator(f"header.topbar {selector}").bounding_box()
            assert box and box["y"] >= header["y"] and box["y"] + box["height"] <= header["y"] + header["height"] + 1
        assert page.locator("header.topbar nav.nav a").first.bounding_box()["height"] >= 44
    return header["height"]


@pytest.fixture
def desk(live_server):
    """A paid Oen order with a voucher and a partial refund (through the sandbox), its payment flagged for a person, a
    few more orders, an API key and a webhook endpoint, so that every staff table has rows."""
    admin = Browser(live_server.url)
    admin.login("admin@a.example")
    order_id = admin.new_order(items=((1200, 2), (350, 1)), vouchers=(("paid", 100),), shipping=60)
    admin.pay_oen(admin.create_link(order_id, "oen"))
    admin.wait_for_state(order_id, "paid")
    refund(admin, order_id, 500)
    with live_server.app.app_context():
        merchant_id = live_server.seed.merchant_id
        long_name = make_order(merchant_id, items=((98000, 3),), email="a.very.long.customer.address@example.com.tw")
        long_name.customer_name = "台北市信義區長長的公司名稱股份有限公司採購部"
        db.session.commit()
        make_checkout(long_name, "mypay", "failed")
        make_order(merchant_id, items=((650, 1),))
        # its payment flagged as a double payment: the advice, a link and a button fill the reference's cell
        paid = db.session.execute(db.select(Checkout).filter_by(order_id=order_id)).scalar_one()
        paid.needs_attention, paid.attention_reason = True, "paid_twice"
        api_keys.create_key(db.session.get(Merchant, merchant_id), "出貨系統", can_refund=True, user_id=None)
        create_endpoint(merchant_id, "https://shop.example.com.tw/hooks/checkout-portal/payments", description="官網")
        db.session.commit()
    return order_id


@pytest.mark.parametrize("viewport, name", [(PHONE, "phone"), (LAPTOP, "laptop")])
def test_staff_tables_fit_the_screen_and_the_navigation_is_compact(new_context, live_server, desk, viewport, name):
    phone = name == "phone"
    page = new_context(viewport=viewport).new_page()
    login(page, "admin@a.example")
    heights = {"orders": check_navigation(page, viewport, phone)}
    assert page.text_content("header nav a").strip() == "訂單"

    pages = {
        "orders": "/orders",
        "order": f"/orders/{desk}",
        "transactions": "/transactions",
        "order-transactions": f"/orders/{desk}/transactions",
        "refunds": f"/orders/{desk}/refunds",
        "callbacks": "/callbacks",
        "users": "/settings/users",
        "audit": "/settings/audit",
        "api-keys": "/settings/api-keys",
        "webhooks": "/settings/webhooks",
        "dashboard": "/dashboard",
    }
    counted = {}
    for key, path in pages.items():
        page.goto(path)
        if key == "dashboard":
            page.click(".chart-data summary")
        counted[key] = check_tables(page, f"{path} on a {name}", phone)
        heights[key] = check_navigation(page, viewport, phone)
        if phone and key in ("orders", "order", "transactions"):
            shot(page, f"staff-tables-{key}-phone")
        if key == "transactions":  # a reference (Oen's are 20 characters) on one line: its last one had wrapped
            lines = page.eval_on_selector_all("main td code", "els => els.map(e => e.getClientRects().length)")
            assert lines and set(lines) == {1}, f"references wrap on a {name}: {lines}"
    assert counted["orders"] >= 3 * 5 and counted["refunds"] >= 8
    if phone:  # and on a 360 px phone (many Android phones), where a reference's last character had wrapped
        page.set_viewport_size({"width": 360, "height": 740})
        for path in ("/transactions", f"/orders/{desk}/refunds"):
            page.goto(path)
            assert_fits_width(page, f"{path} at 360 px")
            lines = page.eval_on_selector_all("main td code", "els => els.map(e => e.getClientRects().length)")
            assert lines and set(lines) == {1}, f"references wrap at 360 px on {path}: {lines}"
        page.set_viewport_size(viewport)

    # on the order page, the refresh button and the links beside it stand apart (the first link was flush against it)
    page.goto(f"/orders/{desk}")
    button = page.locator("section.payment form[action$='/refresh'] button").bounding_box()
    link = page.locator("section.payment a[href$='/transactions']").bounding_box()
    if abs(button["y"] - link["y"]) < button["height"]:  # on one line
        assert link["x"] - (button["x"] + button["width"]) >= 7.5, f"refresh button and link flush on a {name}"
    else:
        assert link["y"] >= button["y"] + button["height"], f"refresh button and link overlap on a {name}"
    # an endpoint's deliveries, headed by its long address, stay within the screen too
    page.goto("/settings/webhooks")
    with page.expect_navigation(wait_until="load"):  # measured once its stylesheet applies, not while it loads
        page.click("main a[href^='/settings/webhooks/']")
    assert "/settings/webhooks/" in page.url
    assert_fits_width(page, f"an endpoint's deliveries on a {name}")
    # the API reference: its long paths and headers wrap instead of widening the page
    page.goto("/api/v1/docs")
    assert_fits_width(page, f"the API reference on a {name}")
    # the audit log in English: its longest names ("Provider's refund reference") leave their values room to read
    page.goto("/lang/en?next=/settings/audit")
    values = page.eval_on_selector_all(".audit .facts dd", "dds => dds.map(dd => dd.getBoundingClientRect().width)")
    assert values and min(values) >= 60, f"audit values squeezed on a {name}: {sorted(values)[:5]}"
    page.goto("/lang/zh_TW?next=/orders")

    if not phone:
        # the order's attempts: a flagged payment's advice in the reference's cell squeezed the provider's name and
        # the time beside it onto two lines each (「應援科 / 技」); they keep to one
        page.goto(f"/orders/{desk}")
        lines = page.evaluate(
            """() => Array.from(document.querySelectorAll('section.payment table.cards tbody tr')).flatMap(tr =>
                 [tr.children[1], tr.children[2], tr.children[4]].map(td => {
                   const r = document.createRange(); r.selectNodeContents(td.firstChild);
                   return [td.dataset.label, r.getClientRects().length]; }))"""
        )
        assert lines and all(count == 1 for _label, count in lines), f"attempt cells wrap at 1280: {lines}"

    if phone:
        # the order number heads its card, and leads to the order
        card = page.goto("/orders") and page.locator("table.orders tbody tr").first
        key = card.locator("td.key")
        assert key.evaluate("td => getComputedStyle(td).fontWeight") == "700"
        assert key.locator("a").bounding_box()["height"] >= 44
        # amounts stay right-aligned in their card
        amount = card.locator("td.num").bounding_box()
        text_right = card.locator("td.num").evaluate(
            "td => { const r = document.createRange(); r.selectNodeContents(td);"
            " return r.getBoundingClientRect().right; }"
        )
        assert abs(text_right - (amount["x"] + amount["width"])) <= 2
        # the refund check button is large enough for a thumb
        page.goto(f"/orders/{desk}/refunds")
        for button in page.locator("table.cards td button").all():
            assert button.bounding_box()["height"] >= 44
        # the sandbox's console, with the order's callbacks and journal, fits the phone too (it was 598 px wide)
        for path in ("/", "/?provider=oen", "/mail"):
            page.goto(live_server.sandbox.url + path)
            assert_fits_width(page, f"the sandbox's {path} on a phone")
        page.goto("/orders")
        # the entries scroll sideways inside the bar; the last one is still reached with a tap
        page.click("nav.nav a[href='/settings/audit']")
        page.wait_for_url("**/settings/audit")
    print(f"{name}: navigation heights {heights}")
