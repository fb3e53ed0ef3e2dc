"""Every route in app.url_map, for every kind of visitor, against the access table written below.

A route that is not in the table fails the test: a new route is added here, deliberately, with who may use it.
Path parameters are merchant A's real ids and a real customer link of A (the anonymous visitor gets a made-up link).
GET routes are asked with GET; POST-only routes with an empty POST (CSRF is off in this app). GET+POST routes are
asked both ways (the POST in WRITES). Provider calls are answered by nobody (responses, nothing registered), so no
request leaves the machine.
"""

from __future__ import annotations

import secrets

import pytest
import responses

from portal import create_app
from portal.extensions import db, limiter
from portal.models import Refund
from tests.support.constants import PASSWORD
from tests.support.factories import make_checkout, make_order

ROLES = ("anon", "customer", "staff", "admin", "other_admin")
LOGINS = {"staff": "staff@a.example", "admin": "admin@a.example", "other_admin": "admin@b.example"}
LOGIN = "login"  # a 302 to the login page (any other 302 is written as 302)

# Who gets what. anon: no login, no link (a made-up /pay token); customer: no login, holding a real link of merchant
# A; staff and admin of merchant A; other_admin: the admin of merchant B, asking for merchant A's things.
# Merchant B's admin gets 200 on pages without an id: they show B's own things (scoping is tested with each page).
ACCESS: dict[str, dict[str, int | str]] = {
    # anyone
    "main.index": {"anon": LOGIN, "customer": LOGIN, "staff": 302, "admin": 302, "other_admin": 302},
    "main.healthz": {"anon": 200, "customer": 200, "staff": 200, "admin": 200, "other_admin": 200},
    "main.favicon": {"anon": 301, "customer": 301, "staff": 301, "admin": 301, "other_admin": 301},
    "main.set_language": {"anon": 302, "customer": 302, "staff": 302, "admin": 302, "other_admin": 302},
    "auth.login": {"anon": 200, "customer": 200, "staff": 302, "admin": 302, "other_admin": 302},
    "auth.logout": {"anon": LOGIN, "customer": LOGIN, "staff": LOGIN, "admin": LOGIN, "other_admin": LOGIN},
    # one's own account (other_admin changes their own)
    "auth.password": {"anon": LOGIN, "customer": LOGIN, "staff": 200, "admin": 200, "other_admin": 200},
    "auth.two_factor_setup": {"anon": LOGIN, "customer": LOGIN, "staff": 200, "admin": 200, "other_admin": 200},
    "auth.two_factor_off": {"anon": LOGIN, "customer": LOGIN, "staff": 303, "admin": 303, "other_admin": 303},
    # the second step of a login: only after the right password (otherwise back to the login page)
    "auth.login_code": {"anon": LOGIN, "customer": LOGIN, "staff": LOGIN, "admin": LOGIN, "other_admin": LOGIN},
    # providers: verified by content, not by login (the empty body is refused)
    "webhooks.receive": {"anon": 400, "customer": 400, "staff": 400, "admin": 400, "other_admin": 400},
    # customers: whoever holds the link (a made-up link is a 404; the paid link's "go" leads back to its page)
    "checkout.pay": {"anon": 404, "customer": 200, "staff": 200, "admin": 200, "other_admin": 200},
    "checkout.go": {"anon": 404, "customer": 302, "staff": 302, "admin": 302, "other_admin": 302},
    "checkout.returned": {"anon": 404, "customer": 200, "staff": 200, "admin": 200, "other_admin": 200},
    # trying again works on an order's own link only (the held link is an attempt's)
    "links.retry": {"anon": 404, "customer": 404, "staff": 404, "admin": 404, "other_admin": 404},
    # staff of the merchant
    "orders.index": {"anon": LOGIN, "customer": LOGIN, "staff": 200, "admin": 200, "other_admin": 200},
    "orders.new": {"anon": LOGIN, "customer": LOGIN, "staff": 200, "admin": 200, "other_admin": 200},
    "orders.detail": {"anon": LOGIN, "customer": LOGIN, "staff": 200, "admin": 200, "other_admin": 404},
    "orders.export_csv": {"anon": LOGIN, "customer": LOGIN, "staff": 200, "admin": 200, "other_admin": 200},
    "orders.edit": {"anon": LOGIN, "customer": LOGIN, "staff": 302, "admin": 302, "other_admin": 404},
    "orders.delete": {"anon": LOGIN, "customer": LOGIN, "staff": 302, "admin": 302, "other_admin": 404},
    "orders.duplicate": {"anon": LOGIN, "customer": LOGIN, "staff": 302, "admin": 302, "other_admin": 404},
    "dashboard.index": {"anon": LOGIN, "customer": LOGIN, "staff": 200, "admin": 200, "other_admin": 200},
    "checkout.create": {"anon": LOGIN, "customer": LOGIN, "staff": 302, "admin": 302, "other_admin": 404},
    "checkout.refresh": {"anon": LOGIN, "customer": LOGIN, "staff": 302, "admin": 302, "other_admin": 404},
    "links.cancel": {"anon": LOGIN, "customer": LOGIN, "staff": 302, "admin": 302, "other_admin": 404},
    "links.send_link": {"anon": LOGIN, "customer": LOGIN, "staff": 302, "admin": 302, "other_admin": 404},
    "links.qr_image": {"anon": LOGIN, "customer": LOGIN, "staff": 200, "admin": 200, "other_admin": 404},
    "transactions.order": {"anon": LOGIN, "customer": LOGIN, "staff": 200, "admin": 200, "other_admin": 404},
    "transactions.overview": {"anon": LOGIN, "customer": LOGIN, "staff": 200, "admin": 200, "other_admin": 200},
    # admins of the merchant
    "checkout.charge_saved_card": {"anon": LOGIN, "customer": LOGIN, "staff": 403, "admin": 302, "other_admin": 404},
    "checkout.retry_card_charge": {"anon": LOGIN, "customer": LOGIN, "staff": 403, "admin": 302, "other_admin": 404},
    "checkout.attention_handled": {"anon": LOGIN, "customer": LOGIN, "staff": 403, "admin": 302, "other_admin": 404},
    "refunds.index": {"anon": LOGIN, "customer": LOGIN, "staff": 403, "admin": 200, "other_admin": 404},
    "refunds.check": {"anon": LOGIN, "customer": LOGIN, "staff": 403, "admin": 302, "other_admin": 404},
    "transactions.apply": {"anon": LOGIN, "customer": LOGIN, "staff": 403, "admin": 302, "other_admin": 404},
    "webhooks.callbacks": {"anon": LOGIN, "customer": LOGIN, "staff": 403, "admin": 200, "other_admin": 200},
    "settings.index": {"anon": LOGIN, "customer": LOGIN, "staff": 403, "admin": 200, "other_admin": 200},
    "settings.users": {"anon": LOGIN, "customer": LOGIN, "staff": 403, "admin": 200, "other_admin": 200},
    "settings.user_role": {"anon": LOGIN, "customer": LOGIN, "staff": 403, "admin": 400, "other_admin": 404},
    "settings.user_deactivate": {"anon": LOGIN, "customer": LOGIN, "staff": 403, "admin": 303, "other_admin": 404},
    "settings.user_reactivate": {"anon": LOGIN, "customer": LOGIN, "staff": 403, "admin": 303, "other_admin": 404},
    "settings.audit": {"anon": LOGIN, "customer": LOGIN, "staff": 403, "admin": 200, "other_admin": 200},
    # the JSON API: a key or nothing, whatever the browser's session (docs and the document are public)
    "api.create": {"anon": 401, "customer": 401, "staff": 401, "admin": 401, "other_admin": 401},
    "api.index": {"anon": 401, "customer": 401, "staff": 401, "admin": 401, "other_admin": 401},
    "api.read": {"anon": 401, "customer": 401, "staff": 401, "admin": 401, "other_admin": 401},
    "api.checkout": {"anon": 401, "customer": 401, "staff": 401, "admin": 401, "other_admin": 401},
    "api.refund": {"anon": 401, "customer": 401, "staff": 401, "admin": 401, "other_admin": 401},
    "api.transactions": {"anon": 401, "customer": 401, "staff": 401, "admin": 401, "other_admin": 401},
    "api.openapi": {"anon": 200, "customer": 200, "staff": 200, "admin": 200, "other_admin": 200},
    "api.docs": {"anon": 200, "customer": 200, "staff": 200, "admin": 200, "other_admin": 200},
    "api_keys.index": {"anon": LOGIN, "customer": LOGIN, "staff": 403, "admin": 200, "other_admin": 200},
    "api_keys.create": {"anon": LOGIN, "customer": LOGIN, "staff": 403, "admin": 400, "other_admin": 400},
    "api_keys.revoke": {"anon": LOGIN, "customer": LOGIN, "staff": 403, "admin": 302, "other_admin": 404},
    "webhook_endpoints.index": {"anon": LOGIN, "customer": LOGIN, "staff": 403, "admin": 200, "other_admin": 200},
    "webhook_endpoints.create": {"anon": LOGIN, "customer": LOGIN, "staff": 403, "admin": 400, "other_admin": 400},
    "webhook_endpoints.deliveries": {"anon": LOGIN, "customer": LOGIN, "staff": 403, "admin": 200, "other_admin": 404},
    "webhook_endpoints.enable": {"anon": LOGIN, "customer": LOGIN, "staff": 403, "admin": 303, "other_admin": 404},
    "webhook_endpoints.disable": {"anon": LOGIN, "customer": LOGIN, "staff": 403, "admin": 303, "other_admin": 404},
    # without its confirmation box: back to the page, nothing deleted
    "webhook_endpoints.delete": {"anon": LOGIN, "customer": LOGIN, "staff": 403, "admin": 303, "other_admin": 404},
    "webhook_endpoints.roll_secret": {"anon": LOGIN, "customer": LOGIN, "staff": 403, "admin": 200, "other_admin": 404},
    "webhook_endpoints.resend": {"anon": LOGIN, "customer": LOGIN, "staff": 403, "admin": 303, "other_admin": 404},
    "settings.two_factor_requirement": {
        "anon": LOGIN,
        "customer": LOGIN,
        "staff": 403,
        "admin": 303,
        "other_admin": 303,
    },
    "settings.user_reset_two_factor": {
        "anon": LOGIN,
        "customer": LOGIN,
        "staff": 403,
        "admin": 303,
        "other_admin": 404,
    },
}

