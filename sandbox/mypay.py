"""MyPay Link, agent mode, voucher variant (seed 002): api/orders, PayPage, callbacks, api/queryorder, api/refund."""

from __future__ import annotations

import json
import re
import secrets
import time
from datetime import timedelta

from flask import abort, current_app, g, jsonify, redirect, render_template, request, url_for
from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import make_transient

from sandbox import bp, callbacks, registry, settings
from sandbox.common import UPPER_ALNUM, as_int, clean_card_number, random_digits, random_string, taipei_now
from sandbox.crypto import CipherError, mypay_decrypt
from sandbox.extensions import db
from sandbox.journal import last4, provider_api, readable, record
from sandbox.models import SandboxMypayOrder, SandboxMypayRefund

FIRST_UID = 95201
UID_ATTEMPTS = 25
CALLBACK_ATTEMPTS = 5  # "five times in all", then MyPay e-mails the merchant
PAID = ("250", "600")

# Appendix 1: pfn by number or code.
PFN_CODES = {
    "1": "CREDITCARD", "3": "CSTORECODE", "4": "WEBATM", "6": "E_COLLECTION", "9": "ABROAD", "10": "ALIPAY",
    "13": "WECHAT", "14": "DIRECTDEBIT", "15": "LINEPAYON", "16": "LINEPAYOFF", "19": "WECHATOFF", "20": "APPLEPAY",
    "21": "GOOGLEPAY", "23": "C_INSTALLMENT", "24": "C_REDEEM", "25": "CARDLESS", "27": "PION", "28": "PIOFF",
    "29": "AMEX", "31": "JKOON", "32": "JKOOF", "33": "ALIPAYOFF", "34": "M_RECHARGE", "36": "AFP", "37": "CASH",
    "38": "EASYWALLETON", "39": "EASYWALLETOFF", "40": "EASYCARD", "41": "IPASS", "42": "ICASH", "43": "BARCODE",
}  # fmt: skip
PFN_NAMES = set(PFN_CODES.values()) | {"UNIONPAY", "SVC", "EACH", "JKOOFF", "MobilePayAll"}
ALL_METHODS = ("CREDITCARD", "E_COLLECTION", "CSTORECODE")
# The payment methods that MyPay refunds at once; the others are refunded by hand.
INSTANT_REFUND = {"CREDITCARD", "AMEX", "LINEPAYON", "PION", "JKOON", "WECHAT", "ALIPAY", "EASYWALLETON", "CASH",
                  "GOOGLEPAY", "APPLEPAY"}  # fmt: skip

# Appendix 6: number -> (expiry MMYY or None for any, CVC or None for any, succeeds, 3-D password or None).
# 5204247750001471 is listed both as a 高鉅 success card and as the 高鉅 failure card: the sandbox makes it fail.
TEST_CARDS = {
    "4938170130000003": ("1228", "985", True, "nccc1234"),
    "5430450100001219": ("1218", "214", True, None),
    "3560500100001218": ("1218", "023", True, None),
    "4058650600065507": ("1022", "395", True, None),
    "5433760200078009": ("1022", "597", True, None),
    "3566703300032801": ("0922", "033", True, None),
    "4003618704777729": (None, None, True, "1234567"),
    "4761120010000492": ("1122", "533", True, None),
    "5204247750001471": ("1122", "111", False, None),
    "4907060600015101": ("1226", "905", True, None),
}
CARD_TYPE = (("35", "3"), ("34", "4"), ("37", "4"), ("4", "1"), ("5", "2"))  # card_type: 1 VISA 2 Master 3 JCB 4 AMEX


class Refused(Exception):
    """A command MyPay refuses, with its message."""


def stamp(moment=None) -> str:
    return (moment or taipei_now()).strftime("%Y%m%d%H%M%S")


def known_store(store_uid) -> bool:
    """A store registered under the agent (sandbox/registry.py)."""
    if not isinstance(store_uid, str) or not store_uid:
        return False
    return registry.mypay_store(store_uid) is not None


def agent_keys() -> list[str]:
    """The agent's key, and its next key while keys rotate."""
    config = current_app.config
    return [key for key in (config.get("SANDBOX_MYPAY_AGENT_KEY"), config.get("SANDBOX_MYPAY_AGENT_NEXT_KEY")) if key]


