"""The transactions overview over real HTTP: 50 open checkouts, every provider answering after 200 ms.

The portal runs in this process (a werkzeug server thread, so the benchmark can empty its cache of live answers); the
sandbox is `sandbox:create_app()` in a gunicorn of its own, on its own SQLite file, with SANDBOX_LATENCY_MS=200 and
SANDBOX_HANG_S=5 in its environment and the bench merchant registered before it starts; the portal's SANDBOX_URL
points at it. Prints (asserts nothing):
- one provider call through the sandbox (median) and the overview's render time with an empty cache, as a ratio to it
  (aim: at most 1.5); the render time with the cache warm; the render time with O'Pay hanging past the timeout (armed
  through the sandbox console's POST /console/fault); the CPU time is this process's, i.e. the portal's (and the
  client's), no longer the simulated providers';
- the same overview against bare stub providers that only wait 200 ms, served from a process of their own as well:
  the portal's own share. The sandbox does more than wait: it checks every request and books it in its SQLite file
  (several commits each, fifty calls at once contending for its one writer), on the same cores as the portal, so the
  ratio through it is higher.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import re
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402

from bench import _common as common  # noqa: E402
from portal import create_app  # noqa: E402
from portal.accounts import create_user, upsert_merchant  # noqa: E402
from portal.extensions import db  # noqa: E402
from portal.gateways import provider_for  # noqa: E402
from portal.models import Checkout, Order, OrderItem  # noqa: E402
from portal.overview import OVERVIEW_DEADLINE_S, live_cache  # noqa: E402
from portal.payments import checkout_ref, start_checkout  # noqa: E402

CHECKOUTS = 50
LATENCY_MS = 200
RUNS = 5
PASSWORD = "bench-password-123"
PROVIDERS = ("oen", "mypay", "opay")
HANG_S = 5  # SANDBOX_HANG_S: outlasts the portal's PROVIDER_TIMEOUT_S of 3 s, and ends sooner than the default 12 s
# The sandbox's gunicorn: enough threads in all for the fifty queries of one overview at once.
SANDBOX_WORKERS, SANDBOX_THREADS = 4, 16
CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="csrf_token"')


def build_app(tmp: Path, port: int, sandbox_url: str):
    """The portal on the sandbox server at sandbox_url, one merchant with every provider, an admin."""
    app = create_app(
        {
            "DATABASE_URL": f"sqlite:///{tmp / 'bench.db'}",
            "SECRET_KEY": common.SECRET_KEY,
            "PORTAL_DATA_KEY": common.DATA_KEY,
            "PASSWORD_HASH_METHOD": "scrypt:1024:8:1",
            "PROVIDER_ENV": "sandbox",
            "PORTAL_BASE_URL": f"http://127.0.0.1:{port}",
            "SANDBOX_URL": sandbox_url,
            "PROVIDER_TIMEOUT_S": 3,
            "WTF_CSRF_ENABLED": False,
            "RATELIMIT_STORAGE_URI": "memory://",
            "LOG_LEVEL": "WARNING",
        }
    )
    with app.app_context():
        db.create_all()
        # The credentials the sandbox issued the bench merchant (common.sandbox_server registered them there).
        merchant = upsert_merchant(
            "bench", "Bench shop", **common.OEN, mypay_store_uid=common.MYPAY_STORE_UID, **common.OPAY
        )
        db.session.flush()
        create_user("admin@bench.example", merchant, "admin", PASSWORD)
        db.session.commit()
    return app


def open_checkouts(app) -> None:
    """50 orders, each with an open payment link at one of the three providers (made through the sandbox)."""
    with app.app_context():
        for n in range(CHECKOUTS):
            order = Order(
                merchant_id=1,
                number=f"B{n:04d}",
                customer_name="測試",
                customer_email=f"buyer{n}@example.com",
                subtotal=1000,
                payable=1000,
                items=[OrderItem(sku="S", name="商品", unit_price=1000, quantity=1)],
            )
            db.session.add(order)
            db.session.commit()
            start_checkout(order, PROVIDERS[n % len(PROVIDERS)], None)


def one_provider_call(app) -> float:
    """The median time of one live query (MyPay)."""
    with app.app_context():
        checkout = db.session.execute(db.select(Checkout).filter_by(provider="mypay").limit(1)).scalar_one()
        provider, ref = provider_for(checkout.merchant, "mypay"), checkout_ref(checkout)
        times = []
        for _ in range(RUNS):
            started = time.perf_counter()
            provider.query(ref)
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def render(app, session: requests.Session, url: str, *, cold: bool = True) -> float:
    if cold:
        live_cache(app).forget()
    started = time.perf_counter()
    response = session.get(url + "/transactions", timeout=60)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.status_code
    assert response.text.count("data-checkout-id=") == CHECKOUTS
    return elapsed


def median_render(app, session, url, cold: bool = True) -> tuple[float, float]:
    """(median wall time, median CPU time of this process, which serves the portal; the providers run elsewhere)."""
    walls, cpus = [], []
    for _ in range(RUNS):
        cpu = time.process_time()
        walls.append(render(app, session, url, cold=cold))
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def console(sandbox_url: str, path: str, **form: object) -> None:
    """POST a form of the sandbox's console (e.g. /console/fault) with the CSRF token of its page, as a person would."""
    with requests.Session() as http:
        page = http.get(sandbox_url + "/", timeout=30)
        match = CSRF_RE.search(page.text)
        if page.status_code != 200 or not match:
            raise RuntimeError(f"the sandbox console answered {page.status_code} without a CSRF token")
        token = match.group(1) or match.group(2)
        done = http.post(sandbox_url + path, data={**form, "csrf_token": token}, allow_redirects=False, timeout=30)
        if done.status_code != 303:
            raise RuntimeError(f"POST {path} {form}: the sandbox console answered {done.status_code}")


