"""Webhooks to the merchant's systems: events written with the state change that causes them, delivered by the worker.

An order's state change (state.refresh_order, the one writer) adds a MerchantEvent and, for each enabled endpoint of
the merchant subscribed to its type, an outbox row (kind "webhook", one per event and endpoint: its dedupe key), all in
the same transaction. The worker POSTs the event's JSON to the endpoint, signed with the endpoint's secret:
`Portal-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`, a 10-second timeout, redirects never
followed. Anything but a 2xx is retried by the outbox with growing delays for three days; then the endpoint is flagged
and disabled until an admin enables it again. Every attempt is kept (WebhookAttempt) for the deliveries page.

In production a delivery never reaches a private, loopback, link-local or multicast address: the host's addresses are
checked when the endpoint is added and again at each connection, and the connection goes to the address that was
checked (a name that resolves elsewhere later is caught at the next delivery).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import socket
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from datetime import UTC, timedelta
from urllib.parse import urlsplit

import requests
from flask import current_app
from requests.adapters import HTTPAdapter
from sqlalchemy import bindparam, select
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from portal import outbox
from portal.extensions import db, execute_core
from portal.gateways import kept_merchant
from portal.models import MerchantEvent, Order, OrderState, OutboxMessage, WebhookAttempt, WebhookEndpoint, utcnow
from portal.payments.locking import write_transaction
from portal.security import decrypt_secret, encrypt_secret

log = logging.getLogger(__name__)

KIND = "webhook"
# The order states that are events, and their types (the contract lists the first five; "cancelled" follows them).
STATE_EVENTS = {
    OrderState.PAID.value: "order.paid",
    OrderState.FAILED.value: "order.failed",
    OrderState.EXPIRED.value: "order.expired",
    OrderState.CANCELLED.value: "order.cancelled",
    OrderState.REFUNDED.value: "order.refunded",
    OrderState.PARTIALLY_REFUNDED.value: "order.partially_refunded",
}
EVENT_TYPES = tuple(STATE_EVENTS.values())

TIMEOUT_S = 10
EXCERPT_BYTES = 500
GIVE_UP_AFTER = timedelta(days=3)
# 1, 2, 4, … 256 minutes, then every 6 hours, until three days have passed since the event: about 20 attempts.
WEBHOOK_RETRY = outbox.RetryPolicy(timedelta(minutes=1), timedelta(hours=6), GIVE_UP_AFTER)
# Deliveries sent at once by one worker: a slow or dead endpoint holds one of these, never the others' deliveries.
THREADS = 8
USER_AGENT = "MerchantPortal-Webhooks/1"
SECRET_PREFIX = "whsec_"  # noqa: S105  # nosec B105  # the prefix of generated secrets, not a secret
MAX_URL = 2048


class BlockedAddress(Exception):
    """The endpoint's host resolves to an address deliveries may not reach (production)."""


class DeliveryFailed(Exception):
    """No 2xx from the endpoint (retried by the outbox); the message says why, without the URL or the secret."""


# ---------------------------------------------------------------- addresses


def forbidden_address(address: str) -> bool:
    """Whether an IP address is one a delivery may not reach in production: private, loopback, link-local, multicast,
    reserved or otherwise not public."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (
        not ip.is_global
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def public_addresses(host: str, port: int) -> list[tuple]:
    """The host's addresses (getaddrinfo rows) when every one of them is public; BlockedAddress otherwise."""
    literal = host.strip("[]")
    try:
        ip = ipaddress.ip_address(literal.split("%", 1)[0])
    except ValueError:
        ip = None
    if ip is not None:  # an address, not a name: nothing to look up
        if forbidden_address(literal):
            raise BlockedAddress("the host resolves to a private, loopback or otherwise non-public address")
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (literal, port))]
    try:
        rows = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise BlockedAddress("the host name could not be resolved") from exc
    if not rows:
        raise BlockedAddress("the host name could not be resolved")
    if any(forbidden_address(row[4][0]) for row in rows):
        raise BlockedAddress("the host resolves to a private, loopback or otherwise non-public address")
    return rows


def production() -> bool:
    return current_app.config.get("PROVIDER_ENV") == "production"


# url_problem's codes as the command line says them (the pages say them in the reader's language).
URL_PROBLEMS_EN = {
    "format": "the URL must be an http or https address with a host (no user name, no #fragment)",
    "https": "PROVIDER_ENV=production takes https URLs only",
    "private": "PROVIDER_ENV=production refuses a host that does not resolve to public addresses only "
    "(private, loopback, link-local and multicast addresses are refused)",
}


def url_problem(url: str) -> str | None:
    """Why the URL cannot be an endpoint (a code for the form's message), or None.

    Codes: "format" (not an http(s) URL with a host, or with a user name or fragment), "https" (production takes https
    only), "private" (production: the host resolves to a non-public address, or not at all)."""
    if not url or len(url) > MAX_URL or any(ch.isspace() or ord(ch) < 32 for ch in url):
        return "format"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "format"
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        return "format"
    if parts.fragment:
        return "format"
    if production():
        if parts.scheme != "https":
            return "https"
        try:
            public_addresses(parts.hostname, port or 443)
        except BlockedAddress:
            return "private"
    return None