# ---------------------------------------------------------------- the agent endpoint


@bp.post("/mypay/api/agent")
@provider_api("mypay")
def mypay_agent():
    """agent_uid + service + encry_data (form fields, or a JSON body as in the document's JavaScript sample)."""
    fields = request.get_json(silent=True) if request.is_json else request.form.to_dict()
    if not isinstance(fields, dict):
        return jsonify(code="100", msg="資料格式錯誤: body 必須是表單欄位或 JSON 物件")
    if fields.get("agent_uid") != current_app.config.get("SANDBOX_MYPAY_AGENT_UID"):
        return jsonify(code="100", msg="經銷商商務代號錯誤")
    service = data = None
    for key in agent_keys():
        try:
            service = mypay_decrypt(str(fields.get("service", "")), key)
            data = mypay_decrypt(str(fields.get("encry_data", "")), key)
            break
        except CipherError:
            service = data = None
    g.sandbox_readable = {"agent_uid": fields.get("agent_uid"), "service": service, "encry_data": data}
    if not isinstance(service, dict) or not isinstance(data, dict):
        return jsonify(code="100", msg="解密失敗: service 與 encry_data 須以經銷商金鑰 AES-256-CBC 加密")
    if service.get("service_name") != "api":
        return jsonify(code="100", msg="service_name 錯誤")
    command = service.get("cmd")
    if command == "api/orders":
        return create_order(data)
    if command == "api/queryorder":
        return query_order(data)
    if command == "api/refund":
        return refund_order(data)
    return jsonify(code="100", msg=f"不支援的 cmd: {command!r}")


def _voucher_total(vouchers, kind: str, paid: bool) -> int:
    if vouchers in (None, ""):
        return 0
    if not isinstance(vouchers, list):
        raise Refused(f"{kind} 必須是陣列")
    total = 0
    for voucher in vouchers:
        if not isinstance(voucher, dict):
            raise Refused(f"{kind} 的每一項必須是物件")
        product_id, serial = voucher.get("product_id"), voucher.get("serial_number")
        if not isinstance(product_id, str) or not product_id or len(product_id.encode()) > 32:
            raise Refused(f"{kind}.product_id 必填且最長 32 bytes")
        if not isinstance(serial, str) or not serial:
            raise Refused(f"{kind}.serial_number 必填")
        cost = as_int(voucher.get("cost"))
        if cost is None or cost <= 0:
            raise Refused(f"{kind}.cost 必須是正整數")
        if paid and voucher.get("refund_return_type", "1") not in ("1", "2", "3", 1, 2, 3):
            raise Refused(f"{kind}.refund_return_type 錯誤")
        total += cost
    return total


def _check_serials_unused(store_uid: str, vouchers: list) -> None:
    """A voucher serial is unique per product group of a store: one already spent on a paid order is refused."""
    wanted = {(v["product_id"], v["serial_number"]) for v in vouchers}
    if not wanted:
        return
    paid_orders = db.select(SandboxMypayOrder).where(
        SandboxMypayOrder.store_uid == store_uid, SandboxMypayOrder.prc.in_(PAID)
    )
    for order in db.session.execute(paid_orders).scalars():
        if _refunded_total(order) >= order.actual_cost:
            continue
        used = {
            (v.get("product_id"), v.get("serial_number"))
            for v in (order.request.get("voucher_paid") or []) + (order.request.get("voucher_free") or [])
        }
        clash = wanted & used
        if clash:
            product_id, serial = sorted(clash)[0]
            raise Refused(f"票券 {product_id}/{serial} 已於訂單 {order.order_id} 使用")


# api/orders' e-invoice fields (the document's 『電子發票…』 value tables), kept with the order and shown on its page.
INVOICE_REQUEST_FIELDS = (
    "issue_invoice_state",
    "invoice_ratetype",
    "invoice_input_type",
    "invoice_cloud_type",
    "invoice_tax_id",
    "invoice_mobile_code",
    "invoice_natural_person",
    "invoice_love_code",
    "invoice_b2b_title",
    "invoice_b2b_id",
    "invoice_b2b_address",
)