# The POST side of GET+POST routes (an empty form: re-rendered with its messages, 200 or 400, once past the guard).
WRITES: dict[str, dict[str, int | str]] = {
    "auth.login": {"anon": 200, "customer": 200, "staff": 302, "admin": 302, "other_admin": 302},
    "auth.password": {"anon": LOGIN, "customer": LOGIN, "staff": 400, "admin": 400, "other_admin": 400},
    "auth.two_factor_setup": {"anon": LOGIN, "customer": LOGIN, "staff": 400, "admin": 400, "other_admin": 400},
    "auth.login_code": {"anon": LOGIN, "customer": LOGIN, "staff": LOGIN, "admin": LOGIN, "other_admin": LOGIN},
    "orders.new": {"anon": LOGIN, "customer": LOGIN, "staff": 200, "admin": 200, "other_admin": 200},
    "orders.edit": {"anon": LOGIN, "customer": LOGIN, "staff": 302, "admin": 302, "other_admin": 404},
    "orders.delete": {"anon": LOGIN, "customer": LOGIN, "staff": 302, "admin": 302, "other_admin": 404},
    "refunds.index": {"anon": LOGIN, "customer": LOGIN, "staff": 403, "admin": 400, "other_admin": 404},
    "settings.index": {"anon": LOGIN, "customer": LOGIN, "staff": 403, "admin": 303, "other_admin": 303},
    "settings.users": {"anon": LOGIN, "customer": LOGIN, "staff": 403, "admin": 400, "other_admin": 400},
}

