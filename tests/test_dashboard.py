"""The dashboard: takings by Taipei day (paid less refunds less provider fees), per provider, open links, failed and
expired attempts, scoped to the user's merchant; the page in zh-TW and English with its server-drawn chart."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime, timedelta
from html import unescape

import pytest
from sqlalchemy import update

from portal import dashboard
from portal.extensions import db
from portal.filters import TAIPEI
from portal.models import Checkout, CheckoutEvent, CheckoutState, Refund, RefundState, utcnow
from portal.payments import attempts
from portal.payments.state import apply_state, move
from portal.providers.base import ProviderTransaction, State
from tests.support.apps import browser_default_client
from tests.support.constants import PASSWORD
from tests.support.factories import make_checkout, make_order

NOW = datetime(2025, 3, 10, 23, 45, tzinfo=TAIPEI)


def taipei(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    """A Taipei wall-clock time in 2025, as stored: naive UTC."""
    return datetime(2025, month, day, hour, minute, tzinfo=TAIPEI).astimezone(UTC).replace(tzinfo=None)


def _stamp_last_event(checkout: Checkout, at: datetime) -> None:
    last = db.session.scalars(
        db.select(CheckoutEvent.id).filter_by(checkout_id=checkout.id).order_by(CheckoutEvent.id.desc())
    ).first()
    db.session.execute(update(CheckoutEvent).where(CheckoutEvent.id == last).values(created_at=at))
    db.session.commit()


def pay(merchant_id: int, provider: str, amount: int, at: datetime | None = None, fee: int | None = None) -> Checkout:
    """A checkout the provider reported paid (through apply_state), its evidence dated `at` (default: now)."""
    order = make_order(merchant_id, items=((amount, 1),), shipping=0)
    checkout = make_checkout(order, provider)
    apply_state(checkout, State.PAID, source="callback", detail="{}", amount=amount, fee=fee)
    db.session.commit()
    if at is not None:
        _stamp_last_event(checkout, at)
    return checkout


def refund(checkout: Checkout, amount: int, at: datetime, state: str = RefundState.SUCCEEDED.value) -> None:
    db.session.add(
        Refund(
            checkout_id=checkout.id,
            order_id=checkout.order_id,
            merchant_id=checkout.merchant_id,
            amount=amount,
            reason="退貨",
            state=state,
            idempotency_key=secrets.token_hex(16),
            created_at=at,
        )
    )
    db.session.commit()


def end(merchant_id: int, to: CheckoutState, at: datetime, start: str = "awaiting_payment") -> None:
    """An attempt that failed or expired at `at` (start="creating": the provider refused to make the link)."""
    checkout = make_checkout(make_order(merchant_id), "oen", state=start)
    move(checkout, to, "callback", "{}")
    db.session.commit()
    _stamp_last_event(checkout, at)


@pytest.fixture
def shops(app, seed):
    """Merchant A's month (see the expected figures in the tests) and merchant B's money, which A never sees."""
    with app.app_context():
        a, b = seed.merchant_id, seed.other_merchant_id
        pay(a, "oen", 1000, taipei(3, 10, 23, 30), fee=30)  # today, late evening
        mypay = pay(a, "mypay", 2000, taipei(3, 10, 0, 30))  # today just after midnight: 3/9 in UTC
        pay(a, "mypay", 500, taipei(3, 9, 23, 30))  # yesterday, though 3/9 15:30 UTC like today's above
        pay(a, "opay", 700, taipei(3, 5, 12))  # within 7 days
        older = pay(a, "oen", 900, taipei(2, 20, 10), fee=27)  # within 30 days only
        pay(a, "oen", 400, taipei(2, 8, 10))  # 31 days ago: outside every period
        pay(a, "oen", 800, taipei(3, 11, 0, 5))  # tomorrow (Taipei) 00:05: not yet
        refund(mypay, 300, taipei(3, 10, 20))
        refund(mypay, 100, taipei(3, 10, 21), state=RefundState.FAILED.value)  # refused: not money back
        refund(older, 200, taipei(2, 21, 9))
        # the partial refund moves the checkout on: a state change among paid states is not a second payment
        apply_state(mypay, State.PARTIALLY_REFUNDED, source="query", detail="{}", refunded_amount=300)
        db.session.commit()
        end(a, CheckoutState.FAILED, taipei(3, 10, 12))
        end(a, CheckoutState.FAILED, taipei(3, 10, 13), start="creating")  # never reached the customer
        end(a, CheckoutState.EXPIRED, taipei(3, 7, 12))
        open_order = make_order(a, items=((1250, 1),), shipping=0)
        make_checkout(open_order, "oen")  # awaiting payment
        theirs = pay(b, "oen", 9999, taipei(3, 10, 12), fee=99)
        refund(theirs, 1, taipei(3, 10, 22))
        end(b, CheckoutState.EXPIRED, taipei(3, 10, 9))
        make_checkout(make_order(b, items=((5555, 1),), shipping=0), "mypay")
    return seed


def test_takings_today_7_and_30_days_net_of_refunds_and_fees_by_taipei_day(app, shops):
    with app.app_context():
        board = dashboard.build(shops.merchant_id, now=NOW)
    assert board.today.isoformat() == "2025-03-10"
    today, week, month = board.periods["today"], board.periods["week"], board.periods["month"]
    # today: 1000 (23:30) + 2000 (00:30) paid, 300 refunded (the refused 100 is not), Oen's fee 30
    assert (today.paid, today.payments, today.refunded, today.fees, today.net) == (3000, 2, 300, 30, 2670)
    # 3/4-3/10: + 500 yesterday + 700 on 3/5
    assert (week.paid, week.payments, week.net) == (4200, 4, 3870)
    # 2/9-3/10: + 900 on 2/20 (fee 27) with its 200 refund on 2/21; not the 400 of 2/8 nor tomorrow's 800
    assert (month.paid, month.payments, month.refunded, month.fees, month.net) == (5100, 5, 500, 57, 4543)
    assert board.daily[NOW.date()].net == 2670
    assert board.daily[NOW.date() - timedelta(days=1)].net == 500
    assert len(board.chart) == 30 and board.chart[-1] == (NOW.date(), 2670)


def test_takings_per_provider(app, shops):
    with app.app_context():
        board = dashboard.build(shops.merchant_id, now=NOW)
    net = {p: {k: f.net for k, f in periods.items()} for p, periods in board.providers.items()}
    assert net == {
        "mypay": {"today": 1700, "week": 2200, "month": 2200},
        "oen": {"today": 970, "week": 970, "month": 970 + 900 - 27 - 200},
        "opay": {"today": 0, "week": 700, "month": 700},
    }


def test_failed_and_expired_attempts_and_open_links(app, shops):
    with app.app_context():
        board = dashboard.build(shops.merchant_id, now=NOW)
    assert (board.periods["today"].failed, board.periods["today"].expired) == (1, 0)
    assert (board.periods["week"].failed, board.periods["week"].expired) == (1, 1)
    assert (board.open_links, board.open_value) == (1, 1250)


def test_another_merchants_money_is_its_own(app, shops):
    with app.app_context():
        mine = dashboard.build(shops.merchant_id, now=NOW)
        theirs = dashboard.build(shops.other_merchant_id, now=NOW)
    assert mine.periods["today"].net == 2670
    today = theirs.periods["today"]
    assert (today.paid, today.refunded, today.fees, today.net, today.expired) == (9999, 1, 99, 9899, 1)
    assert (theirs.open_links, theirs.open_value) == (1, 5555)


def test_a_fee_the_provider_reports_is_kept_when_its_transactions_are_applied(app, seed, monkeypatch):
    with app.app_context():
        checkout = make_checkout(make_order(seed.merchant_id, items=((1200, 1),), shipping=0), "oen")
        checkout.provider_checkout_id = "oen-checkout-1"
        db.session.commit()
        paid = ProviderTransaction(
            provider="oen", reference=checkout.reference, transaction_id="H1", state=State.PAID, amount=1200, fee=36
        )
        monkeypatch.setattr(attempts, "query_provider", lambda _checkout: [paid])
        changed, error = attempts.refresh_checkout(checkout.id)
        assert (changed, error) == (True, None)
        checkout = db.session.get(Checkout, checkout.id, populate_existing=True)
        assert (checkout.state, checkout.fee_amount) == ("paid", 36)
        assert dashboard.build(seed.merchant_id).periods["today"].net == 1164


def login(client, email: str = "staff@a.example") -> None:
    response = client.post("/login", data={"email": email, "password": PASSWORD})
    assert response.status_code == 302


def page_text(response) -> str:
    return unescape(response.get_data(as_text=True))


@pytest.fixture
def paid_today(app, seed):
    with app.app_context():
        pay(seed.merchant_id, "oen", 1200, fee=36)
        pay(seed.merchant_id, "mypay", 800)
        pay(seed.other_merchant_id, "opay", 9999)
    return seed


def test_the_page_in_zh_tw_by_default(app, paid_today):
    client = browser_default_client(app)
    login(client)
    response = client.get("/dashboard")
    assert response.status_code == 200
    html = page_text(response)
    assert "<h1>營收總覽</h1>" in html
    assert "台北時間" in html
    today = re.search(r'data-period="today">\s*<dt>今日</dt>\s*<dd class="num" data-net="(\d+)">([^<]+)</dd>', html)
    assert today and today.groups() == ("1964", "NT$1,964")  # 1200 − 36 + 800
    assert "NT$9,999" not in html and "NT$9,899" not in html  # the other shop's
    assert "近 30 日每日營收" in html and "<svg" in html


def test_the_page_in_english_with_chart_and_table(app, paid_today):
    client = app.test_client()  # asks for English
    login(client)
    html = page_text(client.get("/dashboard"))
    assert "<h1>Dashboard</h1>" in html and "Takings" in html
    today = r'data-provider="{}"><th scope="row">{}</th>\s*<td class="num"[^>]*data-period="today">{}<'
    assert re.search(today.format("oen", "Oen Tech", r"NT\$1,164"), html)
    assert re.search(today.format("mypay", "MyPay", r"NT\$800"), html)
    assert 'data-provider="opay"' not in html
    svg = re.search(r"<svg class=\"chart\".*?</svg>", html, re.S).group(0)
    assert len(re.findall(r"<rect class=\"chart-bar", svg)) == 30
    assert 'data-value="1964"' in svg
    assert " style=" not in html  # the CSP allows no inline styles
    assert re.search(
        r'<tr data-day="\d{4}-\d\d-\d\d"><th scope="row">[\d-]+</th><td class="num"[^>]*>NT\$2,000</td>', html
    )


def test_the_page_is_the_users_merchants_and_needs_a_login(app, paid_today):
    client = app.test_client()
    assert client.get("/dashboard").status_code == 302
    login(client, "admin@b.example")
    html = page_text(client.get("/dashboard"))
    assert 'data-net="9999"' in html and "NT$1,964" not in html


def test_dashboard_is_first_in_the_navigation_and_odd_query_parameters_are_ignored(app, paid_today):
    client = app.test_client()
    login(client)
    response = client.get("/dashboard?day=%00x&provider[]=1&days=-5")
    assert response.status_code == 200
    nav = re.search(r'<nav class="nav">(.*?)</nav>', page_text(response), re.S).group(1)
    assert re.findall(r">([^<]+)</a>", nav)[:2] == ["Orders", "Dashboard"]


def test_a_shop_with_no_payments_sees_zeros_not_an_error(app, seed):
    client = app.test_client()
    login(client)
    html = page_text(client.get("/dashboard"))
    assert 'data-net="0"' in html and "No payments in the last 30 days." in html


def test_days_of_refunds_above_takings_draw_below_the_line(app, seed):
    with app.app_context():
        checkout = pay(seed.merchant_id, "oen", 1000, utcnow() - timedelta(days=3))
        refund(checkout, 1000, utcnow())
    client = app.test_client()
    login(client)
    svg = re.search(r"<svg class=\"chart\".*?</svg>", page_text(client.get("/dashboard")), re.S).group(0)
    assert re.search(r'class="chart-bar negative today"[^>]*data-value="-1000"', svg)
