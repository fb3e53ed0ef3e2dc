"""The console's journal: every request received and callback sent, readable, with secrets and card numbers masked.

Also the wrapper every simulated API endpoint goes through: latency, fault switches, journal.
"""

from __future__ import annotations

import functools
import json
import re
import time
from urllib.parse import parse_qsl

from flask import g, make_response, request

from sandbox import faults, settings
from sandbox.extensions import csrf, db
from sandbox.models import SandboxExchange

SECRET_KEYS = {"token", "key", "authorization", "hashkey", "hashiv", "cvc", "cvv", "password", "csrf_token"}
CARD_KEYS = {"cardnum", "cardno", "card_number"}
_CARD_RUN = re.compile(r"(?<!\d)([3-6]\d{12,18})(?!\d)")
# Oen's documented failure card fails the Luhn check, so it is masked by name.
DOCUMENTED_CARDS = {"4012888818888333"}


def luhn_ok(number: str) -> bool:
    """The Luhn check every card number passes."""
    total = 0
    for position, char in enumerate(reversed(number)):
        digit = int(char)
        if position % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def last4(number: str) -> str:
    """A card number shown as its last four digits."""
    digits = re.sub(r"\D", "", number)
    return "•" * max(len(digits) - 4, 0) + digits[-4:]


def mask_cards(text: str) -> str:
    """Every run of digits that is a valid card number, cut to its last four."""

    def cut(match):
        number = match.group(1)
        return last4(number) if luhn_ok(number) or number in DOCUMENTED_CARDS else number

    return _CARD_RUN.sub(cut, text)


def mask_secret(value: str) -> str:
    """Enough of a secret to tell two apart, not enough to use it."""
    if value.lower().startswith("bearer "):
        return "Bearer " + mask_secret(value[7:])
    return "••••" if len(value) <= 8 else value[:4] + "…(" + str(len(value)) + ")"


def mask(obj):
    """A copy of a JSON-like value with secrets and card numbers masked."""
    if isinstance(obj, dict):
        masked = {}
        for name, value in obj.items():
            lowered = str(name).lower()
            if isinstance(value, str) and lowered in SECRET_KEYS and value:
                masked[name] = mask_secret(value)
            elif isinstance(value, str) and lowered in CARD_KEYS and value:
                masked[name] = last4(value) if re.fullmatch(r"[\d ]{12,23}", value) else mask_cards(value)
            else:
                masked[name] = mask(value)
        return masked
    if isinstance(obj, list):
        return [mask(value) for value in obj]
    if isinstance(obj, str):
        return mask_cards(obj)
    return obj


def readable(obj) -> str:
    """Masked, indented JSON (or masked text) for the console."""
    if obj is None or obj == "":
        return ""
    if isinstance(obj, (bytes, str)):
        text = obj.decode(errors="replace") if isinstance(obj, bytes) else obj
        try:
            obj = json.loads(text)
        except ValueError:
            return mask_cards(text)
    return json.dumps(mask(obj), ensure_ascii=False, indent=2)


def body_as_readable(raw: bytes, content_type: str | None) -> str:
    """A request or response body: JSON or form fields shown as masked JSON, anything else as masked text."""
    text = raw.decode(errors="replace")
    if content_type and "x-www-form-urlencoded" in content_type:
        return readable(dict(parse_qsl(text, keep_blank_values=True)))
    return readable(text)


def record(provider: str, direction: str, method: str, url: str, **fields) -> SandboxExchange:
    """Append one line to the journal (in its own commit)."""
    if db.session.is_active is False:
        db.session.rollback()
    entry = SandboxExchange(provider=provider, direction=direction, method=method, url=url, **fields)
    db.session.add(entry)
    db.session.commit()
    return entry


def failure_response(provider: str):
    """What a provider's front end answers when it falls over."""
    if provider == "oen":
        body = json.dumps({"code": "F0001", "message": "系統錯誤", "data": {}}, ensure_ascii=False)
        return make_response(body, 500, {"Content-Type": "application/json"})
    html = "<!doctype html><title>500 Internal Server Error</title><h1>Internal Server Error</h1>"
    return make_response(html, 500, {"Content-Type": "text/html; charset=utf-8"})


def provider_api(provider: str):
    """Decorate a simulated API endpoint: no CSRF, latency, fault switches, and a journal line per call.

    A view may put the decrypted request in g.sandbox_readable, for the console.
    """

    def decorate(view):
        @functools.wraps(view)
        def wrapped(*args, **kwargs):
            started = time.monotonic()
            raw = request.get_data(cache=True)
            fault = faults.take(provider)
            delay = settings.latency_ms(provider)
            if delay:
                time.sleep(delay / 1000)
            if fault == "hang_next":
                time.sleep(settings.hang_seconds())
            if fault == "fail_next":
                response, real = failure_response(provider), None
            else:
                try:
                    response = real = make_response(view(*args, **kwargs))
                except Exception:
                    db.session.rollback()
                    raise
                if fault == "fail_after_next":
                    response = failure_response(provider)
            notes = {
                "fail_next": "fault: failed before doing anything (HTTP 500)",
                "fail_after_next": "fault: carried out, then answered HTTP 500; the real answer is below",
                "hang_next": "fault: held the answer longer than the merchant's timeout, then carried it out",
            }
            headers = {name: value for name, value in request.headers.items() if name.lower() != "cookie"}
            answer = real if real is not None else response
            record(
                provider,
                "in",
                request.method,
                request.full_path.rstrip("?"),
                status_code=response.status_code,
                request_headers=mask(headers),
                request_body=body_as_readable(raw, request.content_type),
                decrypted=readable(g.pop("sandbox_readable", None)),
                response_body=body_as_readable(answer.get_data(), answer.content_type)[:20000],
                note=notes.get(fault or "", ""),
                duration_ms=int((time.monotonic() - started) * 1000),
            )
            return response

        csrf.exempt(wrapped)
        return wrapped

    return decorate