def _check_invoice(data: dict) -> None:
    """The e-invoice fields against the document's value tables."""

    def value(name: str) -> str:
        raw = data.get(name)
        return "" if raw is None else str(raw)

    for name, allowed in (
        ("issue_invoice_state", ("0", "1", "2")),
        ("invoice_ratetype", ("1", "2", "3")),
        ("invoice_input_type", ("1", "2", "3")),
        ("invoice_cloud_type", ("2", "3", "4")),
    ):
        if value(name) and value(name) not in allowed:
            raise Refused(f"{name} 錯誤: {value(name)}")
    input_type, cloud_type = value("invoice_input_type"), value("invoice_cloud_type")
    if input_type == "3":
        raise Refused("PayPage 交易不可使用實體發票 (invoice_input_type 3)")
    if input_type == "1" and cloud_type == "2" and not re.fullmatch(r"/[0-9A-Z.+\-]{7}", value("invoice_mobile_code")):
        raise Refused("invoice_mobile_code 手機條碼格式錯誤")
    if (
        input_type == "1"
        and cloud_type == "3"
        and not re.fullmatch(r"[A-Z]{2}[0-9]{14}", value("invoice_natural_person"))
    ):
        raise Refused("invoice_natural_person 自然人憑證條碼格式錯誤")
    if input_type == "1" and value("invoice_tax_id") and not re.fullmatch(r"[0-9]{8}", value("invoice_tax_id")):
        raise Refused("invoice_tax_id 統一編號格式錯誤")
    if input_type == "2" and not re.fullmatch(r"[0-9]{3,7}", value("invoice_love_code")):
        raise Refused("invoice_love_code 愛心碼格式錯誤")


def validate_order(data: dict) -> int:
    """The api/orders checks; returns cost."""
    for name in ("store_uid", "user_id", "order_id", "ip", "items", "cost"):
        if data.get(name) in (None, "", []):
            raise Refused(f"缺少必填欄位 {name}")
    if not known_store(data["store_uid"]):
        raise Refused("特約商店代碼錯誤")
    if not isinstance(data["order_id"], str) or len(data["order_id"].encode()) > 50:
        raise Refused("order_id 必須是字串且最長 50 bytes")
    items = data["items"]
    if not isinstance(items, list):
        raise Refused("items 必須是陣列")
    items_total = 0
    for item in items:
        if not isinstance(item, dict) or not item.get("id") or not item.get("name"):
            raise Refused("每個商品須有 id、name、cost、amount、total")
        unit, quantity, total = (as_int(item.get(name)) for name in ("cost", "amount", "total"))
        if unit is None or quantity is None or total is None or quantity < 1 or unit < 0:
            raise Refused(f"商品 {item.get('id')} 的 cost、amount、total 必須是整數")
        if unit * quantity != total:
            raise Refused(f"商品 {item.get('id')} 的 total 不等於 cost × amount")
        items_total += total
    voucher_type = str(data.get("voucher_type", "0"))
    if voucher_type not in ("0", "1", "2"):
        raise Refused("voucher_type 必須是 0、1 或 2")
    paid = _voucher_total(data.get("voucher_paid"), "voucher_paid", paid=True)
    free = _voucher_total(data.get("voucher_free"), "voucher_free", paid=False)
    if voucher_type == "0" and (paid or free):
        raise Refused("voucher_type 為 0 (不使用折價券模式) 卻帶了折價券")
    cost = as_int(data["cost"])
    if cost is None or cost < 1:
        raise Refused("cost 必須是正整數")
    expected = items_total - paid - free  # shipping, if any, is one of the items: the fields have no other place
    if cost != expected:
        raise Refused(f"cost 錯誤: 物品總價 {items_total} - 折價券 {paid + free} = {expected}, 不是 {cost}")
    pfn = str(data.get("pfn", "all") or "all")
    if pfn not in ("0", "all") and pfn not in PFN_CODES and pfn not in PFN_NAMES:
        raise Refused(f"pfn 錯誤: {pfn}")
    if data.get("currency", "TWD") not in ("TWD", "CNY"):
        raise Refused("currency 錯誤")
    for name in ("success_returl", "failure_returl"):
        value = data.get(name)
        if value not in (None, "") and not (isinstance(value, str) and value.startswith(("http://", "https://"))):
            raise Refused(f"{name} 必須是 http(s) 網址")
    _check_invoice(data)
    vouchers = (data.get("voucher_paid") or []) + (data.get("voucher_free") or [])
    _check_serials_unused(data["store_uid"], vouchers)
    return cost