class _PinnedConnectionMixin:
    """Connects only to a public address of the host, the one it checked (no second lookup an attacker's DNS could
    answer differently). TLS still checks the certificate against the host name."""

    def _new_conn(self):  # urllib3's hook that opens the socket
        rows = public_addresses(self._dns_host, self.port)
        original = self._dns_host
        self._dns_host = rows[0][4][0]
        try:
            return super()._new_conn()
        finally:
            self._dns_host = original


class _PinnedHTTPConnection(_PinnedConnectionMixin, HTTPConnection):
    pass


class _PinnedHTTPSConnection(_PinnedConnectionMixin, HTTPSConnection):
    pass


class _PinnedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _PinnedHTTPConnection


class _PinnedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _PinnedHTTPSConnection


class PublicOnlyAdapter(HTTPAdapter):
    """A requests adapter whose connections reach public addresses only."""

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _PinnedHTTPPool, "https": _PinnedHTTPSPool}


def http_session() -> requests.Session:
    """A session for one delivery: no proxies or .netrc from the environment; in production, public addresses only."""
    session = requests.Session()
    session.trust_env = False
    if production():
        adapter = PublicOnlyAdapter(max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
    return session


# ---------------------------------------------------------------- endpoints


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def clean_events(events) -> list[str]:
    """The known event types among those given, in the contract's order; empty means every type."""
    chosen = {str(e).strip() for e in events or ()}
    return [event for event in EVENT_TYPES if event in chosen]


def create_endpoint(
    merchant_id: int, url: str, events=(), description: str = "", created_by_id: int | None = None
) -> tuple[WebhookEndpoint, str]:
    """A new enabled endpoint in the session (the caller checked the URL and commits); (endpoint, its secret)."""
    secret = new_secret()
    endpoint = WebhookEndpoint(
        merchant_id=merchant_id,
        url=url,
        description=(description or "").strip() or None,
        events=clean_events(events),
        secret_enc=encrypt_secret(secret),
        enabled=True,
        created_by_id=created_by_id,
    )
    db.session.add(endpoint)
    db.session.flush()
    return endpoint, secret


def roll_secret(endpoint: WebhookEndpoint) -> str:
    """A new signing secret for the endpoint (the old one stops at once); the caller commits."""
    secret = new_secret()
    endpoint.secret_enc = encrypt_secret(secret)
    return secret


def subscribed(endpoint: WebhookEndpoint, event_type: str) -> bool:
    return not endpoint.events or event_type in endpoint.events


# ---------------------------------------------------------------- events


# Built once, on the table: what on_order_state needs of a merchant's enabled endpoints (every state change asks).
_endpoints = WebhookEndpoint.__table__
LISTENING = select(_endpoints.c.id, _endpoints.c.merchant_id, _endpoints.c.events).where(
    _endpoints.c.merchant_id == bindparam("merchant_id"), _endpoints.c.enabled
)


def on_order_state(order: Order, old_state: str | None, new_state: str) -> MerchantEvent | None:
    """The order's state changed (called in the transaction that changes it): the event, and a delivery per endpoint."""
    event_type = STATE_EVENTS.get(new_state)
    if event_type is None or old_state == new_state:
        return None
    kept = kept_merchant(order.merchant_id)  # read with the callback that changed it, endpoints looked for with it
    if kept is not None and not kept.listening:
        return None
    endpoints = execute_core(LISTENING, {"merchant_id": order.merchant_id})
    receivers = [endpoint for endpoint in endpoints if subscribed(endpoint, event_type)]
    if not receivers:
        return None  # nobody listens for it: no event to keep (the order, its lines and links are not read)
    from portal.order_json import order_payload

    event = MerchantEvent(
        public_id="evt_" + secrets.token_hex(12),
        merchant_id=order.merchant_id,
        type=event_type,
        order_id=order.id,
        data={"order": order_payload(order)},
        created_at=utcnow(),
    )
    db.session.add(event)
    db.session.flush()
    for endpoint in receivers:
        enqueue_delivery(event, endpoint)
    return event


def enqueue_delivery(event: MerchantEvent, endpoint: WebhookEndpoint, *, resend: bool = False) -> bool:
    """An outbox row delivering the event to the endpoint, in the caller's transaction. One per event and endpoint;
    a resend is a row of its own."""
    key = f"webhook:{event.public_id}:{endpoint.id}"
    if resend:
        key += f":resend:{secrets.token_hex(6)}"
    return outbox.enqueue(
        KIND,
        event.type,
        dedupe_key=key,
        merchant_id=endpoint.merchant_id,
        order_id=event.order_id,
        payload={"event_id": event.id, "endpoint_id": endpoint.id, "resend": resend},
    )


def event_body(event: MerchantEvent) -> bytes:
    """The JSON body of the event, the same bytes on every attempt."""
    created = event.created_at if event.created_at.tzinfo else event.created_at.replace(tzinfo=UTC)
    document = {"id": event.public_id, "type": event.type, "created": int(created.timestamp()), "data": event.data}
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The Portal-Signature header's value for these bytes."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


# ---------------------------------------------------------------- delivering


def _read_excerpt(response: requests.Response) -> str:
    try:
        raw = response.raw.read(EXCERPT_BYTES, decode_content=True) or b""
    except Exception:  # the answer's body is only shown; a broken one is shown as empty
        raw = b""
    return raw[:EXCERPT_BYTES].decode("utf-8", errors="replace")


def _transport_error(exc: Exception) -> str:
    """What went wrong, for the deliveries page and the logs: never the URL (it may carry the merchant's token)."""
    if isinstance(exc, BlockedAddress):
        return f"refused: {exc}"
    if isinstance(exc, requests.Timeout):
        return f"no answer within {TIMEOUT_S} s"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS error (certificate or handshake)"
    if isinstance(exc, requests.ConnectionError):
        return "could not connect"
    return f"request failed ({type(exc).__name__})"


def send_webhook(message: OutboxMessage) -> None:
    """The outbox's sender for webhooks: one attempt, recorded; raises DeliveryFailed to be retried."""
    payload = message.payload or {}
    endpoint = db.session.get(WebhookEndpoint, payload.get("endpoint_id"))
    event = db.session.get(MerchantEvent, payload.get("event_id"))
    if endpoint is None or event is None or event.merchant_id != endpoint.merchant_id or not endpoint.enabled:
        return  # deleted or disabled since: nothing to send
    body = event_body(event)
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Portal-Event-Id": event.public_id,
        "Portal-Signature": signature(decrypt_secret(endpoint.secret_enc), timestamp, body),
    }
    url, endpoint_id, event_id = endpoint.url, endpoint.id, event.id
    status = None
    excerpt = None
    error = None
    started = time.monotonic()
    try:
        with http_session() as session:
            response = session.post(
                url, data=body, headers=headers, timeout=TIMEOUT_S, allow_redirects=False, stream=True
            )
            with response:
                status = response.status_code
                excerpt = _read_excerpt(response)
    except (requests.RequestException, BlockedAddress) as exc:
        error = _transport_error(exc)
    except ValueError:  # a URL requests cannot send to (checked at creation; kept old data safe)
        error = "the URL cannot be used"
    duration = int((time.monotonic() - started) * 1000)
    ok = status is not None and 200 <= status < 300
    if not ok and error is None:
        error = f"HTTP {status}" + (" (redirect not followed)" if 300 <= status < 400 else "")
    last_try = WEBHOOK_RETRY.next_attempt(message.attempts, message.created_at, utcnow()) is None
    _record(message.id, endpoint_id, event_id, status, duration, excerpt, error, bool(payload.get("resend")), last_try)
    if not ok:
        raise DeliveryFailed(error)


