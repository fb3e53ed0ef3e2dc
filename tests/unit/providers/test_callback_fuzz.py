"""Hypothesis: the callback intake on arbitrary bodies and forms, for every provider.

Each body goes the intake's way (read once, redact, then parse with those fields; through receive_callback, stored
too): nothing but InvalidCallback is ever raised, an accepted callback names the attempt the lookup gave, and the
body kept never holds a field the provider declares secret.
"""

from __future__ import annotations

import hashlib
import json
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portal.extensions import db
from portal.models import CallbackStatus, WebhookEvent
from portal.payments import REDACTED, read_callback, receive_callback, redact
from portal.providers import REGISTRY
from portal.providers.base import CallbackRequest, InvalidCallback, ProviderEvent
from portal.providers.crypto import mypay_encrypt, opay_encrypt
from portal.providers.mypay import MyPayProvider
from portal.providers.oen import OenProvider
from portal.providers.opay import OPayProvider
from tests.support.accounts import (
    MYPAY_AGENT_KEY,
    MYPAY_AGENT_UID,
    MYPAY_STORE_UID,
    OPAY_IV,
    OPAY_KEY,
    OPAY_MERCHANT_ID,
)
from tests.support.apps import make_app, seed_merchants
from tests.support.providers import checkout_request, ref_of

NOW = 1_725_177_744
REQUEST = checkout_request()
REF = ref_of(REQUEST, checkout_id="chk1", transaction_id="P1", uid="95227", key="k" * 32)


def lookup(reference):
    return REF if reference == REF.reference else None


def providers():
    return [
        OenProvider("https://oen.example", "https://{merchant_id}.example/{id}", "mermer", "t"),
        MyPayProvider("https://mypay.example", MYPAY_AGENT_UID, MYPAY_AGENT_KEY, MYPAY_STORE_UID),
        OPayProvider(
            "https://opay.example", OPAY_MERCHANT_ID, OPAY_KEY, OPAY_IV, clock=lambda: NOW, rqid_store=lambda rqid: True
        ),
    ]


FIELD_NAMES = [
    "success",
    "purpose",
    "merchantId",
    "customId",
    "token",
    "id",
    "orderId",
    "transactionHid",
    "status",
    "amount",
    "paymentInfo",
    "uid",
    "key",
    "prc",
    "order_id",
    "cost",
    "finishtime",
    "cardno",
    "encry_data",
    "agent_uid",
    "MerchantID",
    "PlatformID",
    "Timestamp",
    "RqID",
    "Revision",
    "RtnCode",
    "Data",
    "MerchantTradeNo",
    "TradeAmt",
]
names = st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=12))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=40),
    st.sampled_from(
        [
            "CK20240901A1",
            "mermer",
            "shopa",
            "chk1",
            "P1",
            "95227",
            "k" * 32,
            "250",
            "token",
            "charge",
            OPAY_MERCHANT_ID,
            str(NOW),
            "1",
        ]
    ),
)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=3), max_leaves=12
)
json_objects = st.dictionaries(names, json_values, max_size=10)
forms = st.dictionaries(
    names, st.one_of(st.text(max_size=60), st.sampled_from(["CK20240901A1", str(NOW), "1"])), max_size=10
)
content_types = st.sampled_from(["", "application/json", "application/x-www-form-urlencoded", "text/plain"])

SETTINGS = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
# A value no strategy produces by chance: wherever it shows up in a kept body, a secret was stored.
SECRET = "tok_SECRET_c0ffee_9f3a"
SECRET_FIELDS = sorted({name for cls in REGISTRY.values() for name in cls.callback_secret_fields})


@pytest.fixture(scope="module")
def intake_app(tmp_path_factory):
    """The portal (its key encrypts removed secrets), with the seeded merchants whose ids callbacks may name."""
    app = make_app(tmp_path_factory.mktemp("intake"))
    seed_merchants(app)
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


def only_invalid(request: CallbackRequest) -> None:
    """The intake's steps for every provider: read once, redact, parse with the fields read."""
    for provider in providers():
        callback = read_callback(provider.name, request)
        kept, secret_enc = redact(callback)
        removed = [name for name in provider.callback_secret_fields if (callback.fields or {}).get(name)]
        if removed:
            assert all(json.loads(kept)[name] == REDACTED for name in removed)
            assert secret_enc
        try:
            if callback.unreadable is not None:
                raise callback.unreadable
            event = provider.parse_callback(request, lookup, fields=callback.fields)
        except InvalidCallback:
            continue
        assert isinstance(event, ProviderEvent)
        assert event.reference == REF.reference  # accepted only for the attempt the portal looked up
        assert event.reply_body == provider.callback_reply


