"""Provider settings and users: admins only, own merchant only, secrets encrypted and never shown."""

from __future__ import annotations

import json
import re

import pytest

from portal.extensions import db
from portal.models import AuditEvent, Merchant, User, UserSession
from portal.security import decrypt_secret
from tests.support.accounts import SHOP_A, SHOP_B, portal_settings
from tests.support.apps import AuthActions
from tests.support.constants import PASSWORD

A, B = portal_settings(SHOP_A), portal_settings(SHOP_B)  # the seeded merchants' settings
SEEDED_SECRETS = (A["oen_token"], A["opay_hash_key"], A["opay_hash_iv"], B["oen_token"], B["opay_hash_key"])
NEW_SECRETS = {
    "oen_token": "new-oen-crm-token-XYZ",
    "opay_hash_key": "Kk1234567890abcd",
    "opay_hash_iv": "Iv1234567890abcd",
}


def settings_form(**overrides) -> dict:
    """Merchant A's current ids with every secret left empty (keep), plus overrides."""
    data = {
        "oen_merchant_id": A["oen_merchant_id"],
        "oen_token": "",
        "mypay_store_uid": A["mypay_store_uid"],
        "opay_merchant_id": A["opay_merchant_id"],
        "opay_hash_key": "",
        "opay_hash_iv": "",
    }
    data.update(overrides)
    return data


def merchant(app, merchant_id) -> Merchant:
    with app.app_context():
        found = db.session.get(Merchant, merchant_id)
        db.session.expunge(found)
        return found


def secret(app, merchant_id, name) -> str | None:
    with app.app_context():
        return decrypt_secret(getattr(db.session.get(Merchant, merchant_id), f"{name}_enc"))


def user_by_email(app, email) -> User | None:
    with app.app_context():
        found = db.session.execute(db.select(User).filter_by(email=email)).scalar_one_or_none()
        if found is not None:
            db.session.expunge(found)
        return found


def audit_events(app, action) -> list[AuditEvent]:
    with app.app_context():
        rows = db.session.execute(db.select(AuditEvent).filter_by(action=action).order_by(AuditEvent.id)).scalars()
        rows = rows.all()
        for row in rows:
            db.session.expunge(row)
        return rows


def field_errors(body: str) -> list[str]:
    return re.findall(r'<p class="error">([^<]*)</p>', body)


def assert_no_secret(body: str, *extra: str) -> None:
    for value in (*SEEDED_SECRETS, *NEW_SECRETS.values(), *extra):
        assert value not in body


# --- Who may come in -----------------------------------------------------------------------------------------------


def admin_routes(seed_user_id: int) -> list[tuple[str, str]]:
    return [
        ("get", "/settings"),
        ("post", "/settings"),
        ("get", "/settings/users"),
        ("post", "/settings/users"),
        ("post", f"/settings/users/{seed_user_id}/role"),
        ("post", f"/settings/users/{seed_user_id}/deactivate"),
        ("post", f"/settings/users/{seed_user_id}/reactivate"),
        ("get", "/settings/audit"),
    ]


def test_staff_get_403_on_every_settings_route(app, client, auth, seed):
    admin = user_by_email(app, seed.admin)
    auth.login(seed.staff)
    for method, url in admin_routes(admin.id):
        data = {"role": "staff", "email": "x@a.example", "password": "long-enough-password", **settings_form()}
        response = getattr(client, method)(url, data=data)
        assert response.status_code == 403, (method, url)
    assert user_by_email(app, seed.admin).role == "admin"
    assert user_by_email(app, "x@a.example") is None
    assert audit_events(app, "settings_changed") == []


def test_anonymous_is_sent_to_login(app, client, seed):
    for method, url in admin_routes(1):
        response = getattr(client, method)(url)
        assert response.status_code == 302
        assert "/login" in response.headers["Location"]


def test_settings_nav_only_for_admins(client, auth, seed):
    auth.login(seed.staff)
    assert 'href="/settings"' not in client.get("/orders").get_data(as_text=True)
    auth.logout()
    auth.login(seed.admin)
    body = client.get("/orders").get_data(as_text=True)
    assert 'href="/settings"' in body
    assert 'href="/settings/audit"' in body


# --- Provider settings -----------------------------------------------------------------------------------------------


