"""Nothing secret at rest (issue 12, item 6): after payments, refunds and forged notices through the live sandbox, a
dump of the whole portal database (every table, every column as text; SQLite or PostgreSQL, whichever the tests use)
holds no whole card number, no card token, no MyPay order key and no provider secret in plain text."""

from __future__ import annotations

import re

import requests
from sqlalchemy import String, cast, column, inspect, select, table

from portal.extensions import db
from portal.payments.redaction import has_card_number
from sandbox.models import SandboxMypayOrder, SandboxOenCheckout
from tests.flow.test_refund_flow import confirm_fields, paid_order, review
from tests.support.accounts import (
    MYPAY_AGENT_KEY,
    MYPAY_NEXT_KEY,
    OPAY_IV,
    OPAY_KEY,
    OPAY_PLATFORM_IV,
    OPAY_PLATFORM_KEY,
    SHOP_A,
    SHOP_B,
)
from tests.support.browser import Browser
from tests.support.sandbox import sandbox_rows

WHOLE_CARD = "4242424242424242"
# Columns holding one-way hex digests (password and code hashes, API key hashes, request fingerprints, callback and
# refund keys made of a sha256): what they are made from is checked where it is kept, if it is kept at all.
DIGESTS = frozenset({"password_hash", "code_hash", "key_hash", "fingerprint", "dedupe_key", "idempotency_key"})


def dump_database(app) -> list[tuple[str, str, str]]:
    """(table, column, value as text) for every non-empty value of every column of every table."""
    rows = []
    with app.app_context():
        inspector = inspect(db.engine)
        with db.engine.connect() as conn:
            for name in inspector.get_table_names():
                columns = [c["name"] for c in inspector.get_columns(name)]
                t = table(name, *(column(c) for c in columns))
                for row in conn.execute(select(*(cast(t.c[c], String) for c in columns))):
                    rows += [(name, c, v) for c, v in zip(columns, row, strict=True) if v]
    return rows


def test_a_dump_of_the_database_after_the_flows_holds_no_secret(live_server):
    admin = Browser(live_server.url)
    admin.login("admin@a.example")
    oen_order = paid_order(live_server, admin, "oen")
    admin.post(f"/orders/{oen_order}/refunds", confirm_fields(review(admin, oen_order, 100)))
    mypay_order = paid_order(live_server, admin, "mypay")
    admin.post(f"/orders/{mypay_order}/refunds", confirm_fields(review(admin, mypay_order, 1000)))
    paid_order(live_server, admin, "opay")
    # Forged notices carrying a whole card number, a token and a key, to every provider's intake.
    forged = {
        "merchantId": "shopa",
        "purpose": "charge",
        "paymentInfo": {"cardNum": WHOLE_CARD},
        "cardno": "4938170130000003",
        "token": "forged-card-token",
        "key": "f" * 32,
        "note": "4000 0000 0000 2503",
    }
    for provider in ("oen", "mypay", "opay"):
        requests.post(f"{live_server.url}/webhooks/{provider}", json=forged, timeout=30)
        requests.post(f"{live_server.url}/webhooks/{provider}", data={**forged, "paymentInfo": WHOLE_CARD}, timeout=30)

    tokens = [c.token for c in sandbox_rows(live_server.sandbox, SandboxOenCheckout) if c.token]
    keys = [o.key for o in sandbox_rows(live_server.sandbox, SandboxMypayOrder)]
    assert tokens and keys  # the flows did bind a card and open MyPay orders
    secrets = {
        *tokens,
        *keys,
        "forged-card-token",
        "f" * 32,
        MYPAY_AGENT_KEY,
        MYPAY_NEXT_KEY,
        OPAY_KEY,
        OPAY_IV,
        OPAY_PLATFORM_KEY,
        OPAY_PLATFORM_IV,
        SHOP_A["oen"][1],
        SHOP_B["oen"][1],
        SHOP_B["opay"][1],
        SHOP_B["opay"][2],
    }
    dump = dump_database(live_server.app)
    assert len(dump) > 100
    for table_name, column_name, value in dump:
        for secret in secrets:
            assert secret not in value, f"a secret in plain text in {table_name}.{column_name}"
        if column_name in DIGESTS:
            continue  # hex digits of a hash: a Luhn-valid run in them is chance (a few hashes in a hundred), not a card
        for match in re.finditer(r"\d(?:[ -]?\d)*", value):
            digits = re.sub(r"\D", "", match.group(0))
            assert not has_card_number(digits), f"a card number in {table_name}.{column_name}: …{digits[-4:]}"
