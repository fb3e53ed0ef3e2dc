"""The mail catcher: an SMTP server on the loopback interface that keeps every mail it receives for the console (/mail).

Point the merchant's server at it (the portal: MAIL_SERVER=127.0.0.1, MAIL_PORT=<SANDBOX_SMTP_PORT>, no TLS, no
login) and its mails appear at /mail instead of reaching anyone. It accepts any sender and any recipient, delivers
nothing, and refuses a mail larger than MAX_MAIL_BYTES.

When it runs (SANDBOX_SMTP_PORT, sandbox/config.py):
- `python -m sandbox --port N` starts it beside the HTTP server on SANDBOX_SMTP_PORT, by default N + 1 (0: no mail
  catcher), and stops it with the server. A port already taken is reported, and the HTTP server serves on.
- Any other server of `sandbox:create_app()` (gunicorn, `flask run`) starts it only when SANDBOX_SMTP_PORT is set (and
  not 0), with the first request the process serves. Of several gunicorn workers, the first to bind the port serves
  it and the others find it taken and leave it, so there is one catcher per server, never one per worker.
- The command-line tools (`flask --app sandbox accounts`...) never start it.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import re
import socket
import threading
from email.message import EmailMessage
from html.parser import HTMLParser

from aiosmtpd.controller import Controller
from flask import Flask

from sandbox.common import is_loopback
from sandbox.extensions import db

log = logging.getLogger(__name__)

MAX_MAIL_BYTES = 1024 * 1024  # larger mails are refused (552) rather than stored
KEEP_MAILS = 1000  # the oldest beyond this many are deleted as new ones arrive


def parse(raw: bytes) -> EmailMessage:
    """The standard library's reading of a raw message."""
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


def body_part(message: EmailMessage, subtype: str) -> str:
    """The text/plain or text/html body of a message, as text; empty when it has none or it cannot be decoded."""
    part = message.get_body(preferencelist=(subtype,))
    if part is None or part.get_content_type() != f"text/{subtype}":
        return ""
    try:
        content = part.get_content()
    except (LookupError, UnicodeError, ValueError):  # an unknown charset or a broken transfer encoding
        payload = part.get_payload(decode=True) or b""
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else str(payload)
    return content.replace("\r\n", "\n")  # SMTP's line ends, not the text's


def store(app: Flask, mail_from: str, rcpt_tos: list[str], raw: bytes) -> int:
    """Keep one received mail; returns its id."""
    from sandbox.models import CaughtMail

    message = parse(raw)
    with app.app_context():
        mail = CaughtMail(
            mail_from=mail_from or "",
            rcpt_tos=list(rcpt_tos),
            subject=str(message.get("Subject", "")),
            message_id=str(message.get("Message-ID", "")).strip(),  # a folded header starts with a space
            text=body_part(message, "plain"),
            html=body_part(message, "html"),
            raw=raw.decode("utf-8", "replace"),
        )
        db.session.add(mail)
        db.session.commit()
        oldest_kept = db.session.execute(
            db.select(CaughtMail.id).order_by(CaughtMail.id.desc()).offset(KEEP_MAILS - 1).limit(1)
        ).scalar()
        if oldest_kept is not None:
            db.session.execute(db.delete(CaughtMail).where(CaughtMail.id < oldest_kept))
            db.session.commit()
        mail_id = mail.id
        db.session.remove()
        return mail_id


class CatchingHandler:
    """aiosmtpd's handler: every mail is stored in the sandbox's database (in a worker thread, off the event loop)."""

    def __init__(self, app: Flask):
        self.app = app

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802  (aiosmtpd's hook name)
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8")
        loop = asyncio.get_running_loop()
        try:
            mail_id = await loop.run_in_executor(
                None, store, self.app, envelope.mail_from, list(envelope.rcpt_tos), raw
            )
        except Exception:
            log.exception("the mail catcher could not store a mail")
            return "451 Requested action aborted: error in processing"
        return f"250 OK caught as #{mail_id}"


class ListeningController(Controller):
    """aiosmtpd's Controller serving a socket already listening: a port that is taken fails at once, in the caller's
    thread, rather than after the Controller's ready timeout."""

    def __init__(self, handler, listening: socket.socket, **smtp_parameters):
        host, port = listening.getsockname()[:2]
        super().__init__(handler, hostname=host, port=port, **smtp_parameters)
        self.listening = listening

    def _create_server(self):
        return self.loop.create_server(self._factory_invoker, sock=self.listening, ssl=self.ssl_context)


def listen(host: str, port: int) -> socket.socket:
    """A TCP socket listening on host:port, loopback only (ValueError otherwise); OSError when the port is taken."""
    if not is_loopback(host):
        raise ValueError(f"refusing to listen on {host!r}: the mail catcher serves this machine only (loopback)")
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio does: a restart needs no wait
        sock.bind((host.strip("[]"), port))
        sock.listen(100)  # at once: another process binding the same port now fails
    except OSError:
        sock.close()
        raise
    return sock


def start(app: Flask, host: str, port: int) -> Controller:
    """Start the mail catcher on host:port (OSError when the port is taken); kept in app.extensions."""
    listening = listen(host, port)
    server = ListeningController(CatchingHandler(app), listening, data_size_limit=MAX_MAIL_BYTES)
    try:
        server.start()
    except BaseException:
        listening.close()
        raise
    app.extensions["sandbox_mail"] = server
    return server


def stop(app: Flask) -> None:
    """Stop the app's mail catcher, if it runs."""
    server = app.extensions.pop("sandbox_mail", None)
    if server is not None:
        server.stop()


def start_with_first_request(app: Flask) -> None:
    """For servers other than `python -m sandbox`: the catcher starts with the first request when SANDBOX_SMTP_PORT
    is set; a port already bound (by another worker of the same server) is left to that one."""
    port = app.config.get("SANDBOX_SMTP_PORT")
    if not port:
        return
    lock = threading.Lock()
    tried = False

    @app.before_request
    def start_mail_catcher():
        nonlocal tried
        if tried:
            return
        with lock:
            if tried or "sandbox_mail" in app.extensions:
                tried = True
                return
            tried = True
            try:
                start(app, "127.0.0.1", int(port))
                log.warning("mail catcher: smtp://127.0.0.1:%s (caught mails at /mail)", port)
            except OSError as exc:
                log.info("mail catcher not started here (port %s: %s); another process serves it", port, exc)


class _Links(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            href = dict(attrs).get("href") or ""
            if href.startswith(("http://", "https://")) and href not in self.links:
                self.links.append(href)


def links(html: str, text: str) -> list[str]:
    """The http(s) links of a mail, from its HTML anchors and its text, in order, each once."""
    parser = _Links()
    parser.feed(html or "")
    found = parser.links
    for url in re.findall(r"https?://[^\s<>\"')]+", text or ""):
        url = url.rstrip(".,;:!?。，")
        if url not in found:
            found.append(url)
    return found
