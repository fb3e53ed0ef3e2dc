"""Webhook intake limits and retention (issue 12, item 7): per-provider, per-address limits; refused bodies kept as a
hash and an excerpt, filed under no merchant, purged after CALLBACK_RETENTION_DAYS; any body stored and refused."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

import pytest

from portal.extensions import db
from portal.models import WebhookEvent, utcnow
from tests.support.apps import make_app

PROVIDERS = ("oen", "mypay", "opay")


def _deep_json(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


BODIES = {
    "deep_json": (_deep_json(100_000), "application/json"),
    "deep_list": (b"[" * 200_000 + b"]" * 200_000, "application/json"),
    "deep_form_json": (b"x=" + _deep_json(50_000), "application/x-www-form-urlencoded"),
    "broken_utf8": (b'{"merchantId": "shopa", "purpose": "\xff\xfe\xc3("}', "application/json"),
    "latin1_form": (b"MerchantID=2000132&Data=\xe9\xe8\xff&RqID=1", "application/x-www-form-urlencoded"),
    "nul_bytes": (b"\x00" * 1000, "application/octet-stream"),
    "one_mib": (b'{"note": "' + b"4" * (1024 * 1024 - 12) + b'"}', "application/json"),
    "one_mib_form": (b"cardno=" + b"9" * (1024 * 1024 - 7), "application/x-www-form-urlencoded"),
}


@pytest.mark.parametrize("name", sorted(BODIES))
@pytest.mark.parametrize("provider", PROVIDERS)
def test_any_body_is_stored_and_refused_never_a_500(app, client, seed, provider, name):
    body, content_type = BODIES[name]
    assert len(body) <= 1024 * 1024
    response = client.post(f"/webhooks/{provider}", data=body, content_type=content_type)
    assert response.status_code == 400, response.data[:200]
    with app.app_context():
        event = db.session.execute(db.select(WebhookEvent)).scalar_one()
        assert event.status == "refused"
        assert event.dedupe_key == f"{provider}:" + hashlib.sha256(body).hexdigest()  # the hash of what came


def test_a_refused_body_is_kept_as_its_hash_and_a_short_excerpt_without_secrets(app, client, seed):
    body = json.dumps({"merchantId": "shopa", "purpose": "token", "token": "tok-secret", "pad": "x" * 5000})
    client.post("/webhooks/oen", data=body, content_type="application/json")
    with app.app_context():
        event = db.session.execute(db.select(WebhookEvent)).scalar_one()
        assert event.status == "refused"
        assert len(event.body) <= 600 and "tok-secret" not in event.body
        assert hashlib.sha256(body.encode()).hexdigest() in event.body + event.dedupe_key
        assert event.secret_enc is None  # a refused notice's token is not kept at all


def test_a_refused_callback_is_filed_under_no_merchant_on_its_own_word(app, client, seed):
    forged = {"merchantId": "shopa", "purpose": "token", "customId": "CNOPE", "id": "x", "success": True}
    client.post("/webhooks/oen", json=forged)
    with app.app_context():
        event = db.session.execute(db.select(WebhookEvent)).scalar_one()
        assert event.status == "refused" and event.merchant_id is None and event.checkout_id is None


def test_webhooks_are_limited_per_provider_and_address(app, seed):
    app.config["RATELIMIT_ENABLED"] = True
    client = app.test_client()
    body = {"purpose": "nothing"}
    codes = [
        client.post("/webhooks/oen", json={**body, "n": i}, environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code
        for i in range(130)
    ]
    assert codes[:120].count(429) == 0 and codes[-1] == 429  # generous: providers resend
    other_provider = client.post("/webhooks/mypay", data={"n": "1"}, environ_base={"REMOTE_ADDR": "203.0.113.9"})
    other_address = client.post("/webhooks/oen", json={"n": 1}, environ_base={"REMOTE_ADDR": "198.51.100.7"})
    assert other_provider.status_code != 429 and other_address.status_code != 429


def test_purge_removes_refused_and_unconfirmed_callbacks_past_the_retention(tmp_path):
    app = make_app(tmp_path, CALLBACK_RETENTION_DAYS=30)
    assert app.config["CALLBACK_RETENTION_DAYS"] == 30
    with app.app_context():
        old = utcnow() - timedelta(days=31)
        for i, (status, when) in enumerate(
            [("refused", old), ("unconfirmed", old), ("applied", old), ("refused", utcnow())]
        ):
            db.session.add(WebhookEvent(provider="oen", dedupe_key=f"k{i}", status=status, received_at=when))
        db.session.commit()
    result = app.test_cli_runner().invoke(args=["purge-callbacks"])
    assert result.exit_code == 0 and "2" in result.output
    with app.app_context():
        kept = sorted(db.session.execute(db.select(WebhookEvent.dedupe_key)).scalars())
        assert kept == ["k2", "k3"]
        db.engine.dispose()


def test_callback_retention_is_a_documented_setting():
    from pathlib import Path

    from portal.config import SETTINGS

    assert SETTINGS["CALLBACK_RETENTION_DAYS"][0] == 90
    assert "CALLBACK_RETENTION_DAYS" in Path("README.md").read_text()