class StubProvider(BaseHTTPRequestHandler):
    """Answers every provider's query after LATENCY_MS with a plain "nothing paid yet", and does nothing else.

    HTTP/1.1 with keep-alive, as the providers' servers (and the sandbox's gunicorn) answer: the portal's reused
    sessions keep their connections, as they do in production.
    """

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: without it each answer waits for a delayed ACK

    ANSWERS = {
        "/oen/": {"code": "S0000", "message": "", "data": {"transactions": []}},
        "/mypay/": {"code": "200", "prc": "200", "uid": "1", "cost": 1000, "retmsg": "", "refund_order": []},
        "/opay/": {"RtnCode": 0, "RtnMsg": "none"},
    }

    def _answer(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        time.sleep(LATENCY_MS / 1000)
        body = next((json.dumps(v) for k, v in self.ANSWERS.items() if k in self.path), "{}").encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args):
        pass


class StubServer(ThreadingHTTPServer):
    request_queue_size = 128  # socketserver's default of 5 would drop most of fifty simultaneous connections
    daemon_threads = True


def _serve_stub(port_queue) -> None:
    """Serve the stub providers (in a process of their own, as real providers are: no share of the portal's GIL)."""
    stub = StubServer(("127.0.0.1", 0), StubProvider)
    port_queue.put(stub.server_port)
    stub.serve_forever()


def stub_figures(app, session, url) -> tuple[float, tuple[float, float]]:
    """(one call, overview) with the providers' URLs pointing at the stub."""
    context = multiprocessing.get_context("fork")
    ports = context.Queue()
    process = context.Process(target=_serve_stub, args=(ports,), daemon=True)
    process.start()
    base = f"http://127.0.0.1:{ports.get(timeout=10)}"
    saved = {k: app.config[k] for k in ("OEN_API_URL", "MYPAY_API_URL", "OPAY_API_URL")}
    app.config.update(OEN_API_URL=f"{base}/oen", MYPAY_API_URL=f"{base}/mypay/api", OPAY_API_URL=f"{base}/opay")
    try:
        return one_provider_call(app), median_render(app, session, url)
    finally:
        app.config.update(saved)
        process.terminate()
        process.join(timeout=10)


def main() -> None:
    common.install_cleanup()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the portal's request log, one line per page
    with tempfile.TemporaryDirectory() as tmp:
        probe = make_server("127.0.0.1", 0, None)
        port = probe.server_port
        probe.server_close()
        sandbox = common.sandbox_server(
            "sandbox",
            Path(tmp),
            port,
            SANDBOX_LATENCY_MS=LATENCY_MS,
            SANDBOX_HANG_S=HANG_S,
            GUNICORN_WORKERS=SANDBOX_WORKERS,
            GUNICORN_THREADS=SANDBOX_THREADS,
            RATELIMIT_ENABLED=False,  # gunicorn.conf.py refuses per-process limit counters with several workers
        )
        app = build_app(Path(tmp), port, sandbox.url)
        server = make_server("127.0.0.1", port, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{port}"
        try:
            sandbox.start()
            open_checkouts(app)
            session = requests.Session()
            session.post(url + "/login", data={"email": "admin@bench.example", "password": PASSWORD}, timeout=30)
            render(app, session, url)  # warm up templates and connections
            call = one_provider_call(app)
            cold = median_render(app, session, url)
            warm = median_render(app, session, url, cold=False)
            console(sandbox.url, "/console/fault", provider="opay", kind="hang_next", count=CHECKOUTS * 3)
            hanging = render(app, session, url)
            console(sandbox.url, "/console/fault", provider="opay", kind="clear")
            stub_call, stub_cold = stub_figures(app, session, url)
        except BaseException:
            print(f"--- {sandbox.name} log (tail)\n{sandbox.tail()}")
            raise
        finally:
            server.shutdown()
            thread.join(timeout=10)
            sandbox.stop()
        if sandbox.log_count("Traceback"):
            print(f"--- {sandbox.name}: first traceback in its log\n{sandbox.first_traceback()}")
    ms = 1000
    for line in common.machine_lines():
        print(line)
    print(f"{CHECKOUTS} open checkouts (Oen, MyPay, O'Pay in turn); every provider answers after {LATENCY_MS} ms")
    sizing = f"{SANDBOX_WORKERS} workers x {SANDBOX_THREADS} threads"
    print(f"through the sandbox in its own gunicorn, {sizing} (medians of {RUNS}):")
    print(f"  one provider call                {call * ms:6.0f} ms")
    print(f"  overview, empty cache            {cold[0] * ms:6.0f} ms  ratio {cold[0] / call:.2f} (aim <= 1.5)", end="")
    print(f"  cpu {cold[1] * ms:.0f} ms")
    print(f"  overview, cache warm             {warm[0] * ms:6.0f} ms  cpu {warm[1] * ms:.0f} ms")
    print(f"  overview, O'Pay hanging          {hanging * ms:6.0f} ms  (deadline {OVERVIEW_DEADLINE_S:g} s)")
    print(f"through stub providers in their own process that only wait (medians of {RUNS}):")
    print(f"  one provider call                {stub_call * ms:6.0f} ms")
    ratio, cpu = stub_cold[0] / stub_call, stub_cold[1] * ms
    print(f"  overview, empty cache            {stub_cold[0] * ms:6.0f} ms  ratio {ratio:.2f}  cpu {cpu:.0f} ms")


if __name__ == "__main__":
    main()