def test_settings_page_shows_ids_and_callback_urls_but_no_secret(client, auth, seed):
    auth.login(seed.admin)
    response = client.get("/settings")
    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert f'value="{A["oen_merchant_id"]}"' in body
    assert f'value="{A["mypay_store_uid"]}"' in body
    assert "http://127.0.0.1:5000/webhooks/oen" in body
    assert "http://127.0.0.1:5000/webhooks/mypay" in body
    assert_no_secret(body)
    # The secret inputs are empty password inputs.
    for name in NEW_SECRETS:
        tag = re.search(rf'<input[^>]*name="{name}"[^>]*>', body).group(0)
        assert 'type="password"' in tag
        assert 'value=""' in tag


def test_callback_urls_follow_portal_base_url(tmp_path):
    from tests.support.apps import make_app, seed_merchants

    app = make_app(tmp_path, WTF_CSRF_ENABLED=False, PORTAL_BASE_URL="https://pay.shop.example/")
    seed = seed_merchants(app)
    client = app.test_client()
    AuthActions(client).login(seed.admin, base_url="https://localhost")
    body = client.get("/settings", base_url="https://localhost").get_data(as_text=True)
    assert "https://pay.shop.example/webhooks/oen" in body
    assert "https://pay.shop.example/webhooks/mypay" in body
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def test_saving_secrets_encrypts_them_and_never_shows_them(app, client, auth, seed):
    auth.login(seed.admin)
    response = client.post("/settings", data=settings_form(**NEW_SECRETS), follow_redirects=True)
    assert response.status_code == 200
    assert_no_secret(response.get_data(as_text=True))
    with app.app_context():
        stored = db.session.get(Merchant, seed.merchant_id)
        for name, value in NEW_SECRETS.items():
            column = getattr(stored, f"{name}_enc")
            assert value not in column
            assert decrypt_secret(column) == value
    for url in ("/settings", "/settings/users", "/settings/audit", "/orders"):
        assert_no_secret(client.get(url).get_data(as_text=True))
    # Merchant B is untouched.
    assert secret(app, seed.other_merchant_id, "oen_token") == B["oen_token"]


def test_settings_change_is_audited_by_field_name_only(app, client, auth, seed):
    auth.login(seed.admin)
    client.post("/settings", data=settings_form(oen_merchant_id="shop-a2", oen_token=NEW_SECRETS["oen_token"]))
    (event,) = audit_events(app, "settings_changed")
    assert event.merchant_id == seed.merchant_id
    assert event.user_id == user_by_email(app, seed.admin).id
    assert sorted(event.detail["fields"]) == ["oen_merchant_id", "oen_token"]
    assert NEW_SECRETS["oen_token"] not in json.dumps(event.detail)


def test_empty_secret_keeps_the_stored_one(app, client, auth, seed):
    auth.login(seed.admin)
    response = client.post("/settings", data=settings_form(mypay_store_uid="MY-store_9"))
    assert response.status_code == 303
    assert merchant(app, seed.merchant_id).mypay_store_uid == "MY-store_9"
    assert secret(app, seed.merchant_id, "oen_token") == A["oen_token"]
    assert secret(app, seed.merchant_id, "opay_hash_key") == A["opay_hash_key"]
    assert secret(app, seed.merchant_id, "opay_hash_iv") == A["opay_hash_iv"]
    (event,) = audit_events(app, "settings_changed")
    assert event.detail["fields"] == ["mypay_store_uid"]


def test_unchanged_form_changes_nothing(app, client, auth, seed):
    auth.login(seed.admin)
    before = merchant(app, seed.merchant_id).oen_token_enc
    client.post("/settings", data=settings_form(oen_token=A["oen_token"]))  # the same value again
    assert merchant(app, seed.merchant_id).oen_token_enc == before
    assert audit_events(app, "settings_changed") == []


def test_clear_removes_a_secret(app, client, auth, seed):
    auth.login(seed.admin)
    client.post("/settings", data=settings_form(clear_opay_hash_iv="y"))
    assert merchant(app, seed.merchant_id).opay_hash_iv_enc is None
    assert secret(app, seed.merchant_id, "opay_hash_key") == A["opay_hash_key"]
    body = client.get("/settings").get_data(as_text=True)
    assert "not set" in body
    (event,) = audit_events(app, "settings_changed")
    assert event.detail["fields"] == ["opay_hash_iv"]


