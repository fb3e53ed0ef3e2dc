"""Oen Tech: the payment API (seed 001) and the hosted card page of the redirect flow (seed 000)."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime

from flask import abort, g, jsonify, redirect, render_template, request, url_for
from sqlalchemy import update

from sandbox import bp, callbacks, registry, settings
from sandbox.common import (
    UPPER_ALNUM,
    as_int,
    card_brand,
    clean_card_number,
    expiry_passed,
    parse_expiry,
    random_digits,
    random_string,
)
from sandbox.extensions import db, utcnow
from sandbox.journal import luhn_ok, mask, provider_api, readable, record
from sandbox.models import SandboxOenCheckout, SandboxOenSubscription, SandboxOenTransaction

MESSAGES = {
    "S0000": "執行成功",
    "A0001": "未授權",
    "V0001": "請求錯誤",
    "V0002": "交易狀態錯誤",
    "T0001": "交易失敗",
    "T0002": "安全碼 CVV 錯誤",
    "T0003": "卡片過期",
    "T0004": "額度不足",
    "T0005": "拒絕授權",
    "F0001": "系統錯誤",
}
HTTP_STATUS = {"S": 200, "A": 401, "V": 400, "T": 400, "F": 500}
PAGE_SIZE = 50

# The test cards of the guide and the API reference.
CARD_OK = "4242424242424242"
CARD_FAILS = "4012888818888333"
CARDS_3DS = ("4000000000002503", "5200000000002151")


def answer(code: str, data: dict | None = None, detail: str = ""):
    """Oen's envelope: {"code", "data", "message"}; the HTTP status follows the code's family."""
    message = "" if code == "S0000" else MESSAGES[code] + (f": {detail}" if detail else "")
    return jsonify({"code": code, "data": data if data is not None else {}, "message": message}), HTTP_STATUS[code[0]]


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 UTC with milliseconds, as Oen writes dates."""
    if moment is None:
        return None
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def oen_id() -> str:
    """A 27-character id like Oen's checkout and transaction ids."""
    return "2" + random_string(26)


def dated_id(prefix: str) -> str:
    """P20240412CIK7KPPH-style ids (transaction HID, subscription)."""
    return prefix + utcnow().strftime("%Y%m%d") + random_string(8, UPPER_ALNUM)


def bearer_merchants() -> set[str]:
    """The merchantIds whose CRM token (as issued by the sandbox's registry) is the request's bearer token."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return set()
    return registry.oen_merchants_of_token(token.strip())


def authorise(require_merchant_id: bool = True):
    """(merchantIds of the token, JSON body, error answer or None), checking bearer token and merchantId."""
    merchants = bearer_merchants()
    body = request.get_json(silent=True) if request.method != "GET" else {}
    g.sandbox_readable = body
    if not merchants:
        return merchants, body, answer("A0001", detail="Bearer token 無效")
    if not isinstance(body, dict):
        return merchants, body, answer("V0001", detail="body 必須是 JSON 物件 (Content-Type: application/json)")
    if require_merchant_id and body.get("merchantId") not in merchants:
        return merchants, body, answer("A0001", detail="token 不屬於此 merchantId")
    return merchants, body, None


def product_details_ok(details) -> bool:
    """productDetails: a list of {productionCode, description, quantity, unit, unitPrice}."""
    if details is None:
        return True
    if not isinstance(details, list):
        return False
    for item in details:
        if not isinstance(item, dict):
            return False
        if not all(isinstance(item.get(k), str) and item.get(k) for k in ("productionCode", "description", "unit")):
            return False
        if as_int(item.get("quantity")) is None or as_int(item.get("unitPrice")) is None:
            return False
    return True


def masked_card(number: str) -> str:
    return number[:6] + "*" * (len(number) - 10) + number[-4:]


def transaction_json(txn: SandboxOenTransaction, *, with_transaction_id: bool = True) -> dict:
    """A transaction as the API reference's Resources - Transaction shows it; optional fields absent when empty."""
    checkout = db.session.get(SandboxOenCheckout, txn.checkout_id) if txn.checkout_id else None
    number = checkout.card_number if checkout and checkout.card_number else ""
    payment = {
        "cardType": checkout.card_type if checkout else "",
        "cardNum": number if settings.oen_full_card_number() else masked_card(number),
        "method": "card",
    }
    if checkout and checkout.card_name:
        payment["cardName"] = checkout.card_name
    data = {"id": txn.hid}
    if with_transaction_id:
        data["transactionId"] = txn.transaction_id
    data.update(
        action="onetime",
        amount=txn.amount,
        fee=txn.fee,
        paymentInfo=payment,
        status=txn.status,
        userName=txn.user_name,
        userEmail=txn.user_email,
        orderId=txn.order_id,
        note=txn.note,
        createdAt=iso(txn.created_at),
        refundAmount=txn.refund_amount,
        refundedAt=iso(txn.refunded_at),
    )
    return {key: value for key, value in data.items() if value not in (None, "")}


