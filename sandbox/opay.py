"""O'Pay WeChat Official Account pay (seed 003): WxAPI/Create, the payment notice to ReturnURL, WxAPI/QueryTradeInfo."""

from __future__ import annotations

import re
import secrets
import time
import uuid
from datetime import UTC, datetime
from urllib.parse import unquote

from flask import abort, current_app, g, jsonify, redirect, render_template, request, url_for
from sqlalchemy.exc import IntegrityError

from sandbox import bp, callbacks, registry
from sandbox.common import TAIPEI, as_int, is_http_url, random_digits, taipei_now
from sandbox.crypto import CipherError, opay_decrypt, opay_encrypt
from sandbox.extensions import db, utcnow
from sandbox.journal import provider_api, readable, record
from sandbox.models import SandboxOpayRqid, SandboxOpayTrade

WINDOW_S = 600  # "more than 10 minutes off O'Pay's clock fails"
HTML_TAG = re.compile(r"<\s*/?\s*[A-Za-z!][^>]*>")
TRADE_NO = re.compile(r"[A-Za-z0-9]{1,64}")

# RtnCode values of the sandbox's refusals (O'Pay's own list lives in its vendor back office).
MISSING, UNKNOWN_MERCHANT, STALE, REUSED, UNDECRYPTABLE, INVALID, HTML, DUPLICATE = (
    10200001, 10200002, 10200003, 10200004, 10200005, 10200006, 10200007, 10200008,
)  # fmt: skip
PAYMENT_FAILED = 10100058


