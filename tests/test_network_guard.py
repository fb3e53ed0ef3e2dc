"""The network guard of the root conftest: outside loopback nothing connects, loopback and mocks keep working."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest
import requests
import responses
from werkzeug.serving import make_server

from tests.support.network import NetworkRefused, is_local_address, is_local_host


@pytest.fixture
def refusals(network_guard):
    """The guard's record of refusals, emptied after the test (these refusals are the point, not a failure)."""
    yield network_guard.refused
    network_guard.refused.clear()


def test_a_stray_provider_call_fails_at_once_with_a_clear_message(refusals):
    started = time.monotonic()
    with pytest.raises(NetworkRefused, match="payment-api.oen.tw.*only reach loopback"):
        requests.get("https://payment-api.oen.tw/", timeout=30)
    assert time.monotonic() - started < 2
    assert refusals == ["'payment-api.oen.tw' (name lookup)"]


@pytest.mark.parametrize("address", [("192.0.2.1", 443), ("203.0.113.7", 80), ("2001:db8::1", 443, 0, 0)])
def test_sockets_do_not_connect_outside_loopback(refusals, address):
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        with pytest.raises(NetworkRefused):
            sock.connect(address)
        with pytest.raises(NetworkRefused):
            sock.connect_ex(address)
    with pytest.raises(NetworkRefused):
        socket.create_connection(address[:2], timeout=1)
    assert len(refusals) == 3


def test_names_outside_this_machine_do_not_resolve(refusals):
    with pytest.raises(NetworkRefused):
        socket.getaddrinfo("example.com", 443)
    assert socket.getaddrinfo("localhost", 80)
    assert socket.getaddrinfo("127.0.0.1", 80)


def test_a_swallowed_refusal_still_fails_the_test(network_guard):
    with contextlib.suppress(Exception):  # as careless code might
        requests.get("http://example.com/", timeout=30)
    assert network_guard.refused  # the autouse fixture fails the test at teardown
    network_guard.refused.clear()


def test_loopback_servers_answer(network_guard):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"here"]

    server = make_server("127.0.0.1", 0, app)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        assert requests.get(f"http://127.0.0.1:{server.server_port}/", timeout=5).text == "here"
        assert requests.get(f"http://localhost:{server.server_port}/", timeout=5).text == "here"
    finally:
        server.shutdown()
        server.server_close()
    assert network_guard.refused == []


def test_unix_sockets_connect(tmp_path, network_guard):
    path = str(tmp_path / "s")
    with socket.socket(socket.AF_UNIX) as server, socket.socket(socket.AF_UNIX) as client:
        server.bind(path)
        server.listen(1)
        client.connect(path)
    assert network_guard.refused == []


def test_what_counts_as_this_machine():
    assert all(is_local_host(h) for h in ("127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", "0.0.0.0", None))
    assert is_local_host("::ffff:127.0.0.1") and is_local_address("/tmp/socket") and is_local_address(("::1", 5, 0, 0))
    assert not any(is_local_host(h) for h in ("10.0.0.1", "192.168.1.10", "8.8.8.8", "example.com", "::ffff:8.8.8.8"))


@responses.activate
def test_mocked_provider_calls_keep_working(network_guard):
    responses.get("https://payment-api.oen.tw/order/1", json={"code": "S0000"})
    assert requests.get("https://payment-api.oen.tw/order/1", timeout=5).json() == {"code": "S0000"}
    assert network_guard.refused == []