def create_order(data: dict):
    """api/orders: the PayPage order; answers code/msg/url/uid/key."""
    try:
        cost = validate_order(data)
    except Refused as refused:
        return jsonify(code="100", msg=f"資料錯誤: {refused}")
    pfn = str(data.get("pfn", "all") or "all")
    for attempt in range(UID_ATTEMPTS):  # uids are sequential; concurrent workers may race for the next one
        if attempt:
            time.sleep(secrets.randbelow(20) / 1000)  # spread the racers out
        uid = (db.session.scalar(db.select(func.max(SandboxMypayOrder.uid))) or FIRST_UID - 1) + 1
        order = SandboxMypayOrder(
            uid=uid,
            key=secrets.token_hex(16),
            store_uid=data["store_uid"],
            order_id=data["order_id"],
            user_id=str(data["user_id"]),
            cost=cost,
            currency=data.get("currency", "TWD"),
            pfn=PFN_CODES.get(pfn, pfn),
            voucher_type=str(data.get("voucher_type", "0")),
            request=data,
        )
        db.session.add(order)
        try:
            db.session.commit()
            break
        except IntegrityError:
            db.session.rollback()
            exists = db.session.execute(
                db.select(SandboxMypayOrder).filter_by(store_uid=data["store_uid"], order_id=data["order_id"])
            ).scalar_one_or_none()
            if exists is not None:
                return jsonify(code="100", msg="資料錯誤: order_id 重複")
    else:
        return jsonify(code="400", msg="系統錯誤")
    url = url_for("sandbox.mypay_paypage", uid=order.uid, _external=True)
    return jsonify(code="200", msg="資料正確", url=url, uid=order.uid, key=order.key)


def _find_order(data: dict) -> SandboxMypayOrder:
    uid = as_int(data.get("uid"))
    order = db.session.get(SandboxMypayOrder, uid) if uid is not None else None
    key = data.get("key")
    if order is None or not isinstance(key, str) or not secrets.compare_digest(key.encode(), order.key.encode()):
        raise Refused("查無訂單: uid 或 key 錯誤")
    return order


def _refunded_total(order: SandboxMypayOrder) -> int:
    return db.session.scalar(db.select(func.coalesce(func.sum(SandboxMypayRefund.cost), 0)).filter_by(uid=order.uid))


def order_fields(order: SandboxMypayOrder) -> dict:
    """The transaction's fields, as the callbacks and api/queryorder carry them."""
    req = order.request
    card = order.method == "CREDITCARD" and order.cardno
    if "is_agent_charge" in req:
        agent_charge = as_int(req.get("is_agent_charge")) or 0
    else:
        agent_charge = int(
            bool(as_int(req.get("agent_charge_fee")))
            or as_int(req.get("agent_sms_fee_type")) == 1
            or as_int(req.get("agent_charge_fee_type")) == 1
        )
    content = order.result_content
    fields = {
        "uid": order.uid,
        "key": order.key,
        "prc": order.prc,
        "finishtime": order.finishtime or "",
        "cardno": order.cardno or "",
        "acode": order.acode or "",
        "card_type": order.card_type or "0",
        "issuing_bank": "合作金庫" if card else "",
        "issuing_bank_uid": "006" if card else "",
        "is_agent_charge": agent_charge,
        "transaction_mode": 1 if order.method else 0,
        "supplier_name": "高鉅科技" if order.method else "",
        "supplier_code": "T0" if order.method else "",
        "order_id": order.order_id,
        "user_id": order.user_id,
        "cost": order.cost,
        "currency": order.currency,
        "actual_cost": order.actual_cost,
        "actual_currency": order.currency,
        "voucher_paid": req.get("voucher_paid") or [],
        "voucher_free": req.get("voucher_free") or [],
        "price": 0,
        "actual_price": 0,
        "recharge_code": "",
        "love_cost": 0,
        "retmsg": order.retmsg,
        "pfn": order.method or order.pfn,
        "trans_type": 1,
        "redeem": "",
        "payment_name": "",
        "nois": "",
        "group_id": "",
        "bank_id": "822" if order.method == "E_COLLECTION" else "",
        "expired_date": order.expired_date or "",
        "result_type": 4 if content is not None else 0,
        "result_content_type": order.method or "",
        "result_content": json.dumps(content, ensure_ascii=False) if content is not None else "",
    }
    if order.method == "CSTORECODE":
        fields["result_content_type"] = "IBON"
    for number in range(5):
        fields[f"echo_{number}"] = str(req.get(f"echo_{number}", "") or "")
    return fields


