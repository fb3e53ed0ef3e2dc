"""Hardening of the portal itself: what caches may keep, secrets at startup, limits per real client, lockouts."""

from __future__ import annotations

import os
import stat
import threading

import pytest

from portal import create_app
from portal.config import ConfigError
from portal.extensions import db
from tests.support.accounts import MYPAY_STORE_UID
from tests.support.factories import make_checkout, make_order

STRONG = "correct-horse-battery"


def base_settings(tmp_path, **overrides) -> dict:
    config = {
        "TESTING": True,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'h.db'}",
        "SECRET_KEY": "test-secret-key-0123456789abcdef",
        "PORTAL_DATA_KEY": "test-data-key-0123456789abcdef",
        "WTF_CSRF_ENABLED": False,
    }
    config.update(overrides)
    return config


# ---------------------------------------------------------------- item 8: no-store on every page with data


def test_pages_with_merchant_or_customer_data_are_never_cached(app, seed, auth, client):
    with app.app_context():
        token = make_checkout(make_order(seed.merchant_id)).public_token
        db.session.commit()
    assert "no-store" in client.get(f"/pay/{token}").headers.get("Cache-Control", "")
    assert "no-store" in client.get(f"/pay/{token}/return").headers.get("Cache-Control", "")
    assert "no-store" in client.get("/pay/no-such-link").headers.get("Cache-Control", "")
    auth.login()
    for path in ("/orders", "/orders/new", "/settings", "/transactions", "/callbacks", "/settings/audit"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert "no-store" in response.headers.get("Cache-Control", ""), path
    # static files may be cached
    assert "no-store" not in client.get("/static/css/portal.css").headers.get("Cache-Control", "")


# ---------------------------------------------------------------- item 9: instance secrets


def test_instance_secrets_are_created_once_even_by_processes_starting_together(tmp_path):
    from portal.config import _instance_secret

    seen, errors = [], []

    def start():
        try:
            seen.append(_instance_secret(tmp_path, "data_key", 32))
        except Exception as exc:  # noqa: BLE001 - any failure is the bug
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(16)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert errors == []
    assert len(set(seen)) == 1 and len(seen[0]) >= 40
    assert stat.S_IMODE(os.stat(tmp_path / "data_key").st_mode) == 0o600


@pytest.mark.parametrize("name", ["SECRET_KEY", "PORTAL_DATA_KEY"])
@pytest.mark.parametrize("value", [" ", "short-key"])
def test_an_empty_or_short_key_is_refused(tmp_path, name, value):
    with pytest.raises(ConfigError, match=name):
        create_app(base_settings(tmp_path, **{name: value}))


def test_an_empty_instance_key_file_is_refused_not_used(tmp_path, monkeypatch):
    (tmp_path / "instance").mkdir()
    (tmp_path / "instance" / "data_key").write_text("")
    from portal.config import _instance_secret

    with pytest.raises(ConfigError, match="data_key"):
        _instance_secret(tmp_path / "instance", "data_key", 32)


def test_the_sqlite_file_is_readable_by_its_owner_only(tmp_path):
    app = create_app(base_settings(tmp_path))
    with app.app_context():
        db.create_all()
        db.engine.dispose()
    assert stat.S_IMODE(os.stat(tmp_path / "h.db").st_mode) == 0o600


# ---------------------------------------------------------------- item 11: limits per real client


def proxied_app(tmp_path, proxies: int):
    app = create_app(base_settings(tmp_path, TRUSTED_PROXIES=proxies, RATELIMIT_ENABLED=True))
    with app.app_context():
        db.create_all()
    return app


def test_behind_a_trusted_proxy_each_customer_has_their_own_limit(tmp_path):
    app = proxied_app(tmp_path, proxies=1)
    client = app.test_client()
    # one customer guessing links is stopped ...
    codes = [client.get(f"/pay/guess{n}", headers={"X-Forwarded-For": "198.51.100.7"}).status_code for n in range(70)]
    assert 429 in codes
    # ... every other customer behind the same proxy is not
    assert client.get("/pay/guess-x", headers={"X-Forwarded-For": "198.51.100.8"}).status_code == 404


def test_without_a_trusted_proxy_a_spoofed_forwarded_for_changes_nothing(tmp_path):
    app = proxied_app(tmp_path, proxies=0)
    client = app.test_client()
    codes = [client.get(f"/pay/guess{n}", headers={"X-Forwarded-For": f"203.0.113.{n}"}).status_code for n in range(70)]
    assert 429 in codes  # the header is ignored: all 70 guesses come from one address


def test_many_customers_behind_one_shared_address_are_never_blocked_on_real_links(tmp_path):
    app = proxied_app(tmp_path, proxies=0)
    with app.app_context():
        from portal.accounts import upsert_merchant

        merchant = upsert_merchant("m", "M", mypay_store_uid=MYPAY_STORE_UID)
        db.session.flush()
        tokens = [make_checkout(make_order(merchant.id)).public_token for _ in range(40)]
        db.session.commit()
    client = app.test_client()
    # 40 customers behind one carrier address each open their link three times: 120 requests, none refused
    codes = {client.get(f"/pay/{token}").status_code for token in tokens for _ in range(3)}
    assert codes == {200}


# ---------------------------------------------------------------- item 13: no lockout of a real user


def test_failed_logins_from_elsewhere_do_not_lock_the_real_user_out(app, seed, client):
    app.config["RATELIMIT_ENABLED"] = True
    attacker = app.test_client()
    for _ in range(40):
        attacker.post(
            "/login",
            data={"email": "admin@a.example", "password": "wrong-password"},
            environ_base={"REMOTE_ADDR": "203.0.113.66"},
        )
    refused = attacker.post(
        "/login",
        data={"email": "admin@a.example", "password": "wrong-password"},
        environ_base={"REMOTE_ADDR": "203.0.113.66"},
    )
    assert refused.status_code == 429  # the attacker is slowed down ...
    real = client.post(
        "/login", data={"email": "admin@a.example", "password": STRONG}, environ_base={"REMOTE_ADDR": "192.0.2.10"}
    )
    assert real.status_code == 302 and real.headers["Location"].endswith("/orders")  # ... the user is not
