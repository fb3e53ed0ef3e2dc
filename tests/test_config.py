"""Settings the portal refuses to start with, and where the providers are in each environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from portal import create_app
from portal.config import TEST_MYPAY_AGENT_KEY, TEST_OPAY_MERCHANT, ConfigError
from portal.extensions import db
from portal.payments import provider_choices
from tests.support.accounts import MYPAY_AGENT_UID, OPAY_PLATFORM_ID, OPAY_PLATFORM_KEY
from tests.support.factories import make_order

ROOT = Path(__file__).resolve().parents[1]


def settings(tmp_path, **overrides) -> dict:
    config = {
        "TESTING": True,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'config.db'}",
        "SECRET_KEY": "test-secret-key-long-enough-for-production",
        "PORTAL_DATA_KEY": "test-data-key-long-enough-for-production",
    }
    config.update(overrides)
    return config


def start(tmp_path, **overrides):
    return create_app(settings(tmp_path, **overrides))


def serve_in_a_new_process(tmp_path, **environ) -> subprocess.CompletedProcess:
    """Load the WSGI app as gunicorn or `flask --app wsgi` would, in a clean process with these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROVIDER_", "PORTAL_", "MYPAY_", "OPAY_"))}
    env |= {"DATABASE_URL": f"sqlite:///{tmp_path / 'new.db'}", "SECRET_KEY": "s" * 32, "PORTAL_DATA_KEY": "d" * 32}
    env |= environ
    return subprocess.run(
        [sys.executable, "-c", "import wsgi"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_a_forgotten_provider_env_behind_https_refuses_to_start(tmp_path):
    result = serve_in_a_new_process(tmp_path, PORTAL_BASE_URL="https://pay.example.com")
    assert result.returncode != 0
    assert "PROVIDER_ENV is not set" in result.stderr and "PROVIDER_ENV=production" in result.stderr


def test_production_refuses_the_documents_mypay_test_key(tmp_path):
    result = serve_in_a_new_process(
        tmp_path,
        PORTAL_BASE_URL="https://pay.example.com",
        PROVIDER_ENV="production",
        MYPAY_AGENT_UID="123456789012",
        MYPAY_AGENT_KEY=TEST_MYPAY_AGENT_KEY,
    )
    assert result.returncode != 0
    assert "refuses MYPAY_AGENT_KEY" in result.stderr


def test_production_with_its_own_settings_starts(tmp_path):
    result = serve_in_a_new_process(tmp_path, PORTAL_BASE_URL="https://pay.example.com", PROVIDER_ENV="production")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "base_url", ["https://pay.example.com", "http://pay.example.com", "http://192.168.1.20:5000", "https://127.0.0.1"]
)
def test_only_a_loopback_http_address_defaults_to_the_sandbox(tmp_path, base_url):
    with pytest.raises(ConfigError, match="PROVIDER_ENV"):
        start(tmp_path, PORTAL_BASE_URL=base_url)


@pytest.mark.parametrize("base_url", ["http://127.0.0.1:5000", "http://localhost:5000", "http://[::1]:5000"])
def test_a_loopback_http_address_defaults_to_the_sandbox_server_on_the_next_port(tmp_path, base_url):
    app = start(tmp_path, PORTAL_BASE_URL=base_url)
    assert app.config["PROVIDER_ENV"] == "sandbox"
    assert app.config["OEN_API_URL"] == "http://127.0.0.1:5001/oen/api"
    assert app.config["MYPAY_API_URL"] == "http://127.0.0.1:5001/mypay/api/agent"
    assert app.config["OPAY_API_URL"] == "http://127.0.0.1:5001/opay"
    assert app.config["OEN_CHECKOUT_URL"] == "http://127.0.0.1:5001/oen/checkout/{merchant_id}/subscription/create/{id}"


def test_sandbox_url_moves_every_provider(tmp_path):
    app = start(tmp_path, SANDBOX_URL="http://127.0.0.1:7001/")
    assert app.config["OEN_API_URL"] == "http://127.0.0.1:7001/oen/api"
    assert app.config["OPAY_API_URL"] == "http://127.0.0.1:7001/opay"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("OEN_API_URL", "http://127.0.0.1:5001/oen/api"),
        ("MYPAY_API_URL", "https://localhost/mypay/api/agent"),
        ("OPAY_API_URL", "http://payment.opay.tw"),
        ("MYPAY_AGENT_UID", MYPAY_AGENT_UID),
        ("OPAY_PLATFORM_HASH_KEY", OPAY_PLATFORM_KEY),
        ("OPAY_PLATFORM_ID", OPAY_PLATFORM_ID),
    ],
)
def test_production_refuses_sandbox_addresses_and_test_credentials(tmp_path, name, value):
    with pytest.raises(ConfigError, match=name):
        start(tmp_path, PORTAL_BASE_URL="https://pay.example.com", PROVIDER_ENV="production", **{name: value})


