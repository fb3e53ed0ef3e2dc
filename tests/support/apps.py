"""The portal built for tests: an app on its own database, seeded merchants and users, a live server on loopback."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from flask.testing import FlaskClient
from sqlalchemy import text
from werkzeug.serving import make_server

from portal import create_app
from portal.accounts import create_user, upsert_merchant
from portal.extensions import db
from tests.support.accounts import SHOP_A, SHOP_B, portal_settings
from tests.support.constants import FAST_HASH, PASSWORD


class EnglishClient(FlaskClient):
    """A test client that asks for English: tests read English messages; the portal's own default is zh-TW."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.environ_base.setdefault("HTTP_ACCEPT_LANGUAGE", "en")


def browser_default_client(app):
    """A test client that sends no language preference, as a new visitor's browser might."""
    client = app.test_client()
    client.environ_base.pop("HTTP_ACCEPT_LANGUAGE", None)
    return client


def make_app(tmp_path, **overrides):
    """An app on its own database: TEST_DATABASE_URL (e.g. PostgreSQL) or a SQLite file in tmp_path."""
    config = {
        "TESTING": True,
        "DATABASE_URL": os.environ.get("TEST_DATABASE_URL") or f"sqlite:///{tmp_path / 'test.db'}",
        "SECRET_KEY": "test-secret-key",
        "PORTAL_DATA_KEY": "test-data-key",
        "PASSWORD_HASH_METHOD": FAST_HASH,
        "PROVIDER_ENV": os.environ.get("TEST_PROVIDER_ENV", "sandbox"),
        "PROVIDER_TIMEOUT_S": 5,
        "RATELIMIT_STORAGE_URI": "memory://",
    }
    config.update(overrides)
    app = create_app(config)
    app.test_client_class = EnglishClient
    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            end_stragglers()
        db.drop_all()
        db.create_all()
    return app


def end_stragglers() -> None:
    """PostgreSQL is shared by every test: end connections a finished test's threads still hold (a sandbox call that
    was told to hang, a callback resend), which would otherwise deadlock the next test's DROP TABLE."""
    with db.engine.connect() as conn:
        conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND usename = current_user AND pid <> pg_backend_pid()"
            )
        )
        conn.commit()


@dataclass
class Seed:
    merchant_id: int
    other_merchant_id: int
    admin: str = "admin@a.example"
    staff: str = "staff@a.example"
    other_admin: str = "admin@b.example"


def seed_merchants(app) -> Seed:
    """Merchant A (sandbox credentials for every provider) with an admin and staff; merchant B with an admin."""
    with app.app_context():
        a = upsert_merchant("shop-a", "Shop A", **portal_settings(SHOP_A))
        b = upsert_merchant("shop-b", "Shop B", **portal_settings(SHOP_B))
        db.session.flush()
        create_user("admin@a.example", a, "admin", PASSWORD)
        create_user("staff@a.example", a, "staff", PASSWORD)
        create_user("admin@b.example", b, "admin", PASSWORD)
        db.session.commit()
        return Seed(merchant_id=a.id, other_merchant_id=b.id)


class AuthActions:
    def __init__(self, client):
        self._client = client

    def login(self, email="admin@a.example", password=PASSWORD, **kwargs):
        return self._client.post("/login", data={"email": email, "password": password}, **kwargs)

    def logout(self):
        return self._client.post("/logout")


class LiveServer:
    """The app served over real HTTP on loopback in a background thread. Its socket is bound at once (port 0: one the
    system picks), so its address is known before the app is made and nobody can take the port meanwhile (a port found
    free and let go can be taken before it is bound again, even as the local port of an outgoing connection)."""

    def __init__(self, app=None, port: int = 0):
        self.app = app
        self._server = make_server("127.0.0.1", port, self._dispatch, threaded=True)
        self.port = self._server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        # Track request threads, so stop() waits for requests still running (e.g. a sandbox call told to hang).
        self._server.daemon_threads = False
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _dispatch(self, environ, start_response):
        return self.app(environ, start_response)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._server.shutdown()
        self._thread.join(timeout=5)
        self._server.server_close()  # joins the request threads still running


def start_live_portal(tmp_path, sandbox, server: LiveServer, **overrides) -> LiveServer:
    """The live portal on `server` (a LiveServer bound before the sandbox was told its address) whose providers are the
    given sandbox server, seeded with two merchants."""
    app = make_app(
        tmp_path,
        PORTAL_BASE_URL=server.url,
        SANDBOX_URL=sandbox.url,
        WTF_CSRF_ENABLED=False,
        **overrides,
    )
    server.app = app
    server.sandbox = sandbox
    server.seed = seed_merchants(app)
    for shop in (SHOP_A, SHOP_B):
        sandbox.register(oen=shop["oen"], mypay=shop["mypay"], opay=shop["opay"])
    return server.start()


def stop_live_portal(server: LiveServer) -> None:
    """The sandbox first (its callbacks still on their way reach the portal), then the portal."""
    server.sandbox.stop()
    server.stop()
    with server.app.app_context():
        db.session.remove()
        db.engine.dispose()
