"""O'Pay (歐付寶) WeChat Official Account pay: the AES-128 envelope, Create, the payment notice and QueryTradeInfo."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, unquote

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
    RefundPolicy,
    RefundResult,
    RelayedPage,
    State,
)
from .common import TAIPEI, parse_taipei, refuse, same_secret, text_field, to_fee, to_int
from .crypto import CryptoError, compact_json, opay_decrypt_json, opay_encrypt, percent_encode
from .http import HttpClient, error

NAME = "opay"
REVISION = "1"
WINDOW_S = 600  # O'Pay refuses anything more than 10 minutes off its clock; the portal holds notices to the same
ITEM_NAME_MAX = 40
TRADE_NO = re.compile(r"[A-Za-z0-9]{1,64}")
HTML_TAG = re.compile(r"<\s*/?\s*[A-Za-z!?][^>]*>")
TRADE_STATUS = {"0": State.AWAITING_PAYMENT, "1": State.PAID, "v342": State.EXPIRED}
DATE_FORMAT = "%Y/%m/%d %H:%M:%S"

RqidStore = NonceStore  # remember an RqID; False when it was seen before


def item_name(request: CheckoutRequest) -> str:
    """`name price 元 Xqty` lines joined by '#' (手機 20 元 X2#隨身碟 60 元 X1) that add up to the amount charged:
    the items, shipping (運費) and each voucher as a negative line (折抵). O'Pay cuts the field at 40 characters, so
    a longer list keeps its first lines and sums the rest (shipping and vouchers included) into one 其他 line, or, if
    even that is too long, becomes one line for the whole order; a cut list would show lines that do not add up."""
    lines = [(item.name, item.unit_price, item.quantity) for item in request.items]
    if request.shipping_fee:
        lines.append(("運費", request.shipping_fee, 1))
    lines += [(f"折抵{voucher.name}", -voucher.amount, 1) for voucher in request.vouchers]
    if sum(price * qty for _name, price, qty in lines) == request.amount:
        whole = _item_lines(lines)
        if len(whole) <= ITEM_NAME_MAX:
            return whole
        for keep in range(len(lines) - 1, 0, -1):
            rest = sum(price * qty for _name, price, qty in lines[keep:])
            if rest < 0:
                continue  # a negative 其他 would puzzle the customer: sum more lines into it
            text = _item_lines([*lines[:keep], ("其他", rest, 1)] if rest else lines[:keep])
            if len(text) <= ITEM_NAME_MAX:
                return text
    first = request.items[0].name if len(request.items) == 1 else "訂單商品"
    tail = f" {request.amount} 元 X1"
    return (_clean_name(first) or "訂單商品")[: ITEM_NAME_MAX - len(tail)].rstrip() + tail


def _clean_name(name: str) -> str:
    # '#' separates lines for O'Pay, so one inside a product name would split it (tags are refused before sending).
    return " ".join(name.replace("#", " ").split())


def _item_lines(lines: list[tuple[str, int, int]]) -> str:
    return "#".join(f"{_clean_name(name)} {price} 元 X{qty}" for name, price, qty in lines)


class OPayProvider(Provider):
    """O'Pay WeChat pay for one merchant (or through the operator's platform id)."""

    name = NAME
    min_amount = 6
    refund_policy = RefundPolicy(by_api=False)  # made in O'Pay's vendor back office, then recorded with its reference
    merchant_settings = ("opay_merchant_id", "opay_hash_key", "opay_hash_iv")
    callback_merchant_field = "MerchantID"
    callback_merchant_setting = "opay_merchant_id"
    callback_reply = "1|OK"
    creates_on_visit = True  # Create must run within 10 minutes of payment: when the customer opens the link

    @classmethod
    def from_settings(
        cls,
        config: Mapping[str, Any],
        merchant: Mapping[str, str],
        *,
        session: requests.Session | None = None,
        nonce_store: NonceStore | None = None,
    ) -> OPayProvider:
        return cls(
            api_url=config["OPAY_API_URL"],
            merchant_id=merchant.get("opay_merchant_id", ""),
            hash_key=merchant.get("opay_hash_key", ""),
            hash_iv=merchant.get("opay_hash_iv", ""),
            platform_id=config.get("OPAY_PLATFORM_ID") or "",
            platform_hash_key=config.get("OPAY_PLATFORM_HASH_KEY") or "",
            platform_hash_iv=config.get("OPAY_PLATFORM_HASH_IV") or "",
            timeout=config["PROVIDER_TIMEOUT_S"],
            session=session,
            rqid_store=nonce_store,
        )

    def __init__(
        self,
        api_url: str,
        merchant_id: str,
        hash_key: str,
        hash_iv: str,
        platform_id: str = "",
        platform_hash_key: str = "",
        platform_hash_iv: str = "",
        timeout: float = 10,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
        rqid_store: RqidStore | None = None,
    ):
        self.api_url = api_url.rstrip("/")
        self.merchant_id = merchant_id
        self._hash_key = hash_key
        self._hash_iv = hash_iv
        self.platform_id = platform_id
        self._platform_hash_key = platform_hash_key
        self._platform_hash_iv = platform_hash_iv
        self.clock = clock
        self.rqid_store = rqid_store
        self.http = HttpClient(NAME, timeout, session)

    def __repr__(self) -> str:
        return (
            f"OPayProvider(api_url={self.api_url!r}, merchant_id={self.merchant_id!r}, "
            f"platform_id={self.platform_id!r})"
        )

    # ------------------------------------------------------------ envelope

    def _keys(self, platform_id: str = "") -> tuple[str, str]:
        # A request that names a PlatformID is encrypted with the platform's key and IV.
        if platform_id:
            return self._platform_hash_key, self._platform_hash_iv
        return self._hash_key, self._hash_iv

    def encrypt(self, data: Mapping) -> str:
        """The Data field for a request from this merchant (platform key when a platform id is configured)."""
        try:
            return opay_encrypt(compact_json(dict(data)), *self._keys(self.platform_id))
        except CryptoError as exc:
            raise ProviderError(
                NAME,
                "config",
                "The O'Pay HashKey and HashIV must be 16 characters each. Check the merchant's O'Pay settings.",
                "歐付寶 HashKey 與 HashIV 各須為 16 個字元，請檢查此商店的歐付寶設定。",
            ) from exc

    def decrypt(self, data: str | bytes, platform_id: str = "") -> dict:
        """A received Data field as JSON; CryptoError when it does not decrypt with the matching key."""
        return opay_decrypt_json(data, *self._keys(platform_id))

    def envelope(self, data: Mapping) -> dict[str, str]:
        """The form fields of one call, with a fresh Timestamp and RqID."""
        fields = {"MerchantID": self.merchant_id}
        if self.platform_id:
            fields["PlatformID"] = self.platform_id
        fields.update(
            Timestamp=str(int(self.clock())),
            RqID=uuid.uuid4().hex.upper(),
            Revision=REVISION,
            Data=self.encrypt(data),
        )
        return fields

    # ------------------------------------------------------------ calls

    def create_checkout(self, request: CheckoutRequest) -> CheckoutLink:
        """Nothing is sent yet: Create must run within 10 minutes of payment, when the customer opens the link."""
        self.trade_payload(request)  # refuse a checkout O'Pay would refuse, while the merchant is still here
        return CheckoutLink(url=None, provider_ids={"merchant_trade_no": request.reference})

    def trade_payload(self, request: CheckoutRequest) -> dict[str, object]:
        """The Create Data fields, checked the way O'Pay checks them."""
        if not TRADE_NO.fullmatch(request.reference):
            raise ProviderRejected(
                NAME,
                "merchant_trade_no",
                "O'Pay needs a trade number of 1 to 64 letters and digits.",
                "歐付寶的交易編號須為 1 到 64 個英數字。",
            )
        if request.amount < self.min_amount:
            raise ProviderRejected(
                NAME,
                "amount",
                f"O'Pay needs at least {self.min_amount} TWD per payment (its fee would exceed a smaller one).",
                f"歐付寶每筆交易金額至少 {self.min_amount} 元（低於手續費）。",
            )
        if not request.notify_url or len(request.notify_url) > 200:
            raise refuse(
                NAME,
                "return_url",
                "O'Pay needs a result-notice URL of at most 200 characters.",
                "歐付寶需要長度不超過 200 字元的付款結果通知網址。",
            )
        # Taipei wall time when Create is sent (the customer is at the link), never the link's creation time.
        when = datetime.fromtimestamp(self.clock(), TAIPEI)
        name = item_name(request)
        data: dict[str, object] = {
            "MerchantID": self.merchant_id,
            # The field table asks for ItemName percent-encoded inside the JSON (it is encoded again with the rest).
            "ItemName": percent_encode(name),
            "MerchantTradeNo": request.reference,
            "MerchantTradeDate": when.strftime("%Y-%m-%d %H:%M:%S"),
            "ReturnURL": request.notify_url,
            "Amount": request.amount,
        }
        if request.success_url:
            data["ClientBackURL"] = request.success_url[:200]
        for value in (name, request.reference, request.notify_url, request.success_url):
            if HTML_TAG.search(value):
                raise ProviderRejected(
                    NAME,
                    "html",
                    "O'Pay does not accept HTML tags in any value. Remove them from product names and try again.",
                    "歐付寶不接受任何欄位含有 HTML 標籤，請從商品名稱中移除後再試。",
                )
        return data

    def create_trade(self, request: CheckoutRequest) -> RelayedPage:
        """Call WxAPI/Create once and hand back what O'Pay answered, for the customer's browser."""
        data = self.trade_payload(request)
        response = self.http.request("POST", f"{self.api_url}/WxAPI/Create", data=self.envelope(data))
        if response.status_code >= 400:
            raise error("http_error", NAME, f"http_{response.status_code}", status=response.status_code)
        content_type = response.headers.get("Content-Type", "text/html; charset=utf-8")
        answer = self._json_or_none(response)
        if answer is not None and "RtnCode" in answer and to_int(answer.get("RtnCode")) != 1:
            message = text_field(answer, "RtnMsg")
            raise ProviderRejected(
                NAME,
                text_field(answer, "RtnCode") or "unknown",
                f"O'Pay refused the payment: {message or 'no reason given'}.",
                f"歐付寶拒絕了這筆付款：{message or '未說明原因'}。",
            )
        return RelayedPage(status=response.status_code, content_type=content_type, body=response.content)

    @staticmethod
    def _json_or_none(response: requests.Response) -> dict | None:
        try:
            value = json.loads(response.content.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def query(self, ref: CheckoutRef) -> list[ProviderTransaction]:
        """What O'Pay knows of this trade number now (WxAPI/QueryTradeInfo)."""
        data = {"MerchantID": self.merchant_id, "MerchantTradeNo": ref.reference}
        response = self.http.request(
            "POST", f"{self.api_url}/WxAPI/QueryTradeInfo", idempotent=True, data=lambda: self.envelope(data)
        )
        if response.status_code != 200:
            raise error("http_error", NAME, f"http_{response.status_code}", status=response.status_code)
        answer = self._json_or_none(response)
        if answer is None:
            # The document does not show the answer's encoding: form fields are the other reading.
            try:
                answer = dict(parse_qsl(response.content.decode("utf-8").strip(), strict_parsing=True))
            except (UnicodeDecodeError, ValueError):
                raise error("bad_response", NAME) from None
        code = to_int(answer.get("RtnCode"))
        if code == 0:
            return []  # O'Pay has no such trade: the customer never reached Create
        if code != 1:
            message = text_field(answer, "RtnMsg")
            raise ProviderError(
                NAME,
                text_field(answer, "RtnCode") or "unknown",
                f"O'Pay could not answer the query: {message or 'no reason given'}. Try again later.",
                f"歐付寶無法回覆查詢：{message or '未說明原因'}。請稍後再試。",
            )
        trade = answer.get("Data")
        if isinstance(trade, str):
            try:
                trade = self.decrypt(trade, text_field(answer, "PlatformID"))
            except CryptoError as exc:
                raise error("bad_response", NAME) from exc
        if not isinstance(trade, dict) or not same_secret(ref.reference, text_field(trade, "MerchantTradeNo")):
            raise error("bad_response", NAME)
        status = text_field(trade, "TradeStatus")
        state = TRADE_STATUS.get(status, State.ERROR)
        amount = to_int(trade.get("TradeAmt"))
        if state is State.PAID and amount != ref.amount:
            state = State.PAID_MISMATCH
        details = {
            k: text_field(trade, k)
            for k in ("TradeStatus", "PaymentDate", "HandlingCharge", "AllocateStatus")
            if text_field(trade, k)
        }
        if text_field(trade, "ItemName"):
            details["ItemName"] = unquote(text_field(trade, "ItemName"))
        return [
            ProviderTransaction(
                provider=NAME,
                reference=ref.reference,
                transaction_id=text_field(trade, "TradeNo"),
                state=state,
                amount=amount if amount is not None else ref.amount,
                fee=to_fee(trade.get("HandlingCharge")),
                method="WECHAT",
                created_at=parse_taipei(text_field(trade, "TradeDate"), DATE_FORMAT),
                message=text_field(answer, "RtnMsg"),
                details=details,
            )
        ]

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
        """O'Pay's WeChat API has no refund call: say where refunds are made instead."""
        where = "https://vendor-stage.opay.tw" if "stage" in self.api_url else "O'Pay's vendor back office"
        raise ProviderRejected(
            NAME,
            "no_refund_api",
            f"O'Pay WeChat payments cannot be refunded from the portal. Make the refund in O'Pay's vendor back "
            f"office ({where}), then record it here with O'Pay's reference.",
            f"歐付寶微信支付無法從本系統退款。請至歐付寶廠商後台（{where}）辦理退款，再於此處登錄退款及其編號。",
        )

    # ------------------------------------------------------------ callbacks

    def parse_callback(
        self, request: CallbackRequest, lookup: CheckoutLookup, *, fields: Mapping[str, object] | None = None
    ) -> ProviderEvent:
        """Check a payment notice: key, 10-minute timestamp, open trade and amount, then a never-seen RqID."""
        fields = dict(self.read_callback(request) if fields is None else fields)
        if not same_secret(self.merchant_id, text_field(fields, "MerchantID")):
            raise InvalidCallback(NAME, "The notice names another O'Pay merchant.", "通知的歐付寶廠商編號不符。")
        platform_id = text_field(fields, "PlatformID")
        if platform_id and not same_secret(self.platform_id, platform_id):
            raise InvalidCallback(NAME, "The notice names another O'Pay platform.", "通知的歐付寶平台商編號不符。")
        timestamp = to_int(fields.get("Timestamp"))
        if timestamp is None or abs(self.clock() - timestamp) > WINDOW_S:
            raise InvalidCallback(
                NAME, "The notice's timestamp is more than 10 minutes off.", "通知的時間戳超過 10 分鐘。"
            )
        rqid = text_field(fields, "RqID")
        if not rqid or len(rqid) > 64 or not rqid.isprintable():  # remembered: a NUL character cannot be stored
            raise InvalidCallback(NAME, "The notice has no valid RqID.", "通知缺少有效的 RqID。")
        data = fields.get("Data")
        try:
            if not isinstance(data, (str, bytes)) or not data:
                raise CryptoError("Data is missing")
            trade = self.decrypt(data, platform_id)
        except CryptoError as exc:
            raise InvalidCallback(
                NAME, "The notice does not decrypt with the merchant's key.", "通知無法以商店金鑰解密。"
            ) from exc
        if not same_secret(self.merchant_id, text_field(trade, "MerchantID")):
            raise InvalidCallback(NAME, "The notice's data names another merchant.", "通知資料的廠商編號不符。")
        trade_no = text_field(trade, "MerchantTradeNo")
        looked_up = trade_no if TRADE_NO.fullmatch(trade_no) else ""
        ref = lookup(trade_no) if looked_up else None
        if ref is None or not same_secret(ref.reference, trade_no):
            raise InvalidCallback(
                NAME, "The notice names no open trade.", "通知對不上任何進行中的交易。", reference=looked_up
            )
        paid = to_int(trade.get("RtnCode")) == 1
        amount = to_int(trade.get("TradeAmt"))
        if paid and amount != ref.amount:
            raise InvalidCallback(
                NAME,
                "The notice's amount differs from the checkout's.",
                "通知金額與結帳金額不符。",
                reference=looked_up,
            )
        # Remembered last, so a notice refused for another reason can still be accepted when it comes again.
        if self.rqid_store is None:
            raise InvalidCallback(
                NAME,
                "No RqID store is configured, so replays cannot be refused.",
                "未設定 RqID 紀錄，無法拒絕重送的通知。",
                reference=looked_up,
            )
        if not self.rqid_store(rqid):
            raise InvalidCallback(
                NAME,
                "This notice's RqID was seen before (a replay).",
                "此通知的 RqID 已出現過（重送）。",
                reference=looked_up,
            )
        raw = {k: v for k, v in fields.items() if k != "Data"}
        raw["Data"] = trade
        return ProviderEvent(
            provider=NAME,
            reference=ref.reference,
            state=State.PAID if paid else State.FAILED,
            verified=True,
            dedupe_key=f"opay:{trade_no}:{text_field(trade, 'TradeNo')}:{text_field(trade, 'RtnCode')}",
            reply_body=self.callback_reply,
            amount=amount,
            transaction_id=text_field(trade, "TradeNo"),
            message=text_field(trade, "RtnMsg"),
            raw=raw,
            occurred_at=parse_taipei(text_field(trade, "PaymentDate"), DATE_FORMAT),
        )
