"""The simulated providers as a separate party for tests: in a thread of the test process, or as its own OS process.

    live = LiveSandbox(tmp_path / "sandbox.db", portal_url=portal.url, SANDBOX_CALLBACK_SYNC=True)
    live.register(oen=SHOP_A["oen"], mypay=SHOP_A["mypay"], opay=SHOP_A["opay"])  # tests.support.accounts
    ...  # the portal with OEN_API_URL=f"{live.url}/oen/api", MYPAY_API_URL=f"{live.url}/mypay/api/agent", ...
    live.stop()

The sandbox's published test accounts (sandbox.registry.TEST_ACCOUNTS) are always registered too.
"""

from __future__ import annotations

import os
import pathlib
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

import flask
import requests
from werkzeug.serving import make_server

ROOT = pathlib.Path(__file__).resolve().parents[2]
STOP_WAIT_S = 15


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _callback_urls(portal_url: str) -> tuple[str, str]:
    base = portal_url.rstrip("/")
    return f"{base}/webhooks/oen", f"{base}/webhooks/mypay"


def _base_config(db_path, portal_url: str) -> dict:
    return {
        "TESTING": True,
        "SANDBOX_DATABASE_URL": f"sqlite:///{db_path}",
        "SANDBOX_SECRET_KEY": "sandbox-test-secret",
        "SANDBOX_PORTAL_URL": portal_url,
    }


class LiveSandbox:
    """sandbox.create_app on its own SQLite file and its own loopback port, served by a werkzeug server thread."""

    def __init__(self, db_path: pathlib.Path, *, portal_url: str = "http://127.0.0.1:9", **config):
        from sandbox import create_app

        self.portal_url = portal_url
        self._server = make_server("127.0.0.1", 0, self._dispatch, threaded=True)
        self.port: int = self._server.server_port
        self.url: str = f"http://127.0.0.1:{self.port}"
        self.app: flask.Flask = create_app({**_base_config(db_path, portal_url), **config})
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def _dispatch(self, environ, start_response):
        return self.app(environ, start_response)

    def ctx(self):
        """The sandbox app's app_context()."""
        return self.app.app_context()

    def register(
        self,
        *,
        oen: tuple[str, str] | None = None,
        mypay: str | None = None,
        opay: tuple[str, str, str] | None = None,
        portal_url: str | None = None,
    ) -> None:
        """Register credentials; callback URLs = (portal_url or the constructor's)/webhooks/oen|mypay."""
        from sandbox import registry

        oen_url, mypay_url = _callback_urls(portal_url or self.portal_url)
        with self.ctx():
            if oen:
                registry.register_oen_merchant(oen[0], oen[1], oen_url)
            if mypay:
                registry.register_mypay_store(mypay, mypay_url)
            if opay:
                registry.register_opay_merchant(*opay)

    def stop(self) -> None:
        """Wait (up to 15 s) for callbacks still being sent, then shut the server down and dispose the engine."""
        from sandbox.callbacks import wait_for_senders
        from sandbox.extensions import db

        wait_for_senders(self.app, STOP_WAIT_S)
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        with self.ctx():
            db.session.remove()
            db.engine.dispose()


def _env_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# The line `python -m sandbox` prints once its port is bound.
LISTENING = re.compile(r"Sandbox providers on (http://127\.0\.0\.1:(\d+))/")


class SandboxProcess:
    """The same sandbox as a separate OS process (`python -m sandbox --port 0`), its config through the environment,
    accounts registered with the `flask --app sandbox merchant add` CLI before it starts; waits for /healthz.

    The process binds a port the system picks and names it: a port looked for free here, then bound by the process,
    could be taken in between (by another test's server, which would then answer in its place). `port` and `url` are
    known once started."""

    def __init__(self, db_path, *, portal_url: str, **config):
        self.portal_url = portal_url
        self.port: int | None = None
        self.url: str = ""
        settings = {**_base_config(db_path, portal_url), **config}
        settings.pop("TESTING", None)  # a Flask key, not an environment setting of the sandbox
        self.env = {**os.environ, **{name: _env_value(value) for name, value in settings.items()}}
        self.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        self.process: subprocess.Popen | None = None
        self._output = None

    def register(
        self,
        *,
        oen: tuple[str, str] | None = None,
        mypay: str | None = None,
        opay: tuple[str, str, str] | None = None,
        portal_url: str | None = None,
    ) -> None:
        """Register credentials with the sandbox's CLI (works before or after start)."""
        oen_url, mypay_url = _callback_urls(portal_url or self.portal_url)
        args: list[str] = []
        if oen:
            args += ["--oen-merchant-id", oen[0], "--oen-token", oen[1], "--oen-webhook-url", oen_url]
        if mypay:
            args += ["--mypay-store-uid", mypay, "--mypay-callback-url", mypay_url]
        if opay:
            args += ["--opay-merchant-id", opay[0], "--opay-hash-key", opay[1], "--opay-hash-iv", opay[2]]
        if not args:
            return
        command = [sys.executable, "-m", "flask", "--app", "sandbox", "merchant", "add", *args]
        run = subprocess.run(command, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=60)  # noqa: S603
        if run.returncode:
            raise RuntimeError(f"sandbox merchant add failed ({run.returncode}): {run.stderr or run.stdout}")

    def start(self) -> SandboxProcess:
        """Start `python -m sandbox --port 0` and wait (up to 30 s) until it names its port and /healthz answers."""
        command = [sys.executable, "-m", "sandbox", "--port", "0"]
        # A file, not a pipe: a full pipe would block the server. Closed in stop().
        self._output = tempfile.TemporaryFile()  # noqa: SIM115
        self.process = subprocess.Popen(  # noqa: S603
            command, cwd=ROOT, env=self.env, stdout=self._output, stderr=subprocess.STDOUT, text=True
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code, output = self.process.returncode, self.output()
                self.stop()
                raise RuntimeError(f"the sandbox process exited with {code}: {output}")
            listening = LISTENING.search(self.output())
            if listening is not None:
                self.url, self.port = listening.group(1), int(listening.group(2))
                try:
                    if requests.get(f"{self.url}/healthz", timeout=1).text == "ok":
                        return self
                except requests.RequestException:
                    pass
            time.sleep(0.1)
        output = self.output()[-2000:]  # read before stop() closes the file
        self.stop()
        raise RuntimeError(f"the sandbox did not answer on {self.url or 'its port'}/healthz within 30 s: {output!r}")

    def output(self) -> str:
        """What the process printed so far (its request log, errors).

        Read at an offset (pread), not by seeking: the process writes through the same open file, whose offset a seek
        would move back under it, and a line written meanwhile would overwrite the first.
        """
        if self._output is None:
            return ""
        fd = self._output.fileno()
        return os.pread(fd, os.fstat(fd).st_size, 0).decode("utf-8", errors="replace")

    def stop(self) -> None:
        """Terminate, wait, kill after 5 s."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None
        if self._output is not None:
            self._output.close()
            self._output = None


def sandbox_rows(live: LiveSandbox, model, **filters) -> list:
    """The sandbox's own records of a kind, in id order (what its console shows), read from its database."""
    from sandbox.extensions import db

    with live.ctx():
        rows = list(db.session.execute(db.select(model).filter_by(**filters)).scalars())
        db.session.expunge_all()
    return rows
