"""Link creation through gunicorn against the sandbox in its own gunicorn, at 0 ms and 200 ms provider latency.

The portal is served by `.venv/bin/gunicorn -c gunicorn.conf.py wsgi:app` (a fresh SQLite file, migrated with
`flask --app wsgi db upgrade`, PROVIDER_ENV=sandbox, SANDBOX_URL at the sandbox). The sandbox is `sandbox:create_app()`
in a gunicorn of its own for each latency, as an outside provider would be: its own SQLite file, the bench merchant's
MyPay store registered with `flask --app sandbox merchant add` before it starts, SANDBOX_LATENCY_MS=0 then 200 in its
environment. Logged-in staff sessions POST /orders/<id>/checkout with provider=mypay for pre-made orders (one request
each, redirect not followed), from `--concurrency` threads. Beside it a bare Flask app, served the same way by
gunicorn, whose one endpoint sends the same MyPay api/orders request (portal.providers.mypay.MyPayProvider) to the same
sandbox, with no database work of its own. The two are driven in turns: the measured orders are cut into `--rounds`
slices, each sent to one side, then the same number of calls to the other (who goes first alternates), so that both
meet the same stretches of a machine whose speed drifts. Prints requests per second, p50 and p99 of both, and their
ratios (and each round's). Asserts nothing.

    .venv/bin/python bench/link_creation.py [--requests 600] [--rounds 4] [--concurrency 8] [--workers 4] [--threads 8]
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import secrets
import sys
import tempfile
import threading
from collections import Counter
from html import unescape
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests  # noqa: E402

from bench import _common as common  # noqa: E402

LATENCIES_MS = (0, 200)
ITEM_PRICE, SHIPPING = 1000, 60
CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="csrf_token"')


# ---------------------------------------------------------------- the bare Flask app (served by gunicorn)


def bare_app():
    """`bench.link_creation:bare_app()`: POST /link sends one MyPay api/orders request; nothing else."""
    from flask import Flask

    from portal.config import TEST_MYPAY_AGENT_KEY, TEST_MYPAY_AGENT_UID
    from portal.providers.base import CheckoutRequest, LineItem, ProviderError
    from portal.providers.mypay import MyPayProvider

    app = Flask("bare")
    api_url = os.environ["BENCH_MYPAY_API_URL"]
    return_base = os.environ.get("BENCH_RETURN_BASE", "http://127.0.0.1:5000")
    local = threading.local()

    @app.get("/healthz")
    def healthz():
        return "ok"

    @app.post("/link")
    def link():
        session = getattr(local, "session", None)
        if session is None:  # one reused session per thread, as portal.gateways.http_session does
            session = local.session = requests.Session()
        provider = MyPayProvider(
            api_url=api_url,
            agent_uid=TEST_MYPAY_AGENT_UID,
            agent_key=TEST_MYPAY_AGENT_KEY,
            store_uid=common.MYPAY_STORE_UID,
            timeout=10,
            session=session,
        )
        reference = "B" + secrets.token_hex(9).upper()
        token = secrets.token_urlsafe(24)
        request = CheckoutRequest(
            reference=reference,
            amount=ITEM_PRICE + SHIPPING,
            items=(LineItem("S1", "商品 1", ITEM_PRICE, 1),),
            shipping_fee=SHIPPING,
            customer_name="林小華",
            customer_email="buyer@example.com",
            customer_id=secrets.token_hex(10),
            customer_ip="127.0.0.1",
            success_url=f"{return_base}/pay/{token}/return",
            failure_url=f"{return_base}/pay/{token}/return",
            notify_url=f"{return_base}/webhooks/mypay",
            description=reference,
        )
        try:
            return provider.create_checkout(request).url
        except ProviderError as exc:  # as the portal does: no 500, the provider's refusal is reported
            return f"{exc.code}: {exc.message_en}", 502

    return app


# ---------------------------------------------------------------- setting up


def make_orders(app, merchant_id: int, count: int) -> list[int]:
    """`count` draft orders (one item, shipping), straight into the database."""
    from portal.extensions import db
    from portal.models import Order, OrderItem

    ids = []
    with app.app_context():
        for start in range(0, count, 200):
            batch = []
            for n in range(start, min(start + 200, count)):
                order = Order(
                    merchant_id=merchant_id,
                    number=f"L{n:06d}",
                    customer_name="林小華",
                    customer_email=f"buyer{n}@example.com",
                    shipping_fee=SHIPPING,
                    subtotal=ITEM_PRICE,
                    payable=ITEM_PRICE + SHIPPING,
                    state="draft",
                )
                order.items.append(OrderItem(position=0, sku="S1", name="商品 1", unit_price=ITEM_PRICE, quantity=1))
                batch.append(order)
            db.session.add_all(batch)
            db.session.commit()
            ids.extend(o.id for o in batch)
    return ids


def csrf_of(html: str) -> str:
    match = CSRF_RE.search(html)
    if not match:
        raise RuntimeError("no CSRF token on the page")
    return unescape(match.group(1) or match.group(2))


def staff_sessions(base: str, email: str, count: int, order_id: int) -> list[tuple[dict, str]]:
    """`count` separate logins of the staff user: (cookies, CSRF token) for each."""
    out = []
    for _ in range(count):
        http = requests.Session()
        form = {"email": email, "password": common.PASSWORD, "csrf_token": csrf_of(http.get(f"{base}/login").text)}
        page = http.post(f"{base}/login", data=form, timeout=30)
        if not page.url.endswith("/orders"):
            raise RuntimeError(f"login failed: {page.status_code} {page.url}")
        token = csrf_of(http.get(f"{base}/orders/{order_id}", timeout=30).text)
        out.append((http.cookies.get_dict(), token))
        http.close()
    return out


def run_portal(base: str, logins, order_ids: list[int], *, args) -> common.Load:
    """POST /orders/<id>/checkout provider=mypay once per order; each thread keeps one login's cookie as it was."""

    def call(session: requests.Session, order_id: int) -> common.Result:
        cookies, token = session.bench_login
        session.cookies.clear()  # the flash message would pile up in the cookie otherwise (redirect not followed)
        result = common.timed_post(
            session,
            f"{base}/orders/{order_id}/checkout",
            lambda r: r.status_code == 302 and f"/orders/{order_id}" in r.headers.get("Location", ""),
            data={"provider": "mypay", "csrf_token": token},
            cookies=cookies,
            allow_redirects=False,
        )
        result.note = result.note or str(order_id)
        return result

    def session_for(n: int) -> requests.Session:
        session = requests.Session()
        session.bench_login = logins[n % len(logins)]
        return session

    return common.drive(
        order_ids, call, concurrency=args.concurrency, time_limit=args.time_limit, session_for=session_for
    )