def test_new_value_and_clear_together_are_refused(app, client, auth, seed):
    auth.login(seed.admin)
    response = client.post("/settings", data=settings_form(oen_token="another-token-1", clear_oen_token="y"))
    assert response.status_code == 400
    assert "Either enter a new value or remove the stored one, not both." in field_errors(
        response.get_data(as_text=True)
    )
    assert secret(app, seed.merchant_id, "oen_token") == A["oen_token"]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("oen_merchant_id", "shop a", "Use only letters, digits, - and _."),
        ("oen_merchant_id", "<script>", "Use only letters, digits, - and _."),
        ("oen_merchant_id", "x" * 65, "At most 64 characters."),
        ("mypay_store_uid", "商店", "Use only letters, digits, - and _."),
        ("mypay_store_uid", "9" * 33, "At most 32 characters."),
        ("opay_merchant_id", "2000132;", "Use only letters, digits, - and _."),
        ("opay_hash_key", "5294y06JbISpM5x", "Exactly 16 characters."),
        ("opay_hash_key", A["opay_hash_key"] + "A", "Exactly 16 characters."),
        ("opay_hash_iv", "v77hoKGq4kWxNN!S", "Use only letters and digits."),
        ("oen_token", "short", "Between 8 and 4096 characters."),
        ("oen_token", "has a space inside", "Use only letters, digits and punctuation, with no spaces."),
    ],
)
def test_bad_settings_get_a_message_on_the_field(app, client, auth, seed, field, value, message):
    auth.login(seed.admin)
    response = client.post("/settings", data=settings_form(**{field: value}))
    body = response.get_data(as_text=True)
    assert response.status_code == 400
    assert field_errors(body) == [message]
    assert re.search(
        rf'<input[^>]*aria-invalid="true"[^>]*name="{field}"|<input[^>]*name="{field}"[^>]*aria-invalid', body
    )
    stored = merchant(app, seed.merchant_id)
    assert (stored.oen_merchant_id, stored.mypay_store_uid, stored.opay_merchant_id) == (
        A["oen_merchant_id"],
        A["mypay_store_uid"],
        A["opay_merchant_id"],
    )
    assert secret(app, seed.merchant_id, "oen_token") == A["oen_token"]
    if field in NEW_SECRETS:
        assert value not in body  # a refused secret is not echoed either


def test_refused_form_does_not_echo_valid_secrets(client, auth, seed):
    auth.login(seed.admin)
    response = client.post("/settings", data=settings_form(oen_merchant_id="bad id", **NEW_SECRETS))
    assert response.status_code == 400
    assert_no_secret(response.get_data(as_text=True))


def test_an_id_of_another_merchant_is_refused(app, client, auth, seed):
    auth.login(seed.admin)
    taken = {"opay_merchant_id": B["opay_merchant_id"], "oen_merchant_id": B["oen_merchant_id"]}
    response = client.post("/settings", data=settings_form(**taken))
    assert response.status_code == 400
    errors = field_errors(response.get_data(as_text=True))
    assert errors == ["Another merchant on this portal already uses this id."] * 2
    assert merchant(app, seed.merchant_id).opay_merchant_id == A["opay_merchant_id"]


def test_blank_id_removes_it(app, client, auth, seed):
    auth.login(seed.admin)
    client.post("/settings", data=settings_form(mypay_store_uid=""))
    assert merchant(app, seed.merchant_id).mypay_store_uid is None


def test_other_merchant_admin_sees_and_changes_only_its_own_settings(app, client, auth, seed):
    auth.login(seed.other_admin)
    body = client.get("/settings").get_data(as_text=True)
    assert f'value="{B["oen_merchant_id"]}"' in body
    assert A["oen_merchant_id"] not in body
    assert A["mypay_store_uid"] not in body
    client.post(
        "/settings",
        data={
            "oen_merchant_id": B["oen_merchant_id"],
            "mypay_store_uid": "B-1",
            "opay_merchant_id": B["opay_merchant_id"],
            "oen_token": "b-new-token",
        },
    )
    assert merchant(app, seed.other_merchant_id).mypay_store_uid == "B-1"
    assert secret(app, seed.other_merchant_id, "oen_token") == "b-new-token"
    assert merchant(app, seed.merchant_id).mypay_store_uid == A["mypay_store_uid"]
    assert secret(app, seed.merchant_id, "oen_token") == A["oen_token"]


