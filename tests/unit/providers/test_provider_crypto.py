"""Known answers for both envelopes: the O'Pay vector byte for byte, MyPay against the document's own code."""

from __future__ import annotations

import base64
import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from Crypto.Cipher import AES
from Crypto.Util.Padding import pad

from portal.providers.crypto import (
    CryptoError,
    mypay_decrypt,
    mypay_decrypt_json,
    mypay_encrypt,
    opay_decrypt,
    opay_decrypt_json,
    opay_encrypt,
    percent_encode,
)
from portal.providers.mypay import MyPayProvider
from tests.support.accounts import (
    MYPAY_AGENT_KEY,
    MYPAY_AGENT_UID,
    MYPAY_NEXT_KEY,
    MYPAY_STORE_UID,
    OPAY_IV,
    OPAY_KEY,
    OPAY_PLATFORM_KEY,
)
from tests.support.providers import voucher_request

FIXTURES = Path(__file__).parent / "fixtures"

# PROVIDERS.md §3, checked against appendix 1 of the O'Pay document.
OPAY_JSON = (
    '{"MerchantID":"2000132","ItemName":"測試商品","MerchantTradeNo":"wix2020040453534343",'
    '"MerchantTradeDate":"2019-03-01 16:02:24","ReturnURL":"http://www-beta.opay.tw/","Amount":"100",'
    '"ClientBackURL":"http://www-beta.opay.tw/"}'
)
OPAY_ENCODED = (
    "%7B%22MerchantID%22%3A%222000132%22%2C%22ItemName%22%3A%22%E6%B8%AC%E8%A9%A6%E5%95%86%E5%93%81%22%2C"
    "%22MerchantTradeNo%22%3A%22wix2020040453534343%22%2C%22MerchantTradeDate%22%3A%222019-03-01%2016%3A02%3A24%22"
    "%2C%22ReturnURL%22%3A%22http%3A%2F%2Fwww-beta.opay.tw%2F%22%2C%22Amount%22%3A%22100%22%2C%22ClientBackURL"
    "%22%3A%22http%3A%2F%2Fwww-beta.opay.tw%2F%22%7D"
)
OPAY_CIPHERTEXT = (
    "718TmA7uA7OIgEUfO/ivJuz2SMramce5KHMKjwFYUxenpQNBct4GzTP14YpUthTUMwQ4Q+jjlFZFQS2Y/vKkkKiG3g6enNMvZluY50gI4GXKhQ8J"
    "Z90VZ75OsD0JWWW8lyC9bBoSG8vD463whku3rGL1X0X9bKUraEbXtEFKZ3e72bubS8XVkaqIvr5sJGF8diLpz2I0FwkfaScTiRD79VsKZ/UYm"
    "ByBQlQcP1gONkOka8TZVHNnaKzic51nsFKKrqZLZuCadscemtjTr+8nR/DIMM+B/jF+HlrUQg+SNnIK7kWoSMrDg8kOUhTeUGL0G8FH+yzGP6"
    "9w2pG2j3DAKOeX8lXnAV2RMgkmUo+bg21nweMM8nDbfkKy8nrdRmMMFxt637PC9MxqguWAqfMNyQ+DcJqq9IiRNc55usSV9m51uFKZNiYujI+h"
    "XxB1bJsPwmQVCvTAM6L4yb80nJ9WWBb5wtfA80cvgGgy96fn6ak="
)

# The raw data of the MyPay document's own samples (getRawData, identical in the JavaScript and Python tabs).
MYPAY_SAMPLE = {
    "store_uid": "289151880002",
    "items": [{"id": "1", "name": "好棒棒麻辣鍋湯包", "cost": "1000", "amount": "1", "total": "1000"}],
    "user_id": "userid",
    "order_id": "1234567890",
    "ip": "192.168.0.1",
    "pfn": "0",
    "cost": 900,
    "agent_sms_fee_type": 1,
    "agent_charge_fee_type": 1,
    "agent_charge_fee": 90,
    "voucher_type": "1",
    "voucher_paid": [
        {
            "product_id": "P01",
            "serial_number": "P1635306439",
            "name": "好食券",
            "cost": 50,
            "issuer": "1",
            "refund_return_type": "3",
        }
    ],
    "voucher_free": [
        {"product_id": "F01", "serial_number": "F1635306439", "name": "VIP免費券", "cost": 50, "issuer": "1"}
    ],
    "voucher_invoice_type": "1",
}
SERVICE = {"service_name": "api", "cmd": "api/orders"}


