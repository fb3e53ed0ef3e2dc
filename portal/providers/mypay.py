"""MyPay Link PayPage in agent mode with vouchers: the AES-256 envelope, orders, queries, refunds and callbacks."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import requests

from portal import invoices
from portal.invoices import Invoice

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
from .common import last4, parse_taipei, refuse, same_secret, text_field, to_int
from .crypto import CryptoError, mypay_decrypt_json, mypay_encrypt
from .http import HttpClient, error, unknown_outcome

NAME = "mypay"

# Appendix 2 of the MyPay document: every prc code, its portal state, and what it means for a merchant.
PRC: dict[str, tuple[State, str, str]] = {
    "100": (State.FAILED, "MyPay rejected the order data.", "MyPay 收到的訂單資料有誤。"),
    "200": (
        State.AWAITING_PAYMENT,
        "MyPay accepted the order; waiting for the customer.",
        "MyPay 已收到訂單，等待消費者付款。",
    ),
    "220": (State.CANCELLED, "The payment was cancelled.", "交易已取消。"),
    "230": (State.REFUNDED, "The payment was refunded.", "交易已退款。"),
    "245": (State.AUTHORISED, "The card was authorised; it still has to be captured.", "信用卡已授權，尚待請款。"),
    "247": (State.AUTHORISED, "Capture is in progress.", "請款進行中。"),
    "250": (State.PAID, "Paid.", "付款成功。"),
    "260": (
        State.AWAITING_PAYMENT,
        "Waiting for the customer to pay at the convenience store.",
        "等待消費者至超商繳費。",
    ),
    "265": (
        State.AWAITING_PAYMENT,
        "Card-less instalment started; the customer has not registered yet.",
        "無卡分期訂單已綁定，消費者尚未完成註冊。",
    ),
    "270": (State.AWAITING_PAYMENT, "Waiting for the customer's bank transfer.", "等待消費者轉帳入帳。"),
    "275": (State.AWAITING_PAYMENT, "Card-less instalment waiting for approval.", "無卡分期等待審核。"),
    "280": (State.AWAITING_PAYMENT, "Waiting for the customer to finish paying online.", "等待消費者完成線上付款。"),
    "282": (State.AWAITING_PAYMENT, "Pay-later order waiting for review.", "後付款訂單等待審核。"),
    "284": (
        State.AWAITING_PAYMENT,
        "Pay-later order approved; capture it after shipping.",
        "後付款審核通過，出貨後請款。",
    ),
    "290": (
        State.PAID_MISMATCH,
        "Paid, but the amount or data do not match (for example over- or under-payment). Check before shipping.",
        "交易成功但資訊不符（例如多繳或少繳）。出貨前請先確認。",
    ),
    "300": (State.FAILED, "The payment failed or was stopped by risk control.", "交易失敗或超過風險控管限制。"),
    "380": (State.EXPIRED, "The customer did not pay before the deadline.", "消費者未在期限內繳費，交易逾期。"),
    "400": (
        State.ERROR,
        "MyPay or its upstream reported a system error; the portal will ask again.",
        "MyPay 或上游系統錯誤，系統會再次查詢。",
    ),
    "600": (State.PAID, "Paid and settled.", "結帳完成，款項將撥付。"),
    "A0001": (
        State.AWAITING_PAYMENT,
        "MyPay is confirming the result with the bank; the portal will ask again.",
        "MyPay 正與金流服務商確認結果，系統會再次查詢。",
    ),
    "A0002": (State.FAILED, "The customer abandoned the payment.", "消費者放棄此筆交易。"),
}

CARD_TYPES = {"1": "VISA", "2": "MasterCard", "3": "JCB", "4": "AMEX"}
CALLBACK_SECRETS = {"key", "encry_data", "service"}
# api/queryorder fields copied into ProviderTransaction.details under their own names, when not empty.
DETAIL_FIELDS = ("pfn", "acode", "actual_cost", "appropriation_date", "retmsg")
# trans_type: 1 normal, 2 instalments, 3 bonus points; nois: the number of instalments (periods) debited.
INSTALMENT_FIELDS = ("trans_type", "nois")
# The e-invoice summary. QR/bar codes, the item detail JSON and the paper-invoice postal address are left out.
INVOICE_FIELDS = (
    "invoice_state",  # 0 none/void record, 1 waiting, 2 issued, 3 and 5 failed, 4 voided, 6 allowance
    "invoice_date",
    "invoice_wordtrack",
    "invoice_number",
    "invoice_rand_code",
    "invoice_amount",
    "invoice_input_type",  # 1 cloud invoice (carrier), 2 donated, 3 paper (B2B)
    "invoice_cloud_type",  # 2 mobile barcode, 3 citizen certificate, 4 e-mail
    "invoice_mobile_code",
    "invoice_natural_person",
    "invoice_love_code",
    "invoice_buyer_ban",
    "invoice_b2b_title",
)


# result_content_type of the offline payments whose instructions the customer needs after leaving MyPay's page.
ATM_TYPES = ("E_COLLECTION",)
STORE_CODE_TYPES = ("IBON", "FAMIPORT", "CSTORECODE")  # a code typed into the store's kiosk (bar codes besides)
BARCODE_TYPES = ("LIFEET", "BARCODE")  # bar codes the cashier scans (Life-ET's PinCode cannot be paid with)
CODE_TEXT = re.compile(r"[A-Za-z0-9-]{1,40}")


def offline_payment(fields: Mapping[str, object]) -> tuple[dict[str, object] | None, datetime | None]:
    """An ATM virtual account or convenience-store code from a report or api/queryorder (result_content_type,
    result_content, expired_date), as ProviderTransaction.payment_code, with its deadline; (None, None) for others.

    result_content is JSON text (result_type 4) or already an object; a value that is not plain letters and digits
    is left out rather than shown to a customer.
    """
    content_type = text_field(dict(fields), "result_content_type").upper()
    if content_type not in (*ATM_TYPES, *STORE_CODE_TYPES, *BARCODE_TYPES):
        return None, None
    content = fields.get("result_content")
    if isinstance(content, (str, bytes)):
        try:
            content = json.loads(content) if content else {}
        except ValueError:
            content = {}
    if not isinstance(content, dict):
        content = {}

    def code(*values: object) -> str:
        for value in values:
            value = value.strip() if isinstance(value, str) else str(value) if isinstance(value, int) else ""
            if CODE_TEXT.fullmatch(value):
                return value
        return ""

    barcodes = [code(content.get(f"BarCode{n}")) for n in (1, 2, 3)]
    barcodes = [b for b in barcodes if b]
    if content_type in ATM_TYPES:
        found = {
            "kind": "atm",
            "bank_code": code(content.get("BankCode"), fields.get("bank_id")),
            "account": code(content.get("PinCode")),
        }
        if not found["account"]:
            return None, None
    elif content_type in STORE_CODE_TYPES:
        found = {"kind": "cvs", "store": content_type, "pin_code": code(content.get("PinCode")), "barcodes": barcodes}
        if not found["pin_code"] and not barcodes:
            return None, None
    else:
        found = {"kind": "barcode", "store": content_type, "barcodes": barcodes}
        if not barcodes:
            return None, None
    deadline = parse_taipei(text_field(content, "LimitDate"), "%Y%m%d%H%M%S") or parse_taipei(
        text_field(dict(fields), "expired_date"), "%Y%m%d%H%M%S"
    )
    return found, deadline


def prc_state(prc: str) -> State:
    """The portal state of a MyPay prc code; an unknown code is an error the portal re-queries."""
    return PRC.get(prc, (State.ERROR, "", ""))[0]


def prc_message(prc: str, locale: str = "en") -> str:
    """What a prc code means, in English or Traditional Chinese."""
    entry = PRC.get(prc)
    if entry is None:
        return f"MyPay state code {prc}" if locale == "en" else f"MyPay 狀態碼 {prc}"
    return entry[1] if locale == "en" else entry[2]


def rejected(code: str, msg: str, what_en: str, what_zh: str) -> ProviderRejected:
    """A MyPay business refusal, quoting MyPay's own message."""
    detail = f": {msg}" if msg else ""
    return ProviderRejected(
        NAME,
        code or "unknown",
        f"MyPay refused the {what_en} (code {code}){detail}.",
        f"MyPay 拒絕了{what_zh}（代碼 {code}）{detail}。",
    )


