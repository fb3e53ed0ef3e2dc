"""Fixtures for the sandbox: the sandbox served over real HTTP, a recording merchant server, wire helpers.

`sandbox` is tests.support.sandbox.LiveSandbox (the sandbox's own app on a free loopback port), with callbacks sent
synchronously and resends without delay. Its SANDBOX_PORTAL_URL is `receiver`, a separate small server standing for
the merchant's: it records every callback at /webhooks/<provider> (or /<prefix>/webhooks/<provider>) and answers 200
(MyPay `8888`, O'Pay `1|OK`, or what a test queues). The two test shops are registered through sandbox.registry.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote

import pytest
import requests
from Crypto.Cipher import AES
from Crypto.Random import get_random_bytes
from Crypto.Util.Padding import pad, unpad
from flask import Flask, request
from werkzeug.serving import make_server

from tests.support.sandbox import LiveSandbox

AGENT_UID = "518169081001"
AGENT_KEY = "2MrhtRYeF9wKZ4bKwzZoL8aZf26pWzIG"
NEXT_AGENT_KEY = "N" * 32
STAGE_MERCHANT = ("2000132", "5294y06JbISpM5x9", "v77hoKGq4kWxNNIS")
STAGE_PLATFORM = ("2012441", "bkuAEQufy2bpEng1", "B0lzARl9ZSdhW9jg")
SHOP_A = {
    "oen": ("shopa", "oen-token-a"),
    "mypay": "111111110001",
    "opay": ("3000001", "0123456789abcdef", "fedcba9876543210"),
}
SHOP_B = {
    "oen": ("shopb", "oen-token-b"),
    "mypay": "111111110002",
    "opay": ("3000002", "abcdef0123456789", "9876543210fedcba"),
}

# ---------------------------------------------------------------- the merchant's server (test only)

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


# ---------------------------------------------------------------- the live sandbox


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
        "SANDBOX_MYPAY_AGENT_NEXT_KEY": NEXT_AGENT_KEY,
    }
    config.update(overrides)
    return config


def seed(live: LiveSandbox) -> None:
    """The two test shops, registered with every provider; callbacks to the receiver's /webhooks/<provider>."""
    for shop in (SHOP_A, SHOP_B):
        live.register(oen=shop["oen"], mypay=shop["mypay"], opay=shop["opay"])


@pytest.fixture
def sandbox_factory(tmp_path):
    """Start a live sandbox (with its own receiver) with config overrides; stopped at the end of the test."""
    started: list[TestSandbox] = []

    def start(**overrides) -> TestSandbox:
        receiver = Receiver()
        live = TestSandbox(tmp_path / f"sandbox-{len(started)}.db", receiver, **sandbox_config(**overrides))
        started.append(live)
        seed(live)
        return live

    yield start
    for live in started:
        live.stop()
        live.receiver.stop()


@pytest.fixture
def sandbox(sandbox_factory) -> TestSandbox:
    return sandbox_factory()


# ---------------------------------------------------------------- wire helpers, straight from the documents


def csrf_token(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def mypay_encrypt(obj, key: str = AGENT_KEY) -> str:
    """Appendix 4: base64(IV ‖ AES-256-CBC(JSON)), a random IV per field."""
    iv = get_random_bytes(16)
    data = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
    return base64.b64encode(iv + AES.new(key.encode(), AES.MODE_CBC, iv).encrypt(pad(data, 16))).decode()


def mypay_post(url: str, cmd: str, data: dict, *, key: str = AGENT_KEY, agent_uid: str = AGENT_UID, as_json=False):
    fields = {
        "agent_uid": agent_uid,
        "service": mypay_encrypt({"service_name": "api", "cmd": cmd}, key),
        "encry_data": mypay_encrypt(data, key),
    }
    if as_json:
        return requests.post(f"{url}/mypay/api/agent", json=fields, timeout=10)
    return requests.post(f"{url}/mypay/api/agent", data=fields, timeout=10)


def opay_encrypt(obj, key: str, iv: str) -> str:
    """Appendix 1: base64(AES-128-CBC(HashKey, HashIV)(URL-encode(JSON)))."""
    text = quote(json.dumps(obj, ensure_ascii=False, separators=(",", ":")), safe="")
    return base64.b64encode(AES.new(key.encode(), AES.MODE_CBC, iv.encode()).encrypt(pad(text.encode(), 16))).decode()


def opay_decrypt(data: str, key: str, iv: str):
    from urllib.parse import unquote

    plain = unpad(AES.new(key.encode(), AES.MODE_CBC, iv.encode()).decrypt(base64.b64decode(data)), 16)
    return json.loads(unquote(plain.decode()))


def opay_fields(merchant_id: str, data: str, *, platform_id=None, timestamp=None, rqid=None) -> dict:
    fields = {
        "MerchantID": merchant_id,
        "Timestamp": str(int(time.time()) if timestamp is None else timestamp),
        "RqID": rqid or uuid.uuid4().hex.upper(),
        "Revision": "1",
        "Data": data,
    }
    if platform_id:
        fields["PlatformID"] = platform_id
    return fields


def form_of(received: Received) -> dict:
    return dict(parse_qsl(received.raw.decode(), keep_blank_values=True))


class Wire:
    """The helpers above, for tests (fixtures are easier to share than imports across test directories)."""

    AGENT_UID = AGENT_UID
    AGENT_KEY = AGENT_KEY
    NEXT_AGENT_KEY = NEXT_AGENT_KEY
    STAGE_MERCHANT = STAGE_MERCHANT
    STAGE_PLATFORM = STAGE_PLATFORM
    SHOP_A = SHOP_A
    SHOP_B = SHOP_B
    csrf_token = staticmethod(csrf_token)
    mypay_encrypt = staticmethod(mypay_encrypt)
    mypay_post = staticmethod(mypay_post)
    opay_encrypt = staticmethod(opay_encrypt)
    opay_decrypt = staticmethod(opay_decrypt)
    opay_fields = staticmethod(opay_fields)
    form_of = staticmethod(form_of)


@pytest.fixture
def wire() -> type[Wire]:
    return Wire
