"""Callback intake through gunicorn: 5,000 O'Pay payment notices, 10% of them exact resends, at concurrency 16.

For each database (a fresh SQLite file, then a fresh PostgreSQL database `portal_bench` when a server answers on
127.0.0.1): migrate with `flask --app wsgi db upgrade`, make the open checkouts straight in the database (one per
distinct notice, O'Pay, awaiting payment), serve the portal with `.venv/bin/gunicorn -c gunicorn.conf.py wsgi:app`
(PROVIDER_ENV=sandbox, SANDBOX_URL at the sandbox: `sandbox:create_app()` in a gunicorn of its own, on its own SQLite
file, where the bench merchant's O'Pay credentials are registered), and POST every notice to /webhooks/opay from
`--concurrency` threads. The notices are built here, signed with the merchant's registered HashKey/HashIV, as the
provider would send them; the portal applies an O'Pay notice without asking the provider, so the sandbox should
answer no call during the run (printed). Half of the resends follow their original at once (so they race it), the
other half come later. Then count, from the database:
- lost: a distinct notice with no stored WebhookEvent, or whose checkout did not end paid;
- applied twice: a checkout with more than one applied callback CheckoutEvent;
both must be 0. Prints callbacks per second and the reply latencies too.

Beside the portal, on the same database and in the same run, a bare Flask + Flask-SQLAlchemy endpoint
(`bench.callback_intake:bare_app()`), served by gunicorn with the same workers and threads and sent the same schedule of
notices (notices of its own, to the same references), in turns with the portal: the schedule is cut into `--rounds`
consecutive slices, and each slice is sent to one side, then the other (who goes first alternates), so that both meet
the same stretches of a machine whose speed drifts. The bare endpoint does the least a correct receiver must do (read
the reference from the notice's encrypted Data, store the body under a unique key, sha256 of the body, in its own table
bare_event, a resend only answered; lock and move its own checkout row in bare_checkout from awaiting to paid, SELECT
... FOR UPDATE on PostgreSQL, BEGIN IMMEDIATE on SQLite with the portal's pragmas; commit once; answer 1|OK). Prints
`ratio to bare` (portal callbacks per second / bare callbacks per second) per database, and the CPU each side used
per notice, summed over its turns: its gunicorn (master and workers), PostgreSQL's processes, this client, and the
whole machine (/proc; the machine's figure includes whatever else ran meanwhile). A PostgreSQL that cannot be used is
listed as a problem. Asserts nothing.

    .venv/bin/python bench/callback_intake.py [--count 5000] [--duplicates 0.10] [--concurrency 16]
                                              [--rounds 10] [--database both|sqlite|postgres]
"""

from __future__ import annotations

import argparse
import hashlib
import random
import secrets
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests  # noqa: E402
from sqlalchemy import Column, Integer, MetaData, String, Table, Text  # noqa: E402

from bench import _common as common  # noqa: E402

AMOUNT = 1060
# The bare endpoint's own tables, in the portal's database.
BARE = MetaData()
bare_event = Table(
    "bare_event",
    BARE,
    Column("id", Integer, primary_key=True),
    Column("dedupe_key", String(64), nullable=False, unique=True),
    Column("body", Text, nullable=False),
)
bare_checkout = Table(
    "bare_checkout",
    BARE,
    Column("id", Integer, primary_key=True),
    Column("reference", String(32), nullable=False, unique=True),
    Column("state", String(24), nullable=False),
)


# ---------------------------------------------------------------- the bare Flask app (served by gunicorn)


def bare_app():
    """`bench.callback_intake:bare_app()`: POST /webhooks/opay stores the notice once and marks its checkout paid."""
    import os

    from flask import Flask, request
    from flask_sqlalchemy import SQLAlchemy
    from sqlalchemy import event, select, update
    from sqlalchemy.exc import IntegrityError

    from portal.providers.crypto import opay_decrypt_json

    app = Flask("bare")
    app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["DATABASE_URL"]
    db = SQLAlchemy(app, metadata=BARE)
    with app.app_context():
        engine = db.engine
    sqlite = engine.dialect.name == "sqlite"
    if sqlite:

        @event.listens_for(engine, "connect")
        def _connect(dbapi_connection, _record):
            dbapi_connection.isolation_level = None  # the BEGIN below, not the driver's
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")  # as portal/extensions.py
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(conn):
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    @app.get("/healthz")
    def healthz():
        return "ok"

    @app.post("/webhooks/opay")
    def opay():
        body = request.get_data(as_text=True)
        data = opay_decrypt_json(request.form["Data"], common.OPAY["opay_hash_key"], common.OPAY["opay_hash_iv"])
        try:
            db.session.execute(
                bare_event.insert().values(dedupe_key=hashlib.sha256(body.encode()).hexdigest(), body=body)
            )
        except IntegrityError:  # a resend: already stored (and applied)
            db.session.rollback()
            return "1|OK"
        row = db.session.execute(
            select(bare_checkout.c.id, bare_checkout.c.state)
            .where(bare_checkout.c.reference == data["MerchantTradeNo"])
            .with_for_update()
        ).one()
        if row.state == "awaiting_payment":
            db.session.execute(
                update(bare_checkout)
                .where(bare_checkout.c.id == row.id, bare_checkout.c.state == "awaiting_payment")
                .values(state="paid")
            )
        db.session.commit()
        return "1|OK"

    return app


