"""Oen Tech (應援科技): the hosted card page, the token webhook, token charges, order queries, refunds by HID."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import requests

from .base import (
    CallbackRequest,
    CheckoutLink,
    CheckoutLookup,
    CheckoutRef,
    CheckoutRequest,
    InvalidCallback,
    LineItem,
    NonceStore,
    Provider,
    ProviderError,
    ProviderEvent,
    ProviderRejected,
    ProviderTransaction,
    ProviderUnavailable,
    RefundPolicy,
    RefundResult,
    State,
)
from .common import last4, parse_iso, refuse, same_secret, text_field, to_fee, to_int
from .http import HttpClient, error, unknown_outcome

NAME = "oen"

# Every code of the API reference, with what a merchant can do about it; the class says how the portal reacts.
CODES: dict[str, tuple[type[ProviderError], str, str]] = {
    "S0000": (ProviderError, "Done.", "執行成功。"),
    "A0001": (
        ProviderError,
        "Oen Tech refused the API token. Check the Oen token in the provider settings: testing and production "
        "tokens differ, and generating a new token in the Oen CRM retires the old one.",
        "應援科技拒絕了 API token。請檢查金流設定中的應援 token：測試與正式環境的 token 不同，"
        "在應援 CRM 重新產生後舊的 token 即失效。",
    ),
    "V0001": (
        ProviderError,
        "Oen Tech found the request invalid. Check the Oen merchant ID and the order's items and amounts.",
        "應援科技認為請求資料有誤。請檢查應援商戶 ID 以及訂單品項與金額。",
    ),
    "V0002": (
        ProviderRejected,
        "The transaction's state does not allow this (already refunded, or card payments not yet enabled). "
        "Refresh the order to see its current state.",
        "交易目前的狀態不允許這個動作（例如已退款，或金流尚未開通）。請重新整理訂單查看目前狀態。",
    ),
    "V0003": (
        ProviderRejected,
        "The amount is above Oen Tech's single-payment limit. Split the order or ask Oen Tech to raise the limit.",
        "金額超過應援科技的單筆上限。請拆成多筆訂單，或聯絡應援科技開通高額交易。",
    ),
    "T0001": (
        ProviderRejected,
        "The card payment failed. Ask the customer to use another card or try again later.",
        "交易失敗。請消費者改用其他卡片或稍後再試。",
    ),
    "T0002": (
        ProviderRejected,
        "The card's security code (CVV) was wrong. Ask the customer to check the card details.",
        "信用卡安全碼（CVV）錯誤。請消費者確認卡片資料。",
    ),
    "T0003": (
        ProviderRejected,
        "The card has expired. Ask the customer to use another card.",
        "卡片已過期。請消費者改用其他卡片。",
    ),
    "T0004": (
        ProviderRejected,
        "The card's credit limit is insufficient. Ask the customer to use another card or call the issuing bank.",
        "信用卡額度不足。請消費者改用其他卡片或聯絡發卡銀行。",
    ),
    "T0005": (
        ProviderRejected,
        "The issuing bank declined the payment. Ask the customer to call the bank or use another card.",
        "發卡銀行拒絕授權。請消費者聯絡發卡銀行或改用其他卡片。",
    ),
    "R0001": (
        ProviderRejected,
        "Oen Tech could not make the refund. Refresh the order; if it still shows paid, contact Oen Tech.",
        "應援科技退款失敗。請重新整理訂單；若仍顯示已付款，請聯絡應援科技。",
    ),
    "K0001": (
        ProviderRejected,
        "Oen Tech's risk control refused this payment (monthly or single-payment threshold). Contact Oen Tech.",
        "應援科技風險控管拒絕此筆交易（超過當月或單筆門檻）。請聯絡應援科技。",
    ),
    "C026": (
        ProviderUnavailable,
        "The payment's outcome is not known yet. Do not charge again: refresh the order in a few minutes.",
        "付款結果尚未確定。請勿重新扣款，幾分鐘後重新整理訂單確認結果。",
    ),
    "F0001": (
        ProviderUnavailable,
        "Oen Tech reported a system error. Refresh the order first, then try again later.",
        "應援科技系統錯誤。請先重新整理訂單，稍後再試。",
    ),
}

# Oen transaction status → portal state; refunds are refined by refundAmount below.
STATUSES = {
    "initiated": State.AWAITING_PAYMENT,
    "charging": State.AWAITING_PAYMENT,
    "authorized": State.AUTHORISED,
    "charged": State.PAID,
    "claimed": State.PAID,
    "refunding": State.PAID,
    "failed": State.FAILED,
    "cancelled": State.CANCELLED,
    "refunded": State.REFUNDED,
    "refundedPostPayout": State.REFUNDED,
}

MAX_PAGES = 100  # 50 transactions a page: far beyond any one order, and a stop if the provider loops


def code_error(code: str, provider_message: str = "", status: int | None = None) -> ProviderError:
    """The typed error for an Oen response code (or an unknown one)."""
    if code in CODES and code != "S0000":
        cls, en, zh = CODES[code]
        # C026 stays a retryable ProviderUnavailable: "outcome unknown, settle it by query", never "failed".
        return cls(NAME, code, en, zh)
    detail = f" ({provider_message})" if provider_message else ""
    return ProviderError(
        NAME,
        code or (f"http_{status}" if status else "unknown"),
        f"Oen Tech answered with code {code or status}{detail}. Please try again later or contact Oen Tech.",
        f"應援科技回傳代碼 {code or status}{detail}。請稍後再試或聯絡應援科技。",
    )


class OenProvider(Provider):
    """Oen Tech in redirect mode: a card token from the hosted page, then charges with that token."""

    name = NAME
    min_amount = 1
    # Refunds go by the transaction's HID, once per transaction (1 … the amount), card payments only (others: CRM).
    refund_policy = RefundPolicy(
        one_per_payment=True,
        by_transaction_id=True,
        checked_by_query=True,
        methods=("card", "credit", "creditcard", "credit_card"),
    )
    merchant_settings = ("oen_merchant_id", "oen_token")
    callback_merchant_field = "merchantId"
    callback_merchant_setting = "oen_merchant_id"
    callback_secret_fields = ("token",)  # the saved card's token
    callback_reply = ""
    saves_cards = True
    queried_by_checkout_id = True
    # Webhooks carry no signature: every notice is a hint; Oen's answer to a query is what moves money state. Only a
    # token notice matched to an open checkout is taken as it is: its token is charged, and Oen's charge answer counts.
    callbacks_confirmed_by_query = True

    @classmethod
    def confirms_by_query(cls, event: ProviderEvent) -> bool:
        """Every notice but a card token's (charged at once, for the checkout's amount) waits for Oen's query."""
        return not event.card_token

    @classmethod
    def from_settings(
        cls,
        config: Mapping[str, Any],
        merchant: Mapping[str, str],
        *,
        session: requests.Session | None = None,
        nonce_store: NonceStore | None = None,
    ) -> OenProvider:
        return cls(
            api_url=config["OEN_API_URL"],
            checkout_url_template=config["OEN_CHECKOUT_URL"],
            merchant_id=merchant.get("oen_merchant_id", ""),
            token=merchant.get("oen_token", ""),
            timeout=config["PROVIDER_TIMEOUT_S"],
            session=session,
        )

    def __init__(
        self,
        api_url: str,
        checkout_url_template: str,
        merchant_id: str,
        token: str,
        timeout: float = 10,
        session: requests.Session | None = None,
    ):
        self.api_url = api_url.rstrip("/")
        self.checkout_url_template = checkout_url_template
        self.merchant_id = merchant_id
        self._token = token
        self.http = HttpClient(NAME, timeout, session)

    def __repr__(self) -> str:
        return f"OenProvider(api_url={self.api_url!r}, merchant_id={self.merchant_id!r})"

    # ------------------------------------------------------------ calls

    def _request(self, method: str, path: str, body: Mapping | None = None, *, idempotent=False, params=None) -> dict:
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Authorization": f"Bearer {self._token}",
        }
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
        try:
            response = self.http.request(
                method, self.api_url + path, idempotent=idempotent, headers=headers, data=data, params=params
            )
        except ProviderUnavailable as exc:
            # A 5xx may still carry Oen's own code (F0001 and its message): name it when it does.
            code = body_code(getattr(exc, "response", None))
            if code in CODES and code != "S0000":
                raise code_error(code) from exc
            raise
        if response.status_code == 403:
            # Oen's 403 carries no code: production only answers the IP addresses bound in its CRM.
            raise ProviderError(
                NAME,
                "http_403",
                "Oen Tech refused the call (HTTP 403): in production the portal's IP address must be on the "
                "merchant's allow-list in the Oen CRM.",
                "應援科技拒絕了呼叫（HTTP 403）：正式環境須在應援 CRM 綁定本系統的固定 IP。",
            )
        try:
            payload = self.http.json(response)
        except ProviderError:
            if response.status_code != 200:
                raise error("http_error", NAME, f"http_{response.status_code}", status=response.status_code) from None
            raise
        code = text_field(payload, "code")
        if code == "S0000" and response.status_code == 200:
            data_out = payload.get("data")
            if not isinstance(data_out, dict):
                raise error("bad_response", NAME)
            return data_out
        if not code and response.status_code == 200:
            raise error("bad_response", NAME)
        raise code_error(code, text_field(payload, "message"), response.status_code)

    def _money_call(self, path: str, body: Mapping) -> dict:
        """POST a charge or refund once. A 2xx answer the portal cannot read may hide a charge or refund that was
        made: its outcome is unknown (ProviderUnavailable), settled by a query, never "failed"."""
        try:
            return self._request("POST", path, body)
        except ProviderUnavailable:
            raise
        except ProviderError as exc:
            if exc.code == "bad_response" or exc.code.startswith("http_2"):
                raise unknown_outcome(NAME) from exc
            raise

    def create_checkout(self, request: CheckoutRequest) -> CheckoutLink:
        """Ask for a card-token checkout and return the hosted card page."""
        self._check_amount(request.amount)
        body = {
            "merchantId": self.merchant_id,
            "successUrl": request.success_url,
            "failureUrl": request.failure_url,
            "customId": request.reference,
        }
        data = self._request("POST", "/checkout-token", body)
        checkout_id = text_field(data, "id")
        if not checkout_id:
            raise error("bad_response", NAME)
        url = self.checkout_url_template.format(merchant_id=self.merchant_id, id=checkout_id)
        return CheckoutLink(url=url, provider_ids={"checkout_id": checkout_id}, raw={"id": checkout_id})

    def charge(self, ref: CheckoutRef, token: str, request: CheckoutRequest) -> ProviderTransaction:
        """Charge a stored card token once (never retried: Oen has no duplicate protection)."""
        if ref.reference != request.reference or ref.amount != request.amount:
            raise ProviderRejected(
                NAME,
                "mismatch",
                "The checkout and the charge disagree on reference or amount; nothing was charged.",
                "結帳與扣款的編號或金額不一致，未進行扣款。",
            )
        if not token:
            raise ProviderRejected(
                NAME,
                "no_token",
                "There is no saved card for this checkout. Send the customer the payment link again.",
                "此結帳沒有已綁定的卡片。請重新把付款連結傳給消費者。",
            )
        self._check_amount(request.amount)
        body: dict[str, object] = {
            "merchantId": self.merchant_id,
            "amount": request.amount,
            "currency": "TWD",
            "token": token,
            "orderId": request.reference,
        }
        # Optional fields are left out, not sent empty, as the API reference asks.
        if request.customer_id:
            body["userId"] = request.customer_id
        if request.customer_name:
            body["userName"] = request.customer_name
        if request.customer_email:
            body["userEmail"] = request.customer_email
        body["productDetails"] = product_details(request)
        data = self._money_call("/token/transactions", body)
        hid = text_field(data, "id")
        if not hid:
            raise unknown_outcome(NAME)  # S0000 without data.id: charged, perhaps, but the HID is not known
        details = {"authCode": text_field(data, "authCode")} if data.get("authCode") else {}
        return ProviderTransaction(
            provider=NAME,
            reference=request.reference,
            transaction_id=hid,
            state=State.PAID,
            amount=request.amount,
            method="card",
            details=details,
        )

    def query(self, ref: CheckoutRef) -> list[ProviderTransaction]:
        """Every transaction Oen holds for this reference, following page tokens."""
        path = f"/order/{quote(ref.reference, safe='')}/transactions"
        found: list[ProviderTransaction] = []
        page: str | None = None
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            data = self._request("GET", path, idempotent=True, params={"page": page} if page else None)
            rows = data.get("transactions")
            if not isinstance(rows, list):
                raise error("bad_response", NAME)
            found.extend(transaction(row, ref) for row in rows if isinstance(row, dict))
            # The reference: "the next page needs the page token from the previous response"; it is data.page,
            # sent back as ?page=, and null (or absent) on the last page.
            page = text_field(data, "page") or None
            if page is None or page in seen:
                break
            seen.add(page)
        return found

    def refund(
        self,
        ref: CheckoutRef,
        amount: int,
        reason: str,
        *,
        invoice_state: str | int | None = None,
        items: Sequence[LineItem] = (),
        product_details: Sequence[Mapping[str, object]] = (),
        remit_info: Mapping[str, object] | None = None,
    ) -> RefundResult:
        """Refund a card transaction by its HID (once per transaction, 1 … the original amount)."""
        hid = str(ref.provider_ids.get("transaction_id", ""))
        if not hid:
            raise ProviderRejected(
                NAME,
                "no_transaction",
                "This checkout has no charged Oen transaction to refund. Refresh the order first.",
                "此結帳沒有可退款的應援交易。請先重新整理訂單。",
            )
        if not 1 <= amount <= ref.amount:
            raise ProviderRejected(
                NAME,
                "refund_amount",
                f"An Oen refund must be between 1 and {ref.amount} TWD.",
                f"應援退款金額須介於 1 到 {ref.amount} 元之間。",
            )
        body: dict[str, object] = {"merchantId": self.merchant_id, "amount": amount}
        if reason:
            body["reason"] = reason
        if product_details:
            body["productDetails"] = list(product_details)
        if remit_info:
            body["remitInfo"] = dict(remit_info)
        data = self._money_call(f"/refunds/{quote(hid, safe='')}", body)
        status = text_field(data, "status")
        refunded = to_int(data.get("refundAmount")) or amount
        state = "succeeded" if status in ("refunded", "refundedPostPayout") else "pending"
        # The state says what Oen's status word does (shown in the reader's language); only a word it does not have
        # is kept as the message, for whoever looks into it.
        message = "" if status in ("refunded", "refundedPostPayout", "refunding") else status
        return RefundResult(state=state, amount=refunded, provider_refund_id=hid, message=message, raw=safe_row(data))

    def cancel_subscription(self, subscription_id: str, reason: str = "") -> dict:
        """Stop a subscription (S… id); returns Oen's subscription record."""
        body: dict[str, object] = {"merchantId": self.merchant_id}
        if reason:
            body["reason"] = reason
        return self._request("PUT", f"/subscriptions/{quote(subscription_id, safe='')}", body)

    # ------------------------------------------------------------ callbacks

    def parse_callback(
        self, request: CallbackRequest, lookup: CheckoutLookup, *, fields: Mapping[str, object] | None = None
    ) -> ProviderEvent:
        """Read the token webhook (or a charge webhook) and match it to an open checkout."""
        fields = dict(self.read_callback(request) if fields is None else fields)
        purpose = text_field(fields, "purpose")
        if not same_secret(self.merchant_id, text_field(fields, "merchantId")):
            raise InvalidCallback(NAME, "The webhook names another Oen merchant.", "通知中的應援商戶 ID 不符。")
        if purpose == "token":
            return self._token_event(fields, lookup)
        if purpose == "charge":
            return self._charge_event(fields, lookup)
        raise InvalidCallback(NAME, "The webhook's purpose is not one the portal handles.", "不支援此類型的應援通知。")

    def _token_event(self, fields: dict, lookup: CheckoutLookup) -> ProviderEvent:
        reference = text_field(fields, "customId")
        checkout_id = text_field(fields, "id")
        ref = lookup(reference) if reference else None
        if ref is None or not same_secret(ref.provider_ids.get("checkout_id", ""), checkout_id):
            raise InvalidCallback(
                NAME,
                "The token webhook matches no open checkout (customId and id).",
                "綁卡通知對不上任何進行中的結帳（customId 與 id）。",
                reference=reference,
            )
        success = fields.get("success")
        token = fields.get("token")
        if success is True:
            if not isinstance(token, str) or not token:
                raise InvalidCallback(
                    NAME, "The token webhook carries no token.", "綁卡通知沒有 token。", reference=reference
                )
            state = State.AWAITING_PAYMENT  # the card is saved; the portal charges it next
        elif success is False:
            token, state = "", State.FAILED
        else:
            raise InvalidCallback(
                NAME, "The token webhook has no success flag.", "綁卡通知缺少 success 欄位。", reference=reference
            )
        return ProviderEvent(
            provider=NAME,
            reference=ref.reference,
            state=state,
            verified=True,
            dedupe_key=f"oen:token:{checkout_id}:{'ok' if success else 'failed'}",
            reply_body=self.callback_reply,
            amount=ref.amount,
            transaction_id=checkout_id,
            message=text_field(fields, "message"),
            raw=safe_row(fields),
            card_token=token or "",
        )

    def _charge_event(self, fields: dict, lookup: CheckoutLookup) -> ProviderEvent:
        reference = text_field(fields, "orderId") or text_field(fields, "customId")
        hid = text_field(fields, "transactionHid")
        ref = lookup(reference) if reference else None
        # No signature: only a notice naming the HID the portal got back from its own charge is believed.
        if ref is None or not same_secret(ref.provider_ids.get("transaction_id", ""), hid):
            raise InvalidCallback(
                NAME,
                "The charge webhook matches no charged checkout (orderId and transactionHid).",
                "扣款通知對不上任何已扣款的結帳（orderId 與 transactionHid）。",
                reference=reference,
            )
        status = text_field(fields, "status")
        amount = to_int(fields.get("amount"))
        return ProviderEvent(
            provider=NAME,
            reference=ref.reference,
            state=row_state(status, amount, 0),
            verified=True,
            dedupe_key=f"oen:charge:{hid}:{status}",
            reply_body=self.callback_reply,
            amount=amount,
            transaction_id=hid,
            message=text_field(fields, "message"),
            raw=safe_row(fields),
            occurred_at=parse_iso(fields.get("paidAt")) or parse_iso(fields.get("createdAt")),
        )

    @staticmethod
    def _check_amount(amount: int) -> None:
        if amount < OenProvider.min_amount:
            raise ProviderRejected(NAME, "amount", "Oen Tech needs at least 1 TWD.", "應援科技金額至少 1 元。")