class MyPayProvider(Provider):
    """MyPay's PayPage for one store, sent by the operator as MyPay agent."""

    name = NAME
    min_amount = 1
    # With vouchers MyPay refunds once and in full, listing every paid voucher; every refund says what becomes of the
    # e-invoice: 4 void it (the default), 6 issue an allowance.
    refund_policy = RefundPolicy(full_only_with_vouchers=True, invoice_states=("4", "6"))
    merchant_settings = ("mypay_store_uid",)
    operator_settings = ("MYPAY_AGENT_UID", "MYPAY_AGENT_KEY")  # the portal reaches MyPay as the operator's agent
    callback_secret_fields = ()
    callback_reply = "8888"
    callbacks_confirmed_by_query = True  # a report moves money state only once api/queryorder says the same
    pays_offline = True  # ATM transfer and convenience-store payments, confirmed by the bank or the store later

    @classmethod
    def from_settings(
        cls,
        config: Mapping[str, Any],
        merchant: Mapping[str, str],
        *,
        session: requests.Session | None = None,
        nonce_store: NonceStore | None = None,
    ) -> MyPayProvider:
        return cls(
            api_url=config["MYPAY_API_URL"],
            agent_uid=config["MYPAY_AGENT_UID"],
            agent_key=config["MYPAY_AGENT_KEY"],
            store_uid=merchant.get("mypay_store_uid", ""),
            next_agent_key=config.get("MYPAY_AGENT_NEXT_KEY") or "",
            timeout=config["PROVIDER_TIMEOUT_S"],
            session=session,
        )

    @classmethod
    def confirms_by_query(cls, event: ProviderEvent) -> bool:
        """Every report but "waiting for the customer" is confirmed by a query before it is applied."""
        return event.state is not State.AWAITING_PAYMENT

    def __init__(
        self,
        api_url: str,
        agent_uid: str,
        agent_key: str,
        store_uid: str,
        next_agent_key: str = "",
        timeout: float = 10,
        session: requests.Session | None = None,
    ):
        self.api_url = api_url
        self.agent_uid = agent_uid
        self._agent_key = agent_key
        self._next_agent_key = next_agent_key
        self.store_uid = store_uid
        self.http = HttpClient(NAME, timeout, session)

    def __repr__(self) -> str:
        return f"MyPayProvider(api_url={self.api_url!r}, agent_uid={self.agent_uid!r}, store_uid={self.store_uid!r})"

    # ------------------------------------------------------------ envelope

    def encrypt(self, value: object) -> str:
        """One envelope field under the current agent key, with a fresh random IV."""
        try:
            return mypay_encrypt(value, self._agent_key)
        except CryptoError as exc:
            raise ProviderError(
                NAME,
                "config",
                "The MyPay agent key must be exactly 32 characters. Check the portal's MyPay settings.",
                "MyPay 經銷商金鑰必須剛好 32 個字元，請檢查系統的 MyPay 設定。",
            ) from exc

    def envelope(self, cmd: str, data: Mapping) -> dict[str, str]:
        """The three form fields of a MyPay agent call."""
        return {
            "agent_uid": self.agent_uid,
            "service": self.encrypt({"service_name": "api", "cmd": cmd}),
            "encry_data": self.encrypt(dict(data)),
        }

    def decrypt(self, text: str | bytes) -> dict:
        """A received envelope field as JSON, under the current key or, during rotation, the next one."""
        return mypay_decrypt_json(text, [self._agent_key, self._next_agent_key])

    def decrypt_envelope(self, fields: Mapping[str, object]) -> tuple[dict, dict]:
        """(service, encry_data) of an envelope's fields; CryptoError when either does not decrypt."""
        service, data = fields.get("service"), fields.get("encry_data")
        if not isinstance(service, (str, bytes)) or not isinstance(data, (str, bytes)):
            raise CryptoError("service and encry_data are required")
        return self.decrypt(service), self.decrypt(data)

    def _call(self, cmd: str, data: Mapping, *, idempotent: bool = False) -> dict:
        response = self.http.request("POST", self.api_url, idempotent=idempotent, data=self.envelope(cmd, data))
        if response.status_code != 200:
            raise error("http_error", NAME, f"http_{response.status_code}", status=response.status_code)
        return self.http.json(response)

    # ------------------------------------------------------------ calls

    def create_checkout(self, request: CheckoutRequest) -> CheckoutLink:
        """Open a PayPage order (api/orders) and return its URL with MyPay's uid and key."""
        data = self.order_payload(request)
        answer = self._call("api/orders", data)
        code = text_field(answer, "code")
        if code != "200":
            raise rejected(code, text_field(answer, "msg"), "order", "訂單")
        url, uid, key = text_field(answer, "url"), text_field(answer, "uid"), text_field(answer, "key")
        if not (url and uid and key):
            raise error("bad_response", NAME)
        return CheckoutLink(
            url=url,
            provider_ids={"uid": uid, "key": key},
            raw={"code": code, "msg": text_field(answer, "msg"), "uid": uid, "url": url},
        )

    def order_payload(self, request: CheckoutRequest) -> dict[str, object]:
        """The api/orders fields for a checkout; shipping travels as an item line so items add up to cost."""
        if len(request.reference.encode("utf-8")) > 50:
            raise refuse(
                NAME, "order_id", "MyPay order numbers are at most 50 bytes.", "MyPay 訂單編號最長 50 位元組。"
            )
        items = [
            {
                "id": item.sku or str(n),
                "name": item.name,
                "cost": item.unit_price,
                "amount": item.quantity,
                "total": item.total,
            }
            for n, item in enumerate(request.items, 1)
        ]
        if request.shipping_fee:
            # MyPay has no shipping field, yet cost = items + shipping − vouchers: a shipping line keeps items,
            # cost and the e-invoice in agreement whichever way MyPay adds them up.
            items.append(
                {
                    "id": "shipping",
                    "name": "運費",
                    "cost": request.shipping_fee,
                    "amount": 1,
                    "total": request.shipping_fee,
                }
            )
        voucher_total = sum(v.amount for v in request.vouchers)
        cost = sum(int(i["total"]) for i in items) - voucher_total
        if cost != request.amount:
            raise refuse(
                NAME,
                "amount_mismatch",
                f"Items + shipping − vouchers come to {cost} TWD, not {request.amount}; nothing was sent to MyPay.",
                f"品項加運費減折價券為 {cost} 元，不等於 {request.amount} 元，未送出至 MyPay。",
            )
        if cost < self.min_amount:
            raise ProviderRejected(NAME, "amount", "MyPay needs at least 1 TWD.", "MyPay 金額至少 1 元。")
        data: dict[str, object] = {
            "store_uid": self.store_uid,
            "user_id": request.customer_id or request.customer_email or request.reference,
            "order_id": request.reference,
            "ip": request.customer_ip,
            "currency": "TWD",
            "items": items,
            "cost": cost,
            "echo_0": request.reference,
        }
        for name, value in (
            ("user_name", request.customer_name),
            ("user_email", request.customer_email),
            ("success_returl", request.success_url),
            ("failure_returl", request.failure_url),
        ):
            if value:
                data[name] = value
        if request.vouchers:
            for v in request.vouchers:
                if len(v.product_id.encode("utf-8")) > 32:
                    raise ProviderRejected(
                        NAME,
                        "voucher_product_id",
                        f"Voucher group id {v.product_id!r} is longer than MyPay's 32 bytes.",
                        f"折價券群組編號 {v.product_id!r} 超過 MyPay 的 32 位元組上限。",
                    )
            data["voucher_type"] = "1"  # fixed vouchers, as in the document's example
            data["voucher_paid"] = [
                {
                    "product_id": v.product_id,
                    "serial_number": v.serial_number,
                    "name": v.name,
                    "cost": v.amount,
                    "issuer": "1",
                    "refund_return_type": "1",
                }
                for v in request.vouchers
                if v.kind == "paid"
            ]
            data["voucher_free"] = [
                {
                    "product_id": v.product_id,
                    "serial_number": v.serial_number,
                    "name": v.name,
                    "cost": v.amount,
                    "issuer": "3",
                }
                for v in request.vouchers
                if v.kind != "paid"
            ]
            data["voucher_invoice_type"] = "1"
        data.update(order_invoice_fields(request.invoice))
        return data

    def query(self, ref: CheckoutRef) -> list[ProviderTransaction]:
        """The order, its refunds and its cancellations as MyPay reports them now (api/queryorder).

        Each row's details hold, when MyPay gives them: prc, DETAIL_FIELDS, the instalments (trans_type, nois),
        the e-invoice summary (INVOICE_FIELDS, all named "invoice_…", plus invoice_allowance as "uid: amount, …";
        left out when the row has no invoice), voucher_paid (serial numbers) and, for cancellations, record.
        """
        uid, key = ref.provider_ids.get("uid", ""), ref.provider_ids.get("key", "")
        if not uid or not key:
            return []  # the order never reached MyPay: nothing to ask about
        answer = self._call("api/queryorder", {"uid": uid, "key": key}, idempotent=True)
        prc = text_field(answer, "prc")
        if not prc:
            code = text_field(answer, "code")
            if code and code not in ("200", "B200"):
                raise rejected(code, text_field(answer, "msg"), "query", "查詢")
            raise error("bad_response", NAME)
        refunds = [self._row(r, ref, "refund") for r in answer.get("refund_order") or [] if isinstance(r, dict)]
        cancels = [
            self._row(r, ref, "refund", cancel=True) for r in answer.get("cancel_order") or [] if isinstance(r, dict)
        ]
        payment = self._row(answer, ref, "payment")
        refunded = sum(r.amount for r in refunds if r.state is State.REFUNDED)
        state = payment.state
        if any(c.state is State.CANCELLED for c in cancels) and state in (State.PAID, State.AUTHORISED):
            state = State.CANCELLED
        elif refunded and state in (State.PAID, State.PAID_MISMATCH, State.REFUNDED):
            state = State.REFUNDED if refunded >= payment.amount else State.PARTIALLY_REFUNDED
        refunded_at = max((r.refunded_at for r in refunds if r.refunded_at), default=None)
        payment = replace(payment, state=state, refunded_amount=refunded, refunded_at=refunded_at)
        return [payment, *refunds, *cancels]

    def _row(self, row: dict, ref: CheckoutRef, kind: str, cancel: bool = False) -> ProviderTransaction:
        prc = text_field(row, "prc")
        when = parse_taipei(text_field(row, "finishtime"), "%Y%m%d%H%M%S")
        details: dict[str, object] = {"prc": prc}
        for name in (*DETAIL_FIELDS, *INSTALMENT_FIELDS, *invoice_fields(row)):
            if text_field(row, name):
                details[name] = text_field(row, name)
        allowances = [a for a in row.get("invoice_allowance") or [] if isinstance(a, dict)]
        if allowances:
            details["invoice_allowance"] = ", ".join(
                f"{text_field(a, 'uid')}: {text_field(a, 'amount')}" for a in allowances
            )
        if cancel:
            details["record"] = "cancel_order"
        state, amount = prc_state(prc), to_int(row.get("cost")) or 0
        if kind == "payment":
            # The amount paid is actual_cost; cost is the order's total. A difference keeps the payment paid but
            # flags it for a person (as prc 290 does), with both amounts kept to show.
            actual = to_int(row.get("actual_cost"))
            if text_field(row, "cost"):
                details["cost"] = text_field(row, "cost")
            if actual is not None and (actual or state is State.PAID):  # 0 until the customer pays
                if state is State.PAID and actual != amount:
                    state = State.PAID_MISMATCH
                amount = actual
        vouchers = row.get("voucher_paid")
        if isinstance(vouchers, list) and vouchers:
            details["voucher_paid"] = ", ".join(text_field(v, "serial_number") for v in vouchers if isinstance(v, dict))
        payment_code, deadline = offline_payment(row) if kind == "payment" else (None, None)
        return ProviderTransaction(
            provider=NAME,
            reference=text_field(row, "order_id") or ref.reference,
            transaction_id=text_field(row, "uid"),
            state=state,
            amount=amount,
            kind=kind,
            method=text_field(row, "pfn"),
            card_brand=CARD_TYPES.get(text_field(row, "card_type"), ""),
            card_last4=last4(row.get("cardno")),
            created_at=when,
            refunded_at=when if kind == "refund" else None,
            message=text_field(row, "retmsg") or prc_message(prc),
            details=details,
            payment_code=payment_code,
            payment_deadline=deadline,
        )

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
        """Refund through api/refund; with vouchers only in full; items (e-invoices) only on partial refunds."""
        uid, key = ref.provider_ids.get("uid", ""), ref.provider_ids.get("key", "")
        if not uid or not key:
            raise ProviderRejected(
                NAME, "no_order", "This checkout has no MyPay order to refund.", "此結帳沒有可退款的 MyPay 訂單。"
            )
        paid = ref.paid_amount or ref.amount  # what was actually paid (actual_cost), once known
        if not 1 <= amount <= paid:
            raise ProviderRejected(
                NAME,
                "refund_amount",
                f"A MyPay refund must be between 1 and {paid} TWD.",
                f"MyPay 退款金額須介於 1 到 {paid} 元之間。",
            )
        if ref.vouchers and amount != paid:
            raise ProviderRejected(
                NAME,
                "voucher_full_refund",
                f"Orders paid with vouchers can only be refunded in full ({paid} TWD plus every paid voucher).",
                f"使用折價券的訂單只能全額退款（{paid} 元及所有有償票券）。",
            )
        data: dict[str, object] = {"store_uid": self.store_uid, "uid": uid, "key": key, "cost": amount}
        if ref.vouchers:
            data["voucher_paid"] = [
                {"product_id": v.product_id, "serial_number": v.serial_number} for v in ref.vouchers if v.kind == "paid"
            ]
        if invoice_state is not None:
            if str(invoice_state) not in self.refund_policy.invoice_states:
                raise refuse(
                    NAME,
                    "invoice_state",
                    "The e-invoice is either voided (4) or given an allowance (6).",
                    "電子發票只能作廢（4）或折讓（6）。",
                )
            data["invoice_state"] = int(invoice_state)
        if items:
            lines = refund_items(list(items), amount)
            if amount != paid:  # a full refund carries no items: MyPay fills them in itself
                data["items"] = lines
        try:
            answer = self._call("api/refund", data)
        except ProviderUnavailable:
            raise
        except ProviderError as exc:
            if exc.code == "bad_response":
                raise unknown_outcome(NAME) from exc  # sent, and answered unreadably: it may have been made
            raise
        code = text_field(answer, "code")
        if code == "B500":
            raise rejected(code, text_field(answer, "msg"), "refund", "退款")
        if code != "B200":
            if code:
                raise rejected(code, text_field(answer, "msg"), "refund", "退款")
            raise unknown_outcome(NAME)
        row = answer.get("row_data")
        if not isinstance(row, dict) or not text_field(row, "prc"):
            # Accepted, without the row that says what became of it: unknown until api/queryorder shows it.
            raise unknown_outcome(NAME)
        instant = text_field(row, "prc") == "230" and text_field(row, "refund_type") in ("1", "")
        return RefundResult(
            state="succeeded" if instant else "pending",
            amount=to_int(row.get("cost")) or amount,
            provider_refund_id=text_field(row, "refund_uid"),
            message=text_field(row, "retmsg") or text_field(answer, "msg"),
            raw=safe_fields(row),
        )

    # ------------------------------------------------------------ callbacks

    def parse_callback(
        self, request: CallbackRequest, lookup: CheckoutLookup, *, fields: Mapping[str, object] | None = None
    ) -> ProviderEvent:
        """Read a MyPay report (form fields, JSON, or an encrypted envelope) and check its uid and key."""
        fields = dict(self.read_callback(request) if fields is None else fields)
        if "encry_data" in fields:
            fields = self._open_envelope(fields)
        reference = text_field(fields, "order_id")
        ref = lookup(reference) if reference else None
        if ref is None:
            raise InvalidCallback(
                NAME,
                "The report names no open checkout (order_id).",
                "回報的 order_id 對不上任何進行中的結帳。",
                reference=reference,
            )
        uid_ok = same_secret(ref.provider_ids.get("uid", ""), text_field(fields, "uid"))
        key_ok = same_secret(ref.provider_ids.get("key", ""), text_field(fields, "key"))
        if not (uid_ok and key_ok):
            raise InvalidCallback(
                NAME,
                "The report's uid and key do not match the order MyPay created.",
                "回報的 uid 與 key 與 MyPay 建立的訂單不符。",
                reference=reference,
            )
        prc = text_field(fields, "prc")
        if not prc:
            raise InvalidCallback(
                NAME, "The report has no state code (prc).", "回報缺少狀態碼（prc）。", reference=reference
            )
        state = prc_state(prc)
        amount = to_int(fields.get("cost"))
        message = text_field(fields, "retmsg") or prc_message(prc)
        if state is State.PAID and amount != ref.amount:
            # MyPay flags mismatches with 290; a "paid" that disagrees with the order is treated the same way.
            state, message = State.PAID_MISMATCH, f"{message} (amount {amount} ≠ {ref.amount})"
        finishtime = text_field(fields, "finishtime")
        payment_code, deadline = offline_payment(fields)
        return ProviderEvent(
            provider=NAME,
            reference=ref.reference,
            state=state,
            verified=True,
            dedupe_key=f"mypay:{text_field(fields, 'uid')}:{prc}:{finishtime}",
            reply_body=self.callback_reply,
            amount=amount,
            transaction_id=text_field(fields, "uid"),
            message=message,
            raw=safe_fields(fields),
            occurred_at=parse_taipei(finishtime, "%Y%m%d%H%M%S"),
            payment_code=payment_code,
            payment_deadline=deadline,
            card_last4=last4(fields.get("cardno")),
        )

    def _open_envelope(self, fields: dict) -> dict:
        if "agent_uid" in fields and not same_secret(self.agent_uid, text_field(fields, "agent_uid")):
            raise InvalidCallback(NAME, "The report is addressed to another MyPay agent.", "回報的經銷商代號不符。")
        data = fields.get("encry_data")
        try:
            if not isinstance(data, (str, bytes)):
                raise CryptoError("encry_data is not text")
            return self.decrypt(data)
        except CryptoError as exc:
            raise InvalidCallback(
                NAME, "The report does not decrypt with the agent key.", "回報無法以經銷商金鑰解密。"
            ) from exc