def query_order(data: dict):
    """api/queryorder: the order's fields plus refund_order[] and cancel_order[]."""
    try:
        order = _find_order(data)
    except Refused as refused:
        return jsonify(code="100", msg=str(refused))
    fields = order_fields(order)
    paid = order.prc in PAID
    fields["appropriation_date"] = (taipei_now() + timedelta(days=7)).strftime("%Y%m%d") if paid else ""
    fields["invoice_state"] = 0
    refunds = db.session.execute(db.select(SandboxMypayRefund).filter_by(uid=order.uid)).scalars()
    fields["refund_order"] = [
        {
            "uid": refund.refund_uid,
            "prc": "230",
            "cost": refund.cost,
            "currency": order.currency,
            "actual_cost": refund.cost,
            "actual_currency": order.currency,
            "voucher_paid": refund.voucher_paid,
            "retmsg": "退款完成",
            "finishtime": refund.finishtime,
            "appropriation_date": fields["appropriation_date"],
            "invoice_state": 0,
            "invoice_allowance": [],
        }
        for refund in refunds
    ]
    fields["cancel_order"] = []
    return jsonify(fields)


def refund_order(data: dict):
    """api/refund: with vouchers only a full refund (paid amount + every paid voucher); B200 or B500."""
    try:
        order = _find_order(data)
    except Refused as refused:
        return jsonify(code="B500", msg=str(refused), uid=str(data.get("uid", "")), key="")
    try:
        row = _refund(order, data)
    except Refused as refused:
        return jsonify(code="B500", msg=f"執行失敗: {refused}", uid=str(order.uid), key=order.key)
    reply = {"code": "B200", "msg": "執行成功", "uid": str(order.uid), "key": order.key}
    if row is not None:
        reply["row_data"] = row
    return jsonify(reply)


def _refund(order: SandboxMypayOrder, data: dict) -> dict | None:
    if data.get("store_uid") != order.store_uid:
        raise Refused("store_uid 與訂單不符")
    if order.prc not in PAID:
        raise Refused(f"訂單狀態 {order.prc} 不可退款")
    cost = as_int(data.get("cost"))
    if cost is None or cost < 1:
        raise Refused("cost 必須是正整數")
    already = _refunded_total(order)
    if already >= order.actual_cost:
        raise Refused("此訂單已全額退款")
    listed = data.get("voucher_paid") or []
    if not isinstance(listed, list) or not all(isinstance(v, dict) for v in listed):
        raise Refused("voucher_paid 必須是陣列")
    listed_keys = {(v.get("product_id"), v.get("serial_number")) for v in listed}
    order_paid = order.request.get("voucher_paid") or []
    paid_keys = {(v.get("product_id"), v.get("serial_number")) for v in order_paid}
    if order.voucher_type != "0":
        if cost != order.actual_cost or already:
            raise Refused(f"折價券模式只能全額退款: cost 須為實際支付金額 {order.actual_cost}")
        if listed_keys != paid_keys:
            raise Refused("折價券模式全額退款須列出所有有償票券 (voucher_paid)")
    else:
        if listed_keys:
            raise Refused("此訂單未使用折價券模式")
        if cost > order.actual_cost - already:
            raise Refused(f"退款金額超過可退金額 {order.actual_cost - already}")
    if data.get("invoice_state") not in (None, "", "4", "6", 4, 6):
        raise Refused("invoice_state 必須是 4 (作廢) 或 6 (折讓)")
    items = data.get("items")
    if items not in (None, ""):
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise Refused("items 必須是陣列")
        if sum(as_int(i.get("total")) or 0 for i in items) != cost:
            raise Refused("退款項目總金額須與退款金額一致")
    method = order.method or order.pfn
    instant = method in INSTANT_REFUND
    finishtime = stamp()
    refund = SandboxMypayRefund(
        uid=order.uid,
        cost=cost,
        voucher_paid=[v for v in order_paid if (v.get("product_id"), v.get("serial_number")) in listed_keys],
        refund_type=1 if instant else 3,
        invoice_state=str(data.get("invoice_state") or "4"),
        finishtime=finishtime,
        expected_refund_date="" if instant else (taipei_now() + timedelta(days=7)).strftime("%Y%m%d"),
    )
    for attempt in range(UID_ATTEMPTS):  # refund uids are sequential too: retry a lost race
        if attempt:
            time.sleep(secrets.randbelow(20) / 1000)
        last = db.session.scalar(db.select(func.max(SandboxMypayRefund.refund_uid)))
        refund.refund_uid = (last or FIRST_UID + 500) + 1
        db.session.add(refund)
        try:
            db.session.commit()
            break
        except IntegrityError:
            db.session.rollback()
            make_transient(refund)
    else:
        raise Refused("系統忙碌，請稍後再試")
    if not instant:
        return None
    req = order.request
    row = {
        "uid": order.uid,
        "refund_uid": refund.refund_uid,
        "key": order.key,
        "prc": "230",
        "finishtime": finishtime,
        "order_id": order.order_id,
        "user_id": order.user_id,
        "cost": cost,
        "currency": order.currency,
        "actual_cost": cost,
        "voucher_paid": refund.voucher_paid,
        "actual_currency": order.currency,
        "retmsg": "退款完成",
        "pfn": method,
        "payment_name": "",
        "nois": "",
        "group_id": "",
        "refund_type": refund.refund_type,
        "expected_refund_date": refund.expected_refund_date,
    }
    for number in range(5):
        row[f"echo_{number}"] = str(req.get(f"echo_{number}", "") or "")
    return row


