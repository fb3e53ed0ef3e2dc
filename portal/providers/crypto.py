"""The providers' envelopes: MyPay AES-256-CBC with the IV prepended, O'Pay AES-128-CBC over percent-encoded JSON."""

from __future__ import annotations

import base64
import binascii
import json
import os
from urllib.parse import quote, unquote

from Crypto.Cipher import AES
from Crypto.Util.Padding import pad, unpad

BLOCK = AES.block_size


class CryptoError(ValueError):
    """Ciphertext that cannot be decrypted: bad base64, wrong key, bad padding or non-UTF-8 plaintext."""


def compact_json(value: object) -> str:
    """JSON without spaces and with UTF-8 text as is, the form both providers document."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _b64decode(text: str | bytes) -> bytes:
    try:
        value = text.decode("ascii") if isinstance(text, bytes) else text
        # Tolerate a value percent-encoded once more than needed, or with "+" turned into " " on the way
        # (O'Pay's own POST example double-encodes Data); base64 itself never contains "%" or " ".
        if "%" in value:
            value = unquote(value, errors="strict")
        value = value.replace(" ", "+").strip()
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (UnicodeError, binascii.Error, ValueError) as exc:
        raise CryptoError("not base64") from exc


def _key(key: str, size: int) -> bytes:
    raw = key.encode("utf-8")
    if len(raw) != size:
        raise CryptoError(f"the key must be {size} bytes, not {len(raw)}")
    return raw


def _decrypt_cbc(key: bytes, iv: bytes, ciphertext: bytes) -> str:
    if not ciphertext or len(ciphertext) % BLOCK:
        raise CryptoError("ciphertext is not a whole number of blocks")
    try:
        plain = unpad(AES.new(key, AES.MODE_CBC, iv).decrypt(ciphertext), BLOCK)
        return plain.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CryptoError("plaintext is not UTF-8") from exc
    except ValueError as exc:
        # A wrong key shows up here: the padding of the last block is garbage.
        raise CryptoError("bad padding") from exc


# ---------------------------------------------------------------- MyPay


def mypay_encrypt(value: object, key: str, iv: bytes | None = None) -> str:
    """base64(IV ‖ AES-256-CBC(JSON)), a fresh random IV unless one is given (tests only)."""
    text = value if isinstance(value, str) else compact_json(value)
    iv = os.urandom(BLOCK) if iv is None else iv
    cipher = AES.new(_key(key, 32), AES.MODE_CBC, iv)
    return base64.b64encode(iv + cipher.encrypt(pad(text.encode("utf-8"), BLOCK))).decode("ascii")


def mypay_decrypt(text: str | bytes, key: str) -> str:
    """The plaintext of a MyPay field; CryptoError when it does not decrypt under this key."""
    raw = _b64decode(text)
    if len(raw) < 2 * BLOCK:
        raise CryptoError("too short for an IV and one block")
    return _decrypt_cbc(_key(key, 32), raw[:BLOCK], raw[BLOCK:])


def mypay_decrypt_json(text: str | bytes, keys: list[str]) -> dict:
    """Decrypt with the first key that works (current, then next during rotation) and read a JSON object."""
    last: CryptoError = CryptoError("no key")
    for key in keys:
        if not key:
            continue
        try:
            value = json.loads(mypay_decrypt(text, key))
        except CryptoError as exc:
            last = exc
            continue
        except ValueError as exc:
            last = CryptoError("plaintext is not JSON")
            last.__cause__ = exc
            continue
        if isinstance(value, dict):
            return value
        last = CryptoError("plaintext is not a JSON object")
    raise last


# ---------------------------------------------------------------- O'Pay


def percent_encode(text: str) -> str:
    """Every byte but A-Z a-z 0-9 _ . - ~ as upper-case %XX, space as %20."""
    return quote(text, safe="")


def opay_encrypt(value: object, key: str, iv: str) -> str:
    """base64(AES-128-CBC(percent-encode(JSON))) with the merchant's (or platform's) HashKey and HashIV."""
    text = value if isinstance(value, str) else compact_json(value)
    cipher = AES.new(_key(key, 16), AES.MODE_CBC, _key(iv, 16))
    return base64.b64encode(cipher.encrypt(pad(percent_encode(text).encode("ascii"), BLOCK))).decode("ascii")


def opay_decrypt(text: str | bytes, key: str, iv: str) -> str:
    """The percent-decoded plaintext of an O'Pay Data field."""
    encoded = _decrypt_cbc(_key(key, 16), _key(iv, 16), _b64decode(text))
    try:
        return unquote(encoded, errors="strict")
    except UnicodeDecodeError as exc:
        raise CryptoError("percent-decoded text is not UTF-8") from exc


def opay_decrypt_json(text: str | bytes, key: str, iv: str) -> dict:
    """Decrypt an O'Pay Data field and read its JSON object."""
    try:
        value = json.loads(opay_decrypt(text, key, iv))
    except CryptoError:
        raise
    except ValueError as exc:
        raise CryptoError("plaintext is not JSON") from exc
    if not isinstance(value, dict):
        raise CryptoError("plaintext is not a JSON object")
    return value
