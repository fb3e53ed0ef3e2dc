"""The merchant's side for the sandbox's own tests: a recording server for callbacks, and a sandbox that calls it."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

from flask import Flask, request
from werkzeug.serving import make_server

from tests.support.accounts import SANDBOX_NEXT_AGENT_KEY, SANDBOX_SHOP_A, SANDBOX_SHOP_B
from tests.support.sandbox import LiveSandbox

DEFAULT_ANSWERS = {"oen": "OK", "mypay": "8888", "opay": "1|OK"}


@dataclass
class Received:
    provider: str
    content_type: str
    raw: bytes
    form: dict
    json: object
    path: str = ""


@dataclass
class Receiver:
    """A recording merchant server on its own loopback port, in a background thread."""

    received: list[Received] = field(default_factory=list)
    queued: dict[str, deque] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self):
        app = Flask("test_receiver")
        app.add_url_rule("/webhooks/<provider>", view_func=self._receive, methods=["POST"])
        app.add_url_rule("/<path:prefix>/webhooks/<provider>", view_func=self._receive, methods=["POST"])
        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def _receive(self, provider: str, prefix: str = ""):
        raw = request.get_data(cache=True)
        with self.lock:
            self.received.append(
                Received(
                    provider,
                    request.content_type or "",
                    raw,
                    request.form.to_dict(),
                    request.get_json(silent=True),
                    request.path,
                )
            )
            queue = self.queued.get(provider)
            body = queue.popleft() if queue else DEFAULT_ANSWERS.get(provider, "OK")
        return body, 200, {"Content-Type": "text/plain; charset=utf-8"}

    def answer_next(self, provider: str, *bodies: str) -> None:
        """The next callbacks of the provider get these bodies (e.g. a wrong answer to force resends)."""
        self.queued.setdefault(provider, deque()).extend(bodies)

    def of(self, provider: str) -> list[Received]:
        with self.lock:
            return [item for item in self.received if item.provider == provider]

    def stop(self):
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class TestSandbox(LiveSandbox):
    """A LiveSandbox whose merchant server is a Receiver; `hook(provider)` is the receiver's URL for that provider."""

    __test__ = False

    def __init__(self, db_path, receiver: Receiver, **config):
        super().__init__(db_path, portal_url=receiver.url, **config)
        self.receiver = receiver

    def hook(self, provider: str) -> str:
        return f"{self.receiver.url}/webhooks/{provider}"


def sandbox_config(**overrides) -> dict:
    config = {
        "SANDBOX_HANG_S": 1.5,
        "SANDBOX_CALLBACK_SYNC": True,
        "SANDBOX_CALLBACK_RETRY_DELAY_S": 0,
        "SANDBOX_CALLBACK_TIMEOUT_S": 5,
        "SANDBOX_MYPAY_AGENT_NEXT_KEY": SANDBOX_NEXT_AGENT_KEY,
    }
    config.update(overrides)
    return config


def register_shops(live: LiveSandbox) -> None:
    """The two test shops, registered with every provider; callbacks to the receiver's /webhooks/<provider>."""
    for shop in (SANDBOX_SHOP_A, SANDBOX_SHOP_B):
        live.register(oen=shop["oen"], mypay=shop["mypay"], opay=shop["opay"])