def seed_bare(database_url: str, references: list[str]) -> None:
    """The bare endpoint's tables (create_all), one awaiting checkout per reference."""
    from sqlalchemy import create_engine

    engine = create_engine(database_url)
    try:
        BARE.drop_all(engine)
        BARE.create_all(engine)
        with engine.begin() as conn:
            conn.execute(bare_checkout.insert(), [{"reference": r, "state": "awaiting_payment"} for r in references])
    finally:
        engine.dispose()


def verify_bare(database_url: str) -> tuple[int, int]:
    """(stored notices, paid checkouts) of the bare endpoint."""
    from sqlalchemy import create_engine, func, select

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            stored = conn.execute(select(func.count()).select_from(bare_event)).scalar_one()
            paid = conn.execute(
                select(func.count()).select_from(bare_checkout).where(bare_checkout.c.state == "paid")
            ).scalar_one()
    finally:
        engine.dispose()
    return stored, paid


LOG_PROBLEMS = ("Traceback", "database is locked", "deadlock detected", "could not serialize", "WORKER TIMEOUT")


def open_checkouts(app, merchant_id: int, count: int) -> list[tuple[int, str]]:
    """`count` orders, each with one O'Pay checkout awaiting payment: [(checkout id, reference)]."""
    from portal.extensions import db
    from portal.models import Checkout, Order, OrderItem, utcnow
    from portal.payments import new_reference

    out = []
    with app.app_context():
        expires = utcnow() + timedelta(days=1)
        for start in range(0, count, 500):
            batch = []
            for n in range(start, min(start + 500, count)):
                order = Order(
                    merchant_id=merchant_id,
                    number=f"W{n:06d}",
                    customer_name="王小明",
                    customer_email=f"buyer{n}@example.com",
                    shipping_fee=60,
                    subtotal=AMOUNT - 60,
                    payable=AMOUNT,
                    state="awaiting_payment",
                )
                order.items.append(OrderItem(position=0, sku="S1", name="商品", unit_price=AMOUNT - 60, quantity=1))
                checkout = Checkout(
                    order=order,
                    merchant_id=merchant_id,
                    provider="opay",
                    reference=new_reference(),
                    public_token=secrets.token_urlsafe(24),
                    amount=AMOUNT,
                    state="awaiting_payment",
                    expires_at=expires,
                )
                batch.append(checkout)
            db.session.add_all(batch)
            db.session.commit()
            out.extend((c.id, c.reference) for c in batch)
    return out


def opay_notice(reference: str, n: int) -> str:
    """A valid O'Pay payment notice (as tests/test_webhooks.py builds one), form-encoded: the exact body sent."""
    from portal.providers.crypto import opay_encrypt

    data = {
        "MerchantID": common.OPAY["opay_merchant_id"],
        "MerchantTradeNo": reference,
        "RtnCode": "1",
        "RtnMsg": "交易成功",
        "TradeNo": f"26112210{n:06d}",
        "TradeAmt": str(AMOUNT),
        "PaymentDate": "2026/11/22 10:30:00",
        "TradeDate": "2026/11/22 10:29:00",
    }
    return urlencode(
        {
            "MerchantID": common.OPAY["opay_merchant_id"],
            "PlatformID": "",
            "Timestamp": str(int(time.time())),
            "RqID": str(uuid.uuid4()),
            "Revision": "1",
            "RtnCode": "1",
            "RtnMsg": "OK",
            "Data": opay_encrypt(data, common.OPAY["opay_hash_key"], common.OPAY["opay_hash_iv"]),
        }
    )