def _record(message_id, endpoint_id, event_id, status, duration, excerpt, error, resend, last_try) -> None:
    """The attempt, and the endpoint's health: failing since the first failure, cleared by a success; flagged (and
    disabled) when deliveries have failed for three days."""
    now = utcnow()
    with write_transaction():
        db.session.add(
            WebhookAttempt(
                endpoint_id=endpoint_id,
                event_id=event_id,
                outbox_message_id=message_id,
                attempted_at=now,
                status_code=status,
                duration_ms=duration,
                response_excerpt=excerpt,
                error=error,
                resend=resend,
            )
        )
        endpoint = db.session.get(WebhookEndpoint, endpoint_id, populate_existing=True)
        if endpoint is None:
            return
        if error is None:
            endpoint.failing_since = None
            return
        if endpoint.failing_since is None:
            endpoint.failing_since = now
        if last_try or endpoint.failing_since <= now - GIVE_UP_AFTER:
            if endpoint.flagged_at is None:
                log.warning("webhook endpoint %s flagged and disabled: deliveries failed for three days", endpoint_id)
            endpoint.flagged_at = endpoint.flagged_at or now
            endpoint.enabled = False


def deliver_due(threads: int = THREADS) -> int:
    """Send the due webhook deliveries, up to `threads` at once, until none is due; how many went.

    Each delivery is its own outbox row claimed as a thread frees up, so one slow or dead endpoint holds one thread
    for at most its timeout while the other endpoints' deliveries go on."""
    app = current_app._get_current_object()
    sent = 0
    lock = threading.Lock()

    def send(message_id: int) -> None:
        nonlocal sent
        with app.app_context():
            try:
                if outbox.send_claimed(message_id):
                    with lock:
                        sent += 1
            finally:
                db.session.remove()

    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="webhook") as pool:
        running = set()
        while True:
            free = threads - len(running)
            ids = outbox.claim(free, kinds=(KIND,)) if free else []
            running.update(pool.submit(send, message_id) for message_id in ids)
            if not running:
                return sent
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                future.result()


def resend(event: MerchantEvent, endpoint: WebhookEndpoint) -> bool:
    """Deliver the event to the endpoint again now (a new outbox row, marked resend); the caller commits."""
    return enqueue_delivery(event, endpoint, resend=True)


outbox.register(KIND, send_webhook, WEBHOOK_RETRY)
