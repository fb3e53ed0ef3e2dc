"""The sandbox driven by the portal's real provider clients (portal/providers), end to end over HTTP.

The raw-request tests beside this file check the sandbox against the documents; these check that the clients and the
sandbox agree, so that `make run` works. Where both rest on the same reading of a document, the raw tests are the
independent check.
"""

from __future__ import annotations

import re
import uuid
from urllib.parse import urljoin

import pytest
import requests

from portal.providers.base import (
    CallbackRequest,
    CheckoutRef,
    CheckoutRequest,
    LineItem,
    ProviderError,
    State,
    VoucherLine,
)
from portal.providers.mypay import MyPayProvider
from portal.providers.oen import OenProvider
from portal.providers.opay import OPayProvider
from sandbox import faults
from sandbox.extensions import db
from tests.support.accounts import OPAY_MERCHANT_ID, OPAY_STAGE_MERCHANT, SANDBOX_SHOP_A


def reference() -> str:
    return "T" + uuid.uuid4().hex[:18].upper()


def callback_request(received) -> CallbackRequest:
    return CallbackRequest(body=received.raw, form=received.form, content_type=received.content_type)


def checkout_request(sandbox, amount=1000, vouchers=(), shipping=0, items=None) -> CheckoutRequest:
    return CheckoutRequest(
        reference=reference(),
        amount=amount,
        items=items or (LineItem("SKU1", "好棒棒麻辣鍋湯包", 1000, 1),),
        shipping_fee=shipping,
        vouchers=tuple(vouchers),
        customer_name="王小明",
        customer_email="ming@example.com",
        customer_id="cust-1",
        customer_ip="127.0.0.1",
        success_url=f"{sandbox.url}/shop/ok",
        failure_url=f"{sandbox.url}/shop/ko",
        notify_url=sandbox.hook("opay"),
    )


def submit(session, url, base, **fields):
    page = session.get(url, timeout=10)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    answer = session.post(url, data={"csrf_token": token, **fields}, allow_redirects=False, timeout=10)
    return answer, urljoin(base, answer.headers.get("Location", ""))


class TestOenClient:
    def client(self, sandbox, token=SANDBOX_SHOP_A["oen"][1], timeout=5):
        # As the other clients: 1 s only where a hang (SANDBOX_HANG_S = 1.5) is to outlast it. Each of 55 charges had
        # to answer within 1 s, which a loaded machine (CI, two test workers and a browser) does not always do.
        return OenProvider(
            f"{sandbox.url}/oen/api",
            sandbox.url + "/oen/checkout/{merchant_id}/subscription/create/{id}",
            "shopa",
            token,
            timeout=timeout,
        )

    def test_card_token_charge_query_refund(self, sandbox):
        client = self.client(sandbox)
        request = checkout_request(sandbox)
        link = client.create_checkout(request)
        answer, location = submit(requests.Session(), link.url, sandbox.url, card_number="4242424242424242",
                                  expiry="12/39", cvc="123")  # fmt: skip
        assert location == request.success_url
        ref = CheckoutRef(request.reference, request.amount, dict(link.provider_ids))
        (hook,) = sandbox.receiver.of("oen")
        event = client.parse_callback(callback_request(hook), lambda r: ref if r == ref.reference else None)
        assert event.verified and event.state == State.AWAITING_PAYMENT and event.card_token
        paid = client.charge(ref, event.card_token, request)
        assert paid.state == State.PAID and paid.transaction_id.startswith("P")
        (row,) = client.query(ref)
        assert row.state == State.PAID and row.card_last4 == "4242" and row.amount == 1000
        ref = CheckoutRef(
            request.reference, request.amount, {**ref.provider_ids, "transaction_id": paid.transaction_id}
        )
        result = client.refund(ref, 300, "客戶取消")
        assert result.state == "succeeded" and result.amount == 300
        with pytest.raises(ProviderError):
            client.refund(ref, 100, "again")  # one refund per transaction

    def test_query_follows_page_tokens(self, sandbox):
        client = self.client(sandbox)
        request = checkout_request(sandbox, amount=150, items=(LineItem("S", "x", 150, 1),))
        link = client.create_checkout(request)
        submit(requests.Session(), link.url, sandbox.url, card_number="4242424242424242", expiry="12/39", cvc="123")
        token = sandbox.receiver.of("oen")[0].json["token"]
        ref = CheckoutRef(request.reference, request.amount, dict(link.provider_ids))
        for _ in range(55):
            client.charge(ref, token, request)
        assert len(client.query(ref)) == 55

    def test_wrong_token_and_low_amount_are_provider_errors(self, sandbox):
        with pytest.raises(ProviderError):
            self.client(sandbox, token="wrong").create_checkout(checkout_request(sandbox))
        client = self.client(sandbox)
        request = checkout_request(sandbox, amount=99, items=(LineItem("S", "x", 99, 1),))
        link = client.create_checkout(request)
        submit(requests.Session(), link.url, sandbox.url, card_number="4242424242424242", expiry="12/39", cvc="123")
        token = sandbox.receiver.of("oen")[0].json["token"]
        with pytest.raises(ProviderError):
            client.charge(CheckoutRef(request.reference, 99, dict(link.provider_ids)), token, request)

    def test_fault_switches_become_provider_errors(self, sandbox):
        client = self.client(sandbox, timeout=1)  # PROVIDER_TIMEOUT_S of the fixture: a hang lasts 1.5 s
        with sandbox.ctx():
            faults.set("oen", "fail_next")
        with pytest.raises(ProviderError):
            client.create_checkout(checkout_request(sandbox))
        with sandbox.ctx():
            faults.set("oen", "hang_next")
        with pytest.raises(ProviderError):
            client.create_checkout(checkout_request(sandbox))