# ---------------------------------------------------------------- O'Pay


def test_opay_percent_encoding_matches_the_document():
    assert percent_encode(OPAY_JSON) == OPAY_ENCODED


def test_opay_known_answer_byte_for_byte():
    assert opay_encrypt(OPAY_JSON, "5294y06JbISpM5x9", "v77hoKGq4kWxNNIS") == OPAY_CIPHERTEXT
    # The same through the dict path the client uses (compact JSON, UTF-8 kept as is).
    assert opay_encrypt(json.loads(OPAY_JSON), "5294y06JbISpM5x9", "v77hoKGq4kWxNNIS") == OPAY_CIPHERTEXT


def test_opay_known_answer_decrypts():
    assert opay_decrypt(OPAY_CIPHERTEXT, "5294y06JbISpM5x9", "v77hoKGq4kWxNNIS") == OPAY_JSON
    assert opay_decrypt_json(OPAY_CIPHERTEXT, "5294y06JbISpM5x9", "v77hoKGq4kWxNNIS")["ItemName"] == "測試商品"


def test_opay_tolerates_a_double_encoded_data_field():
    # O'Pay's POST example percent-encodes Data once more than the form needs.
    doubled = percent_encode(OPAY_CIPHERTEXT)
    assert opay_decrypt(doubled, "5294y06JbISpM5x9", "v77hoKGq4kWxNNIS") == OPAY_JSON
    spaced = OPAY_CIPHERTEXT.replace("+", " ")
    assert opay_decrypt(spaced, "5294y06JbISpM5x9", "v77hoKGq4kWxNNIS") == OPAY_JSON


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (OPAY_CIPHERTEXT, OPAY_PLATFORM_KEY),  # wrong key
        (OPAY_CIPHERTEXT[:-9], OPAY_KEY),  # truncated base64
        (OPAY_CIPHERTEXT[:-24] + "=", OPAY_KEY),  # truncated to bad length
        ("not base64 at all!", OPAY_KEY),
        ("", OPAY_KEY),
    ],
)
def test_opay_bad_ciphertext_is_a_crypto_error(text, key):
    with pytest.raises(CryptoError):
        opay_decrypt(text, key, OPAY_IV)


def test_opay_bad_padding_and_non_utf8_are_crypto_errors():
    key, iv = OPAY_KEY.encode(), OPAY_IV.encode()
    bad_padding = AES.new(key, AES.MODE_CBC, iv).encrypt(b"A" * 15 + b"\x07")
    with pytest.raises(CryptoError, match="padding"):
        opay_decrypt(base64.b64encode(bad_padding).decode(), key.decode(), iv.decode())
    non_utf8 = AES.new(key, AES.MODE_CBC, iv).encrypt(pad(b"%FF%FE", 16))
    with pytest.raises(CryptoError, match="UTF-8"):
        opay_decrypt(base64.b64encode(non_utf8).decode(), key.decode(), iv.decode())


def test_opay_key_length_is_checked():
    with pytest.raises(CryptoError):
        opay_encrypt("{}", "short", OPAY_IV)


# ---------------------------------------------------------------- MyPay: the document's own code


