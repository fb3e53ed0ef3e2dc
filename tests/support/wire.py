"""Requests to the simulated providers built by hand, straight from the documents (for the sandbox's own tests)."""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from urllib.parse import parse_qsl, quote, unquote

import requests
from Crypto.Cipher import AES
from Crypto.Random import get_random_bytes
from Crypto.Util.Padding import pad, unpad

from tests.support.accounts import (
    MYPAY_AGENT_KEY,
    MYPAY_AGENT_UID,
    OPAY_STAGE_MERCHANT,
    OPAY_STAGE_PLATFORM,
    SANDBOX_NEXT_AGENT_KEY,
    SANDBOX_SHOP_A,
    SANDBOX_SHOP_B,
)
from tests.support.receiver import Received


def csrf_token(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def mypay_encrypt(obj, key: str = MYPAY_AGENT_KEY) -> str:
    """Appendix 4: base64(IV ‖ AES-256-CBC(JSON)), a random IV per field."""
    iv = get_random_bytes(16)
    data = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
    return base64.b64encode(iv + AES.new(key.encode(), AES.MODE_CBC, iv).encrypt(pad(data, 16))).decode()


def mypay_post(
    url: str, cmd: str, data: dict, *, key: str = MYPAY_AGENT_KEY, agent_uid: str = MYPAY_AGENT_UID, as_json=False
):
    fields = {
        "agent_uid": agent_uid,
        "service": mypay_encrypt({"service_name": "api", "cmd": cmd}, key),
        "encry_data": mypay_encrypt(data, key),
    }
    if as_json:
        return requests.post(f"{url}/mypay/api/agent", json=fields, timeout=10)
    return requests.post(f"{url}/mypay/api/agent", data=fields, timeout=10)


def opay_encrypt(obj, key: str, iv: str) -> str:
    """Appendix 1: base64(AES-128-CBC(HashKey, HashIV)(URL-encode(JSON)))."""
    text = quote(json.dumps(obj, ensure_ascii=False, separators=(",", ":")), safe="")
    return base64.b64encode(AES.new(key.encode(), AES.MODE_CBC, iv.encode()).encrypt(pad(text.encode(), 16))).decode()


def opay_decrypt(data: str, key: str, iv: str):
    plain = unpad(AES.new(key.encode(), AES.MODE_CBC, iv.encode()).decrypt(base64.b64decode(data)), 16)
    return json.loads(unquote(plain.decode()))


def opay_fields(merchant_id: str, data: str, *, platform_id=None, timestamp=None, rqid=None) -> dict:
    fields = {
        "MerchantID": merchant_id,
        "Timestamp": str(int(time.time()) if timestamp is None else timestamp),
        "RqID": rqid or uuid.uuid4().hex.upper(),
        "Revision": "1",
        "Data": data,
    }
    if platform_id:
        fields["PlatformID"] = platform_id
    return fields


def form_of(received: Received) -> dict:
    return dict(parse_qsl(received.raw.decode(), keep_blank_values=True))


class Wire:
    """The helpers above and the sandbox tests' accounts, as the `wire` fixture hands them to tests."""

    AGENT_UID = MYPAY_AGENT_UID
    AGENT_KEY = MYPAY_AGENT_KEY
    NEXT_AGENT_KEY = SANDBOX_NEXT_AGENT_KEY
    STAGE_MERCHANT = OPAY_STAGE_MERCHANT
    STAGE_PLATFORM = OPAY_STAGE_PLATFORM
    SHOP_A = SANDBOX_SHOP_A
    SHOP_B = SANDBOX_SHOP_B
    csrf_token = staticmethod(csrf_token)
    mypay_encrypt = staticmethod(mypay_encrypt)
    mypay_post = staticmethod(mypay_post)
    opay_encrypt = staticmethod(opay_encrypt)
    opay_decrypt = staticmethod(opay_decrypt)
    opay_fields = staticmethod(opay_fields)
    form_of = staticmethod(form_of)
