"""The merchant's own system receiving the portal's webhooks: an HTTP server on loopback that checks each delivery's
signature as the README tells merchants to, and answers as a test tells it (a status, a redirect, a slow answer)."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from flask import Flask, request
from werkzeug.serving import make_server

TOLERANCE_S = 300


def verify(secret: str, header: str, body: bytes, now: float | None = None) -> bool:
    """The README's check: the HMAC of "<t>.<body>" under the secret, and a timestamp within 300 s."""
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    expected = hmac.new(secret.encode(), parts.get("t", "").encode() + b"." + body, hashlib.sha256).hexdigest()
    fresh = abs((now or time.time()) - int(parts.get("t", "0"))) <= TOLERANCE_S
    return fresh and hmac.compare_digest(expected, parts.get("v1", ""))


@dataclass
class Delivery:
    path: str
    headers: dict
    body: bytes
    verified: bool
    status: int

    @property
    def event(self) -> dict:
        return json.loads(self.body)


@dataclass
class HookReceiver:
    """Records every POST; `answers` queues (status, delay seconds) for the next requests, then 200."""

    secret: str = ""
    deliveries: list[Delivery] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)  # time.monotonic() as each request came in, before answering
    answers: deque = field(default_factory=deque)
    lock: threading.Lock = field(default_factory=threading.Lock)
    arrived: threading.Condition = field(init=False)

    def __post_init__(self):
        self.arrived = threading.Condition(self.lock)
        app = Flask("hook_receiver")
        app.add_url_rule("/<path:path>", view_func=self._receive, methods=["POST", "GET"])
        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def _receive(self, path: str):
        body = request.get_data()
        with self.lock:
            self.arrivals.append(time.monotonic())
            status, delay = self.answers.popleft() if self.answers else (200, 0)
        if delay:
            time.sleep(delay)
        verified = bool(self.secret) and verify(self.secret, request.headers.get("Portal-Signature", ""), body)
        if status == 200 and not verified:
            status = 400  # a receiver refuses what it cannot verify
        with self.arrived:
            self.deliveries.append(Delivery("/" + path, dict(request.headers), body, verified, status))
            self.arrived.notify_all()
        if 300 <= status < 400:
            return "", status, {"Location": f"{self.url}/elsewhere"}
        return f"answer {status} " + "x" * 600, status, {"Content-Type": "text/plain"}

    def answer_next(self, *answers: tuple[int, float]) -> None:
        with self.lock:
            self.answers.extend(answers)

    def wait_for(self, count: int, timeout: float = 15) -> list[Delivery]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.deliveries) >= count, timeout=timeout)
            assert len(self.deliveries) >= count, f"{len(self.deliveries)} deliveries, expected {count}"
            return list(self.deliveries)

    def stop(self):
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