# --- Users ---------------------------------------------------------------------------------------------------------


def test_users_page_lists_own_merchant_only(client, auth, seed):
    auth.login(seed.admin)
    body = client.get("/settings/users").get_data(as_text=True)
    assert seed.admin in body and seed.staff in body
    assert seed.other_admin not in body
    auth.logout()
    auth.login(seed.other_admin)
    body = client.get("/settings/users").get_data(as_text=True)
    assert seed.other_admin in body
    assert "a.example" not in body


def test_admin_creates_a_user_who_can_log_in(app, client, auth, seed):
    auth.login(seed.admin)
    response = client.post(
        "/settings/users", data={"email": " New.Staff@A.example ", "role": "staff", "password": "initial-pass-1"}
    )
    assert response.status_code == 303
    created = user_by_email(app, "new.staff@a.example")
    assert created.merchant_id == seed.merchant_id
    assert created.role == "staff"
    assert created.active
    assert "initial-pass-1" not in created.password_hash
    (event,) = audit_events(app, "user_created")
    assert event.detail == {"target_user_id": created.id, "email": "new.staff@a.example", "role": "staff"}
    assert "new.staff@a.example" in client.get("/settings/users").get_data(as_text=True)

    other = app.test_client()
    AuthActions(other).login("new.staff@a.example", "initial-pass-1")
    assert other.get("/orders").status_code == 200
    assert other.get("/settings").status_code == 403


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"email": "", "role": "staff", "password": "long-enough-1"}, "Please enter an e-mail address."),
        (
            {"email": "not-an-address", "role": "staff", "password": "long-enough-1"},
            "Please enter a valid e-mail address.",
        ),
        (
            {"email": "admin@b.example", "role": "staff", "password": "long-enough-1"},
            "This e-mail address is already in use.",
        ),
        (
            {"email": "STAFF@a.example", "role": "staff", "password": "long-enough-1"},
            "This e-mail address is already in use.",
        ),
        ({"email": "n@a.example", "role": "owner", "password": "long-enough-1"}, "Choose admin or staff."),
        ({"email": "n@a.example", "role": "staff", "password": "short"}, "Between 12 and 1024 characters."),
        ({"email": "n@a.example", "role": "staff", "password": ""}, "Please enter an initial password."),
        ({"email": "n@a.example", "role": "staff", "password": "x" * 1025}, "Between 12 and 1024 characters."),
    ],
)
def test_bad_new_user_gets_a_message_on_the_field(app, client, auth, seed, data, message):
    auth.login(seed.admin)
    response = client.post("/settings/users", data=data)
    body = response.get_data(as_text=True)
    assert response.status_code == 400
    assert field_errors(body) == [message]
    assert data["password"] not in body or not data["password"]
    with app.app_context():
        assert db.session.execute(db.select(db.func.count(User.id))).scalar_one() == 3
    assert audit_events(app, "user_created") == []


def test_admin_changes_a_role(app, client, auth, seed):
    auth.login(seed.admin)
    staff = user_by_email(app, seed.staff)
    response = client.post(f"/settings/users/{staff.id}/role", data={"role": "admin"})
    assert response.status_code == 303
    assert user_by_email(app, seed.staff).role == "admin"
    (event,) = audit_events(app, "user_changed")
    assert event.detail["target_user_id"] == staff.id
    assert (event.detail["role_from"], event.detail["role_to"]) == ("staff", "admin")


def test_bad_role_gets_a_message_on_the_field(app, client, auth, seed):
    auth.login(seed.admin)
    staff = user_by_email(app, seed.staff)
    response = client.post(f"/settings/users/{staff.id}/role", data={"role": "root"})
    assert response.status_code == 400
    assert field_errors(response.get_data(as_text=True)) == ["Choose admin or staff."]
    assert user_by_email(app, seed.staff).role == "staff"


def test_admin_cannot_demote_themself(app, client, auth, seed):
    auth.login(seed.admin)
    me = user_by_email(app, seed.admin)
    body = client.get("/settings/users").get_data(as_text=True)
    assert f"/settings/users/{me.id}/role" not in body
    assert f"/settings/users/{me.id}/deactivate" not in body
    response = client.post(f"/settings/users/{me.id}/role", data={"role": "staff"})
    assert response.status_code == 400
    assert "You cannot take away your own admin role." in field_errors(response.get_data(as_text=True))
    assert user_by_email(app, seed.admin).role == "admin"
    assert audit_events(app, "user_changed") == []