def intake(request: CallbackRequest, secret_field: str = "") -> dict[str, WebhookEvent]:
    """The real intake for every provider: stored (secret fields removed) before it is verified, refused if bogus."""
    rows = {}
    for name, cls in REGISTRY.items():
        reply = receive_callback(name, request)
        dedupe = f"{name}:" + hashlib.sha256(request.body).hexdigest()
        row = db.session.execute(db.select(WebhookEvent).filter_by(dedupe_key=dedupe)).scalar_one()
        if secret_field in cls.callback_secret_fields:
            assert SECRET not in row.body
            assert not row.secret_enc or SECRET not in row.secret_enc
        # No checkout exists, so nothing can be applied; the catch-all (a crash while parsing) never runs.
        assert (reply.status, row.status) == (400, CallbackStatus.REFUSED), row.error
        rows[name] = row
    return rows


@SETTINGS
@given(body=st.binary(max_size=300), content_type=content_types)
def test_arbitrary_bytes(intake_app, body, content_type):
    only_invalid(CallbackRequest(body=body, content_type=content_type))


@SETTINGS
@given(obj=json_objects, content_type=content_types)
def test_arbitrary_json_objects(intake_app, obj, content_type):
    only_invalid(CallbackRequest(body=json.dumps(obj).encode(), content_type=content_type))


@SETTINGS
@given(form=forms, body=st.binary(max_size=40))
def test_arbitrary_forms(intake_app, form, body):
    only_invalid(CallbackRequest(body=body, form=form))


INTAKE = settings(SETTINGS, max_examples=40)


@INTAKE
@given(body=st.binary(max_size=300), content_type=content_types)
def test_intake_of_arbitrary_bytes(intake_app, body, content_type):
    intake(CallbackRequest(body=body, content_type=content_type))


@INTAKE
@given(obj=json_objects, secret_field=st.sampled_from(SECRET_FIELDS), content_type=content_types)
def test_intake_never_stores_a_secret_field_of_a_json_body(intake_app, obj, secret_field, content_type):
    body = json.dumps({**obj, secret_field: SECRET}).encode()
    rows = intake(CallbackRequest(body=body, content_type=content_type), secret_field)
    for name, cls in REGISTRY.items():
        if secret_field in cls.callback_secret_fields:
            assert SECRET not in rows[name].body and rows[name].secret_enc is None  # refused: not kept at all


@INTAKE
@given(form=forms, secret_field=st.sampled_from(SECRET_FIELDS))
def test_intake_never_stores_a_secret_field_of_a_form(intake_app, form, secret_field):
    fields = {**form, secret_field: SECRET}
    body = urlencode(fields).encode()
    intake(CallbackRequest(body=body, form=fields, content_type="application/x-www-form-urlencoded"), secret_field)


@SETTINGS
@given(data=json_objects, outer=forms)
def test_well_encrypted_but_arbitrary_opay_data(intake_app, data, outer):
    fields = {
        "MerchantID": OPAY_MERCHANT_ID,
        "Timestamp": str(NOW),
        "RqID": "R1",
        "Revision": "1",
        "Data": opay_encrypt(data, OPAY_KEY, OPAY_IV),
    }
    only_invalid(CallbackRequest(body=b"", form={**fields, **outer}))


@SETTINGS
@given(data=json_objects)
def test_well_encrypted_but_arbitrary_mypay_envelope(intake_app, data):
    form = {"agent_uid": MYPAY_AGENT_UID, "encry_data": mypay_encrypt(data, MYPAY_AGENT_KEY)}
    only_invalid(CallbackRequest(body=b"", form=form))


@SETTINGS
@given(name=st.sampled_from(["uid", "key", "prc", "order_id", "cost", "finishtime"]), value=json_values)
def test_near_valid_mypay_json(intake_app, name, value):
    body = {"uid": "95227", "key": "k" * 32, "prc": "250", "order_id": "CK20240901A1", "cost": "1000", name: value}
    only_invalid(CallbackRequest(body=json.dumps(body).encode(), content_type="application/json"))


@SETTINGS
@given(name=st.sampled_from(["success", "merchantId", "customId", "token", "id", "purpose"]), value=json_values)
def test_near_valid_oen_webhook(intake_app, name, value):
    body = {
        "success": True,
        "purpose": "token",
        "merchantId": "mermer",
        "customId": "CK20240901A1",
        "token": "t",
        "id": "chk1",
        name: value,
    }
    only_invalid(CallbackRequest(body=json.dumps(body).encode(), content_type="application/json"))
