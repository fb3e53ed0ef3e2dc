"""Oen Tech simulator, driven with raw requests built from the guide (seed 000) and the API reference (seed 001)."""

from __future__ import annotations

from urllib.parse import urljoin

import requests

from sandbox import settings
from sandbox.models import SandboxOenCheckout
from tests.support.accounts import SANDBOX_SHOP_A, SANDBOX_SHOP_B

TOKEN_A = SANDBOX_SHOP_A["oen"][1]
TOKEN_B = SANDBOX_SHOP_B["oen"][1]


def api(sandbox, method, path, body=None, token=TOKEN_A, **kwargs):
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return requests.request(method, f"{sandbox.url}/oen/api{path}", json=body, headers=headers, timeout=10, **kwargs)


def checkout_token(sandbox, custom_id='{"orderId": 9999}', merchant="shopa", token=TOKEN_A):
    body = {"merchantId": merchant, "successUrl": f"{sandbox.url}/ok", "failureUrl": f"{sandbox.url}/ko"}
    if custom_id is not None:
        body["customId"] = custom_id
    return api(sandbox, "POST", "/checkout-token", body, token=token)


def bind_card(sandbox, wire, number, expiry="12/39", cvc="123", session=None):
    """Open the hosted card page at the OEN_CHECKOUT_URL shape and submit the card; returns (checkout id, answer)."""
    session = session or requests.Session()
    checkout_id = checkout_token(sandbox).json()["data"]["id"]
    page_url = f"{sandbox.url}/oen/checkout/shopa/subscription/create/{checkout_id}"
    page = session.get(page_url, timeout=10)
    assert page.status_code == 200
    form = {"csrf_token": wire.csrf_token(page.text), "card_number": number, "expiry": expiry, "cvc": cvc}
    form["card_name"] = "王小明"
    return checkout_id, session.post(page_url, data=form, allow_redirects=False, timeout=10), session


def token_of(sandbox, checkout_id):
    with sandbox.ctx():
        from sandbox.extensions import db

        return db.session.get(SandboxOenCheckout, checkout_id).token


def charge(sandbox, token, amount=899, order_id="ORDER00001", merchant="shopa", bearer=TOKEN_A):
    body = {
        "merchantId": merchant,
        "amount": amount,
        "currency": "TWD",
        "token": token,
        "orderId": order_id,
        "userName": "Luphia",
        "userEmail": "luphia.chang@mermer.com.tw",
        "productDetails": [
            {
                "productionCode": "ISUNFAM3-001",
                "description": "Premium",
                "quantity": 1,
                "unit": "month",
                "unitPrice": amount,
            }
        ],
    }
    return api(sandbox, "POST", "/token/transactions", body, token=bearer)


class TestCheckoutToken:
    def test_answers_an_id(self, sandbox):
        answer = checkout_token(sandbox)
        assert answer.status_code == 200
        assert answer.json()["code"] == "S0000"
        assert len(answer.json()["data"]["id"]) == 27

    def test_wrong_bearer_token_is_unauthorised(self, sandbox):
        answer = checkout_token(sandbox, token="not-the-token")
        assert answer.status_code == 401
        assert answer.json()["code"] == "A0001"

    def test_missing_bearer_token_is_unauthorised(self, sandbox):
        assert checkout_token(sandbox, token=None).json()["code"] == "A0001"

    def test_another_merchants_token_is_unauthorised(self, sandbox):
        answer = checkout_token(sandbox, token=TOKEN_B)
        assert (answer.status_code, answer.json()["code"]) == (401, "A0001")

    def test_missing_success_url_is_a_bad_request(self, sandbox):
        answer = api(sandbox, "POST", "/checkout-token", {"merchantId": "shopa", "failureUrl": "https://x.example/"})
        assert (answer.status_code, answer.json()["code"]) == (400, "V0001")

    def test_body_that_is_not_json_is_a_bad_request(self, sandbox):
        answer = requests.post(
            f"{sandbox.url}/oen/api/checkout-token",
            data="merchantId=shopa",
            headers={"Authorization": f"Bearer {TOKEN_A}", "Content-Type": "application/x-www-form-urlencoded"},
            timeout=10,
        )
        assert (answer.status_code, answer.json()["code"]) == (400, "V0001")


