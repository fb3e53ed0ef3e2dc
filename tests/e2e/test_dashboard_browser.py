"""The dashboard in a real browser (Chromium, zh-TW, a 390×844 phone and a 1280×800 laptop): today's takings and the
server-drawn chart, nothing wider than the screen, no CSP refusal (the context fixture fails the test on any console
error). Screenshots go to test-output/screenshots/."""

from __future__ import annotations

import pytest

from portal.extensions import db
from portal.payments.state import apply_state
from portal.providers.base import State
from tests.support.chromium import PHONE, assert_fits_width, login, shot
from tests.support.factories import make_checkout, make_order

pytestmark = pytest.mark.e2e
LAPTOP = {"width": 1280, "height": 800}


def paid(merchant_id: int, provider: str, amount: int, fee: int | None = None) -> None:
    checkout = make_checkout(make_order(merchant_id, items=((amount, 1),), shipping=0), provider)
    apply_state(checkout, State.PAID, source="callback", detail="{}", amount=amount, fee=fee)
    db.session.commit()


@pytest.fixture
def takings(live_server):
    with live_server.app.app_context():
        paid(live_server.seed.merchant_id, "oen", 1200, fee=36)
        paid(live_server.seed.merchant_id, "mypay", 2800)
        paid(live_server.seed.other_merchant_id, "opay", 9999)
        make_checkout(make_order(live_server.seed.merchant_id, items=((650, 1),), shipping=0), "oen")
    return live_server


@pytest.mark.parametrize("viewport, name", [(PHONE, "phone"), (LAPTOP, "laptop")])
def test_staff_see_todays_takings_with_a_chart(new_context, takings, viewport, name):
    page = new_context(viewport=viewport).new_page()
    login(page, "staff@a.example")
    page.click("nav.nav a[href='/dashboard']")
    page.wait_for_url("**/dashboard")
    assert page.inner_text("h1") == "營收總覽"
    today = page.locator(".takings-figure[data-period=today]")
    assert today.locator("dt").inner_text() == "今日"
    assert today.locator("dd").inner_text() == "NT$3,964"  # 1,200 − 36 fee + 2,800; not the other shop's 9,999
    assert "NT$9,999" not in page.content()
    assert "待付款訂單：1 筆" in page.inner_text("[data-open-links]")

    chart = page.locator("svg.chart")
    assert chart.is_visible()
    assert chart.locator("rect.chart-bar").count() == 30
    assert chart.locator("rect.chart-bar.today").get_attribute("data-value") == "3964"
    box = chart.bounding_box()
    assert box["width"] <= viewport["width"] and box["height"] > 100
    bar = chart.locator("rect.chart-bar.today").bounding_box()
    assert bar["height"] > 50  # today's bar is the tallest, drawn at the chart's scale
    # the stylesheet (not an inline style) colours the bars and sizes the labels; labels stay legible on a phone
    assert chart.locator("rect.chart-bar.today").evaluate("e => getComputedStyle(e).fill") == "rgb(26, 127, 55)"
    label = chart.locator("text.chart-label").last.bounding_box()
    assert label["height"] >= 10
    assert_fits_width(page, f"dashboard on a {name}")
    shot(page, f"dashboard-01-{name}")

    page.click(".chart-data summary")
    assert page.locator("table.daily tbody tr").count() == 30
    assert "NT$3,964" in page.locator("table.daily tbody tr").first.inner_text()
    assert_fits_width(page, f"dashboard's daily figures on a {name}")
    if name == "phone":
        shot(page, "dashboard-02-phone-daily-figures")
