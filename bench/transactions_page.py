"""The transactions overview over real HTTP: 50 open checkouts, every provider answering after 200 ms.

Prints (asserts nothing):
- one provider call through the sandbox (median) and the overview's render time with an empty cache, as a ratio to it
  (aim: at most 1.5); the render time with the cache warm; the render time with O'Pay hanging past the timeout;
- the same overview against bare stub providers that only wait 200 ms, served from a process of their own as real
  providers are: the portal's own share. Through the sandbox the simulated providers run inside the portal's process
  (sharing its interpreter lock) and book every call in SQLite (several commits each), so that ratio is higher.
"""

from __future__ import annotations

import json
import multiprocessing
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

from portal import create_app  # noqa: E402
from portal.cli import create_user, upsert_merchant  # noqa: E402
from portal.extensions import db  # noqa: E402
from portal.gateways import provider_for  # noqa: E402
from portal.models import Checkout, Order, OrderItem  # noqa: E402
from portal.payments import checkout_ref, start_checkout  # noqa: E402
from portal.sandbox import faults, settings  # noqa: E402
from portal.views.transactions import OVERVIEW_DEADLINE_S, live_cache  # noqa: E402

CHECKOUTS = 50
LATENCY_MS = 200
RUNS = 5
PASSWORD = "bench-password-123"
PROVIDERS = ("oen", "mypay", "opay")


def build_app(tmp: Path, port: int):
    """The portal with the sandbox, one merchant with every provider, an admin."""
    app = create_app(
        {
            "DATABASE_URL": f"sqlite:///{tmp / 'bench.db'}",
            "SECRET_KEY": "bench",
            "PORTAL_DATA_KEY": "bench-data-key",
            "PASSWORD_HASH_METHOD": "scrypt:1024:8:1",
            "PROVIDER_ENV": "sandbox",
            "PORTAL_BASE_URL": f"http://127.0.0.1:{port}",
            "PROVIDER_TIMEOUT_S": 3,
            "SANDBOX_HANG_S": 5,
            "WTF_CSRF_ENABLED": False,
            "RATELIMIT_STORAGE_URI": "memory://",
            "LOG_LEVEL": "WARNING",
            # Each simulated call holds a database connection while it waits out its latency: the pool must not be
            # what queues fifty of them.
            "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True, "pool_size": 4 * CHECKOUTS, "max_overflow": 0},
        }
    )
    with app.app_context():
        db.create_all()
        merchant = upsert_merchant(
            "bench",
            "Bench shop",
            oen_merchant_id="bench",
            oen_token="oen-token-bench",
            mypay_store_uid="289151880002",
            opay_merchant_id="2000132",
            opay_hash_key="5294y06JbISpM5x9",
            opay_hash_iv="v77hoKGq4kWxNNIS",
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
    """(median wall time, median CPU time of this process, which serves the portal and the sandbox)."""
    walls, cpus = [], []
    for _ in range(RUNS):
        cpu = time.process_time()
        walls.append(render(app, session, url, cold=cold))
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


class StubProvider(BaseHTTPRequestHandler):
    """Answers every provider's query after LATENCY_MS with a plain "nothing paid yet", and does nothing else."""

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
    with tempfile.TemporaryDirectory() as tmp:
        probe = make_server("127.0.0.1", 0, None)
        port = probe.server_port
        probe.server_close()
        app = build_app(Path(tmp), port)
        server = make_server("127.0.0.1", port, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{port}"
        try:
            open_checkouts(app)
            with app.app_context():
                for name in PROVIDERS:
                    settings.set_latency(name, LATENCY_MS)
            session = requests.Session()
            session.post(url + "/login", data={"email": "admin@bench.example", "password": PASSWORD}, timeout=30)
            render(app, session, url)  # warm up templates and connections
            call = one_provider_call(app)
            cold = median_render(app, session, url)
            warm = median_render(app, session, url, cold=False)
            with app.app_context():
                faults.set("opay", "hang_next", count=CHECKOUTS * 3)
            hanging = render(app, session, url)
            with app.app_context():
                faults.clear()
            stub_call, stub_cold = stub_figures(app, session, url)
        finally:
            server.shutdown()
            thread.join(timeout=10)
    ms = 1000
    print(f"{CHECKOUTS} open checkouts (Oen, MyPay, O'Pay in turn); every provider answers after {LATENCY_MS} ms")
    print(f"through the sandbox (medians of {RUNS}):")
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