# ---------------------------------------------------------------- callbacks


def notify(order: SandboxMypayOrder) -> None:
    """POST the transaction's state to the store's report URL; resent until it answers 8888, five times in all."""
    fields = order_fields(order)
    if current_app.config.get("SANDBOX_MYPAY_CALLBACK_FORMAT", "form") == "json":
        payload, body_format = fields, "json"
    else:
        payload = {
            name: json.dumps(value, ensure_ascii=False) if isinstance(value, (list, dict)) else str(value)
            for name, value in fields.items()
        }
        body_format = "form"
    store = registry.mypay_store(order.store_uid)
    callbacks.send(
        "mypay",
        settings.callback_url("mypay", store.callback_url if store else None),
        payload,
        body_format=body_format,
        expect="8888",
        max_attempts=CALLBACK_ATTEMPTS,
    )


def set_state(order: SandboxMypayOrder, prc: str, retmsg: str) -> None:
    """Move the order and tell the merchant."""
    order.prc = prc
    order.retmsg = retmsg
    order.finishtime = stamp()
    if prc in PAID:
        order.actual_cost = order.cost
    db.session.commit()
    notify(order)


# ---------------------------------------------------------------- the PayPage


def _methods(order: SandboxMypayOrder) -> list[str]:
    if order.pfn in ("0", "all"):
        return list(ALL_METHODS)
    return [order.pfn]


def _order_or_404(uid: int) -> SandboxMypayOrder:
    order = db.session.get(SandboxMypayOrder, uid)
    if order is None:
        abort(404)
    return order


def _back_to_shop(order: SandboxMypayOrder):
    """The customer goes back to the shop; the return carries no result (the shop must ask)."""
    target = order.request.get("success_returl" if order.prc in PAID else "failure_returl")
    if target:
        return redirect(target, 302)
    return redirect(url_for("sandbox.mypay_paypage", uid=order.uid), 303)


@bp.get("/mypay/payment/<int:uid>.html")
def mypay_paypage(uid: int):
    """The PayPage: choose card, ATM virtual account or convenience-store code; later, the order's state."""
    order = _order_or_404(uid)
    return render_template(
        "mypay_paypage.html", invoice_fields=INVOICE_REQUEST_FIELDS, order=order, methods=_methods(order), error=None
    )


