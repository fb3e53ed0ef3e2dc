"""What a provider is given: snapshots of a checkout (never a database row); what it says, in the reader's language."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import replace

from flask import current_app
from flask_babel import get_locale
from flask_babel import gettext as _

from portal import invoices
from portal.gateways import decrypted
from portal.models import Checkout
from portal.providers.base import (
    CheckoutRef,
    CheckoutRequest,
    LineItem,
    ProviderError,
    ProviderUnavailable,
    VoucherLine,
)


def new_reference() -> str:
    """A provider reference: 'C' and 19 upper-case letters and digits, unique per attempt."""
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    return "C" + "".join(secrets.choice(alphabet) for _ in range(19))


def checkout_request(checkout: Checkout, customer_ip: str = "") -> CheckoutRequest:
    """The provider's view of the order behind this attempt."""
    order = checkout.order
    base = current_app.config["PORTAL_BASE_URL"]
    return_url = f"{base}/pay/{checkout.public_token}/return"
    return CheckoutRequest(
        reference=checkout.reference,
        amount=checkout.amount,
        items=tuple(LineItem(i.sku, i.name, i.unit_price, i.quantity) for i in order.items),
        shipping_fee=order.shipping_fee,
        vouchers=tuple(VoucherLine(v.kind, v.product_id, v.serial_number, v.name, v.amount) for v in order.vouchers),
        customer_name=order.customer_name,
        customer_email=order.customer_email,
        customer_id=hashlib.sha256(f"{order.merchant_id}:{order.customer_email.lower()}".encode()).hexdigest()[:20],
        customer_ip=customer_ip or "127.0.0.1",
        success_url=return_url,
        failure_url=return_url,
        notify_url=f"{base}/webhooks/{checkout.provider}",
        description=order.number,
        invoice=invoices.of_order(order),
    )


def attempt_ref(attempt) -> CheckoutRef:
    """The provider's ids, reference and amounts of an attempt (a Checkout, or a row with those columns)."""
    ids = {}
    if attempt.provider_checkout_id:
        ids["checkout_id"] = attempt.provider_checkout_id
        ids["uid"] = attempt.provider_checkout_id
    if attempt.provider_secret_enc:
        ids["key"] = decrypted(attempt.provider_secret_enc)  # the MyPay order's key, decrypted once per process
    if attempt.provider_transaction_id:
        ids["transaction_id"] = attempt.provider_transaction_id
    return CheckoutRef(
        reference=attempt.reference, amount=attempt.amount, provider_ids=ids, paid_amount=attempt.paid_amount or 0
    )


def checkout_ref(checkout: Checkout, *, lines: bool = True) -> CheckoutRef:
    """What a provider needs to query, verify or refund this attempt; without the order's items and vouchers when
    `lines` is False (verifying a callback needs neither, and they are two more queries)."""
    ref = attempt_ref(checkout)
    if not lines:
        return ref
    order = checkout.order
    return replace(
        ref,
        vouchers=tuple(VoucherLine(v.kind, v.product_id, v.serial_number, v.name, v.amount) for v in order.vouchers),
        items=tuple(LineItem(i.sku, i.name, i.unit_price, i.quantity) for i in order.items),
    )


def provider_message(exc: ProviderError) -> str:
    """The provider error's message in the interface language."""
    return exc.message(str(get_locale() or "zh_TW"))


def customer_message(exc: ProviderError) -> str:
    """What the customer reads when the provider could not open their payment: not the staff's advice (refresh the
    order, the provider's codes), only what they can do."""
    if isinstance(exc, ProviderUnavailable):
        return _("The payment provider is not answering right now. Nothing was charged; please try again in a moment.")
    return _(
        "The payment provider could not open this payment. Nothing was charged; please try again later or ask the shop."
    )