def product_details(request: CheckoutRequest) -> list[dict[str, object]]:
    """Items, shipping and vouchers as productDetails whose quantity × unitPrice add up to the amount."""
    lines: list[dict[str, object]] = [
        {
            "productionCode": item.sku or str(index),
            "description": item.name,
            "quantity": item.quantity,
            "unit": "件",
            "unitPrice": item.unit_price,
        }
        for index, item in enumerate(request.items, 1)
    ]
    if request.shipping_fee:
        lines.append(
            {
                "productionCode": "SHIPPING",
                "description": "運費",
                "quantity": 1,
                "unit": "次",
                "unitPrice": request.shipping_fee,
            }
        )
    # Oen refuses productDetails that do not add up to amount (V0001), so vouchers go in as one discount line.
    discount = sum(v.amount for v in request.vouchers)
    if discount:
        lines.append(
            {"productionCode": "VOUCHER", "description": "折價券", "quantity": 1, "unit": "張", "unitPrice": -discount}
        )
    if sum(int(line["quantity"]) * int(line["unitPrice"]) for line in lines) != request.amount:
        raise refuse(
            NAME,
            "amount_mismatch",
            "Items + shipping − vouchers do not add up to the amount; nothing was sent to Oen Tech.",
            "品項加運費減折價券不等於金額，未送出至應援科技。",
        )
    return lines


