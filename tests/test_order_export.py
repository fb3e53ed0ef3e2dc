"""The order list's date, provider and state filters, and its CSV export (every matching row, streamed, for Excel)."""

from __future__ import annotations

import csv
import io
import re
import secrets
from datetime import datetime, timedelta

import pytest

from portal.extensions import db
from portal.models import AuditEvent, Checkout, Order

# Taipei is UTC+8 all year: the Taipei day 2025-03-14 is 2025-03-13 16:00 to 2025-03-14 16:00 UTC.
DAY_START_UTC = datetime(2025, 3, 13, 16, 0)


@pytest.fixture
def staff(client, auth):
    """Logged in as merchant A's staff, interface in English."""
    auth.login(email="staff@a.example")
    client.get("/lang/en")
    return client


def add_order(app, merchant_id, number, created, *, state="draft", providers=(), fees=(), **fields) -> int:
    """An order created at `created` (naive UTC) with one checkout per provider (the last one in the order's state)."""
    with app.app_context():
        values = dict(
            number=number,
            customer_name=f"Customer {number}",
            customer_email=f"{number.lower()}@example.tw",
            subtotal=1000,
            payable=1000,
            state=state,
            created_at=created,
        )
        values.update(fields)
        order = Order(merchant_id=merchant_id, **values)
        db.session.add(order)
        db.session.flush()
        for n, provider in enumerate(providers):
            db.session.add(
                Checkout(
                    order_id=order.id,
                    merchant_id=merchant_id,
                    provider=provider,
                    reference="C" + secrets.token_hex(8).upper(),
                    public_token=secrets.token_urlsafe(24),
                    amount=order.payable,
                    state=state if n == len(providers) - 1 else "failed",
                    expires_at=created + timedelta(days=1),
                    fee_amount=fees[n] if n < len(fees) else None,
                )
            )
        db.session.commit()
        return order.id


def listed(html: str) -> list[str]:
    return re.findall(r'<a href="/orders/\d+">([^<]+)</a>', html)


@pytest.fixture
def shop(app, seed):
    """Orders around the Taipei day 2025-03-14, at different providers, and one of another merchant on that day."""
    m = seed.merchant_id
    add_order(app, m, "EVE", DAY_START_UTC - timedelta(minutes=1))  # 2025-03-13 23:59 Taipei
    add_order(app, m, "MIDNIGHT", DAY_START_UTC, state="paid", providers=("oen",), fees=(28,))  # 03-14 00:00
    add_order(app, m, "NOON", DAY_START_UTC + timedelta(hours=12), state="paid", providers=("mypay",))
    add_order(app, m, "LAST", DAY_START_UTC + timedelta(hours=23, minutes=59), providers=("oen", "opay"))
    add_order(app, m, "NEXT", DAY_START_UTC + timedelta(days=1))  # 2025-03-15 00:00 Taipei
    add_order(app, seed.other_merchant_id, "THEIRS", DAY_START_UTC + timedelta(hours=1), providers=("oen",))


# --- filters --------------------------------------------------------------------------------------------------------


def test_date_range_is_taipei_calendar_days_both_ends_included(staff, shop):
    html = staff.get("/orders?from=2025-03-14&to=2025-03-14").get_data(as_text=True)
    assert listed(html) == ["LAST", "NOON", "MIDNIGHT"]
    assert listed(staff.get("/orders?from=2025-03-15").get_data(as_text=True)) == ["NEXT"]
    assert listed(staff.get("/orders?to=2025-03-13").get_data(as_text=True)) == ["EVE"]
    assert listed(staff.get("/orders?from=2025-03-13&to=2025-03-15").get_data(as_text=True)) == [
        "NEXT",
        "LAST",
        "NOON",
        "MIDNIGHT",
        "EVE",
    ]


def test_provider_filter_is_any_attempt_at_that_provider(staff, shop):
    assert listed(staff.get("/orders?provider=oen").get_data(as_text=True)) == ["LAST", "MIDNIGHT"]
    assert listed(staff.get("/orders?provider=opay").get_data(as_text=True)) == ["LAST"]
    assert listed(staff.get("/orders?provider=mypay").get_data(as_text=True)) == ["NOON"]


