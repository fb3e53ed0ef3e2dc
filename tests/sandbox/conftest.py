"""Fixtures for the sandbox: the sandbox served over real HTTP, a recording merchant server, wire helpers.

`sandbox` is tests.support.sandbox.LiveSandbox (the sandbox's own app on a free loopback port), with callbacks sent
synchronously and resends without delay. Its SANDBOX_PORTAL_URL is `receiver`, a separate small server standing for
the merchant's: it records every callback at /webhooks/<provider> (or /<prefix>/webhooks/<provider>) and answers 200
(MyPay `8888`, O'Pay `1|OK`, or what a test queues). The two test shops are registered through sandbox.registry.
The helpers themselves live in tests/support/ (receiver.py, wire.py).
"""

from __future__ import annotations

import pytest

from tests.support.receiver import Receiver, TestSandbox, register_shops, sandbox_config
from tests.support.wire import Wire


@pytest.fixture
def sandbox_factory(tmp_path):
    """Start a live sandbox (with its own receiver) with config overrides; stopped at the end of the test."""
    started: list[TestSandbox] = []

    def start(**overrides) -> TestSandbox:
        receiver = Receiver()
        live = TestSandbox(tmp_path / f"sandbox-{len(started)}.db", receiver, **sandbox_config(**overrides))
        started.append(live)
        register_shops(live)
        return live

    yield start
    for live in started:
        live.stop()
        live.receiver.stop()


@pytest.fixture
def sandbox(sandbox_factory) -> TestSandbox:
    return sandbox_factory()


@pytest.fixture
def wire() -> type[Wire]:
    return Wire
