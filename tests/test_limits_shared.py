"""Rate limits as production serves: gunicorn with two workers, sharing their counts through Redis (or refusing to)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.support.sandbox import free_port

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


@pytest.fixture
def redis_url(tmp_path):
    """A private redis-server on a free loopback port (Debian's redis-server; .ci/run installs it)."""
    binary = shutil.which("redis-server")
    if binary is None:
        if in_ci():
            pytest.fail("redis-server is missing (CI=true: .ci/run installs it)", pytrace=False)
        pytest.skip("redis-server is not installed")
    port = free_port()
    server = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                import redis

                redis.Redis(host="127.0.0.1", port=port).ping()
                break
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(timeout=10)


def gunicorn(tmp_path, port: int, **environ) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROVIDER_", "PORTAL_", "RATELIMIT_", "GUNICORN_"))}
    env |= {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'portal.db'}",
        "SECRET_KEY": "s" * 32,
        "PORTAL_DATA_KEY": "d" * 32,
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_WORKERS": "2",
        "GUNICORN_THREADS": "2",
        "LOG_LEVEL": "WARNING",
    }
    env |= environ
    return subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
        cwd=ROOT,
        env=env,
        stdout=(tmp_path / "gunicorn.log").open("w"),
        stderr=subprocess.STDOUT,
    )


def test_two_workers_with_per_process_counters_refuse_to_start(tmp_path):
    process = gunicorn(tmp_path, free_port(), RATELIMIT_STORAGE_URI="memory://")
    process.wait(timeout=60)
    output = (tmp_path / "gunicorn.log").read_text()
    assert process.returncode != 0
    assert "RATELIMIT_STORAGE_URI" in output and "redis://" in output


def test_two_workers_share_the_failed_login_count_through_redis(tmp_path, redis_url):
    subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"],
        cwd=ROOT,
        env=os.environ
        | {"DATABASE_URL": f"sqlite:///{tmp_path / 'portal.db'}", "SECRET_KEY": "s" * 32, "PORTAL_DATA_KEY": "d" * 32},
        check=True,
        capture_output=True,
    )
    port = free_port()
    process = gunicorn(tmp_path, port, RATELIMIT_STORAGE_URI=redis_url)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):
                pass
            assert time.monotonic() < deadline, "gunicorn did not start"
            time.sleep(0.2)
        browser = requests.Session()
        browser.headers["Connection"] = "close"  # a new connection each time: the two workers take turns
        page = browser.get(f"{base}/login", timeout=10).text
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
        codes = []
        for _ in range(12):
            response = browser.post(
                f"{base}/login",
                data={"email": "someone@example.com", "password": "wrong-password", "csrf_token": token},
                timeout=10,
            )
            codes.append(response.status_code)
        # five failures a minute per account and address, counted once for both workers
        assert codes[:5] == [200] * 5 and set(codes[5:]) == {429}, codes
    finally:
        process.terminate()
        process.wait(timeout=20)


def served(tmp_path, **environ) -> tuple[subprocess.Popen, str]:
    """The portal in gunicorn (one worker), migrated, answering /healthz; returns the process and its base URL."""
    db_env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'portal.db'}",
        "SECRET_KEY": "s" * 32,
        "PORTAL_DATA_KEY": "d" * 32,
    }
    subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"],
        cwd=ROOT,
        env=os.environ | db_env,
        check=True,
        capture_output=True,
    )
    port = free_port()
    process = gunicorn(tmp_path, port, GUNICORN_WORKERS="1", **environ)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                return process, base
        except (requests.ConnectionError, requests.Timeout):
            pass
        assert time.monotonic() < deadline, "gunicorn did not start"
        time.sleep(0.2)


def guesses(base: str, addresses) -> list[int]:
    """Customer-link guesses, each sent by the (simulated) proxy on behalf of the client at that address."""
    return [
        requests.get(f"{base}/pay/guess{n}", headers={"X-Forwarded-For": address}, timeout=10).status_code
        for n, address in enumerate(addresses)
    ]


def test_served_behind_a_proxy_limits_count_per_client(tmp_path):
    process, base = served(tmp_path, TRUSTED_PROXIES="1")
    try:
        assert 429 in guesses(base, ["198.51.100.7"] * 70)  # one client guessing is stopped
        assert guesses(base, ["198.51.100.8"]) == [404]  # the next customer behind the same proxy is not
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_served_without_a_trusted_proxy_a_spoofed_header_escapes_nothing(tmp_path):
    process, base = served(tmp_path)
    try:
        codes = guesses(base, [f"203.0.113.{n}" for n in range(70)])  # a new made-up address each time
        assert 429 in codes  # ... all counted against the one real address
    finally:
        process.terminate()
        process.wait(timeout=20)
