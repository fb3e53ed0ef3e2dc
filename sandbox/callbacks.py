"""Callbacks to the merchant's server over real HTTP, with resends, the drop switch and a journal line per attempt."""

from __future__ import annotations

import logging
import threading
import time

import requests
from flask import Flask, current_app

from sandbox import faults
from sandbox.extensions import db
from sandbox.journal import readable, record
from sandbox.models import SandboxCallback

log = logging.getLogger(__name__)
FORM_TYPE = "application/x-www-form-urlencoded"


def send(
    provider: str,
    url: str,
    payload: dict,
    *,
    body_format: str = "form",
    expect: str | None = None,
    max_attempts: int = 1,
    readable_view: dict | None = None,
) -> SandboxCallback:
    """Store a callback, then send it (now, or from a background thread) unless the drop switch is armed."""
    callback = SandboxCallback(
        provider=provider,
        url=url,
        body_format=body_format,
        payload=payload,
        readable=readable_view,
        expect=expect,
        max_attempts=max_attempts,
    )
    db.session.add(callback)
    db.session.commit()
    if faults.take(provider, faults.CALLBACK_FAULTS):
        callback.state = "dropped"
        db.session.commit()
        record(
            provider,
            "out",
            "POST",
            url,
            request_body=readable(payload),
            decrypted=readable(readable_view),
            note="fault: dropped, never sent (drop_next_callback)",
            callback_id=callback.id,
        )
        return callback
    dispatch(callback.id, max_attempts)
    return callback


def dispatch(callback_id: int, attempts: int) -> None:
    """Deliver up to `attempts` times: inline when SANDBOX_CALLBACK_SYNC, else in a daemon thread."""
    app = current_app._get_current_object()
    if app.config.get("SANDBOX_CALLBACK_SYNC"):
        deliver(callback_id, attempts)
        return
    thread = threading.Thread(target=_deliver_in_app, args=(app, callback_id, attempts), daemon=True)
    senders = app.extensions.setdefault("sandbox_callback_senders", [])
    senders[:] = [t for t in senders if t.is_alive()]
    senders.append(thread)
    thread.start()


def wait_for_senders(app: Flask, timeout: float) -> None:
    """Wait (up to timeout seconds in all) for callbacks still being sent from background threads."""
    deadline = time.monotonic() + timeout
    for thread in list(app.extensions.get("sandbox_callback_senders", [])):
        thread.join(max(deadline - time.monotonic(), 0))


def _deliver_in_app(app: Flask, callback_id: int, attempts: int) -> None:
    with app.app_context():
        try:
            deliver(callback_id, attempts)
        finally:
            db.session.remove()


def deliver(callback_id: int, attempts: int) -> bool:
    """POST the callback until the receiver answers as expected or `attempts` are used up."""
    config = current_app.config
    delay = float(config.get("SANDBOX_CALLBACK_RETRY_DELAY_S", 3))
    timeout = float(config.get("SANDBOX_CALLBACK_TIMEOUT_S", 10))
    for number in range(attempts):
        callback = db.session.get(SandboxCallback, callback_id)
        if number:
            time.sleep(delay)
        if _attempt(callback, timeout):
            return True
    callback = db.session.get(SandboxCallback, callback_id)
    callback.state = "failed"
    db.session.commit()
    return False


def _attempt(callback: SandboxCallback, timeout: float) -> bool:
    """One POST; whether the receiver took it."""
    started = time.monotonic()
    kwargs = {"json": callback.payload} if callback.body_format == "json" else {"data": callback.payload}
    callback_id, provider, url, payload, view = (
        callback.id,
        callback.provider,
        callback.url,
        callback.payload,
        callback.readable,
    )
    expect = callback.expect
    db.session.commit()  # hold no transaction while the receiver (maybe this very app) works
    status, answer, note = None, "", ""
    try:
        response = requests.post(url, timeout=timeout, **kwargs)
        status, answer = response.status_code, response.text
    except requests.RequestException as exc:
        note = f"not delivered: {type(exc).__name__}: {exc}"
    ok = status is not None and 200 <= status < 300 and (expect is None or answer.strip() == expect)
    if status is not None and not ok:
        note = f"receiver did not answer {expect!r}" if expect else "receiver answered an error"
    callback = db.session.get(SandboxCallback, callback_id)
    callback.attempts += 1
    callback.last_status = status
    callback.last_answer = answer[:2000]
    callback.state = "delivered" if ok else "pending"
    db.session.commit()
    record(
        provider,
        "out",
        "POST",
        url,
        status_code=status,
        request_headers={"Content-Type": "application/json" if "json" in kwargs else FORM_TYPE},
        request_body=readable(payload),
        decrypted=readable(view),
        response_body=readable(answer[:20000]),
        note=(f"attempt {callback.attempts}" + (f" — {note}" if note else " — accepted")),
        duration_ms=int((time.monotonic() - started) * 1000),
        callback_id=callback_id,
    )
    if not ok:
        log.info("sandbox %s callback %s to %s: %s", provider, callback_id, url, note)
    return ok


def resend(callback_id: int) -> None:
    """Send a stored callback once more (console button)."""
    callback = db.session.get(SandboxCallback, callback_id)
    if callback is None:
        return
    callback.state = "pending"
    db.session.commit()
    dispatch(callback_id, 1)
