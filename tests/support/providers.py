"""Shared test data for the provider clients: sample checkouts, the refs kept for them, recorded form bodies."""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from urllib.parse import parse_qsl

from portal.providers.base import CheckoutRef, CheckoutRequest, LineItem, VoucherLine
from portal.providers.crypto import opay_encrypt
from tests.support.accounts import OPAY_IV, OPAY_KEY, OPAY_MERCHANT_ID


def form_of(request) -> dict[str, str]:
    """The form fields of a recorded request body."""
    body = request.body
    text = body.decode("ascii") if isinstance(body, bytes) else body
    return dict(parse_qsl(text, keep_blank_values=True, strict_parsing=True))


def checkout_request(**overrides) -> CheckoutRequest:
    """Two items, shipping 60, no vouchers: 2×350 + 1×240 + 60 = 1000."""
    values = dict(
        reference="CK20240901A1",
        amount=1000,
        items=(LineItem("SKU-1", "手沖咖啡豆", 350, 2), LineItem("SKU-2", "濾杯", 240, 1)),
        shipping_fee=60,
        customer_name="王小明",
        customer_email="ming@example.com",
        customer_id="cust-42",
        customer_ip="203.0.113.7",
        success_url="https://portal.example/pay/tok/return",
        failure_url="https://portal.example/pay/tok/return?failed=1",
        notify_url="https://portal.example/webhooks/opay",
        created_at=datetime(2024, 9, 1, 16, 2, 24),
    )
    values.update(overrides)
    return CheckoutRequest(**values)


def voucher_request(**overrides) -> CheckoutRequest:
    """The MyPay document's example: one item 1000, a paid voucher 50 and a free voucher 50, so 900 is paid."""
    values = dict(
        reference="1234567890",
        amount=900,
        items=(LineItem("1", "好棒棒麻辣鍋湯包", 1000, 1),),
        shipping_fee=0,
        vouchers=(
            VoucherLine("paid", "P01", "P1635306439", "好食券", 50),
            VoucherLine("free", "F01", "F1635306439", "VIP免費券", 50),
        ),
        customer_id="userid",
        customer_ip="192.168.0.1",
    )
    values.update(overrides)
    return checkout_request(**values)


def ref_of(request: CheckoutRequest, **provider_ids) -> CheckoutRef:
    """The CheckoutRef the portal would keep for a request."""
    return CheckoutRef(
        reference=request.reference,
        amount=request.amount,
        provider_ids=provider_ids,
        vouchers=request.vouchers,
        items=request.items,
    )


def opay_notice(reference, amount, *, rtn="1", timestamp=None, rqid=None, key=OPAY_KEY, iv=OPAY_IV):
    """An O'Pay payment notice for the portal's /webhooks/opay, as the stage merchant receives it."""
    data = {
        "MerchantID": OPAY_MERCHANT_ID,
        "MerchantTradeNo": reference,
        "RtnCode": rtn,
        "RtnMsg": "交易成功",
        "TradeNo": "2211221030001",
        "TradeAmt": str(amount),
        "PaymentDate": "2026/11/22 10:30:00",
        "TradeDate": "2026/11/22 10:29:00",
    }
    return {
        "MerchantID": OPAY_MERCHANT_ID,
        "PlatformID": "",
        "Timestamp": str(int(timestamp if timestamp is not None else time.time())),
        "RqID": rqid or str(uuid.uuid4()),
        "Revision": "1",
        "RtnCode": "1",
        "RtnMsg": "OK",
        "Data": opay_encrypt(data, key, iv),
    }