# Form fields for POSTs whose guard needs them to get past an empty-form 404 (merchant A's ids, by name).
FORMS = {"checkout.charge_saved_card": {"from_checkout": "checkout_id"}}

# Routes tested elsewhere: static files (test_security).
SKIPPED_BLUEPRINTS = ()
SKIPPED_ENDPOINTS = ("static",)


def routes(app):
    """(endpoint, rule, methods) of every route the table covers."""
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: (r.endpoint, r.rule)):
        if rule.endpoint in SKIPPED_ENDPOINTS or rule.endpoint.split(".")[0] in SKIPPED_BLUEPRINTS:
            continue
        yield rule.endpoint, rule, rule.methods - {"HEAD", "OPTIONS"}


@pytest.fixture
def merchant_a(app, seed):
    """Merchant A's things: an order paid through a link, a refund of it, and a second staff user."""
    from portal.cli import create_user
    from portal.merchant_webhooks import create_endpoint
    from portal.models import Merchant, MerchantEvent

    with app.app_context():
        order = make_order(seed.merchant_id)
        order.link_token, order.link_provider = secrets.token_urlsafe(24), "mypay"
        checkout = make_checkout(order, provider="mypay", state="paid")
        refund = Refund(
            checkout_id=checkout.id,
            order_id=order.id,
            merchant_id=seed.merchant_id,
            amount=100,
            reason="access table",
            state="unknown",
            idempotency_key=secrets.token_hex(16),
        )
        db.session.add(refund)
        clerk = create_user("clerk@a.example", db.session.get(Merchant, seed.merchant_id), "staff", PASSWORD)
        hook, _secret = create_endpoint(seed.merchant_id, "http://127.0.0.1:9/hooks")
        event = MerchantEvent(public_id="evt_access", merchant_id=seed.merchant_id, type="order.paid")
        db.session.add(event)
        db.session.commit()
        from portal.api_keys import create_key

        api_key = create_key(db.session.get(Merchant, seed.merchant_id), "access", can_refund=False, user_id=None)
        return {
            "key_id": api_key.api_key.id,
            "order_id": order.id,
            "checkout_id": checkout.id,
            "refund_id": refund.id,
            "user_id": clerk.id,
            "endpoint_id": hook.id,
            "event_id": event.public_id,
            "token": checkout.public_token,
            "provider": "oen",
            "code": "en",
            "kind": "png",
        }