# ---------------------------------------------------------------- API


@bp.post("/oen/api/checkout-token")
@provider_api("oen")
def oen_checkout_token():
    """Step 1 of the redirect flow: an id for the hosted card page."""
    _merchants, body, error = authorise()
    if error:
        return error
    for name in ("successUrl", "failureUrl"):
        value = body.get(name)
        if not isinstance(value, str) or not value.startswith(("http://", "https://")):
            return answer("V0001", detail=f"{name} 必須是 http(s) 網址")
    custom_id = body.get("customId")
    if custom_id is not None and not isinstance(custom_id, str):
        return answer("V0001", detail="customId 必須是字串")
    checkout = SandboxOenCheckout(
        id=oen_id(),
        merchant_id=body["merchantId"],
        success_url=body["successUrl"],
        failure_url=body["failureUrl"],
        custom_id=custom_id,
    )
    db.session.add(checkout)
    db.session.commit()
    return answer("S0000", {"id": checkout.id})


@bp.post("/oen/api/token/transactions")
@provider_api("oen")
def oen_charge():
    """A charge on a card token; amounts under 100 fail (the testing rule)."""
    _merchants, body, error = authorise()
    if error:
        return error
    amount = body.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, int) or amount < 1:
        return answer("V0001", detail="amount 必須是正整數")
    if body.get("currency", "TWD") != "TWD":
        return answer("V0001", detail="currency 只接受 TWD")
    for name in ("token", "orderId"):
        if not isinstance(body.get(name), str) or not body[name]:
            return answer("V0001", detail=f"缺少 {name}")
    if not product_details_ok(body.get("productDetails")):
        return answer("V0001", detail="productDetails 格式錯誤")
    checkout = db.session.execute(
        db.select(SandboxOenCheckout).filter_by(token=body["token"], merchant_id=body["merchantId"], state="succeeded")
    ).scalar_one_or_none()
    if checkout is None:
        return answer("V0001", detail="token 無效")
    txn = SandboxOenTransaction(
        hid=dated_id("P"),
        transaction_id=oen_id(),
        merchant_id=body["merchantId"],
        order_id=body["orderId"],
        amount=amount,
        fee=round(amount * 0.03),
        checkout_id=checkout.id,
        user_name=body.get("userName") if isinstance(body.get("userName"), str) else None,
        user_email=body.get("userEmail") if isinstance(body.get("userEmail"), str) else None,
        product_details=body.get("productDetails"),
        status="failed" if amount < 100 else "charged",
        auth_code=None if amount < 100 else random_digits(6),
    )
    if amount < 100:
        txn.fee = 0
    db.session.add(txn)
    db.session.commit()
    if txn.status == "failed":
        return answer("T0001", detail="測試環境金額小於 100 元的交易一律失敗")
    return answer("S0000", {"id": txn.hid, "authCode": txn.auth_code})


def _page_token(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"after:{last_id}".encode()).decode().rstrip("=")


def _after_id(token: str) -> int | None:
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, ValueError):
        return None
    prefix, _, number = text.partition(":")
    return int(number) if prefix == "after" and number.isdigit() else None


