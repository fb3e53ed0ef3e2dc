"""Shared fixtures: app, client, runner, users of two merchants, a live server for flow tests, the network guard, an
SMTP server (`smtp`) and an app that mails to it (`mail_app`).

Fixtures and hooks only: the helpers they use live in tests/support/.
"""

from __future__ import annotations

import pytest

from portal.extensions import db
from tests.support.apps import (
    AuthActions,
    LiveServer,
    Seed,
    make_app,
    seed_merchants,
    start_live_portal,
    stop_live_portal,
)
from tests.support.network import NetworkGuard
from tests.support.sandbox import LiveSandbox
from tests.support.smtp import SmtpCatcher


@pytest.fixture(autouse=True)
def network_guard(monkeypatch):
    """Every test: a connection outside loopback raises at once and fails the test (see tests/support/network.py;
    subprocesses are not covered)."""
    guard = NetworkGuard().install(monkeypatch)
    yield guard
    if guard.refused:
        pytest.fail(f"the test tried to reach the network: {guard.refused}", pytrace=False)


@pytest.fixture
def app(tmp_path):
    app = make_app(tmp_path, WTF_CSRF_ENABLED=False)
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def csrf_app(tmp_path):
    """An app with CSRF protection on, as in production."""
    app = make_app(tmp_path)
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def seed(app) -> Seed:
    return seed_merchants(app)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def auth(client, seed):
    return AuthActions(client)


@pytest.fixture
def live_server(tmp_path):
    """A live portal and, on another port (another origin), the sandbox server with its own database."""
    listener = LiveServer()  # bound first: the sandbox is told its address
    # MyPay's resends sooner than the sandbox's default 3 s
    sandbox = LiveSandbox(tmp_path / "sandbox.db", portal_url=listener.url, SANDBOX_CALLBACK_RETRY_DELAY_S=0.5)
    server = start_live_portal(tmp_path, sandbox, listener)
    yield server
    stop_live_portal(server)


@pytest.fixture
def smtp():
    """A real SMTP server on a free loopback port (tests.support.smtp.SmtpCatcher): smtp.host, smtp.port, the mails it
    received in smtp.messages, smtp.wait_for(count); smtp.stop() and smtp.start() again on the same port."""
    catcher = SmtpCatcher().start()
    yield catcher
    catcher.stop()


@pytest.fixture
def mail_app(tmp_path, smtp):
    """An app whose mails go to `smtp` (sent by the worker: portal.worker.run_once)."""
    app = make_app(tmp_path, WTF_CSRF_ENABLED=False, MAIL_SERVER=smtp.host, MAIL_PORT=smtp.port)
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
