"""The API key command and the per-key rate limit."""

from __future__ import annotations

from portal import api_keys
from portal.extensions import db
from portal.models import ApiKey, AuditEvent


def test_cli_prints_the_key_alone_on_the_last_line(app, runner, seed):
    result = runner.invoke(args=["api-key", "create", "--merchant", "shop-a", "--name", "ERP", "--refunds"])
    assert result.exit_code == 0, result.output
    secret = result.output.rstrip("\n").splitlines()[-1]
    assert secret.startswith("ptl_test_") and len(secret) > 40 and " " not in secret
    assert result.output.count(secret) == 1
    with app.app_context():
        key = db.session.execute(db.select(ApiKey)).scalar_one()
        assert key.can_refund and key.merchant_id == seed.merchant_id
        assert key.key_hash == api_keys.hash_key(secret) and secret not in key.prefix
        assert api_keys.authenticate(secret).id == key.id
        event = db.session.execute(db.select(AuditEvent).filter_by(action="api_key_created")).scalar_one()
        assert secret not in str(event.detail)

    plain = runner.invoke(args=["api-key", "create", "--merchant", "shop-a", "--name", "POS"])
    assert plain.exit_code == 0
    with app.app_context():
        assert not db.session.execute(db.select(ApiKey).filter_by(name="POS")).scalar_one().can_refund
    missing = runner.invoke(args=["api-key", "create", "--merchant", "nope", "--name", "X"])
    assert missing.exit_code != 0 and "no merchant" in missing.output


def test_rate_limit_per_key_answers_problem_json(app, client, seed):
    app.config["API_RATE_LIMIT"] = "3/minute"
    with app.app_context():
        from portal.models import Merchant

        merchant = db.session.get(Merchant, seed.merchant_id)
        first = api_keys.create_key(merchant, "one", can_refund=False, user_id=None).secret
        second = api_keys.create_key(merchant, "two", can_refund=False, user_id=None).secret
    for _ in range(3):
        assert client.get("/api/v1/orders", headers={"Authorization": f"Bearer {first}"}).status_code == 200
    limited = client.get("/api/v1/orders", headers={"Authorization": f"Bearer {first}"})
    assert limited.status_code == 429
    assert limited.content_type.startswith("application/problem+json") and limited.headers["Retry-After"]
    assert limited.get_json()["status"] == 429
    # Another key of the same shop has its own allowance.
    assert client.get("/api/v1/orders", headers={"Authorization": f"Bearer {second}"}).status_code == 200


def test_last_use_written_at_most_once_a_minute(app, client, seed):
    with app.app_context():
        from portal.models import Merchant

        merchant = db.session.get(Merchant, seed.merchant_id)
        secret = api_keys.create_key(merchant, "one", can_refund=False, user_id=None).secret
    client.get("/api/v1/orders", headers={"Authorization": f"Bearer {secret}"})
    with app.app_context():
        first = db.session.execute(db.select(ApiKey.last_used_at)).scalar_one()
    assert first is not None
    client.get("/api/v1/orders", headers={"Authorization": f"Bearer {secret}"})
    with app.app_context():
        assert db.session.execute(db.select(ApiKey.last_used_at)).scalar_one() == first


def test_the_page_that_showed_a_new_key_sent_again_makes_no_second_key(app, client, auth):
    """A reload after "create" sends the same form again: recognised by its one-time token, nothing is created and
    the admin is told what happened (the key was shown once, when it was made)."""
    import re

    auth.login()
    page = client.get("/settings/api-keys").get_data(as_text=True)
    token = re.search(r'name="form_token" type="hidden" value="([^"]+)"', page).group(1)
    form = {"name": "ERP", "form_token": token}
    first = client.post("/settings/api-keys", data=form)
    assert first.status_code == 201 and "data-api-key" in first.get_data(as_text=True)
    again = client.post("/settings/api-keys", data=form, follow_redirects=True)
    assert again.status_code == 200 and "This form was sent already" in again.get_data(as_text=True)
    assert "data-api-key" not in again.get_data(as_text=True)
    with app.app_context():
        assert len(db.session.execute(db.select(ApiKey)).scalars().all()) == 1
        created = db.session.execute(db.select(AuditEvent).filter_by(action="api_key_created")).scalars().all()
        assert len(created) == 1
    fresh = client.get("/settings/api-keys").get_data(as_text=True)
    assert re.search(r'name="form_token" type="hidden" value="([^"]+)"', fresh).group(1) != token