def run_bare(base: str, jobs: list, *, args) -> common.Load:
    """POST /link to the bare endpoint once per job."""

    def call(session: requests.Session, _job) -> common.Result:
        return common.timed_post(session, f"{base}/link", lambda r: r.status_code == 200 and "/payment/" in r.text)

    return common.drive(jobs, call, concurrency=args.concurrency, time_limit=args.time_limit)


def outcomes(app, order_ids: list[int]) -> Counter:
    """What became of the checkouts opened for these orders: state, and the error of the failed ones."""
    from portal.extensions import db
    from portal.models import Checkout

    found: Counter = Counter()
    with app.app_context():
        rows = db.session.execute(
            db.select(Checkout.order_id, Checkout.state, Checkout.last_error).where(Checkout.order_id.in_(order_ids))
        ).all()
        seen = {row.order_id for row in rows}
        for row in rows:
            found[row.state if row.state != "failed" else f"failed ({(row.last_error or '')[:60]})"] += 1
        missing = len(set(order_ids) - seen)
        if missing:
            found["no checkout"] += missing
    return found


def cpu_line(meter, bare_meter, provider, bare_provider) -> str:
    """CPU milliseconds per link, each side's (portal, then bare in brackets): its gunicorn, the sandbox's gunicorn
    while it ran, the database server (PostgreSQL), this client and the whole machine."""
    mine, bare = meter.per_request_ms(), bare_meter.per_request_ms()
    sandbox, bare_sandbox = provider.per_request_ms()["server"], bare_provider.per_request_ms()["server"]
    figures = [f"gunicorn {mine['server']:.2f} ({bare['server']:.2f})", f"sandbox {sandbox:.2f} ({bare_sandbox:.2f})"]
    if meter.database:
        figures.append(f"PostgreSQL {mine['database']:.2f} ({bare['database']:.2f})")
    figures += [f"this client {mine['client']:.2f} ({bare['client']:.2f})"]
    figures += [f"whole machine {mine['machine']:.2f} ({bare['machine']:.2f})"]
    cpu_ratio = bare["machine"] / mine["machine"] if mine["machine"] else 0.0
    return f"CPU ms per link, portal (bare): {', '.join(figures)}; bare/portal of the machine's CPU: {cpu_ratio:.2f}"


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=600, help="link creations per latency (and bare calls)")
    parser.add_argument("--rounds", type=int, default=4, help="turns of the portal and the bare endpoint, each")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=4, help="GUNICORN_WORKERS of each server")
    parser.add_argument("--threads", type=int, default=8, help="GUNICORN_THREADS of each server")
    parser.add_argument("--warmup", type=int, default=16, help="untimed requests before each measured run")
    parser.add_argument("--time-limit", type=float, default=90, help="seconds per measured round, then it stops")
    parser.add_argument("--latency", type=int, nargs="*", default=list(LATENCIES_MS), help="SANDBOX_LATENCY_MS values")
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    args = parser.parse_args(argv)
    common.install_cleanup()

    print("link creation: POST /orders/<id>/checkout provider=mypay through gunicorn, the sandbox in its own gunicorn")
    for line in common.machine_lines():
        print(line)
    print(
        f"settings: {args.requests} requests per run, concurrency {args.concurrency}, gunicorn gthread "
        f"{args.workers} workers x {args.threads} threads (portal, sandbox, bare), warm-up {args.warmup}, "
        f"{args.rounds} rounds in turns with the bare endpoint, time limit {args.time_limit:g} s a round"
    )
    about = "SQLite (a fresh file)"
    database_url = None
    if args.database == "postgres":
        database_url, about = common.postgres_url("portal_bench_links")
        if database_url is None:
            print(f"PostgreSQL skipped: no server to use on 127.0.0.1 ({about})")
            return 0
    print(f"database: {about}")
    try:
        return run(args, database_url)
    finally:
        if database_url:
            common.drop_postgres_database(database_url)


