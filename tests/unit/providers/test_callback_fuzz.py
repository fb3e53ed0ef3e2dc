"""Hypothesis: parse_callback on arbitrary bodies and forms raises nothing but InvalidCallback, for all three."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


def only_invalid(request: CallbackRequest) -> None:
    for provider in providers():
        try:
            event = provider.parse_callback(request, lookup)
        except InvalidCallback:
            continue
        assert isinstance(event, ProviderEvent)
        assert event.verified


@SETTINGS
@given(body=st.binary(max_size=300), content_type=content_types)
def test_arbitrary_bytes(body, content_type):
    only_invalid(CallbackRequest(body=body, content_type=content_type))


@SETTINGS
@given(obj=json_objects, content_type=content_types)
def test_arbitrary_json_objects(obj, content_type):
    only_invalid(CallbackRequest(body=json.dumps(obj).encode(), content_type=content_type))


@SETTINGS
@given(form=forms, body=st.binary(max_size=40))
def test_arbitrary_forms(form, body):
    only_invalid(CallbackRequest(body=body, form=form))


@SETTINGS
@given(data=json_objects, outer=forms)
def test_well_encrypted_but_arbitrary_opay_data(data, outer):
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
def test_well_encrypted_but_arbitrary_mypay_envelope(data):
    form = {"agent_uid": MYPAY_AGENT_UID, "encry_data": mypay_encrypt(data, MYPAY_AGENT_KEY)}
    only_invalid(CallbackRequest(body=b"", form=form))


@SETTINGS
@given(name=st.sampled_from(["uid", "key", "prc", "order_id", "cost", "finishtime"]), value=json_values)
def test_near_valid_mypay_json(name, value):
    body = {"uid": "95227", "key": "k" * 32, "prc": "250", "order_id": "CK20240901A1", "cost": "1000", name: value}
    only_invalid(CallbackRequest(body=json.dumps(body).encode(), content_type="application/json"))


@SETTINGS
@given(name=st.sampled_from(["success", "merchantId", "customId", "token", "id", "purpose"]), value=json_values)
def test_near_valid_oen_webhook(name, value):
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