@bp.get("/oen/api/order/<order_id>/transactions")
@provider_api("oen")
def oen_order_transactions(order_id: str):
    """The transactions of an order, 50 a page; the next page needs the previous answer's page token.

    The reference names neither the token's field nor its parameter: the sandbox answers it as both data.page and
    data.pageToken and takes it back as ?page= or ?pageToken=.
    """
    merchants, _body, error = authorise(require_merchant_id=False)
    if error:
        return error
    query = db.select(SandboxOenTransaction).where(
        SandboxOenTransaction.order_id == order_id, SandboxOenTransaction.merchant_id.in_(merchants)
    )
    token = request.args.get("pageToken") or request.args.get("page")
    if token:
        after = _after_id(token)
        if after is None:
            return answer("V0001", detail="page token 無效")
        query = query.where(SandboxOenTransaction.id > after)
    rows = list(db.session.execute(query.order_by(SandboxOenTransaction.id).limit(PAGE_SIZE + 1)).scalars())
    data: dict = {"transactions": [transaction_json(txn) for txn in rows[:PAGE_SIZE]]}
    if len(rows) > PAGE_SIZE:
        data["page"] = data["pageToken"] = _page_token(rows[PAGE_SIZE - 1].id)
    return answer("S0000", data)


@bp.post("/oen/api/refunds/<hid>")
@provider_api("oen")
def oen_refund(hid: str):
    """One refund per card transaction, 1 … the original amount, by HID (never transactionId)."""
    _merchants, body, error = authorise()
    if error:
        return error
    txn = db.session.execute(
        db.select(SandboxOenTransaction).filter_by(hid=hid, merchant_id=body["merchantId"])
    ).scalar_one_or_none()
    if txn is None:
        return answer("V0001", detail="查無此交易 HID (transactionHid，不是 transactionId)")
    amount = body.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, int) or not 1 <= amount <= txn.amount:
        return answer("V0001", detail=f"amount 必須是 1 到 {txn.amount} 的整數")
    if not product_details_ok(body.get("productDetails")):
        return answer("V0001", detail="productDetails 格式錯誤")
    remit = body.get("remitInfo")
    if remit is not None:
        names = ("bankCode", "bankName", "branchCode", "branchName", "account", "accountName")
        if not isinstance(remit, dict) or not all(isinstance(remit.get(k), str) and remit[k] for k in names):
            return answer("V0001", detail="remitInfo 格式錯誤")
    reason = body.get("reason") if isinstance(body.get("reason"), str) else None
    # One refund per transaction, even when two arrive at once: only one UPDATE can see "charged".
    done = db.session.execute(
        update(SandboxOenTransaction)
        .where(SandboxOenTransaction.id == txn.id, SandboxOenTransaction.status == "charged")
        .values(status="refunded", refund_amount=amount, refunded_at=utcnow(), note=reason or txn.note)
    )
    db.session.commit()
    if not done.rowcount:
        return answer("V0002", detail=f"交易狀態為 {txn.status}，每筆交易限退款一次")
    db.session.refresh(txn)
    return answer("S0000", transaction_json(txn, with_transaction_id=False))


@bp.put("/oen/api/subscriptions/<subscription_id>")
@provider_api("oen")
def oen_cancel_subscription(subscription_id: str):
    """Cancel a subscription (created when a card is bound on the hosted page)."""
    _merchants, body, error = authorise()
    if error:
        return error
    subscription = db.session.get(SandboxOenSubscription, subscription_id)
    if subscription is None or subscription.merchant_id != body["merchantId"]:
        return answer("V0001", detail="查無此定期定額")
    if subscription.status != "active":
        return answer("V0002", detail=f"定期定額狀態為 {subscription.status}")
    subscription.status = "cancelled"
    subscription.cancelled_at = utcnow()
    if isinstance(body.get("reason"), str):
        subscription.reason = body["reason"]
    db.session.commit()
    data = {
        "id": subscription.id,
        "status": subscription.status,
        "period": subscription.period,
        "startedAt": iso(subscription.started_at),
        "cancelledAt": iso(subscription.cancelled_at),
        "reason": subscription.reason,
        "createdAt": iso(subscription.created_at),
    }
    return answer("S0000", {key: value for key, value in data.items() if value is not None})


# ---------------------------------------------------------------- hosted card page


def _open_checkout(merchant_id: str, checkout_id: str) -> SandboxOenCheckout:
    checkout = db.session.get(SandboxOenCheckout, checkout_id)
    if checkout is None or checkout.merchant_id != merchant_id:
        abort(404)
    return checkout


