"""A real SMTP server for tests, keeping what it receives in memory.

catcher = SmtpCatcher().start()          # a free loopback port: catcher.host, catcher.port
...  # the portal with MAIL_SERVER=catcher.host, MAIL_PORT=catcher.port
[mail] = catcher.wait_for(1)             # email.message.EmailMessage objects
catcher.stop()                           # the port refuses connections (a mail server that is down)...
catcher.start()                          # ...and serves again on the same port
"""

from __future__ import annotations

import email
import email.policy
import threading
import time
from email.message import EmailMessage

from aiosmtpd.controller import Controller

from tests.support.sandbox import free_port


class SmtpCatcher:
    """aiosmtpd on 127.0.0.1; every mail received is parsed (policy=email.policy.default) and kept in `messages`, with
    its envelope in `envelopes` ((mail_from, rcpt_tos) in the same order)."""

    def __init__(self, port: int | None = None, host: str = "127.0.0.1"):
        self.host = host
        self.port = port or free_port()
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self._received = threading.Condition()
        self._controller: Controller | None = None

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802  (aiosmtpd's hook name)
        message = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        with self._received:
            self.messages.append(message)  # type: ignore[arg-type]
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
            self._received.notify_all()
        return "250 OK"

    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> SmtpCatcher:
        """Listen on self.port (the same port after a stop); a no-op when already listening."""
        if self._controller is None:
            controller = Controller(self, hostname=self.host, port=self.port)
            controller.start()
            self._controller = controller
        return self

    def stop(self) -> None:
        """Stop listening: connections to the port are refused until start(). Received mails are kept."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def clear(self) -> None:
        with self._received:
            self.messages.clear()
            self.envelopes.clear()

    def wait_for(self, count: int = 1, timeout: float = 10) -> list[EmailMessage]:
        """The messages once at least `count` have arrived; AssertionError (with what did arrive) after `timeout` s."""
        deadline = time.monotonic() + timeout
        with self._received:
            while len(self.messages) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    came = [str(m.get("Subject", "")) for m in self.messages]
                    raise AssertionError(f"{count} mail(s) expected within {timeout} s, {len(came)} came: {came}")
                self._received.wait(remaining)
            return list(self.messages)

    def __enter__(self) -> SmtpCatcher:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