def test_filters_combine(staff, shop):
    html = staff.get("/orders?from=2025-03-14&to=2025-03-14&provider=oen&state=paid").get_data(as_text=True)
    assert listed(html) == ["MIDNIGHT"]
    html = staff.get("/orders?from=2025-03-14&to=2025-03-14&provider=oen&q=last").get_data(as_text=True)
    assert listed(html) == ["LAST"]
    assert "No orders match." in staff.get("/orders?from=2025-03-15&provider=oen").get_data(as_text=True)


def test_the_form_keeps_the_filters_and_the_pager_and_export_links_carry_them(app, seed, staff):
    for n in range(55):
        add_order(app, seed.merchant_id, f"P{n:03d}", DAY_START_UTC + timedelta(minutes=n), providers=("oen",))
    html = staff.get("/orders?from=2025-03-14&to=2025-03-14&provider=oen&state=draft").get_data(as_text=True)
    assert len(listed(html)) == 50
    assert 'name="from" value="2025-03-14"' in html and 'name="to" value="2025-03-14"' in html
    assert '<option value="oen" selected>' in html
    older = re.search(r'<a rel="next" href="([^"]+)"', html).group(1).replace("&amp;", "&")
    for part in ("from=2025-03-14", "to=2025-03-14", "provider=oen", "state=draft", "page=2"):
        assert part in older
    assert len(listed(staff.get(older).get_data(as_text=True))) == 5
    export = re.search(r'<a class="button" href="([^"]+)"[^>]*data-export', html).group(1).replace("&amp;", "&")
    assert export.startswith("/orders.csv?") and "provider=oen" in export and "from=2025-03-14" in export


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("from=2025-02-30", "from"),
        ("from=yesterday", "from"),
        ("to=2025-3-1", "to"),
        ("to=0001-01-01", "to"),
        ("from=9999-12-31", "from"),
        ("from=%EF%BC%92%EF%BC%90%EF%BC%92%EF%BC%95-03-14", "from"),  # full-width digits
        ("from=2025-03-15&to=2025-03-14", "to"),
        ("from=" + "9" * 5000, "from"),
    ],
)
def test_bad_dates_give_a_message_on_the_form_not_an_error(staff, shop, query, field):
    response = staff.get(f"/orders?{query}")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert f'id="filter-{field}-error"' in html
    assert "YYYY-MM-DD" in html or "before the start date" in html
    assert len(listed(html)) == 5  # the bad date is left out, the list still shows
    assert staff.get(f"/orders.csv?{query}").status_code == 200


def test_an_unknown_provider_or_state_is_ignored(staff, shop):
    assert len(listed(staff.get("/orders?provider=paypal&state=nope").get_data(as_text=True))) == 5


# --- CSV ------------------------------------------------------------------------------------------------------------


def read_csv(response_or_body) -> list[list[str]]:
    body = response_or_body if isinstance(response_or_body, bytes) else response_or_body.get_data()
    assert body.startswith(b"\xef\xbb\xbf")  # the byte-order mark Excel needs to read UTF-8
    return list(csv.reader(io.StringIO(body.decode("utf-8-sig"), newline="")))


def test_csv_has_every_matching_row_across_pages_and_only_this_merchants(app, seed, staff):
    for n in range(130):
        add_order(
            app, seed.merchant_id, f"M{n:03d}", DAY_START_UTC + timedelta(minutes=n), state="paid", providers=("oen",)
        )
    add_order(app, seed.merchant_id, "OTHERDAY", DAY_START_UTC + timedelta(days=3), state="paid", providers=("oen",))
    add_order(app, seed.merchant_id, "MYPAY", DAY_START_UTC, state="paid", providers=("mypay",))
    for n in range(5):
        add_order(app, seed.other_merchant_id, f"X{n}", DAY_START_UTC, state="paid", providers=("oen",))
    assert len(listed(staff.get("/orders?provider=oen&to=2025-03-14").get_data(as_text=True))) == 50
    response = staff.get("/orders.csv?provider=oen&to=2025-03-14&state=paid")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    rows = read_csv(response)
    numbers = [row[0] for row in rows[1:]]
    assert numbers == [f"M{n:03d}" for n in reversed(range(130))]  # newest first, all 130, not a page of 50
    everything = [row[0] for row in read_csv(staff.get("/orders.csv"))[1:]]
    assert len(everything) == 132 and not [n for n in everything if n.startswith("X")]