def _finish(checkout: SandboxOenCheckout, success: bool, message: str | None):
    """Bind the card (or not), POST the token webhook, and send the browser back to the merchant."""
    checkout.state = "succeeded" if success else "failed"
    checkout.transaction_id = oen_id()
    checkout.completed_at = utcnow()
    if success:
        checkout.token = random_string(40)
        checkout.subscription_id = dated_id("S")
        db.session.add(SandboxOenSubscription(id=checkout.subscription_id, merchant_id=checkout.merchant_id))
    db.session.commit()
    payload = {
        "success": success,
        "purpose": "token",
        "merchantId": checkout.merchant_id,
        "transactionId": checkout.transaction_id,
        "message": message,
        "customId": checkout.custom_id,
        "token": checkout.token,
        "id": checkout.id,
    }
    payload = {key: value for key, value in payload.items() if value is not None or key == "message"}
    target = checkout.success_url if success else checkout.failure_url
    merchant = registry.oen_merchant(checkout.merchant_id)
    url = settings.callback_url("oen", merchant.webhook_url if merchant else None)
    callbacks.send("oen", url, payload, body_format="json")
    return redirect(target, 302)


def _render_card_page(checkout: SandboxOenCheckout, error: str | None = None, status: int = 200):
    return (
        render_template("oen_card.html", checkout=checkout, error=error, form=request.form),
        status,
    )


@bp.route("/oen/checkout/<merchant_id>/subscription/create/<checkout_id>", methods=["GET", "POST"])
def oen_card_page(merchant_id: str, checkout_id: str):
    """Oen's card-binding page: the documented test cards decide what happens."""
    checkout = _open_checkout(merchant_id, checkout_id)
    if checkout.state != "open":
        return render_template("message.html", title="Oen", message="此綁卡連結已使用過 (already used)"), 409
    if request.method == "GET":
        return _render_card_page(checkout)
    number = clean_card_number(request.form.get("card_number", ""))
    expiry = parse_expiry(request.form.get("expiry", ""))
    cvc = request.form.get("cvc", "").strip()
    shown = {
        "card_number": number,
        "expiry": request.form.get("expiry", ""),
        "card_name": request.form.get("card_name"),
    }
    record("oen", "in", "POST", request.path, status_code=200, request_body=readable(shown), note="card page")
    documented = number in (CARD_OK, CARD_FAILS, *CARDS_3DS)  # 4012 8888 1888 8333 itself fails the Luhn check
    if not (number.isdigit() and 13 <= len(number) <= 19 and (documented or luhn_ok(number))):
        return _render_card_page(checkout, "卡號格式錯誤 Invalid card number", 400)
    if expiry is None:
        return _render_card_page(checkout, "有效期限格式為 MM/YY", 400)
    if not (cvc.isdigit() and len(cvc) in (3, 4)):
        return _render_card_page(checkout, "安全碼為 3 或 4 位數字", 400)
    checkout.card_number = number
    checkout.card_type = card_brand(number)
    checkout.card_name = (request.form.get("card_name") or "").strip()[:100] or None
    if expiry_passed(*expiry):
        return _finish(checkout, False, "T0003 卡片過期")
    if number in CARDS_3DS:
        checkout.state = "3ds"
        db.session.commit()
        return redirect(url_for("sandbox.oen_3ds", merchant_id=merchant_id, checkout_id=checkout_id), 303)
    if number == CARD_OK:
        return _finish(checkout, True, None)
    if number == CARD_FAILS:
        return _finish(checkout, False, "T0005 拒絕授權")
    return _finish(checkout, False, "T0005 拒絕授權 (測試環境只接受文件列出的測試卡)")


@bp.route("/oen/checkout/<merchant_id>/subscription/create/<checkout_id>/3ds", methods=["GET", "POST"])
def oen_3ds(merchant_id: str, checkout_id: str):
    """A simulated 3-D Secure challenge for the 3-D test cards."""
    checkout = _open_checkout(merchant_id, checkout_id)
    if checkout.state != "3ds":
        abort(404)
    if request.method == "GET":
        return render_template("oen_3ds.html", checkout=checkout, last4=checkout.card_number[-4:])
    approved = request.form.get("decision") == "approve"
    record("oen", "in", "POST", request.path, status_code=200, request_body=readable(mask(dict(request.form))))
    return _finish(checkout, approved, None if approved else "3-D 驗證失敗")
