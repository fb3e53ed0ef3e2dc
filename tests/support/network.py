"""The network guard: inside the test process, no connection leaves this machine.

Sockets may connect only to loopback (127.0.0.0/8, ::1), the unspecified address, or a unix socket; names other
than localhost do not resolve. A refusal raises `NetworkRefused` at once (no timeout), and is also remembered, so a
test whose code swallowed the error still fails at teardown. The `responses` library mocks at requests' adapter,
below which nothing is sent, so mocked provider calls never reach a socket and keep working.

Not covered: subprocesses (the sandbox process, Chromium, node, `python -m flask`), which are not patched, and
C libraries that open their own sockets (libpq; the test database is on 127.0.0.1 anyway).
"""

from __future__ import annotations

import ipaddress
import socket

LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


class NetworkRefused(RuntimeError):
    """A test tried to reach an address outside this machine (not an OSError, so no code mistakes it for an outage)."""


def is_local_host(host) -> bool:
    """Whether a host (name or address, as socket calls take it) is this machine."""
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    host = str(host).strip("[]").split("%", 1)[0].lower()  # "[::1]", "fe80::1%eth0"
    if host in LOCAL_NAMES or host == "":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_loopback or address.is_unspecified


def is_local_address(address) -> bool:
    """Whether a socket address (a unix path, or a (host, port, ...) tuple) is on this machine."""
    if isinstance(address, (str, bytes)):  # AF_UNIX
        return True
    return is_local_host(address[0])


class NetworkGuard:
    """Patches socket's connect, connect_ex, create_connection and getaddrinfo; `refused` lists what was refused."""

    def __init__(self):
        self.refused: list[str] = []

    def refuse(self, what: str):
        self.refused.append(what)
        raise NetworkRefused(f"a test tried to reach {what}: tests may only reach loopback (mock the call instead)")

    def install(self, monkeypatch) -> NetworkGuard:
        connect, connect_ex = socket.socket.connect, socket.socket.connect_ex
        create_connection, getaddrinfo = socket.create_connection, socket.getaddrinfo
        guard = self

        def guarded_connect(sock, address):
            if not is_local_address(address):
                guard.refuse(f"{address!r}")
            return connect(sock, address)

        def guarded_connect_ex(sock, address):
            if not is_local_address(address):
                guard.refuse(f"{address!r}")
            return connect_ex(sock, address)

        def guarded_create_connection(address, *args, **kwargs):
            if not is_local_address(address):
                guard.refuse(f"{address!r}")
            return create_connection(address, *args, **kwargs)

        def guarded_getaddrinfo(host, *args, **kwargs):
            if not is_local_host(host):
                guard.refuse(f"{host!r} (name lookup)")
            return getaddrinfo(host, *args, **kwargs)

        monkeypatch.setattr(socket.socket, "connect", guarded_connect)
        monkeypatch.setattr(socket.socket, "connect_ex", guarded_connect_ex)
        monkeypatch.setattr(socket, "create_connection", guarded_create_connection)
        monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
        return self