def run(args, database_url: str | None) -> int:
    email = "staff@bench.example"
    rows, problems = [], []
    with tempfile.TemporaryDirectory(prefix="bench-links-") as tmp:
        database_url = database_url or common.sqlite_url(Path(tmp))
        common.migrate(database_url)
        app = common.make_app(database_url, 5000)
        merchant_id = common.seed_merchant(app, staff=email)
        per_run = args.requests + args.warmup
        order_ids = make_orders(app, merchant_id, per_run * len(args.latency) + 1)
        csrf_order, order_ids = order_ids[0], order_ids[1:]
        for n, latency in enumerate(args.latency):
            mine = order_ids[n * per_run : (n + 1) * per_run]
            warm, measured = mine[: args.warmup], mine[args.warmup :]
            port, bare_port = common.free_port(), common.free_port()
            sizing = {"GUNICORN_WORKERS": args.workers, "GUNICORN_THREADS": args.threads}
            # RATELIMIT_ENABLED off: gunicorn.conf.py refuses per-process limit counters with several workers.
            sandbox = common.sandbox_server(
                f"sandbox-{latency}ms", Path(tmp), port, SANDBOX_LATENCY_MS=latency, RATELIMIT_ENABLED=False, **sizing
            )
            portal_env = common.portal_env(database_url, port, sandbox.url, **sizing)
            portal = common.Server(f"portal-{latency}ms", "wsgi:app", portal_env, port, Path(tmp), "/healthz")
            bare_env = common.portal_env(database_url, bare_port, sandbox.url, **sizing)
            bare_env["BENCH_MYPAY_API_URL"] = f"{sandbox.url}/mypay/api/agent"
            bare_env["BENCH_RETURN_BASE"] = portal.url
            bare = common.Server(
                f"bare-{latency}ms", "bench.link_creation:bare_app()", bare_env, bare_port, Path(tmp), "/healthz"
            )
            servers = [sandbox, portal, bare]
            try:
                for server in servers:
                    server.start()
                logins = staff_sessions(portal.url, email, args.concurrency, csrf_order)
                run_portal(portal.url, logins, warm, args=args)
                run_bare(bare.url, list(range(args.warmup)), args=args)
                database = "postgres" if database_url.startswith("postgresql") else None
                meter, bare_meter = common.CpuMeter(portal, database), common.CpuMeter(bare, database)
                # The sandbox's CPU during each side's turns: the provider's work, the same for both sides.
                provider, bare_provider = common.CpuMeter(sandbox, None), common.CpuMeter(sandbox, None)
                portal_load, bare_load, ratios = common.alternate(
                    measured,
                    args.rounds,
                    meter.metered(provider.metered(functools.partial(run_portal, portal.url, logins, args=args))),
                    bare_meter.metered(bare_provider.metered(functools.partial(run_bare, bare.url, args=args))),
                )
            except BaseException:
                for server in servers:
                    print(f"--- {server.name} log (tail)\n{server.tail()}")
                raise
            finally:
                for server in reversed(servers):
                    server.stop()
            done = outcomes(app, [int(r.note) for r in portal_load.results if r.note.isdigit()])
            opened = done.get("awaiting_payment", 0)
            for label, load in (("portal", portal_load), ("bare Flask", bare_load)):
                rows.append(
                    [
                        f"{label} @ {latency} ms",
                        load.done,
                        load.failed,
                        f"{load.rate:.1f}",
                        f"{load.pct(50) * 1000:.0f}",
                        f"{load.pct(99) * 1000:.0f}",
                    ]
                )
            rows.append(
                [
                    f"  ratio portal/bare @ {latency} ms",
                    "",
                    "",
                    f"{portal_load.rate / bare_load.rate:.2f}" if bare_load.rate else "-",
                    f"{portal_load.pct(50) / bare_load.pct(50):.2f}" if bare_load.pct(50) else "-",
                    f"{portal_load.pct(99) / bare_load.pct(99):.2f}" if bare_load.pct(99) else "-",
                ]
            )
            if opened != portal_load.done or portal_load.failed:
                problems.append(f"{latency} ms: checkouts {dict(done)}; HTTP failures {portal_load.failed}")
            for load, name in ((portal_load, "portal"), (bare_load, "bare")):
                if load.stopped_by_time:
                    problems.append(f"{latency} ms: {name} run stopped by the time limit after {load.done} requests")
                notes = Counter(f"HTTP {r.status} {' '.join(r.note.split())[:100]}" for r in load.results if not r.ok)
                for note, count in notes.most_common(3):
                    problems.append(f"{latency} ms: {name}: {count} x {note}")
            for server in servers:
                locked = server.log_count("database is locked")
                errors = server.log_count("Traceback")
                if locked or errors:
                    problems.append(f"{server.name}: log has {errors} tracebacks, {locked} 'database is locked'")
                    print(f"--- {server.name}: first traceback in its log\n{server.first_traceback()}")
            print(
                f"  {latency} ms done: portal {portal_load.rate:.1f}/s, bare {bare_load.rate:.1f}/s, ratio "
                f"{portal_load.rate / bare_load.rate if bare_load.rate else 0:.2f}, in its {len(ratios)} rounds: "
                f"{common.spread(ratios)}; {dict(done)}"
            )
            print(f"  {latency} ms: {cpu_line(meter, bare_meter, provider, bare_provider)}")
    print()
    print(common.table(["run", "requests", "failed", "req/s", "p50 ms", "p99 ms"], rows))
    print("ratio = portal / bare (req/s: share of the bare endpoint's throughput; p50/p99: times slower)")
    common.report_problems(
        problems, "every link creation answered 302 and left its checkout awaiting payment with a MyPay PayPage URL"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