def test_admin_cannot_deactivate_themself(app, client, auth, seed):
    auth.login(seed.admin)
    me = user_by_email(app, seed.admin)
    response = client.post(f"/settings/users/{me.id}/deactivate", follow_redirects=True)
    assert "You cannot deactivate your own account." in response.get_data(as_text=True)
    assert user_by_email(app, seed.admin).active
    assert client.get("/settings").status_code == 200


def test_deactivation_ends_the_users_login_at_once(app, client, auth, seed):
    staff_client = app.test_client()
    AuthActions(staff_client).login(seed.staff)
    assert staff_client.get("/orders").status_code == 200
    staff = user_by_email(app, seed.staff)

    auth.login(seed.admin)
    response = client.post(f"/settings/users/{staff.id}/deactivate")
    assert response.status_code == 303
    assert not user_by_email(app, seed.staff).active
    with app.app_context():
        assert db.session.execute(db.select(UserSession).filter_by(user_id=staff.id)).first() is None

    response = staff_client.get("/orders")
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]
    AuthActions(staff_client).login(seed.staff)
    assert staff_client.get("/orders").status_code == 302

    (event,) = audit_events(app, "user_changed")
    assert event.detail["change"] == "deactivated"
    assert "Deactivated" in client.get("/settings/users").get_data(as_text=True)

    client.post(f"/settings/users/{staff.id}/reactivate")
    assert user_by_email(app, seed.staff).active
    AuthActions(staff_client).login(seed.staff)
    assert staff_client.get("/orders").status_code == 200
    assert [e.detail["change"] for e in audit_events(app, "user_changed")] == ["deactivated", "reactivated"]


def test_other_merchant_admin_cannot_touch_our_users(app, client, auth, seed):
    staff = user_by_email(app, seed.staff)
    auth.login(seed.other_admin)
    assert client.post(f"/settings/users/{staff.id}/role", data={"role": "admin"}).status_code == 404
    assert client.post(f"/settings/users/{staff.id}/deactivate").status_code == 404
    assert client.post(f"/settings/users/{staff.id}/reactivate").status_code == 404
    after = user_by_email(app, seed.staff)
    assert (after.role, after.active) == ("staff", True)
    assert audit_events(app, "user_changed") == []


def test_user_created_by_admin_of_b_belongs_to_b(app, client, auth, seed):
    auth.login(seed.other_admin)
    client.post("/settings/users", data={"email": "clerk@b.example", "role": "staff", "password": PASSWORD})
    assert user_by_email(app, "clerk@b.example").merchant_id == seed.other_merchant_id


# --- CSRF ----------------------------------------------------------------------------------------------------------


def test_settings_forms_need_a_csrf_token(csrf_app):
    from tests.support.apps import seed_merchants

    seed = seed_merchants(csrf_app)
    client = csrf_app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"', page)
    token = token.group(1) or token.group(2)
    client.post("/login", data={"email": seed.admin, "password": PASSWORD, "csrf_token": token})
    with csrf_app.app_context():
        staff_id = db.session.execute(db.select(User.id).filter_by(email=seed.staff)).scalar_one()
    for url, data in [
        ("/settings", settings_form(oen_token="csrf-less-token")),
        ("/settings/users", {"email": "csrf@a.example", "role": "admin", "password": PASSWORD}),
        (f"/settings/users/{staff_id}/role", {"role": "admin"}),
        (f"/settings/users/{staff_id}/deactivate", {}),
    ]:
        assert client.post(url, data=data).status_code == 400, url
    with csrf_app.app_context():
        staff = db.session.get(User, staff_id)
        assert (staff.role, staff.active) == ("staff", True)
        assert db.session.execute(db.select(User).filter_by(email="csrf@a.example")).first() is None
        assert decrypt_secret(db.session.get(Merchant, seed.merchant_id).oen_token_enc) == A["oen_token"]
    # With the page's token the same request goes through.
    for url in ("/settings", "/settings/users"):
        assert 'name="csrf_token"' in client.get(url).get_data(as_text=True)
    page = client.get("/settings/users").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = client.post(f"/settings/users/{staff_id}/deactivate", data={"csrf_token": token})
    assert response.status_code == 303