class Rejected(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def credentials(merchant_id: str, platform_id: str | None) -> tuple[str, str] | None:
    """HashKey and HashIV: the platform's (sandbox config) when PlatformID is named, else the registered merchant's."""
    config = current_app.config
    if platform_id:
        if platform_id == config.get("SANDBOX_OPAY_PLATFORM_ID") and config.get("SANDBOX_OPAY_PLATFORM_HASH_KEY"):
            return config["SANDBOX_OPAY_PLATFORM_HASH_KEY"], config.get("SANDBOX_OPAY_PLATFORM_HASH_IV", "")
        return None
    return registry.opay_credentials(merchant_id)


def envelope(rtn_code: int, message: str, data: str = "", merchant_id: str = "", platform_id: str | None = None):
    """The response shape the document gives for QueryTradeInfo (and the sandbox uses for refusals)."""
    return jsonify(
        MerchantID=merchant_id,
        PlatformID=platform_id or "",
        Timestamp=int(time.time()),
        RqID=uuid.uuid4().hex.upper(),
        Revision="1",
        RtnCode=rtn_code,
        RtnMsg=message,
        Data=data,
    )


def open_request() -> tuple[str, str | None, tuple[str, str], dict]:
    """Check the form envelope and decrypt Data; raises Rejected."""
    form = request.form
    for name in ("MerchantID", "Timestamp", "RqID", "Revision", "Data"):
        if not form.get(name):
            raise Rejected(MISSING, f"缺少參數 {name}")
    merchant_id, platform_id = form["MerchantID"], form.get("PlatformID") or None
    creds = credentials(merchant_id, platform_id)
    if creds is None:
        raise Rejected(UNKNOWN_MERCHANT, "MerchantID 或 PlatformID 錯誤")
    timestamp = as_int(form["Timestamp"])
    if timestamp is None or abs(time.time() - timestamp) > WINDOW_S:
        raise Rejected(STALE, "Timestamp 與歐付寶伺服器時間相差超過 10 分鐘")
    if len(form["RqID"]) > 64:
        raise Rejected(INVALID, "RqID 最長 64 字元")
    if not form["Revision"].startswith("1"):
        raise Rejected(INVALID, "Revision 錯誤")
    try:
        data = opay_decrypt(form["Data"], *creds)
    except CipherError as exc:
        raise Rejected(UNDECRYPTABLE, f"Data 解密失敗 ({exc})") from exc
    g.sandbox_readable = {**{k: v for k, v in form.items() if k != "Data"}, "Data": data}
    if not isinstance(data, dict):
        raise Rejected(INVALID, "Data 必須是 JSON 物件")
    if str(data.get("MerchantID", "")) != merchant_id:
        raise Rejected(INVALID, "Data 內的 MerchantID 與 MerchantID 不符")
    for name, value in data.items():
        if isinstance(value, str) and (HTML_TAG.search(value) or HTML_TAG.search(unquote(value))):
            raise Rejected(HTML, f"{name} 不可含 HTML 標籤")
    db.session.add(SandboxOpayRqid(rqid=form["RqID"], merchant_id=merchant_id))
    try:
        db.session.commit()
    except IntegrityError as exc:
        db.session.rollback()
        raise Rejected(REUSED, "RqID 重複，每次呼叫須使用新的 RqID") from exc
    return merchant_id, platform_id, creds, data


def validate_create(data: dict) -> tuple[str, int]:
    """(ItemName decoded and cut to 40 characters, Amount); raises Rejected."""
    item_name = data.get("ItemName")
    if not isinstance(item_name, str) or not item_name:
        raise Rejected(INVALID, "ItemName 必填")
    trade_no = data.get("MerchantTradeNo")
    if not isinstance(trade_no, str) or not TRADE_NO.fullmatch(trade_no):
        raise Rejected(INVALID, "MerchantTradeNo 必填，英數字，最長 64")
    try:
        datetime.strptime(str(data.get("MerchantTradeDate", "")), "%Y-%m-%d %H:%M:%S")
    except ValueError as exc:
        raise Rejected(INVALID, "MerchantTradeDate 格式為 yyyy-MM-dd HH:mm:ss") from exc
    for name, required in (("ReturnURL", True), ("ClientBackURL", False)):
        value = data.get(name)
        if value in (None, "") and not required:
            continue
        if not is_http_url(value) or len(value) > 200:
            raise Rejected(INVALID, f"{name} 必須是 http(s) 網址，最長 200")
    amount = as_int(data.get("Amount"))
    if amount is None or amount < 6:
        raise Rejected(INVALID, "Amount 必須是整數，最低 6 元")
    try:
        decoded = unquote(item_name, errors="strict")
    except UnicodeDecodeError:
        decoded = item_name
    return decoded[:40], amount


@bp.post("/opay/WxAPI/Create")
@provider_api("opay")
def opay_create():
    """Create the WeChat order; the answer is the page that brings up WeChat's payment (HTML)."""
    form = request.form
    try:
        merchant_id, platform_id, _creds, data = open_request()
        item_name, amount = validate_create(data)
        trade = SandboxOpayTrade(
            merchant_id=merchant_id,
            platform_id=platform_id,
            merchant_trade_no=data["MerchantTradeNo"],
            trade_no=taipei_now().strftime("%y%m%d%H%M%S") + random_digits(8),
            page_key=secrets.token_urlsafe(24),
            item_name=item_name,
            amount=amount,
            merchant_trade_date=data["MerchantTradeDate"],
            return_url=data["ReturnURL"],
            client_back_url=data.get("ClientBackURL") or None,
        )
        db.session.add(trade)
        try:
            db.session.commit()
        except IntegrityError as exc:
            db.session.rollback()
            raise Rejected(DUPLICATE, "MerchantTradeNo 重複") from exc
    except Rejected as rejected:
        return envelope(rejected.code, rejected.message, "", form.get("MerchantID", ""), form.get("PlatformID"))
    pay_url = url_for("sandbox.opay_wechat", trade_no=trade.trade_no, k=trade.page_key, _external=True)
    html = render_template("opay_create.html", trade=trade, pay_url=pay_url)
    return html, 200, {"Content-Type": "text/html; charset=utf-8"}


def trade_date(moment: datetime | None) -> str:
    """yyyy/MM/dd HH:mm:ss on Taiwan's clock."""
    if moment is None:
        return ""
    return moment.replace(tzinfo=UTC).astimezone(TAIPEI).strftime("%Y/%m/%d %H:%M:%S")


@bp.post("/opay/WxAPI/QueryTradeInfo")
@provider_api("opay")
def opay_query():
    """RtnCode 1 found, 0 none, 99 other error; Data encrypted like the request's."""
    form = request.form
    try:
        merchant_id, platform_id, creds, data = open_request()
    except Rejected as rejected:
        return envelope(99, rejected.message, "", form.get("MerchantID", ""), form.get("PlatformID"))
    trade = db.session.execute(
        db.select(SandboxOpayTrade).filter_by(merchant_id=merchant_id, merchant_trade_no=data.get("MerchantTradeNo"))
    ).scalar_one_or_none()
    if trade is None:
        return envelope(0, "查無資料", "", merchant_id, platform_id)
    paid = trade.status == "1"
    inner = {
        "MerchantID": merchant_id,
        "MerchantTradeNo": trade.merchant_trade_no,
        "TradeNo": trade.trade_no,
        "TradeAmt": trade.amount,
        "PaymentDate": trade_date(trade.payment_date) if paid else "",
        "HandlingCharge": f"{trade.amount * 0.0275:.2f}" if paid else "0",
        "TradeDate": trade_date(trade.created_at),
        "TradeStatus": trade.status,
        "ItemName": trade.item_name,
        "AllocateStatus": "0",
    }
    g.sandbox_readable = {**g.get("sandbox_readable", {}), "answer.Data": inner}
    return envelope(1, "查詢成功", opay_encrypt(inner, *creds), merchant_id, platform_id)


# ---------------------------------------------------------------- the simulated WeChat payment page


def _trade_for_page(trade_no: str) -> SandboxOpayTrade:
    trade = db.session.execute(db.select(SandboxOpayTrade).filter_by(trade_no=trade_no)).scalar_one_or_none()
    key = request.values.get("k", "")
    if trade is None or not secrets.compare_digest(key.encode(), trade.page_key.encode()):
        abort(404)
    return trade


def notify(trade: SandboxOpayTrade, paid: bool) -> None:
    """The payment result notice to ReturnURL: form fields, Data encrypted with the key the order was made with."""
    creds = credentials(trade.merchant_id, trade.platform_id)
    inner = {"MerchantID": trade.merchant_id, "MerchantTradeNo": trade.merchant_trade_no}
    if paid:
        inner.update(
            RtnCode=1,
            RtnMsg="交易成功",
            TradeNo=trade.trade_no,
            TradeAmt=trade.amount,
            PaymentDate=trade_date(trade.payment_date),
            TradeDate=trade_date(trade.created_at),
        )
    else:
        inner.update(RtnCode=PAYMENT_FAILED, RtnMsg="付款失敗")
    fields = {
        "MerchantID": trade.merchant_id,
        "Timestamp": str(int(time.time())),
        "RqID": uuid.uuid4().hex.upper(),
        "Revision": "1",
        "RtnCode": "1",
        "RtnMsg": "Succeeded",
        "Data": opay_encrypt(inner, *creds) if creds else "",
    }
    if trade.platform_id:
        fields = {"MerchantID": fields.pop("MerchantID"), "PlatformID": trade.platform_id, **fields}
    view = {**fields, "Data": inner}
    callbacks.send("opay", trade.return_url, fields, body_format="form", expect="1|OK", readable_view=view)


@bp.get("/opay/wechat/<trade_no>")
def opay_wechat(trade_no: str):
    """WeChat's payment confirmation, simulated: pay, or fail."""
    trade = _trade_for_page(trade_no)
    return render_template("opay_pay.html", trade=trade)


@bp.post("/opay/wechat/<trade_no>")
def opay_wechat_action(trade_no: str):
    """The customer pays or the payment fails; the console may also expire the order."""
    trade = _trade_for_page(trade_no)
    action = request.form.get("action")
    record("opay", "in", "POST", request.path, status_code=200, note=f"WeChat page: {action}",
           request_body=readable({"action": action, "trade_no": trade_no}))  # fmt: skip
    if trade.status != "0" or action not in ("pay", "fail", "expire"):
        abort(409)
    if action == "expire":
        trade.status = "v342"
        trade.last_result = "超過繳費時間"
        db.session.commit()
        return redirect(url_for("sandbox.opay_wechat", trade_no=trade_no, k=trade.page_key), 303)
    if action == "pay":
        trade.status = "1"
        trade.payment_date = utcnow()
        trade.last_result = "交易成功"
    else:
        trade.last_result = "付款失敗"
    db.session.commit()
    notify(trade, paid=action == "pay")
    if trade.client_back_url:
        return redirect(trade.client_back_url, 302)
    return redirect(url_for("sandbox.opay_wechat", trade_no=trade_no, k=trade.page_key), 303)