def body_code(response: requests.Response | None) -> str:
    """The "code" of an Oen JSON body, or "" when there is none."""
    if response is None:
        return ""
    try:
        payload = json.loads(response.content.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return ""
    return text_field(payload, "code") if isinstance(payload, dict) else ""


def row_state(status: str, amount: int | None, refunded: int | None) -> State:
    """An Oen status as a portal state; a refund smaller than the amount is partial."""
    state = STATUSES.get(status, State.ERROR)
    if state is State.REFUNDED and amount and refunded and refunded < amount:
        return State.PARTIALLY_REFUNDED
    return state


def safe_row(row: Mapping) -> dict[str, object]:
    """A provider record with the card token removed and card numbers cut to the last four digits."""
    out: dict[str, object] = {}
    for key, value in row.items():
        if key == "token":
            continue
        if key == "paymentInfo":
            if isinstance(value, dict):
                value = {k: (last4(v) if k == "cardNum" else v) for k, v in value.items()}
            elif isinstance(value, str):
                value = last4(value) if any(c.isdigit() for c in value) else value
        elif key == "cardNum":
            value = last4(value)
        out[str(key)] = value
    return out


def transaction(row: dict, ref: CheckoutRef) -> ProviderTransaction:
    """One Oen transaction record as a ProviderTransaction."""
    info = row.get("paymentInfo")
    info = info if isinstance(info, dict) else {}
    amount = to_int(row.get("amount")) or 0
    refunded = to_int(row.get("refundAmount")) or 0
    status = text_field(row, "status")
    details = {
        key: row[key]
        for key in ("status", "action", "authCode", "transactionId", "paidAt", "note", "subscriptionId")
        if key in row and isinstance(row[key], (str, int, float, bool))
    }
    return ProviderTransaction(
        provider=NAME,
        reference=text_field(row, "orderId") or ref.reference,
        transaction_id=text_field(row, "id"),
        state=row_state(status, amount, refunded),
        amount=amount,
        refunded_amount=refunded,
        fee=to_fee(row.get("fee")),
        method=text_field(row, "paymentMethod") or text_field(info, "method"),
        card_brand=text_field(info, "cardType"),
        card_last4=last4(info.get("cardNum")),
        created_at=parse_iso(row.get("createdAt")),
        refunded_at=parse_iso(row.get("refundedAt")),
        message=text_field(row, "reason"),
        details=details,
    )