class TestMyPayClient:
    def client(self, sandbox, wire, key=None):
        return MyPayProvider(
            f"{sandbox.url}/mypay/api/agent", wire.AGENT_UID, key or wire.AGENT_KEY, "111111110001", timeout=5
        )

    def pay(self, sandbox, link):
        session = requests.Session()
        page = session.get(link.url, timeout=10)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        form = {"csrf_token": token, "method": "CREDITCARD", "card_number": "4761120010000492", "expiry": "1122"}
        uid = link.provider_ids["uid"]
        return session.post(f"{sandbox.url}/mypay/payment/{uid}/pay", data={**form, "cvc": "533"},
                            allow_redirects=False, timeout=10)  # fmt: skip

    def test_order_callback_query_refund_with_vouchers(self, sandbox, wire):
        client = self.client(sandbox, wire)
        serial = uuid.uuid4().hex[:8]
        vouchers = (
            VoucherLine("paid", "P01", f"P{serial}", "好食券", 50),
            VoucherLine("free", "F01", f"F{serial}", "VIP", 50),
        )
        request = checkout_request(sandbox, amount=960, vouchers=vouchers, shipping=60)
        link = client.create_checkout(request)
        assert self.pay(sandbox, link).headers["Location"] == request.success_url
        ref = CheckoutRef(request.reference, 960, dict(link.provider_ids), vouchers=vouchers, items=request.items)
        (hook,) = sandbox.receiver.of("mypay")
        event = client.parse_callback(callback_request(hook), lambda r: ref if r == ref.reference else None)
        assert event.verified and event.state == State.PAID and event.reply_body == "8888"
        assert [t.state for t in client.query(ref) if t.kind == "payment"] == [State.PAID]
        with pytest.raises(ProviderError):
            client.refund(ref, 100, "partial")  # voucher mode: full only (refused before sending, or by MyPay)
        result = client.refund(ref, 960, "full")
        assert result.state == "succeeded"
        assert any(t.kind == "refund" for t in client.query(ref))
        with pytest.raises(ProviderError):
            client.refund(ref, 960, "again")

    def test_bad_key_is_a_provider_error(self, sandbox, wire):
        with pytest.raises(ProviderError):
            self.client(sandbox, wire, key="z" * 32).create_checkout(checkout_request(sandbox))


class TestOPayClient:
    def client(self, sandbox, creds=None):
        merchant_id, key, iv = creds or OPAY_STAGE_MERCHANT
        seen: set[str] = set()

        def remember(rqid: str) -> bool:
            fresh = rqid not in seen
            seen.add(rqid)
            return fresh

        return OPayProvider(f"{sandbox.url}/opay", merchant_id, key, iv, timeout=5, rqid_store=remember)

    def test_create_pay_notice_query(self, sandbox):
        client = self.client(sandbox)
        request = checkout_request(sandbox, amount=300, items=(LineItem("S", "手機", 300, 1),))
        client.create_checkout(request)
        page = client.create_trade(request)
        assert page.content_type.startswith("text/html")
        pay_url = re.search(r'content="0;url=([^"]+)"', page.body.decode()).group(1).replace("&amp;", "&")
        session = requests.Session()
        shown = session.get(pay_url, timeout=10)
        token = re.search(r'name="csrf_token" value="([^"]+)"', shown.text).group(1)
        key = re.search(r'name="k" value="([^"]+)"', shown.text).group(1)
        session.post(pay_url.split("?")[0], data={"csrf_token": token, "k": key, "action": "pay"}, timeout=10)
        ref = CheckoutRef(request.reference, 300, {"merchant_trade_no": request.reference})
        (notice,) = sandbox.receiver.of("opay")
        event = client.parse_callback(callback_request(notice), lambda r: ref if r == ref.reference else None)
        assert event.verified and event.state == State.PAID and event.reply_body == "1|OK"
        (row,) = client.query(ref)
        assert row.state == State.PAID and row.amount == 300

    def test_refusals_are_provider_errors(self, sandbox):
        request = checkout_request(sandbox, amount=300, items=(LineItem("S", "x", 300, 1),))
        with pytest.raises(ProviderError):
            self.client(sandbox, (OPAY_MERCHANT_ID, "0" * 16, "0" * 16)).create_trade(request)
        client = self.client(sandbox)
        client.create_trade(request)
        with pytest.raises(ProviderError):
            client.create_trade(request)  # MerchantTradeNo reused
        with sandbox.ctx():
            assert db.session.execute(db.text("select count(*) from sandbox_opay_trade")).scalar() == 1
