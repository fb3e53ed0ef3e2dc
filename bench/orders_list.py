"""The order list and its search on 100,000 orders, on SQLite and on PostgreSQL.

For each database (a fresh SQLite file, then a fresh PostgreSQL database `portal_bench_orders` when a server answers
on 127.0.0.1): migrate with `flask --app wsgi db upgrade`, seed two merchants' 100,000 orders (1 to 3 items each, a
checkout for every order past draft, created over 90 days, every order state, the three providers) with bulk inserts,
ANALYZE, then GET the list through the app's test client, logged in as a staff user of the bigger merchant: the first
page, the first page of paid orders, a search by part of a customer's name, by a whole name, by an order number,
seven Taipei days at one provider (with and without a state).
Prints the median of several requests of each, beside a bare baseline measured in the same run (a SELECT of 50 orders
by primary key, no route, no template): the ratio says how much the machine's noise is not the cause. On PostgreSQL
prints `EXPLAIN ANALYZE` of the SQL the list and the search run (captured from the requests), to show which indexes
they use; on SQLite its `EXPLAIN QUERY PLAN`. Asserts nothing.

    .venv/bin/python bench/orders_list.py [--orders 100000] [--runs 7] [--database both|sqlite|postgres]
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from html import unescape
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _common as common  # noqa: E402

STAFF = "staff@bench.example"
CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="csrf_token"')
SURNAMES = "王李張劉陳楊黃趙吳周林許鄭謝"
GIVEN = ("小明", "美玲", "志豪", "淑芬", "家豪", "怡君", "俊傑", "雅婷", "建宏", "佳穎", "冠宇", "宗翰")
LATIN = ("alice", "bob", "chen", "daniel", "emma", "frank", "grace", "henry")
# Order states with their share, and the checkout state that goes with each (none for a draft).
STATES = (
    ("draft", 10, None),
    ("awaiting_payment", 15, "awaiting_payment"),
    ("paid", 50, "paid"),
    ("failed", 8, "failed"),
    ("expired", 7, "expired"),
    ("cancelled", 3, "cancelled"),
    ("partially_refunded", 4, "partially_refunded"),
    ("refunded", 3, "refunded"),
)
PROVIDERS = ("oen", "mypay", "opay")
CHUNK = 5000


def seed_orders(app, merchants: list[int], count: int, rng: random.Random) -> dict:
    """`count` orders over the merchants (the first gets 3 of 4), with items and checkouts, by bulk inserts."""
    from sqlalchemy import insert

    from portal.extensions import db
    from portal.models import Checkout, Order, OrderItem

    now = datetime(2026, 11, 27, 12, 0, 0)
    states = [name for name, share, _c in STATES for _ in range(share)]
    checkout_state = {name: c for name, _share, c in STATES}
    picked = {}
    item_id = checkout_id = 0
    with app.app_context():
        for start in range(0, count, CHUNK):
            orders, items, checkouts = [], [], []
            for n in range(start + 1, min(start + CHUNK, count) + 1):
                merchant_id = merchants[0] if n % 4 else merchants[1]
                created = now - timedelta(seconds=rng.randrange(90 * 24 * 3600))
                state = rng.choice(states)
                name = rng.choice(SURNAMES) + rng.choice(GIVEN)
                number = f"A{created:%y%m%d}{n:06d}"
                lines = [(rng.randrange(100, 5000), rng.randint(1, 3)) for _ in range(rng.randint(1, 3))]
                subtotal = sum(price * quantity for price, quantity in lines)
                payable = subtotal + 60
                paid = payable if state in ("paid", "partially_refunded", "refunded") else 0
                refunded = {"partially_refunded": payable // 2, "refunded": payable}.get(state, 0)
                orders.append(
                    dict(
                        id=n,
                        merchant_id=merchant_id,
                        number=number,
                        customer_name=name,
                        customer_email=f"{rng.choice(LATIN)}{n}@example.com",
                        shipping_fee=60,
                        subtotal=subtotal,
                        voucher_total=0,
                        payable=payable,
                        paid_amount=paid,
                        refunded_amount=refunded,
                        note="",
                        state=state,
                        created_at=created,
                        updated_at=created,
                    )
                )
                for position, (price, quantity) in enumerate(lines):
                    item_id += 1
                    items.append(
                        dict(
                            id=item_id,
                            order_id=n,
                            position=position,
                            sku=f"S{position}",
                            name=f"商品 {position + 1}",
                            unit_price=price,
                            quantity=quantity,
                        )
                    )
                if checkout_state[state]:
                    checkout_id += 1
                    checkouts.append(
                        dict(
                            id=checkout_id,
                            order_id=n,
                            merchant_id=merchant_id,
                            provider=PROVIDERS[n % 3],
                            reference=f"R{n:011d}",
                            public_token=f"t{n:015d}",
                            amount=payable,
                            state=checkout_state[state],
                            expires_at=created + timedelta(days=1),
                            paid_amount=paid,
                            refunded_amount=refunded,
                            needs_attention=n % 97 == 0,
                            created_at=created,
                            updated_at=created,
                        )
                    )
                if n == count // 2 and merchant_id == merchants[0]:
                    picked = {"number": number, "name": name}
            db.session.execute(insert(Order), orders)
            db.session.execute(insert(OrderItem), items)
            if checkouts:
                db.session.execute(insert(Checkout), checkouts)
            db.session.commit()
        if db.engine.dialect.name == "postgresql":
            for table in ("order", "order_item", "checkout"):
                db.session.execute(
                    db.text(
                        f"SELECT setval(pg_get_serial_sequence('\"{table}\"', 'id'), (SELECT max(id) FROM \"{table}\"))"
                    )
                )
            db.session.commit()
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE")
    picked.update(items=item_id, checkouts=checkout_id)
    if not picked.get("number"):
        picked.update(number=orders[0]["number"], name=orders[0]["customer_name"])
    return picked


def login(client) -> None:
    page = client.get("/login").get_data(as_text=True)
    match = CSRF_RE.search(page)
    token = unescape(match.group(1) or match.group(2)) if match else ""
    done = client.post("/login", data={"email": STAFF, "password": common.PASSWORD, "csrf_token": token})
    if done.status_code != 302:
        raise RuntimeError(f"login failed: {done.status_code}")


def median_ms(run, runs: int) -> float:
    run()  # warm: the first request compiles templates and fills caches
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def captured_sql(app, client, url: str) -> list[tuple[str, object]]:
    """The statements (and their parameters) one GET of url runs that read the order table."""
    from sqlalchemy import event

    from portal.extensions import db

    seen = []

    def note(_conn, _cursor, statement, parameters, _context, _executemany):
        if 'FROM "order"' in statement or "FROM `order`" in statement:
            seen.append((statement, parameters))

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", note)
    try:
        client.get(url)
    finally:
        event.remove(engine, "before_cursor_execute", note)
    return seen


def explain(app, statement: str, parameters) -> list[str]:
    from portal.extensions import db

    with app.app_context(), db.engine.connect() as conn:
        if db.engine.dialect.name == "postgresql":
            rows = conn.exec_driver_sql("EXPLAIN (ANALYZE, COSTS OFF) " + statement, parameters).all()
            return [row[0] for row in rows]
        rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
        return [row[-1] for row in rows]


def run_database(label: str, database_url: str, args) -> tuple[list[list], list[str]]:
    from urllib.parse import quote

    from portal.extensions import db
    from portal.models import Merchant, Order

    started = time.perf_counter()
    common.migrate(database_url)
    app = common.make_app(database_url, 5000, WTF_CSRF_ENABLED=True)
    merchant_id = common.seed_merchant(app, staff=STAFF)
    with app.app_context():
        other = Merchant(slug="other", name="Other shop")
        db.session.add(other)
        db.session.commit()
        other_id = other.id
    picked = seed_orders(app, [merchant_id, other_id], args.orders, random.Random(args.seed))
    setup_s = time.perf_counter() - started
    print(
        f"  {label}: {args.orders} orders ({picked['items']} items, {picked['checkouts']} checkouts) seeded and "
        f"migrated in {setup_s:.1f} s"
    )
    client = app.test_client()
    login(client)
    name_part = picked["name"][1:]
    cases = [
        ("list, first page", "/orders"),
        ("list, paid, first page", "/orders?state=paid"),
        (f"search name part {name_part}", "/orders?q=" + quote(name_part)),
        (f"search name {picked['name']}", "/orders?q=" + quote(picked["name"])),
        (f"search number {picked['number']}", "/orders?q=" + picked["number"]),
        ("7 Taipei days + provider", "/orders?from=2026-11-21&to=2026-11-27&provider=mypay"),
        ("7 days + provider + paid", "/orders?from=2026-11-21&to=2026-11-27&provider=mypay&state=paid"),
    ]

    def bare() -> None:
        with app.app_context():
            ids = list(range(1000, 1050))
            db.session.execute(db.select(Order).where(Order.id.in_(ids)).limit(50)).scalars().all()
            db.session.remove()

    bare_ms = median_ms(bare, args.runs * 3)
    rows, problems = [], []
    for name, url in cases:
        status = client.get(url).status_code
        if status != 200:
            problems.append(f"{label}: {url} answered {status}")
        page_ms = median_ms(lambda url=url: client.get(url), args.runs)
        rows.append([label, name, f"{page_ms:.1f}", f"{bare_ms:.2f}", f"{page_ms / bare_ms:.1f}"])
    for name, url in (cases[0], cases[1], cases[2], cases[4], cases[5], cases[6]):
        print(f"\n  {label} plan of {name} ({url}):")
        for statement, parameters in captured_sql(app, client, url):
            print("    " + " ".join(statement.split())[:300])
            for line in explain(app, statement, parameters):
                print("      " + line)
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    return rows, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=7, help="requests timed per case (after one warm-up)")
    parser.add_argument("--database", choices=("both", "sqlite", "postgres"), default="both")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--keep", action="store_true", help="keep the PostgreSQL database portal_bench_orders")
    args = parser.parse_args(argv)
    common.install_cleanup()

    print("order list: GET /orders (first page, a state, searches) through the test client, logged in as staff")
    for line in common.machine_lines():
        print(line)
    rows, problems = [], []
    with tempfile.TemporaryDirectory(prefix="bench-orders-") as tmp:
        if args.database in ("both", "sqlite"):
            found_rows, found = run_database("SQLite", common.sqlite_url(Path(tmp)), args)
            rows += found_rows
            problems += found
        if args.database in ("both", "postgres"):
            url, about = common.postgres_url("portal_bench_orders")
            if url is None:
                print(f"  PostgreSQL NOT MEASURED: no server to use on 127.0.0.1 ({about})")
                problems.append(f"PostgreSQL not measured: {about}")
            else:
                try:
                    found_rows, found = run_database(" ".join(about.split()[:2]), url, args)
                finally:
                    if not args.keep:
                        common.drop_postgres_database(url)
                rows += found_rows
                problems += found
    print()
    headers = ["database", "request", "median ms", "bare ms", "ratio to bare"]
    print(common.table(headers, rows))
    print(
        f"median of {args.runs} requests after one warm-up; bare: SELECT of 50 orders by primary key "
        "(no route, no template), same process, same run"
    )
    common.report_problems(problems, "every request answered 200")
    return 0


if __name__ == "__main__":
    sys.exit(main())
