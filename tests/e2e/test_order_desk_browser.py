"""The order desk in Chromium (zh-TW, a laptop and a 390×844 phone): a draft edited and copied, the list filtered and
its CSV downloaded with the filtered rows. Screenshots go to test-output/screenshots/."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from pathlib import Path

import pytest

from portal.extensions import db
from portal.models import Order, utcnow
from tests.support.chromium import DESKTOP, PHONE, assert_fits_width, login, shot
from tests.support.factories import make_checkout, make_order

pytestmark = pytest.mark.e2e


def seed_orders(live_server) -> dict[str, int]:
    with live_server.app.app_context():
        draft = make_order(live_server.seed.merchant_id, items=((1200, 1),), shipping=60)
        paid = make_order(live_server.seed.merchant_id, items=((800, 2),), shipping=0)
        paid.customer_name = "=HYPERLINK(1)"
        make_checkout(paid, "oen", "paid")
        old = make_order(live_server.seed.merchant_id, items=((500, 1),))
        old.created_at = utcnow() - timedelta(days=40)
        make_checkout(old, "oen", "paid")
        db.session.commit()
        return {"draft": draft.id, "paid": paid.id, "old": old.id, "paid_number": paid.number, "old_number": old.number}


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["laptop", "phone"])
def test_a_draft_is_edited_and_copied_and_the_csv_has_the_filtered_rows(new_context, live_server, viewport):
    ids = seed_orders(live_server)
    page = new_context(viewport=viewport).new_page()
    login(page, "staff@a.example")
    size = "phone" if viewport == PHONE else "laptop"

    # edit the draft: the builder filled in, a new quantity, totals worked out again by the server
    page.goto(f"/orders/{ids['draft']}")
    if size == "phone":
        assert_fits_width(page, "order page")
        shot(page, "zh-orders-order-page-phone")
    page.click("[data-action=edit]")
    page.wait_for_url(f"**/orders/{ids['draft']}/edit")
    assert page.input_value("[name=items-0-unit_price]") == "1200"
    page.fill("[name=items-0-quantity]", "3")
    page.fill("[name=customer_name]", "林志豪")
    page.click("button.primary[name=save]")
    page.wait_for_url(f"**/orders/{ids['draft']}")
    assert page.text_content('[data-total="payable"]').strip() == "NT$3,660"
    assert "林志豪" in page.text_content("main")

    # copy it: a new draft opens in the builder with the same lines
    page.click("[data-action=duplicate]")
    page.wait_for_url("**/orders/*/edit")
    assert page.input_value("[name=items-0-quantity]") == "3"
    assert page.input_value("[name=customer_name]") == "林志豪"
    page.click("button.primary[name=save]")
    page.wait_for_url("**/orders/*")
    assert page.get_attribute("[data-order-state]", "data-order-state") == "draft"
    with live_server.app.app_context():
        copies = db.session.execute(db.select(Order).filter_by(customer_name="林志豪")).scalars().all()
        assert len(copies) == 2 and {c.payable for c in copies} == {3660}

    # the list filtered by provider and the last 30 days, then its CSV downloaded
    page.goto("/orders")
    page.select_option("#filter-provider", "oen")
    today = page.evaluate("new Date().toLocaleDateString('sv-SE', {timeZone: 'Asia/Taipei'})")
    page.fill("#filter-to", today)
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**/orders?*provider=oen*")
    listed = [n.strip() for n in page.locator("table.orders tbody td:first-child a").all_text_contents()]
    assert listed == [ids["paid_number"], ids["old_number"]]
    page.goto(f"/orders?provider=oen&from={thirty_days_ago(page)}")
    numbers = [n.strip() for n in page.locator("table.orders tbody td:first-child a").all_text_contents()]
    assert numbers == [ids["paid_number"]]
    if size == "phone":
        assert_fits_width(page, "order list")
        shot(page, "zh-orders-list-phone")
    with page.expect_download() as info:
        page.click("[data-export]")
    download = info.value
    assert download.suggested_filename.startswith("orders-") and download.suggested_filename.endswith(".csv")
    raw = Path(download.path()).read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    assert rows[0][0] == "訂單編號"
    assert [row[0] for row in rows[1:]] == [ids["paid_number"]]
    assert rows[1][2] == "'=HYPERLINK(1)"  # neutralised: a spreadsheet shows it as text


def thirty_days_ago(page) -> str:
    return page.evaluate("new Date(Date.now() - 30 * 86400000).toLocaleDateString('sv-SE', {timeZone: 'Asia/Taipei'})")