def refund_items(items: list[LineItem], amount: int) -> list[dict[str, object]]:
    """api/refund's items: real lines (name, price ≥ 0, quantity ≥ 1) adding up to the refund; else refused."""
    for item in items:
        if not item.name.strip() or item.unit_price < 0 or item.quantity < 1:
            raise refuse(
                NAME,
                "refund_items",
                f"Refund item {item.name!r} needs a name, a price of 0 TWD or more and a quantity of 1 or more.",
                f"退款品項 {item.name!r} 須有名稱、單價至少 0 元、數量至少 1。",
            )
    total = sum(i.total for i in items)
    if total != amount:
        raise refuse(
            NAME,
            "refund_items",
            f"The refunded items come to {total} TWD, not the refund's {amount} TWD; nothing was sent to MyPay.",
            f"退款品項合計 {total} 元，不等於退款金額 {amount} 元，未送出至 MyPay。",
        )
    return [
        {"id": i.sku or str(n), "name": i.name, "cost": i.unit_price, "amount": i.quantity, "total": i.total}
        for n, i in enumerate(items, 1)
    ]


def order_invoice_fields(invoice: Invoice | None) -> dict[str, object]:
    """api/orders' e-invoice fields for the order's e-invoice data, by the document's value tables; none without it
    (MyPay then does as the store is set up: issue_invoice_state 2).

    issue_invoice_state: 0 no e-invoice, 1 issue one. invoice_ratetype: 1 taxable. invoice_input_type: 1 cloud
    invoice (a carrier), 2 donated, 3 paper, which the document forbids with PayPage ("絕對不可以使用此模式": MyPay
    issues what the customer chooses on its page). invoice_cloud_type (a string): 2 mobile barcode, 3 citizen
    certificate, 4 e-mail. A business's tax ID rides on a cloud invoice (invoice_tax_id, valid with input type 1)
    sent by e-mail; invoice_b2b_title and invoice_b2b_id count with input type 3 only, so the company name is not
    sent. A paper invoice is the shop's own to print: MyPay is told to issue none.
    """
    if invoice is None:
        return {}
    if invoice.kind == invoices.PAPER:
        return {"issue_invoice_state": 0}
    fields: dict[str, object] = {"issue_invoice_state": 1, "invoice_ratetype": 1}
    if invoice.kind == invoices.DONATION:
        fields.update(invoice_input_type=2, invoice_love_code=invoice.donation_code)
    elif invoice.kind == invoices.MOBILE:
        fields.update(invoice_input_type=1, invoice_cloud_type="2", invoice_mobile_code=invoice.carrier)
    elif invoice.kind == invoices.CITIZEN:
        fields.update(invoice_input_type=1, invoice_cloud_type="3", invoice_natural_person=invoice.carrier)
    elif invoice.kind == invoices.BUSINESS:
        fields.update(invoice_input_type=1, invoice_cloud_type="4", invoice_tax_id=invoice.tax_id)
    else:
        return {}
    return fields


def invoice_fields(row: dict) -> tuple[str, ...]:
    """The e-invoice summary's field names, or none when the row has no invoice (state 0 and no number)."""
    if text_field(row, "invoice_state") in ("", "0") and not text_field(row, "invoice_number"):
        return ()
    return INVOICE_FIELDS


def safe_fields(fields: Mapping) -> dict[str, object]:
    """A MyPay record without its verification key and with the card number cut to the last four digits."""
    return {str(k): last4(v) if k == "cardno" else v for k, v in fields.items() if k not in CALLBACK_SECRETS}