def schedule(distinct: int, duplicates: int, rng: random.Random) -> list[int]:
    """The order of sending: every distinct notice once, plus resends (half right after, half later)."""
    order = list(range(distinct))
    rng.shuffle(order)
    resent = rng.sample(range(distinct), min(duplicates, distinct))
    position = {n: i for i, n in enumerate(order)}
    soon, late = resent[: len(resent) // 2], resent[len(resent) // 2 :]
    inserts = [(position[n] + 1, n) for n in soon]
    inserts += [(rng.randint(position[n] + 1, distinct), n) for n in late]
    for at, n in sorted(inserts, reverse=True):
        order.insert(at, n)
    return order


def verify(app, checkouts: list[tuple[int, str]], bodies: list[str], sent: Counter) -> dict:
    """Lost and applied-twice counts, and what the database holds, for the notices that were sent."""
    from sqlalchemy import func

    from portal.extensions import db
    from portal.models import Checkout, CheckoutEvent, WebhookEvent

    with app.app_context():
        states = dict(db.session.execute(db.select(Checkout.id, Checkout.state)).all())
        events = {
            key: (status, attempts)
            for key, status, attempts in db.session.execute(
                db.select(WebhookEvent.dedupe_key, WebhookEvent.status, WebhookEvent.attempts)
            ).all()
        }
        applied = dict(
            db.session.execute(
                db.select(CheckoutEvent.checkout_id, func.count())
                .where(CheckoutEvent.source == "callback", CheckoutEvent.applied.is_(True))
                .group_by(CheckoutEvent.checkout_id)
            ).all()
        )
    lost = no_event = not_paid = twice = attempts_off = 0
    for n, times in sent.items():
        checkout_id, _reference = checkouts[n]
        key = "opay:" + hashlib.sha256(bodies[n].encode()).hexdigest()
        event = events.get(key)
        if event is None:
            no_event += 1
        elif event[1] != times:
            attempts_off += 1
        if states.get(checkout_id) != "paid":
            not_paid += 1
        if event is None or states.get(checkout_id) != "paid":
            lost += 1
        if applied.get(checkout_id, 0) > 1:
            twice += 1
    return {
        "lost": lost,
        "no_event": no_event,
        "not_paid": not_paid,
        "applied_twice": twice,
        "attempts_off": attempts_off,
        "event_status": Counter(status for status, _attempts in events.values()),
    }


def run_database(label: str, database_url: str, args, tmp: Path) -> tuple[list, list[str]]:
    """The whole benchmark on one database: (table row, problems)."""
    problems: list[str] = []
    duplicates = round(args.count * args.duplicates)
    distinct = args.count - duplicates
    started = time.perf_counter()
    common.migrate(database_url)
    port, bare_port = common.free_port(), common.free_port()
    app = common.make_app(database_url, port)
    merchant_id = common.seed_merchant(app)
    checkouts = open_checkouts(app, merchant_id, distinct)
    seed_bare(database_url, [reference for _id, reference in checkouts])
    setup_s = time.perf_counter() - started
    rng = random.Random(args.seed)
    order = schedule(distinct, duplicates, rng)
    sandbox = common.sandbox_server(
        f"sandbox-{label.split()[0]}", tmp, port, SANDBOX_LATENCY_MS=0, GUNICORN_WORKERS=1, GUNICORN_THREADS=4
    )
    sizing = {"GUNICORN_WORKERS": args.workers, "GUNICORN_THREADS": args.threads}
    env = common.portal_env(database_url, port, sandbox.url, **sizing)
    server = common.Server(f"portal-{label}", "wsgi:app", env, port, tmp, "/healthz")
    bare_env = common.portal_env(database_url, bare_port, None, **sizing)
    bare = common.Server(f"bare-{label}", "bench.callback_intake:bare_app()", bare_env, bare_port, tmp, "/healthz")
    servers = (sandbox, server, bare)
    try:
        for each in servers:
            each.start()
        # Built just before sending: O'Pay notices carry a timestamp the portal holds to 10 minutes. The bare endpoint
        # is sent notices of its own (the same references and schedule), each side's resends exact copies of its own.
        bodies = [opay_notice(reference, n) for n, (_id, reference) in enumerate(checkouts)]
        bare_bodies = [opay_notice(reference, n) for n, (_id, reference) in enumerate(checkouts)]
        database = None if database_url.startswith("sqlite") else "postgres"
        meter, bare_meter = common.CpuMeter(server, database), common.CpuMeter(bare, database)
        load, bare_load, ratios = common.alternate(
            order,
            args.rounds,
            meter.metered(lambda part: send(server.url, bodies, part, args)),
            bare_meter.metered(lambda part: send(bare.url, bare_bodies, part, args)),
        )
    except BaseException:
        for each in servers:
            print(f"--- {each.name} log (tail)\n{each.tail()}")
        raise
    finally:
        for each in reversed(servers):
            each.stop()
    sent = Counter(int(r.note.split(" ", 1)[0]) for r in load.results)
    found = verify(app, checkouts, bodies, sent)
    problems += check_bare(label, database_url, bare, bare_load)
    with app.app_context():
        from portal.extensions import db

        db.engine.dispose()
    ratio = load.rate / bare_load.rate if bare_load.rate else 0.0
    delivered_distinct = len(sent)
    delivered_dups = load.done - delivered_distinct
    row = [
        label,
        f"{load.done} ({delivered_dups} dup)",
        f"{load.wall:.1f}",
        f"{load.rate:.0f}",
        f"{load.pct(50) * 1000:.0f}",
        f"{load.pct(99) * 1000:.0f}",
        load.failed,
        found["lost"],
        found["applied_twice"],
        f"{bare_load.rate:.0f}",
        f"{bare_load.pct(50) * 1000:.0f}",
        f"{bare_load.pct(99) * 1000:.0f}",
        f"{ratio:.2f}",
    ]
    print(
        f"  {label}: setup {setup_s:.1f} s ({distinct} open checkouts), sent {load.done} in {load.wall:.1f} s; "
        f"callbacks stored by status {dict(found['event_status'])}; calls to the sandbox {sandbox.served()}"
    )
    print(
        f"  {label}: ratio to bare: {ratio:.2f} (portal {load.rate:.0f}/s, p50 {load.pct(50) * 1000:.0f} ms, "
        f"p99 {load.pct(99) * 1000:.0f} ms; bare {bare_load.rate:.0f}/s, p50 {bare_load.pct(50) * 1000:.0f} ms, "
        f"p99 {bare_load.pct(99) * 1000:.0f} ms); in its {len(ratios)} rounds: {common.spread(ratios)}"
    )
    print(f"  {label}: {cpu_line(meter, bare_meter)}")
    if load.stopped_by_time:
        problems.append(f"{label}: stopped by the time limit ({args.time_limit:g} s a round) after {load.done} sent")
    if found["lost"]:
        problems.append(
            f"{label}: {found['lost']} lost ({found['no_event']} with no stored callback, "
            f"{found['not_paid']} checkouts not paid)"
        )
    if found["applied_twice"]:
        problems.append(f"{label}: {found['applied_twice']} checkouts with more than one applied callback")
    if found["attempts_off"]:
        problems.append(f"{label}: {found['attempts_off']} stored callbacks whose attempts differ from times sent")
    replies = Counter(f"HTTP {r.status} {' '.join(r.note.split()[1:])[:100]}" for r in load.results if not r.ok)
    for note, count in replies.most_common(5):
        problems.append(f"{label}: {count} x {note}")
    for each in (server, sandbox):
        problems += log_problems(label, each)
    return row, problems


def cpu_line(meter: common.CpuMeter, bare_meter: common.CpuMeter) -> str:
    """CPU milliseconds per notice, each side's: where the portal's time goes beyond the bare endpoint's."""
    mine, bare = meter.per_request_ms(), bare_meter.per_request_ms()
    parts = [
        ("gunicorn", "server"),
        ("PostgreSQL", "database"),
        ("this client", "client"),
        ("whole machine", "machine"),
    ]
    shown = [(name, key) for name, key in parts if key != "database" or meter.database]
    figures = ", ".join(f"{name} {mine[key]:.2f} ({bare[key]:.2f})" for name, key in shown)
    cpu_ratio = bare["machine"] / mine["machine"] if mine["machine"] else 0.0
    return f"CPU ms per notice, portal (bare): {figures}; bare/portal of the machine's CPU: {cpu_ratio:.2f}"


def send(base: str, bodies: list[str], part: list[int], args) -> common.Load:
    """POST the notices numbered in `part`, in that order, to base/webhooks/opay from args.concurrency threads."""
    url = base + "/webhooks/opay"
    headers = {"Content-Type": "application/x-www-form-urlencoded"}

    def call(session: requests.Session, n: int) -> common.Result:
        result = common.timed_post(
            session, url, lambda r: r.status_code == 200 and r.text == "1|OK", data=bodies[n], headers=headers
        )
        result.note = f"{n} {result.note}"
        return result

    return common.drive(part, call, concurrency=args.concurrency, time_limit=args.time_limit)


def log_problems(label: str, server: common.Server) -> list[str]:
    """What a server's log shows that should not be there (its first traceback printed)."""
    problems = []
    for needle in LOG_PROBLEMS:
        if server.log_count(needle):
            problems.append(f"{label}: {server.name} log has {server.log_count(needle)} x {needle!r}")
    if server.log_count("Traceback"):
        print(f"--- {server.name}: first traceback in its log\n{server.first_traceback()}")
    return problems


def check_bare(label: str, database_url: str, server: common.Server, load: common.Load) -> list[str]:
    """The bare endpoint's own count: every distinct notice it was sent stored once and its checkout paid."""
    problems: list[str] = []
    distinct = len({int(r.note.split(" ", 1)[0]) for r in load.results})
    stored, paid = verify_bare(database_url)
    if stored != distinct or paid != distinct:
        problems.append(f"{label}: bare endpoint stored {stored} and paid {paid} of {distinct} distinct notices")
    if load.failed:
        problems.append(f"{label}: bare endpoint answered {load.failed} callbacks other than 1|OK")
    if load.stopped_by_time:
        problems.append(f"{label}: bare endpoint stopped by the time limit after {load.done} callbacks")
    return problems + log_problems(label, server)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=5000, help="callbacks sent, resends included")
    parser.add_argument("--duplicates", type=float, default=0.10, help="share of the callbacks that are resends")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--workers", type=int, default=4, help="GUNICORN_WORKERS")
    parser.add_argument("--threads", type=int, default=4, help="GUNICORN_THREADS")
    parser.add_argument("--rounds", type=int, default=10, help="turns of the portal and the bare endpoint, in each")
    parser.add_argument("--time-limit", type=float, default=240, help="seconds of sending a round, then it stops")
    parser.add_argument("--database", choices=("both", "sqlite", "postgres"), default="both")
    parser.add_argument("--seed", type=int, default=7, help="of the sending order")
    parser.add_argument("--keep", action="store_true", help="keep the PostgreSQL database portal_bench afterwards")
    args = parser.parse_args(argv)
    common.install_cleanup()

    duplicates = round(args.count * args.duplicates)
    print("callback intake: O'Pay payment notices to POST /webhooks/opay through gunicorn, the sandbox in its own")
    for line in common.machine_lines():
        print(line)
    print(
        f"settings: {args.count} callbacks ({args.count - duplicates} distinct, each to its own open checkout, "
        f"+ {duplicates} exact resends, half right after the original), concurrency {args.concurrency}, "
        f"gunicorn gthread {args.workers} workers x {args.threads} threads, {args.rounds} rounds in turns with the "
        f"bare endpoint, time limit {args.time_limit:g} s a round"
    )
    rows, problems = [], []
    with tempfile.TemporaryDirectory(prefix="bench-callbacks-") as tmp:
        if args.database in ("both", "sqlite"):
            row, found = run_database("SQLite", common.sqlite_url(Path(tmp)), args, Path(tmp))
            rows.append(row)
            problems += found
        if args.database in ("both", "postgres"):
            url, about = common.postgres_url("portal_bench")
            if url is None:
                print(f"  PostgreSQL NOT MEASURED: no server to use on 127.0.0.1 ({about})")
                problems.append(f"PostgreSQL not measured: no server to use on 127.0.0.1 ({about})")
            else:
                try:
                    row, found = run_database(" ".join(about.split()[:2]), url, args, Path(tmp))
                finally:
                    if not args.keep:
                        common.drop_postgres_database(url)
                rows.append(row)
                problems += found
    print()
    headers = ["database", "callbacks", "wall s", "per s", "p50 ms", "p99 ms", "not 1|OK", "lost", "applied twice"]
    headers += ["bare per s", "bare p50 ms", "bare p99 ms", "ratio to bare"]
    print(common.table(headers, rows))
    print(
        "ratio to bare: portal callbacks per second / the bare endpoint's (same database, schedule, gunicorn; in turns)"
    )
    print("lost: no stored WebhookEvent or checkout not paid; applied twice: >1 applied callback event per checkout")
    common.report_problems(problems, "every callback was answered 1|OK; none lost, none applied twice")
    return 0


if __name__ == "__main__":
    sys.exit(main())