def test_csv_is_streamed_in_batches_as_an_attachment(app, seed, staff, monkeypatch):
    import portal.orders as orders_service

    monkeypatch.setattr(orders_service, "EXPORT_BATCH", 7)
    for n in range(20):
        add_order(app, seed.merchant_id, f"B{n:02d}", DAY_START_UTC + timedelta(minutes=n))
    response = staff.get("/orders.csv", buffered=False)
    assert response.is_streamed
    assert "Content-Length" not in response.headers
    disposition = response.headers["Content-Disposition"]
    assert re.fullmatch(r'attachment; filename="orders-\d{8}-\d{4}\.csv"', disposition)
    assert "no-store" in response.headers.get("Cache-Control", "")
    chunks = list(response.response)
    assert len(chunks) >= 4  # the header, then one chunk per batch of 7 orders
    assert [row[0] for row in read_csv(b"".join(chunks))[1:]] == [f"B{n:02d}" for n in reversed(range(20))]


def test_csv_columns_in_chinese_readable_with_fees_providers_and_invoice_data(app, seed, client, auth):
    auth.login(email="staff@a.example")
    client.get("/lang/zh_TW")
    add_order(
        app,
        seed.merchant_id,
        "A2503140001",
        DAY_START_UTC + timedelta(hours=1, minutes=5),
        state="paid",
        providers=("mypay", "oen"),
        fees=(None, 30),
        customer_name="陳美玲",
        paid_amount=1000,
        invoice_kind="business",
        invoice_tax_id="04595257",
        invoice_title="好茶有限公司",
        note="請下午送達",
    )
    rows = read_csv(client.get("/orders.csv"))
    assert rows[0][:4] == ["訂單編號", "建立時間（台北時間）", "顧客姓名", "顧客電子郵件"]
    row = dict(zip(rows[0], rows[1], strict=True))
    assert row["訂單編號"] == "A2503140001"
    assert row["建立時間（台北時間）"] == "2025-03-14 01:05:00"
    assert row["顧客姓名"] == "陳美玲"
    assert row["狀態"] == "已付款"
    assert (row["應付金額"], row["已付金額"], row["已退款金額"], row["手續費"]) == ("1000", "1000", "0", "30")
    assert row["金流商"] == "應援科技"  # the attempt that took the money
    assert row["統一編號"] == "04595257" and row["公司名稱"] == "好茶有限公司"
    assert row["備註"] == "請下午送達"


def test_formula_cells_are_neutralised(app, seed, staff):
    names = ['=HYPERLINK("http://evil")', "+1+1", "-2+3", "@SUM(A1)", "\tTab", "\rCR", "Safe-name"]
    for n, name in enumerate(names):
        add_order(
            app,
            seed.merchant_id,
            f"F{n}",
            DAY_START_UTC + timedelta(minutes=n),
            customer_name=name,
            note="=cmd|' /C calc'!A0",
        )
    rows = read_csv(staff.get("/orders.csv"))
    header = rows[0]
    by_number = {row[0]: dict(zip(header, row, strict=True)) for row in rows[1:]}
    got = [by_number[f"F{n}"]["Customer name"] for n in range(len(names))]
    assert got == ["'" + name for name in names[:-1]] + ["Safe-name"]
    assert all(row["Note"] == "'=cmd|' /C calc'!A0" for row in by_number.values())
    assert by_number["F0"]["Provider fee"] == ""  # no provider reported a fee


def test_csv_export_is_audited_with_its_filters(app, seed, staff):
    assert staff.get("/orders.csv?provider=oen&from=2025-03-01&q=wu").status_code == 200
    with app.app_context():
        event = db.session.execute(db.select(AuditEvent).filter_by(action="orders_exported")).scalar_one()
        assert event.merchant_id == seed.merchant_id and event.user_id is not None
        assert event.detail == {"date_from": "2025-03-01", "provider": "oen", "search": "wu"}


def test_csv_needs_a_login(app, seed, client):
    response = client.get("/orders.csv")
    assert response.status_code in (302, 401, 404)
    assert b"\xef\xbb\xbf" not in response.get_data()