class TestHostedCardPage:
    def test_success_card_redirects_and_posts_the_token_webhook(self, sandbox, wire):
        checkout_id, answer, _ = bind_card(sandbox, wire, "4242 4242 4242 4242")
        assert answer.status_code == 302
        assert answer.headers["Location"] == f"{sandbox.url}/ok"
        (hook,) = sandbox.receiver.of("oen")
        assert hook.content_type.startswith("application/json")
        body = hook.json
        assert set(body) == {"success", "purpose", "merchantId", "transactionId", "message", "customId", "token", "id"}
        assert body["success"] is True and body["purpose"] == "token" and body["message"] is None
        assert body["merchantId"] == "shopa" and body["id"] == checkout_id
        assert body["customId"] == '{"orderId": 9999}'
        assert body["token"] == token_of(sandbox, checkout_id)

    def test_failure_card_redirects_to_failure_url_without_token(self, sandbox, wire):
        _, answer, _ = bind_card(sandbox, wire, "4012888818888333")
        assert answer.headers["Location"] == f"{sandbox.url}/ko"
        (hook,) = sandbox.receiver.of("oen")
        assert hook.json["success"] is False and "token" not in hook.json and hook.json["message"]

    def test_3d_secure_cards_pass_through_a_challenge(self, sandbox, wire):
        for number, decision, expected in (
            ("4000000000002503", "approve", "/ok"),
            ("5200000000002151", "reject", "/ko"),
        ):
            _, answer, session = bind_card(sandbox, wire, number)
            assert answer.status_code == 303 and answer.headers["Location"].endswith("/3ds")
            challenge_url = urljoin(sandbox.url, answer.headers["Location"])
            challenge = session.get(challenge_url, timeout=10)
            assert "3-D Secure" in challenge.text
            done = session.post(
                challenge_url,
                data={"csrf_token": wire.csrf_token(challenge.text), "decision": decision},
                allow_redirects=False,
                timeout=10,
            )
            assert done.headers["Location"] == f"{sandbox.url}{expected}"
        first, second = sandbox.receiver.of("oen")
        assert first.json["success"] is True and second.json["success"] is False

    def test_card_form_without_csrf_token_is_refused(self, sandbox):
        checkout_id = checkout_token(sandbox).json()["data"]["id"]
        page_url = f"{sandbox.url}/oen/checkout/shopa/subscription/create/{checkout_id}"
        answer = requests.post(
            page_url, data={"card_number": "4242424242424242", "expiry": "12/39", "cvc": "1"}, timeout=10
        )
        assert answer.status_code == 400
        assert sandbox.receiver.of("oen") == []

    def test_invalid_number_stays_on_the_form(self, sandbox, wire):
        _, answer, _ = bind_card(sandbox, wire, "4242424242424241")
        assert answer.status_code == 400 and "卡號格式錯誤" in answer.text

    def test_a_used_link_cannot_bind_again_and_wrong_merchant_is_404(self, sandbox, wire):
        checkout_id, _, session = bind_card(sandbox, wire, "4242424242424242")
        assert session.get(f"{sandbox.url}/oen/checkout/shopa/subscription/create/{checkout_id}").status_code == 409
        assert requests.get(f"{sandbox.url}/oen/checkout/shopb/subscription/create/{checkout_id}").status_code == 404


class TestCharges:
    def bound_token(self, sandbox, wire):
        checkout_id, _, _ = bind_card(sandbox, wire, "4242424242424242")
        return token_of(sandbox, checkout_id)

    def test_charge_over_100_succeeds_under_100_fails(self, sandbox, wire):
        token = self.bound_token(sandbox, wire)
        ok = charge(sandbox, token, 899)
        assert ok.status_code == 200 and ok.json()["code"] == "S0000"
        assert ok.json()["data"]["id"].startswith("P") and len(ok.json()["data"]["authCode"]) == 6
        failed = charge(sandbox, token, 99, order_id="ORDER00002")
        assert (failed.status_code, failed.json()["code"]) == (400, "T0001")
        again = charge(sandbox, token, 500, order_id="ORDER00003")  # the same token charges again later
        assert again.json()["code"] == "S0000"

    def test_unknown_token_wrong_bearer_and_bad_amount(self, sandbox, wire):
        token = self.bound_token(sandbox, wire)
        assert charge(sandbox, "no-such-token").json()["code"] == "V0001"
        assert charge(sandbox, token, bearer="wrong").status_code == 401
        assert charge(sandbox, token, merchant="shopb", bearer=TOKEN_B).json()["code"] == "V0001"
        assert charge(sandbox, token, amount="899").json()["code"] == "V0001"

    def test_query_lists_transactions_with_the_documented_fields(self, sandbox, wire):
        token = self.bound_token(sandbox, wire)
        hid = charge(sandbox, token, 1000).json()["data"]["id"]
        answer = api(sandbox, "GET", "/order/ORDER00001/transactions")
        (txn,) = answer.json()["data"]["transactions"]
        assert txn["id"] == hid and txn["status"] == "charged" and txn["amount"] == 1000 and txn["fee"] == 30
        assert txn["paymentInfo"] == {
            "cardType": "Visa",
            "cardNum": "4242424242424242",
            "method": "card",
            "cardName": "王小明",
        }
        assert txn["createdAt"].endswith("Z") and "refundedAt" not in txn and txn["refundAmount"] == 0
        assert "pageToken" not in answer.json()["data"] and "page" not in answer.json()["data"]
        with sandbox.ctx():
            settings.set_oen_full_card_number(False)
        txn = api(sandbox, "GET", "/order/ORDER00001/transactions").json()["data"]["transactions"][0]
        assert txn["paymentInfo"]["cardNum"] == "424242******4242"
        assert api(sandbox, "GET", "/order/ORDER00001/transactions", token=TOKEN_B).json()["data"] == {
            "transactions": []
        }

    def test_query_pages_by_50_with_page_tokens(self, sandbox, wire):
        token = self.bound_token(sandbox, wire)
        hids = [charge(sandbox, token, 200 + n, order_id="BIG").json()["data"]["id"] for n in range(120)]
        seen, page_token, pages = [], None, 0
        while True:
            params = {"pageToken": page_token} if page_token else None
            data = api(sandbox, "GET", "/order/BIG/transactions", params=params).json()["data"]
            seen += [txn["id"] for txn in data["transactions"]]
            pages += 1
            page_token = data.get("pageToken")
            if not page_token:
                break
        assert pages == 3 and seen == hids
        first = api(sandbox, "GET", "/order/BIG/transactions").json()["data"]
        second = api(sandbox, "GET", "/order/BIG/transactions", params={"page": first["page"]}).json()["data"]
        assert first["page"] == first["pageToken"] and second["transactions"][0]["id"] == hids[50]
        bad = api(sandbox, "GET", "/order/BIG/transactions", params={"pageToken": "garbage!"})
        assert bad.json()["code"] == "V0001"


