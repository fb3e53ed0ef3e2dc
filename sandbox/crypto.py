"""The two ciphers exactly as the provider documents describe them (the sandbox's own copy, not the clients')."""

from __future__ import annotations

import base64
import binascii
import json
from urllib.parse import quote, unquote

from Crypto.Cipher import AES
from Crypto.Random import get_random_bytes
from Crypto.Util.Padding import pad, unpad


class CipherError(ValueError):
    """The value does not decrypt with the key, or is not the JSON it should be."""


def _b64decode(value: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CipherError("not base64") from exc


def _aes_cbc_decrypt(raw: bytes, key: bytes, iv: bytes) -> bytes:
    if not raw or len(raw) % AES.block_size:
        raise CipherError("ciphertext length is not a multiple of 16")
    try:
        return unpad(AES.new(key, AES.MODE_CBC, iv).decrypt(raw), AES.block_size)
    except ValueError as exc:
        raise CipherError("bad padding: wrong key or corrupted data") from exc


def compact_json(obj) -> str:
    """JSON without spaces, UTF-8 characters as they are."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _json(text: str):
    try:
        return json.loads(text)
    except ValueError as exc:
        raise CipherError("decrypted text is not JSON") from exc


# ---------------------------------------------------------------- MyPay: base64(IV ‖ AES-256-CBC(JSON)), IV random


def mypay_encrypt(obj, key: str) -> str:
    """base64(IV ‖ AES-256-CBC(key, IV, PKCS#7)(UTF-8 JSON)) with a fresh random IV (document, appendix 4)."""
    iv = get_random_bytes(16)
    ciphertext = AES.new(key.encode(), AES.MODE_CBC, iv).encrypt(pad(compact_json(obj).encode(), AES.block_size))
    return base64.b64encode(iv + ciphertext).decode()


def mypay_decrypt(value: str, key: str):
    """The JSON inside a MyPay field; the IV is the first 16 bytes of the decoded value."""
    if len(key.encode()) != 32:
        raise CipherError("the agent key must be 32 bytes")
    raw = _b64decode(value)
    if len(raw) < 32:
        raise CipherError("too short to hold an IV and a block")
    plain = _aes_cbc_decrypt(raw[16:], key.encode(), raw[:16])
    try:
        return _json(plain.decode())
    except UnicodeDecodeError as exc:
        raise CipherError("decrypted bytes are not UTF-8") from exc


# ---------------------------------------------------------------- O'Pay: base64(AES-128-CBC(percent-encode(JSON)))


def percent_encode(text: str) -> str:
    """Every byte but A-Z a-z 0-9 _ . - ~ as upper-case %XX (space as %20), as appendix 1 shows."""
    return quote(text, safe="")


def opay_encrypt(obj, key: str, iv: str) -> str:
    """base64(AES-128-CBC(HashKey, HashIV, PKCS#7)(percent-encode(JSON)))."""
    return opay_encrypt_text(compact_json(obj), key, iv)


def opay_encrypt_text(text: str, key: str, iv: str) -> str:
    """The same cipher over a JSON text given verbatim (for the document's known answer)."""
    data = percent_encode(text).encode("ascii")
    return base64.b64encode(AES.new(key.encode(), AES.MODE_CBC, iv.encode()).encrypt(pad(data, 16))).decode()


def opay_decrypt(value: str, key: str, iv: str):
    """The JSON inside an O'Pay Data field: base64-decode, AES-128-CBC decrypt, percent-decode, parse."""
    if len(key.encode()) != 16 or len(iv.encode()) != 16:
        raise CipherError("HashKey and HashIV must be 16 bytes")
    plain = _aes_cbc_decrypt(_b64decode(value), key.encode(), iv.encode())
    try:
        text = unquote(plain.decode("ascii"), errors="strict")
    except UnicodeDecodeError as exc:
        raise CipherError("decrypted text is not percent-encoded UTF-8") from exc
    return _json(text)
