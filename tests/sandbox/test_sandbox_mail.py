"""The mail catcher: mails sent over SMTP to the sandbox appear on its console (/mail) and in /mail/api/messages."""

from __future__ import annotations

import html
import re
import smtplib
import socket
from email.message import EmailMessage

import pytest
import requests

from sandbox import mail
from tests.support.sandbox import SandboxProcess, free_port
from tests.support.smtp import SmtpCatcher

LINK = "http://127.0.0.1:5000/pay/AbC123"


def link_mail(to: str = "customer@example.com", subject: str = "付款連結 Payment link #1001") -> EmailMessage:
    """What the portal sends a customer: text and HTML alternatives, the link in both, a script that must never run."""
    message = EmailMessage()
    message["From"] = "Shop <shop@example.com>"
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = "<link-1001@shop.example.com>"
    message.set_content(f"請點連結付款 Pay here: {LINK}\n")
    message.add_alternative(
        f'<p>請點連結付款 <a href="{LINK}">付款 Pay NT$ 1,200</a></p><script>document.title = "pwned"</script>',
        subtype="html",
    )
    return message


def send(port: int, message: EmailMessage) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.send_message(message)


@pytest.fixture
def catcher(sandbox):
    """The sandbox's mail catcher on a free port, as `python -m sandbox` starts it beside the HTTP server."""
    server = mail.start(sandbox.app, "127.0.0.1", free_port())
    yield server
    mail.stop(sandbox.app)


class TestConsole:
    def test_a_sent_mail_is_listed_shown_and_given_as_json(self, sandbox, catcher):
        send(catcher.port, link_mail())
        send(catcher.port, link_mail("other@example.com", "收據 Receipt #1002"))

        listing = requests.get(f"{sandbox.url}/mail", timeout=10)
        assert listing.status_code == 200
        # newest first, with the recipient and the time on Taiwan's clock
        assert listing.text.index("收據 Receipt #1002") < listing.text.index("付款連結 Payment link #1001")
        assert "customer@example.com" in listing.text and "Asia/Taipei" in listing.text

        messages = requests.get(f"{sandbox.url}/mail/api/messages", timeout=10).json()
        assert [m["subject"] for m in messages] == ["收據 Receipt #1002", "付款連結 Payment link #1001"]
        first = messages[1]
        assert first["to"] == ["customer@example.com"]
        assert LINK in first["text"] and f'href="{LINK}"' in first["html"]
        assert first["received_at"].endswith("+00:00")
        only = requests.get(f"{sandbox.url}/mail/api/messages", params={"to": "other@example.com"}, timeout=10).json()
        assert [m["subject"] for m in only] == ["收據 Receipt #1002"]

        page = requests.get(f"{sandbox.url}/mail/{first['id']}", timeout=10)
        assert page.status_code == 200
        assert "請點連結付款 Pay here" in page.text  # the text part
        assert "&lt;link-1001@shop.example.com&gt;" in page.text  # the headers
        # the customer link can be followed: listed as a link opening a new tab, and the frame lets it open one
        assert re.search(rf'<a href="{re.escape(LINK)}" target="_blank"', page.text)
        assert 'sandbox="allow-popups allow-popups-to-escape-sandbox"' in page.text

    def test_the_html_of_a_mail_runs_no_script(self, sandbox, catcher):
        send(catcher.port, link_mail())
        [message] = requests.get(f"{sandbox.url}/mail/api/messages", timeout=10).json()
        page = requests.get(f"{sandbox.url}/mail/{message['id']}", timeout=10)

        frame = re.search(r"<iframe[^>]*>", page.text).group(0)
        sandboxed = re.search(r'sandbox="([^"]*)"', frame).group(1).split()
        assert "allow-scripts" not in sandboxed and "allow-same-origin" not in sandboxed
        # the mail's HTML only in the framed document and the escaped source, never as markup of the page
        assert "<script>" not in page.text
        src = html.unescape(re.search(r'src="([^"]*)"', frame).group(1))
        framed = requests.get(f"{sandbox.url}{src}", timeout=10)
        assert '<script>document.title = "pwned"</script>' in framed.text
        assert framed.text.startswith('<base target="_blank">')
        csp = page.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        # the framed mail: its own styles apply, nothing runs (no script-src, sandboxed by its CSP too)
        framed_csp = framed.headers["Content-Security-Policy"]
        assert "default-src 'none'" in framed_csp and "script-src" not in framed_csp and "sandbox" in framed_csp

    def test_delete_all_needs_csrf_and_empties_the_list(self, sandbox, catcher, wire):
        send(catcher.port, link_mail())
        session = requests.Session()
        listing = session.get(f"{sandbox.url}/mail", timeout=10)
        assert session.post(f"{sandbox.url}/mail/delete", timeout=10).status_code == 400
        assert len(session.get(f"{sandbox.url}/mail/api/messages", timeout=10).json()) == 1

        token = wire.csrf_token(listing.text)
        done = session.post(f"{sandbox.url}/mail/delete", data={"csrf_token": token}, timeout=10)
        assert done.status_code == 200 and "1 mails deleted" in done.text and "no mail yet" in done.text
        assert session.get(f"{sandbox.url}/mail/api/messages", timeout=10).json() == []

    def test_the_console_links_to_the_mail_page(self, sandbox):
        console = requests.get(f"{sandbox.url}/", timeout=10)
        assert 'href="/mail"' in console.text
        assert "the mail catcher is off" in requests.get(f"{sandbox.url}/mail", timeout=10).text

    def test_a_mail_over_the_size_limit_is_refused_and_not_kept(self, sandbox, catcher):
        big = link_mail()
        big.add_attachment(b"x" * (mail.MAX_MAIL_BYTES + 1), maintype="application", subtype="octet-stream")
        with pytest.raises(smtplib.SMTPException) as refused:
            send(catcher.port, big)
        assert getattr(refused.value, "smtp_code", None) == 552
        assert requests.get(f"{sandbox.url}/mail/api/messages", timeout=10).json() == []