class TestRefunds:
    def test_one_refund_per_transaction_by_hid(self, sandbox, wire):
        checkout_id, _, _ = bind_card(sandbox, wire, "4242424242424242")
        token = token_of(sandbox, checkout_id)
        data = charge(sandbox, token, 1000).json()["data"]
        hid = data["id"]
        txn = api(sandbox, "GET", "/order/ORDER00001/transactions").json()["data"]["transactions"][0]
        by_transaction_id = api(
            sandbox, "POST", f"/refunds/{txn['transactionId']}", {"merchantId": "shopa", "amount": 1}
        )
        assert by_transaction_id.json()["code"] == "V0001"
        too_much = api(sandbox, "POST", f"/refunds/{hid}", {"merchantId": "shopa", "amount": 1001})
        assert too_much.json()["code"] == "V0001"
        assert api(sandbox, "POST", f"/refunds/{hid}", {"merchantId": "shopa", "amount": 0}).json()["code"] == "V0001"
        wrong = api(sandbox, "POST", f"/refunds/{hid}", {"merchantId": "shopa", "amount": 10}, token="x")
        assert wrong.status_code == 401
        done = api(sandbox, "POST", f"/refunds/{hid}", {"merchantId": "shopa", "amount": 400, "reason": "客戶取消訂單"})
        assert done.status_code == 200 and done.json()["code"] == "S0000"
        refunded = done.json()["data"]
        assert refunded["status"] == "refunded" and refunded["refundAmount"] == 400 and refunded["refundedAt"]
        assert refunded["note"] == "客戶取消訂單"
        second = api(sandbox, "POST", f"/refunds/{hid}", {"merchantId": "shopa", "amount": 100})
        assert (second.status_code, second.json()["code"]) == (400, "V0002")
        listed = api(sandbox, "GET", "/order/ORDER00001/transactions").json()["data"]["transactions"][0]
        assert listed["status"] == "refunded" and listed["refundAmount"] == 400

    def test_failed_transaction_cannot_be_refunded(self, sandbox, wire):
        checkout_id, _, _ = bind_card(sandbox, wire, "4242424242424242")
        charge(sandbox, token_of(sandbox, checkout_id), 50)
        txn = api(sandbox, "GET", "/order/ORDER00001/transactions").json()["data"]["transactions"][0]
        assert txn["status"] == "failed"
        assert (
            api(sandbox, "POST", f"/refunds/{txn['id']}", {"merchantId": "shopa", "amount": 50}).json()["code"]
            == "V0002"
        )


class TestSubscriptions:
    def test_cancel_once(self, sandbox, wire):
        checkout_id, _, _ = bind_card(sandbox, wire, "4242424242424242")
        with sandbox.ctx():
            from sandbox.extensions import db

            subscription_id = db.session.get(SandboxOenCheckout, checkout_id).subscription_id
        body = {"merchantId": "shopa", "reason": "客戶自行取消"}
        done = api(sandbox, "PUT", f"/subscriptions/{subscription_id}", body)
        assert done.json()["code"] == "S0000"
        data = done.json()["data"]
        assert data["id"] == subscription_id and data["status"] == "cancelled" and data["reason"] == "客戶自行取消"
        assert {"period", "startedAt", "cancelledAt", "createdAt"} <= set(data)
        assert api(sandbox, "PUT", f"/subscriptions/{subscription_id}", body).json()["code"] == "V0002"
        assert api(sandbox, "PUT", "/subscriptions/S20240411NOSUCHID", body).json()["code"] == "V0001"
        assert api(sandbox, "PUT", f"/subscriptions/{subscription_id}", body, token="x").status_code == 401