def run_node(*args: str, stdin: str | None = None) -> str:
    """Run the document's JavaScript sample; node is required on every machine that runs the tests."""
    node = shutil.which("node")
    assert node, "node is required for the MyPay reference test (install nodejs); this test must not be skipped"
    done = subprocess.run(
        [node, str(FIXTURES / "mypay_reference.js"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def load_python_sample():
    spec = importlib.util.spec_from_file_location("mypay_reference_sample", FIXTURES / "mypay_reference_sample.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def provider(**kw) -> MyPayProvider:
    return MyPayProvider("https://pay.usecase.cc/api/agent", MYPAY_AGENT_UID, MYPAY_AGENT_KEY, MYPAY_STORE_UID, **kw)


def test_javascript_reference_payload_decrypts_in_our_code():
    out = json.loads(run_node("envelope"))
    assert out["raw"] == MYPAY_SAMPLE  # the harness really ran the document's getRawData
    post = out["post"]
    assert post["agent_uid"] == MYPAY_AGENT_UID
    service, data = provider().decrypt_envelope(post)
    assert service == SERVICE
    assert data == MYPAY_SAMPLE


def test_python_reference_payload_decrypts_in_our_code():
    post = load_python_sample().AgentVoucher().getPostData()
    service, data = provider().decrypt_envelope({k: v.decode() if isinstance(v, bytes) else v for k, v in post.items()})
    assert service == SERVICE
    assert data == MYPAY_SAMPLE


def test_our_payload_decrypts_under_the_javascript_reference():
    ours = provider().order_payload(voucher_request())
    fields = provider().envelope("api/orders", ours)
    for name, expected in (("service", SERVICE), ("encry_data", ours)):
        plain = run_node("decrypt", stdin=json.dumps({"key": MYPAY_AGENT_KEY, "text": fields[name]}))
        assert json.loads(plain) == expected


def test_our_payload_matches_the_documents_order():
    ours = provider().order_payload(voucher_request())
    # Same order as the document's example, field by field where the portal sends the field.
    assert ours["cost"] == MYPAY_SAMPLE["cost"] == 900
    assert ours["order_id"] == "1234567890"
    assert ours["voucher_type"] == "1"
    assert [v["serial_number"] for v in ours["voucher_paid"]] == ["P1635306439"]
    assert [v["serial_number"] for v in ours["voucher_free"]] == ["F1635306439"]
    assert ours["items"] == [{"id": "1", "name": "好棒棒麻辣鍋湯包", "cost": 1000, "amount": 1, "total": 1000}]


def test_mypay_uses_a_fresh_iv_per_field():
    a, b = mypay_encrypt(SERVICE, MYPAY_AGENT_KEY), mypay_encrypt(SERVICE, MYPAY_AGENT_KEY)
    assert a != b
    assert base64.b64decode(a)[:16] != base64.b64decode(b)[:16]
    assert json.loads(mypay_decrypt(a, MYPAY_AGENT_KEY)) == SERVICE


def test_mypay_known_iv_layout():
    iv = bytes(range(16))
    text = mypay_encrypt('{"a":1}', MYPAY_AGENT_KEY, iv=iv)
    raw = base64.b64decode(text)
    assert raw[:16] == iv
    expected = AES.new(MYPAY_AGENT_KEY.encode(), AES.MODE_CBC, iv).encrypt(pad(b'{"a":1}', 16))
    assert raw[16:] == expected


def test_mypay_next_key_is_accepted_during_rotation():
    text = mypay_encrypt({"uid": "1"}, MYPAY_NEXT_KEY)
    assert mypay_decrypt_json(text, [MYPAY_AGENT_KEY, MYPAY_NEXT_KEY]) == {"uid": "1"}
    assert provider(next_agent_key=MYPAY_NEXT_KEY).decrypt(text) == {"uid": "1"}
    with pytest.raises(CryptoError):
        provider().decrypt(text)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-6],  # truncated base64
        lambda t: t[:40],  # truncated to less than IV + one block
        lambda t: "%%%",  # not base64
        lambda t: base64.b64encode(base64.b64decode(t)[:-1]).decode(),  # not whole blocks
    ],
)
def test_mypay_damaged_fields_are_crypto_errors(mangle):
    text = mypay_encrypt(MYPAY_SAMPLE, MYPAY_AGENT_KEY)
    with pytest.raises(CryptoError):
        mypay_decrypt(mangle(text), MYPAY_AGENT_KEY)


def test_mypay_bad_padding_and_non_utf8_are_crypto_errors():
    key, iv = MYPAY_AGENT_KEY.encode(), bytes(16)
    bad_padding = AES.new(key, AES.MODE_CBC, iv).encrypt(b"B" * 16)
    with pytest.raises(CryptoError, match="padding"):
        mypay_decrypt(base64.b64encode(iv + bad_padding).decode(), MYPAY_AGENT_KEY)
    non_utf8 = AES.new(key, AES.MODE_CBC, iv).encrypt(pad(b"\xff\xfe{}", 16))
    with pytest.raises(CryptoError, match="UTF-8"):
        mypay_decrypt(base64.b64encode(iv + non_utf8).decode(), MYPAY_AGENT_KEY)
