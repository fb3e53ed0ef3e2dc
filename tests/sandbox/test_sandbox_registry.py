"""The sandbox as a separate party: its registry of merchants, its settings, its CLI, and `python -m sandbox`."""

from __future__ import annotations

import os
import stat
import string
import threading
import time

import pytest
import requests

from sandbox import config as sandbox_config
from sandbox import create_app, registry
from sandbox.__main__ import main
from sandbox.common import is_loopback
from sandbox.extensions import db
from sandbox.models import SandboxMypayStore, SandboxOenMerchant
from tests.support.accounts import (
    MYPAY_AGENT_UID,
    MYPAY_STORE_UID,
    OPAY_IV,
    OPAY_KEY,
    OPAY_PLATFORM_ID,
    OPAY_STAGE_MERCHANT,
)
from tests.support.sandbox import LiveSandbox, SandboxProcess, free_port


def oen_checkout(url: str, merchant_id: str, token: str) -> requests.Response:
    body = {"merchantId": merchant_id, "successUrl": f"{url}/ok", "failureUrl": f"{url}/ko"}
    return requests.post(
        f"{url}/oen/api/checkout-token", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


def bind_test_card(url: str, merchant_id: str, checkout_id: str, wire) -> requests.Response:
    session = requests.Session()
    page_url = f"{url}/oen/checkout/{merchant_id}/subscription/create/{checkout_id}"
    form = {"csrf_token": wire.csrf_token(session.get(page_url, timeout=10).text), "card_number": "4242424242424242"}
    return session.post(page_url, data={**form, "expiry": "12/39", "cvc": "123"}, allow_redirects=False, timeout=10)


class TestRegistry:
    def test_the_published_test_accounts_are_always_there(self, sandbox, wire):
        with sandbox.ctx():
            registry.seed_test_accounts()  # idempotent
            found = registry.accounts()
        assert ("demo", "sandbox-oen-demo-token") in [(m.merchant_id, m.token) for m in found["oen"]]
        assert MYPAY_STORE_UID in [s.store_uid for s in found["mypay"]]
        assert OPAY_STAGE_MERCHANT in [(m.merchant_id, m.hash_key, m.hash_iv) for m in found["opay"]]
        assert registry.TEST_ACCOUNTS.oen == ("demo", "sandbox-oen-demo-token")
        assert oen_checkout(sandbox.url, "demo", "sandbox-oen-demo-token").json()["code"] == "S0000"

    def test_issued_credentials_are_random_kept_and_updatable(self, sandbox):
        with sandbox.ctx():
            token = registry.register_oen_merchant("newshop")
            assert len(token) >= 32 and registry.register_oen_merchant("newshop") == token
            assert registry.register_oen_merchant("newshop", "chosen-token") == "chosen-token"
            key, iv = registry.register_opay_merchant("3999999")
            assert len(key) == len(iv) == 16 and set(key + iv) <= set(string.ascii_letters + string.digits)
            assert registry.register_opay_merchant("3999999") == (key, iv)
            assert registry.register_mypay_store("123456789012", "http://shop.example/cb") == "123456789012"
            registry.register_mypay_store("123456789012")
            assert registry.mypay_store("123456789012").callback_url is None
            with pytest.raises(ValueError):
                registry.register_opay_merchant("3999998", "short", "0123456789abcdef")
            with pytest.raises(ValueError):
                registry.register_oen_merchant("")
            assert db.session.query(SandboxOenMerchant).filter_by(merchant_id="newshop").count() == 1
        assert oen_checkout(sandbox.url, "newshop", "chosen-token").json()["code"] == "S0000"
        assert oen_checkout(sandbox.url, "newshop", token).status_code == 401  # the old token no longer works

    def test_only_registered_stores_and_merchants_are_served(self, sandbox, wire):
        order = {"store_uid": "555555550001", "user_id": "u", "order_id": "X1", "ip": "127.0.0.1", "cost": 100,
                 "items": [{"id": "1", "name": "x", "cost": 100, "amount": 1, "total": 100}]}  # fmt: skip
        assert wire.mypay_post(sandbox.url, "api/orders", order).json()["code"] == "100"
        with sandbox.ctx():
            registry.register_mypay_store("555555550001")
        assert wire.mypay_post(sandbox.url, "api/orders", order).json()["code"] == "200"

    def test_callbacks_go_to_the_registered_url_else_to_the_portal_default(self, sandbox, wire):
        sandbox.register(oen=("shopx", "oen-token-x"), portal_url=f"{sandbox.receiver.url}/shop-x")
        for merchant_id, token in (("shopx", "oen-token-x"), ("demo", "sandbox-oen-demo-token")):
            checkout_id = oen_checkout(sandbox.url, merchant_id, token).json()["data"]["id"]
            assert bind_test_card(sandbox.url, merchant_id, checkout_id, wire).status_code == 302
        registered, default = sandbox.receiver.of("oen")
        assert (registered.path, registered.json["merchantId"]) == ("/shop-x/webhooks/oen", "shopx")
        assert (default.path, default.json["merchantId"]) == ("/webhooks/oen", "demo")
        with sandbox.ctx():
            assert db.session.query(SandboxMypayStore).filter_by(store_uid=MYPAY_STORE_UID).one().callback_url is None

    def test_the_console_lists_accounts_with_secrets_masked_except_the_test_accounts(self, sandbox, wire):
        console = requests.get(f"{sandbox.url}/", timeout=10).text
        for public in ("sandbox-oen-demo-token", OPAY_KEY, OPAY_IV, MYPAY_STORE_UID):
            assert public in console
        for secret in (wire.SHOP_A["oen"][1], *wire.SHOP_A["opay"][1:], *wire.SHOP_B["opay"][1:]):
            assert secret not in console
        assert "shopa" in console and "3000001" in console and "111111110001" in console


class TestCli:
    def test_merchant_add_and_accounts(self, sandbox):
        runner = sandbox.app.test_cli_runner()
        added = runner.invoke(
            args=["merchant", "add", "--oen-merchant-id", "clishop", "--mypay-store-uid", "777777770001",
                  "--mypay-callback-url", "http://shop.example/mypay", "--opay-merchant-id", "3777777"]
        )  # fmt: skip
        assert added.exit_code == 0, added.output
        with sandbox.ctx():
            token = registry.oen_merchant("clishop").token
            key, iv = registry.opay_credentials("3777777")
        assert f"token={token}" in added.output and f"HashKey={key} HashIV={iv}" in added.output
        assert f"webhook={sandbox.receiver.url}/webhooks/oen" in added.output
        listed = runner.invoke(args=["accounts"])
        assert listed.exit_code == 0
        assert "merchantId=clishop" in listed.output and "callback=http://shop.example/mypay" in listed.output
        assert "merchantId=demo token=sandbox-oen-demo-token" in listed.output
        refused = runner.invoke(args=["merchant", "add", "--opay-merchant-id", "3", "--opay-hash-key", "k"])
        assert refused.exit_code != 0
        assert runner.invoke(args=["merchant", "add"]).exit_code != 0


class TestSettings:
    def test_defaults_environment_then_test_config(self, tmp_path, monkeypatch):
        monkeypatch.setenv("SANDBOX_LATENCY_MS_OEN", "7")
        monkeypatch.setenv("SANDBOX_CALLBACK_SYNC", "true")
        monkeypatch.setenv("SANDBOX_HANG_S", "3")
        monkeypatch.setenv("SANDBOX_PORTAL_URL", "http://127.0.0.1:5999/")
        app = create_app({"SANDBOX_DATABASE_URL": f"sqlite:///{tmp_path / 's.db'}", "SANDBOX_SECRET_KEY": "k",
                          "SANDBOX_HANG_S": 4.5})  # fmt: skip
        config = app.config
        assert config["SANDBOX_LATENCY_MS_OEN"] == 7 and config["SANDBOX_CALLBACK_SYNC"] is True
        assert config["SANDBOX_HANG_S"] == 4.5 and config["SANDBOX_PORTAL_URL"] == "http://127.0.0.1:5999"
        assert config["SANDBOX_MYPAY_AGENT_UID"] == MYPAY_AGENT_UID and config["SANDBOX_MYPAY_AGENT_NEXT_KEY"] == ""
        assert config["SANDBOX_OPAY_PLATFORM_ID"] == OPAY_PLATFORM_ID and config["SECRET_KEY"] == "k"
        assert config["SANDBOX_OEN_FULL_CARD_NUMBER"] is True and config["SANDBOX_CALLBACK_RETRY_DELAY_S"] == 3
        with app.app_context():
            from sandbox import settings

            assert settings.latency_ms("oen") == 7 and settings.latency_ms("mypay") == 0
            assert settings.callback_url("mypay") == "http://127.0.0.1:5999/webhooks/mypay"
            db.engine.dispose()
        assert stat.S_IMODE(os.stat(tmp_path / "s.db").st_mode) == 0o600
        for name in ("PORTAL_BASE_URL", "PORTAL_DATA_KEY", "PROVIDER_TIMEOUT_S", "MYPAY_AGENT_KEY", "OPAY_PLATFORM_ID"):
            assert name not in config

    def test_the_generated_secret_is_written_once_whole_even_with_racing_processes(self, tmp_path):
        results: list[str] = []
        threads = [
            threading.Thread(target=lambda: results.append(sandbox_config.instance_secret(tmp_path, "key")))
            for _ in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(set(results)) == 1 and len(results[0]) >= 40
        assert stat.S_IMODE(os.stat(tmp_path / "key").st_mode) == 0o600
        assert sorted(p.name for p in tmp_path.iterdir()) == ["key"]  # no temporary file left behind

    def test_a_bad_boolean_in_the_environment_is_an_error(self, monkeypatch):
        monkeypatch.setenv("SANDBOX_CALLBACK_SYNC", "maybe")
        with pytest.raises(ValueError):
            sandbox_config.from_environment()


class TestServing:
    def test_python_m_sandbox_refuses_any_host_but_loopback(self, capsys):
        for host in ("0.0.0.0", "192.168.1.10", "example.com", "::"):  # noqa: S104
            with pytest.raises(SystemExit) as exited:
                main(["--host", host, "--port", str(free_port())])
            assert exited.value.code == 2
        assert "loopback" in capsys.readouterr().err
        assert all(is_loopback(host) for host in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"))

    def test_a_separate_process_is_reached_on_the_port_it_bound_not_one_looked_for_before(self, tmp_path, monkeypatch):
        """The tests looked for a free port, then started the process on it: another test's server could take the port
        in between and answer /healthz in the sandbox's place (the process failing to bind). The process binds a port
        the system picks and names it; a server already on the port the tests would have picked is not reached."""
        from werkzeug.serving import make_server

        import tests.support.sandbox as support

        decoy = make_server("127.0.0.1", 0, lambda _environ, start: start("200 OK", []) or [b"ok"], threaded=True)
        threading.Thread(target=decoy.serve_forever, daemon=True).start()
        monkeypatch.setattr(support, "free_port", lambda: decoy.server_port)
        process = SandboxProcess(tmp_path / "process.db", portal_url="http://127.0.0.1:9")
        try:
            process.start()
            assert process.port != decoy.server_port
            assert requests.get(f"{process.url}/healthz", timeout=5).text == "ok"
            assert "Oen" in requests.get(f"{process.url}/", timeout=5).text  # the sandbox's console, not the decoy
            assert process.process is not None and process.process.poll() is None
        finally:
            process.stop()
            decoy.shutdown()

    def test_a_separate_process_registered_by_the_cli(self, tmp_path, sandbox_factory, wire):
        receiver = sandbox_factory().receiver  # a merchant server to receive the process's callbacks
        process = SandboxProcess(tmp_path / "process.db", portal_url=receiver.url, SANDBOX_CALLBACK_SYNC=True)
        process.register(oen=("procshop", "proc-token"))
        try:
            process.start()
            assert requests.get(f"{process.url}/healthz", timeout=5).text == "ok"
            process.register(mypay="888888880001")  # after start too
            checkout_id = oen_checkout(process.url, "procshop", "proc-token").json()["data"]["id"]
            assert bind_test_card(process.url, "procshop", checkout_id, wire).status_code == 302
            order = {"store_uid": "888888880001", "user_id": "u", "order_id": "P1", "ip": "127.0.0.1", "cost": 100,
                     "items": [{"id": "1", "name": "x", "cost": 100, "amount": 1, "total": 100}]}  # fmt: skip
            assert wire.mypay_post(process.url, "api/orders", order).json()["code"] == "200"
        finally:
            process.stop()
        (hook,) = receiver.of("oen")
        assert hook.json["merchantId"] == "procshop" and hook.path == "/webhooks/oen"
        assert process.process is None


def test_live_sandbox_defaults(tmp_path):
    """The shared helper: its own file and port, a default merchant server nobody listens on, a clean stop."""
    live = LiveSandbox(tmp_path / "live.db")
    try:
        assert live.url == f"http://127.0.0.1:{live.port}" and live.app.config["TESTING"] is True
        assert live.app.config["SANDBOX_PORTAL_URL"] == "http://127.0.0.1:9"
        live.register(oen=("liveshop", "live-token"), mypay="999999990001", opay=("3999990", "a" * 16, "b" * 16))
        with live.ctx():
            assert registry.oen_merchant("liveshop").webhook_url == "http://127.0.0.1:9/webhooks/oen"
            assert registry.mypay_store("999999990001").callback_url == "http://127.0.0.1:9/webhooks/mypay"
        started = time.monotonic()
        assert oen_checkout(live.url, "liveshop", "live-token").json()["code"] == "S0000"
        assert time.monotonic() - started < 5
    finally:
        live.stop()
