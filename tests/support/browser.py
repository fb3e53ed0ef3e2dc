"""A customer's and a merchant's browser over real HTTP against the live portal and its sandbox providers."""

from __future__ import annotations

import re
import time
from html import unescape
from urllib.parse import urljoin

import requests

from tests.support.constants import PASSWORD

STATE_RE = re.compile(r'data-order-state="([a-z_]+)"')
LINK_RE = re.compile(r'value="(https?://[^"]+/pay/[A-Za-z0-9_-]+)"')


class Browser:
    """A requests session that follows redirects like a browser does."""

    def __init__(self, base: str, language: str | None = "en"):
        self.base = base
        self.http = requests.Session()
        if language:  # tests read English messages; None sends no preference (the portal then speaks zh-TW)
            self.http.headers["Accept-Language"] = language

    def url(self, path: str) -> str:
        return path if path.startswith("http") else self.base + path

    def get(self, path: str, **kw) -> requests.Response:
        return self.http.get(self.url(path), timeout=30, **kw)

    def post(self, path: str, data=None, **kw) -> requests.Response:
        return self.http.post(self.url(path), data=data, timeout=30, **kw)

    # ------------------------------------------------------------ merchant staff

    def login(self, email: str = "staff@a.example") -> None:
        response = self.post("/login", {"email": email, "password": PASSWORD})
        assert response.url.endswith("/orders"), response.url

    def new_order(self, items=((1000, 1),), shipping=0, vouchers=(), email="buyer@example.com") -> int:
        form = {"customer_name": "林小華", "customer_email": email, "shipping_fee": str(shipping), "note": ""}
        for n, (price, qty) in enumerate(items):
            form |= {
                f"items-{n}-sku": f"S{n}",
                f"items-{n}-name": f"商品 {n}",
                f"items-{n}-unit_price": str(price),
                f"items-{n}-quantity": str(qty),
            }
        for n, (kind, amount) in enumerate(vouchers):
            form |= {
                f"vouchers-{n}-kind": kind,
                f"vouchers-{n}-product_id": f"VP{n}",
                f"vouchers-{n}-serial_number": f"SN{n}{time.time_ns()}",
                f"vouchers-{n}-name": f"禮券 {n}",
                f"vouchers-{n}-amount": str(amount),
            }
        response = self.post("/orders/new", form)
        match = re.search(r"/orders/(\d+)$", response.url)
        assert match, response.text[:2000]
        return int(match.group(1))

    def create_link(self, order_id: int, provider: str) -> str:
        """Create a payment link; returns the customer link's path."""
        page = self.post(f"/orders/{order_id}/checkout", {"provider": provider}).text
        match = LINK_RE.search(page)
        assert match, re.findall(r'class="flash[^"]*"[^>]*>([^<]*)', page)
        return "/pay/" + unescape(match.group(1)).rsplit("/pay/", 1)[1]

    def order_state(self, order_id: int) -> str:
        return STATE_RE.search(self.get(f"/orders/{order_id}").text).group(1)

    def wait_for_state(self, order_id: int, expected: str, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.order_state(order_id)
            if state == expected:
                return state
            time.sleep(0.2)
        raise AssertionError(f"order {order_id} is {state!r}, expected {expected!r}")

    # ------------------------------------------------------------ the customer

    def open_provider(self, link: str) -> requests.Response:
        """The customer opens the link and goes on to the provider."""
        assert self.get(link).status_code == 200
        return self.post(link + "/go")

    def pay_oen(
        self, link: str, card: str = "4242 4242 4242 4242", approve_3ds: bool = True, back: bool = True
    ) -> requests.Response:
        page = self.open_provider(link)
        assert "card_number" in page.text, page.text[:1000]
        response = self.post(
            page.url,
            {
                "csrf_token": csrf_of(page.text),
                "card_number": card,
                "expiry": "12/30",
                "cvc": "123",
                "card_name": "LIN",
            },
            allow_redirects=back,
        )
        if "/3ds" in response.url:
            response = self.post(
                response.url, {"csrf_token": csrf_of(response.text), "decision": "approve" if approve_3ds else "reject"}
            )
        return response

    def pay_mypay(
        self, link: str, card: str = "4938170130000003", expiry: str = "1228", cvc: str = "985", back=True
    ) -> requests.Response:
        """Pay on MyPay's PayPage with a test card of the document's appendix 6 (3-D password nccc1234)."""
        page = self.open_provider(link)
        action = urljoin(page.url, unescape(re.search(r'action="([^"]+/pay)"', page.text).group(1)))
        response = self.post(
            action,
            {
                "csrf_token": csrf_of(page.text),
                "method": "CREDITCARD",
                "card_number": card,
                "expiry": expiry,
                "cvc": cvc,
            },
        )
        if response.url.endswith("/3ds"):
            response = self.post(
                response.url, {"csrf_token": csrf_of(response.text), "password": "nccc1234"}, allow_redirects=back
            )
        return response

    def pay_opay(self, link: str, action: str = "pay", back=True) -> requests.Response:
        relayed = self.open_provider(link)  # the relayed Create answer: a page that leads on to WeChat Pay
        pay_url = unescape(re.search(r'url=([^"]+)"', relayed.text).group(1))
        page = self.get(pay_url)
        k = re.search(r'name="k" value="([^"]+)"', page.text).group(1)
        return self.post(pay_url, {"csrf_token": csrf_of(page.text), "k": k, "action": action}, allow_redirects=back)


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html) or re.search(
        r'value="([^"]+)"[^>]*name="csrf_token"', html
    )
    return match.group(1) if match else ""
