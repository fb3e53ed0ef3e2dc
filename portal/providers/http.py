"""The one HTTP helper every provider client uses: a reused session, timeouts, query-only retries, typed errors."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import requests
from requests.structures import CaseInsensitiveDict

from .base import ProviderError, ProviderUnavailable

# Merchant-facing wording for failures that are not the provider's own codes.
MESSAGES = {
    "timeout": (
        "{label} did not answer in time. The payment may or may not have gone through: refresh the order before "
        "trying again.",
        "{label} 未在時限內回應。這筆款項可能已成立也可能沒有，請先重新整理訂單狀態再重試。",
    ),
    "connection": (
        "The portal could not reach {label}. Please try again in a few minutes.",
        "無法連線到 {label}，請稍候幾分鐘再試。",
    ),
    "server_error": (
        "{label} reported a server error (HTTP {status}). Please try again later; refresh the order first.",
        "{label} 系統發生錯誤（HTTP {status}），請稍後再試；重試前請先重新整理訂單狀態。",
    ),
    "bad_response": (
        "{label} sent an answer the portal cannot read. Please try again later or contact the provider.",
        "{label} 回傳的資料無法解讀，請稍後再試或聯絡金流商。",
    ),
    "unknown_outcome": (
        "{label} answered, but the portal cannot read the answer, so it may or may not have been done. Nothing is "
        "sent again: the portal asks {label} what happened.",
        "{label} 已回應，但回應無法解讀，這筆交易可能已成立也可能沒有。系統不會重送，將向 {label} 查詢實際結果。",
    ),
    "http_error": (
        "{label} refused the request (HTTP {status}). Please check the provider settings of this merchant.",
        "{label} 拒絕了這個請求（HTTP {status}），請檢查此商店的金流設定。",
    ),
}

# The providers' names inside these messages (no Flask here: the views translate provider names with gettext).
LABELS = {"oen": "Oen Tech", "mypay": "MyPay", "opay": "O'Pay"}
LABELS_ZH = {"oen": "應援科技", "mypay": "MyPay", "opay": "歐付寶"}


def error(kind: str, provider: str, code: str = "", cls: type[ProviderError] = ProviderError, **fmt) -> ProviderError:
    """Build a typed error from one of the shared messages."""
    en, zh = MESSAGES[kind]
    label, label_zh = LABELS.get(provider, provider), LABELS_ZH.get(provider, provider)
    return cls(provider, code or kind, en.format(label=label, **fmt), zh.format(label=label_zh, **fmt))


def unknown_outcome(provider: str) -> ProviderUnavailable:
    """A charge or refund answered 2xx in a way the portal cannot read: it may have been done, so its outcome is
    unknown (settled by a query, never "failed", never sent again)."""
    return error("unknown_outcome", provider, cls=ProviderUnavailable)


class HttpClient:
    """Sends requests for one provider and turns every transport failure into a typed error."""

    def __init__(
        self,
        provider: str,
        timeout: float = 10,
        session: requests.Session | None = None,
        *,
        retries: int = 2,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.provider = provider
        # Connecting should be quick; a slow provider still gets the whole budget to answer.
        self.timeout = (min(float(timeout), 5.0), float(timeout))
        self.session = session or requests.Session()
        self.retries = retries
        self.backoff = backoff
        self.sleep = sleep

    def request(self, method: str, url: str, *, idempotent: bool = False, **kwargs) -> requests.Response:
        """Send once, or with backoff retries when the call is a query that is safe to repeat."""
        # A callable `data` is called for every attempt: O'Pay wants a new RqID and Timestamp on every call.
        attempts = 1 + (self.retries if idempotent else 0)
        for attempt in range(attempts):
            try:
                if callable(kwargs.get("data")):
                    return self._send(method, url, **{**kwargs, "data": kwargs["data"]()})
                return self._send(method, url, **kwargs)
            except ProviderUnavailable:
                if attempt + 1 >= attempts:
                    raise
                self.sleep(self.backoff * (2**attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(self, method: str, url: str, **kwargs) -> requests.Response:
        try:
            response = self._transport(method, url, **kwargs)
        except requests.Timeout as exc:
            raise error("timeout", self.provider, cls=ProviderUnavailable) from exc
        except requests.ConnectionError as exc:
            raise error("connection", self.provider, cls=ProviderUnavailable) from exc
        except requests.RequestException as exc:
            raise error("connection", self.provider, cls=ProviderUnavailable) from exc
        if response.status_code >= 500:
            err = error(
                "server_error",
                self.provider,
                f"http_{response.status_code}",
                ProviderUnavailable,
                status=response.status_code,
            )
            err.response = response  # so a client can still name the provider's own code from the body
            raise err
        return response

    def _transport(
        self, method: str, url: str, *, data=None, headers: dict | None = None, params=None
    ) -> requests.Response:
        """Session.request, without merging per call the settings a plain session does not have (about a third of a
        call's CPU before its first byte is sent: the overview starts fifty queries one after another).

        A session that reads the environment (proxies, .netrc) or holds cookies, auth or default parameters takes
        requests' own path. Otherwise the request is prepared with the session's headers and hooks and sent with its
        proxies, stream, verify and cert settings, as Session.request would send it.
        """
        session = self.session
        if session.trust_env or session.cookies or session.auth is not None or session.params:
            return session.request(method, url, timeout=self.timeout, data=data, headers=headers, params=params)
        merged = CaseInsensitiveDict(session.headers)
        merged.update(headers or {})
        prepared = requests.PreparedRequest()
        prepared.prepare(
            method=method.upper(),
            url=url,
            headers=CaseInsensitiveDict((k, v) for k, v in merged.items() if v is not None),
            data=data or {},
            params=params or {},
            hooks=session.hooks,
        )
        return session.send(
            prepared,
            timeout=self.timeout,
            allow_redirects=True,
            proxies=dict(session.proxies),
            stream=session.stream,
            verify=session.verify,
            cert=session.cert,
        )

    def json(self, response: requests.Response) -> dict:
        """The body as a JSON object, or ProviderError("bad_response")."""
        try:
            body = json.loads(response.content.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise error("bad_response", self.provider) from exc
        if not isinstance(body, dict):
            raise error("bad_response", self.provider)
        return body
