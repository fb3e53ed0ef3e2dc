"""The shared HTTP helper: timeouts, retries for queries only, typed errors."""

from __future__ import annotations

import pytest
import requests

from portal.providers.base import ProviderError, ProviderUnavailable
from portal.providers.http import HttpClient

URL = "https://provider.example/api"


def client(**kw) -> tuple[HttpClient, list[float]]:
    slept: list[float] = []
    return HttpClient("mypay", timeout=7, sleep=slept.append, **kw), slept


def test_session_is_reused_and_timeouts_are_explicit(rsps):
    session = requests.Session()
    http, _ = client(session=session)
    rsps.post(URL, body="{}")
    http.request("POST", URL)
    http.request("POST", URL)
    assert http.session is session
    assert http.timeout == (5.0, 7.0)
    assert [c.request.req_kwargs["timeout"] for c in rsps.calls] == [(5.0, 7.0), (5.0, 7.0)]


@pytest.mark.parametrize(
    ("failure", "code"),
    [
        (requests.exceptions.ConnectTimeout(), "timeout"),
        (requests.exceptions.ReadTimeout(), "timeout"),
        (requests.exceptions.ConnectionError(), "connection"),
    ],
)
def test_transport_failures_are_unavailable(rsps, failure, code):
    http, _ = client()
    rsps.post(URL, body=failure)
    with pytest.raises(ProviderUnavailable) as caught:
        http.request("POST", URL)
    assert caught.value.code == code
    assert caught.value.retryable
    assert caught.value.message_en and caught.value.message_zh != caught.value.message_en
    assert len(rsps.calls) == 1


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_unavailable_and_never_retried_for_writes(rsps, status):
    http, slept = client()
    rsps.post(URL, status=status, body="oops")
    with pytest.raises(ProviderUnavailable) as caught:
        http.request("POST", URL)
    assert caught.value.code == f"http_{status}"
    assert len(rsps.calls) == 1
    assert slept == []


def test_queries_are_retried_with_backoff(rsps):
    http, slept = client()
    rsps.post(URL, status=503)
    rsps.post(URL, body=requests.exceptions.ReadTimeout())
    rsps.post(URL, body='{"ok": true}')
    response = http.request("POST", URL, idempotent=True)
    assert response.json() == {"ok": True}
    assert len(rsps.calls) == 3
    assert slept == [0.5, 1.0]


def test_queries_give_up_after_the_retries(rsps):
    http, slept = client()
    rsps.post(URL, status=500)
    with pytest.raises(ProviderUnavailable):
        http.request("POST", URL, idempotent=True)
    assert len(rsps.calls) == 3
    assert slept == [0.5, 1.0]


def test_a_callable_body_is_rebuilt_for_every_attempt(rsps):
    http, _ = client()
    bodies = iter([{"n": "1"}, {"n": "2"}])
    rsps.post(URL, status=500)
    rsps.post(URL, body="{}")
    http.request("POST", URL, idempotent=True, data=lambda: next(bodies))
    assert [c.request.body for c in rsps.calls] == ["n=1", "n=2"]


@pytest.mark.parametrize("body", [b"<html>", b"[1, 2]", b"\xff\xfe", b"", b'"text"'])
def test_garbage_bodies_are_provider_errors(rsps, body):
    http, _ = client()
    rsps.post(URL, body=body)
    with pytest.raises(ProviderError) as caught:
        http.json(http.request("POST", URL))
    assert type(caught.value) is ProviderError
    assert caught.value.code == "bad_response"
    assert "MyPay" in caught.value.message_en


def plain_session() -> requests.Session:
    """As gateways.http_session makes it without a proxy in the environment."""
    session = requests.Session()
    session.trust_env = False
    return session


@pytest.mark.parametrize(
    "kwargs",
    [
        {"data": {"agent_uid": "1", "service": "a b+c", "encry_data": "中文"}},
        {"data": b'{"a": 1}', "headers": {"Content-Type": "application/json", "accept": "application/json"}},
        {"params": {"page": "2", "q": "x y"}, "headers": {"Authorization": "Bearer t"}},
        {},
    ],
)
def test_a_plain_session_sends_what_session_request_sends(rsps, kwargs):
    rsps.post(URL, body="{}")
    rsps.get(URL, body="{}")
    method = "GET" if "params" in kwargs else "POST"
    HttpClient("mypay", timeout=7, session=plain_session()).request(method, URL, **kwargs)
    plain_session().request(method, URL, timeout=(5.0, 7.0), **kwargs)
    ours, theirs = (c.request for c in rsps.calls)
    assert (ours.method, ours.url, ours.body) == (theirs.method, theirs.url, theirs.body)
    assert list(ours.headers.items()) == list(theirs.headers.items())
    assert ours.req_kwargs == theirs.req_kwargs


def test_a_session_with_cookies_takes_requests_own_path(rsps):
    session = plain_session()
    session.cookies.set("route", "a", domain="provider.example", path="/")
    rsps.post(URL, body="{}")
    HttpClient("mypay", timeout=7, session=session).request("POST", URL, data={"n": "1"})
    assert rsps.calls[0].request.headers["Cookie"] == "route=a"