class TestServing:
    def test_python_m_sandbox_serves_smtp_beside_http_and_stops_with_it(self, tmp_path):
        smtp_port = free_port()
        process = SandboxProcess(tmp_path / "sandbox.db", portal_url="http://127.0.0.1:9", SANDBOX_SMTP_PORT=smtp_port)
        process.start()
        try:
            send(smtp_port, link_mail())
            [message] = requests.get(f"{process.url}/mail/api/messages", timeout=10).json()
            assert message["subject"] == "付款連結 Payment link #1001"
            assert f"Mail catcher on smtp://127.0.0.1:{smtp_port}" in process.output()
            assert f"127.0.0.1:{smtp_port}" in requests.get(f"{process.url}/mail", timeout=10).text
        finally:
            process.stop()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", smtp_port), timeout=5).close()

    def test_only_loopback_is_served(self, sandbox):
        for host in ("0.0.0.0", "192.168.1.10", "::"):  # noqa: S104  (the hosts being refused)
            with pytest.raises(ValueError, match="loopback"):
                mail.start(sandbox.app, host, free_port())
        assert "sandbox_mail" not in sandbox.app.extensions

    def test_other_servers_start_one_catcher_only_when_the_port_is_set(self, sandbox_factory):
        assert "sandbox_mail" not in sandbox_factory().app.extensions  # not set: none, even after requests
        port = free_port()
        first, second = sandbox_factory(SANDBOX_SMTP_PORT=port), sandbox_factory(SANDBOX_SMTP_PORT=port)
        try:
            assert "sandbox_mail" not in first.app.extensions  # nothing before the first request
            assert requests.get(f"{first.url}/healthz", timeout=10).text == "ok"
            # a second worker of the same server finds the port taken, leaves it, and serves its pages all the same
            answer = requests.get(f"{second.url}/healthz", timeout=10)
            assert answer.text == "ok" and answer.elapsed.total_seconds() < 2
            assert "sandbox_mail" in first.app.extensions and "sandbox_mail" not in second.app.extensions
            send(port, link_mail())
            assert len(requests.get(f"{second.url}/mail/api/messages", timeout=10).json()) == 0  # its own database
            assert len(requests.get(f"{first.url}/mail/api/messages", timeout=10).json()) == 1
        finally:
            mail.stop(first.app)


class TestSmtpCatcher:
    def test_a_stopped_server_refuses_and_serves_again_on_the_same_port(self, smtp):
        send(smtp.port, link_mail())
        [received] = smtp.wait_for(1)
        assert received["Subject"] == "付款連結 Payment link #1001"
        assert received.get_body(("plain",)).get_content().startswith("請點連結付款")

        port = smtp.port
        smtp.stop()
        with pytest.raises(ConnectionRefusedError):
            send(port, link_mail(subject="retry"))
        smtp.start()
        assert smtp.port == port
        send(port, link_mail(subject="retry"))
        assert [m["Subject"] for m in smtp.wait_for(2)] == ["付款連結 Payment link #1001", "retry"]
        assert smtp.envelopes[-1] == ("shop@example.com", ["customer@example.com"])

    def test_wait_for_says_what_arrived_when_it_times_out(self):
        with SmtpCatcher() as catcher:
            send(catcher.port, link_mail())
            with pytest.raises(AssertionError, match=r"2 mail\(s\) expected within 0.2 s, 1 came"):
                catcher.wait_for(2, timeout=0.2)