def url_for_rule(rule, values: dict, role: str) -> str:
    """The rule's path with merchant A's values (a made-up link for the anonymous visitor)."""
    missing = set(rule.arguments) - set(values)
    assert not missing, f"{rule.endpoint}: no test value for {sorted(missing)}; add one to merchant_a"
    args = {name: values[name] for name in rule.arguments}
    if role == "anon" and "token" in args:
        args["token"] = "no-such-link-" + "0" * 20
    return rule.build(args, append_unknown=False)[1]


def visit(app, role: str, method: str, path: str, values: dict, form: dict | None = None):
    """One request by a fresh visitor of the given kind; the outcome as written in the table."""
    with app.app_context():
        limiter.reset()  # the table visits one link far more often than a customer would; limits have their own tests
    client = app.test_client()
    if role in LOGINS:
        assert client.post("/login", data={"email": LOGINS[role], "password": PASSWORD}).status_code == 302
    elif role == "customer":
        assert client.get(f"/pay/{values['token']}").status_code == 200
    data = {field: values[name] for field, name in (form or {}).items()} if method == "POST" else None
    response = client.open(path, method=method, data=data)
    if response.status_code == 302 and response.headers["Location"].split("?")[0].endswith("/login"):
        return LOGIN
    return response.status_code


def test_every_route_for_every_visitor_matches_the_access_table(app, merchant_a):
    observed, expected, unlisted = {}, {}, []
    with responses.RequestsMock(assert_all_requests_are_fired=False):
        for role in ("anon", "customer", "staff", "other_admin", "admin"):  # the admin's writes last
            for endpoint, rule, methods in routes(app):
                asks = [("GET", ACCESS)] if "GET" in methods else [("POST", ACCESS)]
                if {"GET", "POST"} <= methods:
                    asks.append(("POST", WRITES))
                for method, table in asks:
                    key = endpoint if table is ACCESS else f"{endpoint} POST"
                    if endpoint not in table:
                        unlisted.append(key)
                        continue
                    path = url_for_rule(rule, merchant_a, role)
                    form = FORMS.get(endpoint) if table is ACCESS else None
                    observed.setdefault(key, {})[role] = visit(app, role, method, path, merchant_a, form)
                    expected.setdefault(key, {})[role] = table[endpoint][role]
    assert not sorted(set(unlisted)), f"routes missing from the access table: {sorted(set(unlisted))}\n{observed}"
    wrong = {
        key: {role: (expected[key][role], got) for role, got in roles.items() if got != expected[key][role]}
        for key, roles in observed.items()
    }
    wrong = {key: roles for key, roles in wrong.items() if roles}
    assert not wrong, "not as the access table says, {endpoint: {role: (expected, got)}}:\n" + "\n".join(
        f"  {key}: {roles}" for key, roles in sorted(wrong.items())
    )


def test_the_table_names_only_routes_that_exist_and_every_role(app):
    endpoints = {endpoint for endpoint, _rule, _methods in routes(app)}
    assert set(ACCESS) <= endpoints, f"stale entries: {sorted(set(ACCESS) - endpoints)}"
    both = {endpoint for endpoint, _rule, methods in routes(app) if {"GET", "POST"} <= methods}
    assert set(WRITES) == both
    for table in (ACCESS, WRITES):
        for endpoint, outcomes in table.items():
            assert set(outcomes) == set(ROLES), endpoint


@pytest.mark.parametrize("env", ["sandbox", "testing", "production"])
def test_no_simulated_provider_route_in_the_portal(tmp_path, env):
    """The simulated providers are a separate app (sandbox/) on their own origin, whatever PROVIDER_ENV says."""
    app = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'unused.db'}",
            "SECRET_KEY": "k" * 32,
            "PORTAL_DATA_KEY": "d" * 32,
            "PROVIDER_ENV": env,
        }
    )
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    assert not {e for e in endpoints if e.startswith("sandbox.")}
    assert not [rule.rule for rule in app.url_map.iter_rules() if rule.rule.startswith("/sandbox")]
    # the same table in every environment
    assert {e for e in endpoints if e not in SKIPPED_ENDPOINTS} == set(ACCESS)