@bp.post("/mypay/payment/<int:uid>/pay")
def mypay_pay(uid: int):
    """The customer's choice on the PayPage."""
    order = _order_or_404(uid)
    if order.prc != "200":
        abort(409)
    method = request.form.get("method", "")
    shown = {name: value for name, value in request.form.items() if name not in ("cvc", "csrf_token")}
    record(
        "mypay", "in", "POST", request.path, status_code=200, note=f"PayPage: {method}", request_body=readable(shown)
    )
    if method == "abandon":
        set_state(order, "A0002", "消費者放棄交易")
        return _back_to_shop(order)
    if method not in _methods(order):
        abort(400)
    order.method = method
    if method == "CREDITCARD":
        return _pay_by_card(order)
    if method == "E_COLLECTION":
        order.expired_date = _limit(order)
        order.result_content = {"PinCode": "9" + random_digits(13), "LimitDate": order.expired_date, "BankCode": "822"}
        set_state(order, "270", "虛擬帳號取號成功,等待繳費")
    elif method == "CSTORECODE":
        order.expired_date = _limit(order)
        order.result_content = {
            "PinCode": "LLL" + random_string(11, UPPER_ALNUM),
            "LimitDate": order.expired_date,
            "BarCode1": random_string(9, UPPER_ALNUM),
            "BarCode2": random_string(16, UPPER_ALNUM),
            "BarCode3": random_string(15, UPPER_ALNUM),
            "BarcodeEndDate": order.expired_date,
        }
        set_state(order, "260", "超商代碼取號成功,等待繳費")
    else:
        set_state(order, "250", "付款完成")
        return _back_to_shop(order)
    return redirect(url_for("sandbox.mypay_paypage", uid=order.uid), 303)


def _limit(order: SandboxMypayOrder) -> str:
    days = as_int(order.request.get("limit_pay_days")) or 3
    return (taipei_now() + timedelta(days=days)).replace(hour=23, minute=59, second=59).strftime("%Y%m%d%H%M%S")


def _pay_by_card(order: SandboxMypayOrder):
    number = clean_card_number(request.form.get("card_number", ""))
    expiry = request.form.get("expiry", "").replace("/", "").strip()
    cvc = request.form.get("cvc", "").strip()
    card = TEST_CARDS.get(number)
    order.cardno = number[:6] + "******" + number[-4:] if len(number) >= 12 else None
    order.card_type = next((kind for prefix, kind in CARD_TYPE if number.startswith(prefix)), "0")
    if card is None:
        set_state(order, "300", "交易失敗: 測試區只接受附錄六的測試卡")
        return _back_to_shop(order)
    listed_expiry, listed_cvc, succeeds, password = card
    if (listed_expiry and expiry != listed_expiry) or (listed_cvc and cvc != listed_cvc):
        set_state(order, "300", "交易失敗: 有效日期或安全碼錯誤")
        return _back_to_shop(order)
    if password:
        order.pending_card = number
        db.session.commit()
        return redirect(url_for("sandbox.mypay_3ds", uid=order.uid), 303)
    return _card_result(order, succeeds)


def _card_result(order: SandboxMypayOrder, succeeds: bool):
    order.pending_card = None
    if succeeds:
        order.acode = random_string(6, UPPER_ALNUM)
        set_state(order, "250", "付款完成")
    else:
        set_state(order, "300", "交易失敗: 發卡行拒絕")
    return _back_to_shop(order)


@bp.route("/mypay/payment/<int:uid>/3ds", methods=["GET", "POST"])
def mypay_3ds(uid: int):
    """The 3-D Secure password page of the test cards that have one."""
    order = _order_or_404(uid)
    if order.prc != "200" or not order.pending_card:
        abort(404)
    password = TEST_CARDS[order.pending_card][3]
    if request.method == "GET":
        return render_template("mypay_3ds.html", order=order, last4=last4(order.pending_card))
    record("mypay", "in", "POST", request.path, status_code=200, note="PayPage: 3-D password")
    return _card_result(order, secrets.compare_digest(request.form.get("password", ""), password))


@bp.post("/mypay/payment/<int:uid>/offline")
def mypay_offline(uid: int):
    """Sandbox control for ATM / store payments: the customer paid (250) or the code expired (380)."""
    order = _order_or_404(uid)
    if order.prc not in ("260", "270"):
        abort(409)
    if request.form.get("outcome") == "paid":
        set_state(order, "250", "付款完成")
    else:
        set_state(order, "380", "逾期交易")
    return redirect(url_for("sandbox.mypay_paypage", uid=order.uid), 303)