def test_production_has_no_mypay_until_the_operator_sets_an_agent(tmp_path):
    app = start(tmp_path, PORTAL_BASE_URL="https://pay.example.com", PROVIDER_ENV="production")
    assert (app.config["MYPAY_AGENT_UID"], app.config["MYPAY_AGENT_KEY"]) == ("", "")
    assert app.config["MYPAY_API_URL"] == "https://ka.mypay.tw/api/agent"
    with app.app_context():
        db.create_all()
        from portal.cli import upsert_merchant

        merchant = upsert_merchant("m", "M", mypay_store_uid="123456780001")
        db.session.flush()
        with app.test_request_context(headers={"Accept-Language": "en"}):
            choices = {name: (ok, why) for name, ok, why in provider_choices(make_order(merchant.id))}
    assert choices["mypay"] == (False, "Not set up on this portal yet.")


@pytest.mark.parametrize("env", ["sandbox", "testing"])
def test_sandbox_and_testing_keep_the_documents_test_agent(tmp_path, env):
    app = start(tmp_path, PROVIDER_ENV=env)
    assert app.config["MYPAY_AGENT_KEY"] == TEST_MYPAY_AGENT_KEY


def test_production_refuses_a_merchants_opay_stage_key_on_the_command_line(tmp_path):
    app = start(tmp_path, PORTAL_BASE_URL="https://pay.example.com", PROVIDER_ENV="production")
    with app.app_context():
        db.create_all()
    merchant_id, key, iv = TEST_OPAY_MERCHANT
    result = app.test_cli_runner().invoke(
        args=["merchant", "create", "m", "--name", "M", "--opay-merchant-id", merchant_id, "--opay-hash-key", key]
    )
    assert result.exit_code != 0 and "public test value" in result.output
    result = app.test_cli_runner().invoke(args=["merchant", "create", "m", "--name", "M", "--opay-hash-iv", iv])
    assert result.exit_code != 0


# ---------------------------------------------------------------- the banner


@pytest.mark.parametrize(("env", "shown"), [("sandbox", "Sandbox"), ("testing", "Test mode"), ("production", None)])
def test_every_page_says_when_payments_are_not_real(tmp_path, env, shown):
    base = "http://127.0.0.1:5000" if env == "sandbox" else "https://pay.example.com"
    app = start(tmp_path, PROVIDER_ENV=env, PORTAL_BASE_URL=base)
    page = app.test_client().get("/login", headers={"Accept-Language": "en"}).get_data(as_text=True)
    if shown:
        assert 'class="env-banner' in page and "測試環境" in page and shown in page
    else:
        assert "env-banner" not in page and "測試環境" not in page


def test_a_server_database_pool_has_a_connection_for_every_request_thread(tmp_path, monkeypatch):
    """gunicorn's threads each hold a connection during a request: the pool is sized for them, not left at 5."""
    from portal.config import engine_options

    monkeypatch.setenv("GUNICORN_THREADS", "16")
    url = "postgresql+psycopg://portal:portal@127.0.0.1/portal"
    options = engine_options({"SQLALCHEMY_DATABASE_URI": url})
    assert options["pool_size"] == 18 and "pool_pre_ping" not in options  # checked without a round trip
    assert engine_options({"SQLALCHEMY_DATABASE_URI": url, "DATABASE_POOL_SIZE": 4})["pool_size"] == 4
    assert "pool_size" not in engine_options({"SQLALCHEMY_DATABASE_URI": "sqlite:///x.db"})
