"""An order as the merchant's systems see it: the JSON API's answers and the webhooks' `data.order` are this, so the
two never disagree. Amounts are integer TWD; times are ISO 8601 in UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime

from flask import current_app

from portal.models import Checkout, Order


def iso(value: datetime | None) -> str | None:
    """A stored time (UTC, naive) as ISO 8601 with its zone: 2026-11-27T04:05:06Z."""
    if value is None:
        return None
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def checkout_payload(order: Order) -> dict | None:
    """The order's customer link and its latest attempt: {url, provider, state, expires_at}; None before a link."""
    # An attempt the provider refused to make never opened: it is no link (as for the order's state).
    opened = [c for c in order.checkouts if c.opened_at is not None or c.state != "failed"]
    latest: Checkout | None = opened[-1] if opened else None
    if not order.link_token and latest is None:
        return None
    base = current_app.config["PORTAL_BASE_URL"]
    token = order.link_token or latest.public_token
    ended = order.link_ended_at is not None
    return {
        "url": f"{base}/pay/{token}",
        "provider": (latest.provider if latest else None) or order.link_provider,
        "state": latest.state if latest else ("cancelled" if ended else "awaiting_payment"),
        "expires_at": iso(order.link_expires_at or (latest.expires_at if latest else None)),
    }


def order_payload(order: Order) -> dict:
    """The order's public fields."""
    attention = [
        {"reference": c.reference, "provider": c.provider, "reason": c.attention_reason}
        for c in order.checkouts
        if c.needs_attention
    ]
    invoice = None
    if order.invoice_kind:
        invoice = {
            "kind": order.invoice_kind,
            "carrier": order.invoice_carrier,
            "tax_id": order.invoice_tax_id,
            "title": order.invoice_title,
            "donation_code": order.invoice_donation_code,
        }
    return {
        "id": order.id,
        "number": order.number,
        "state": order.state,
        "currency": "TWD",
        "customer_name": order.customer_name,
        "customer_email": order.customer_email,
        "shipping_fee": order.shipping_fee,
        "subtotal": order.subtotal,
        "voucher_total": order.voucher_total,
        "payable": order.payable,
        "paid_amount": order.paid_amount,
        "refunded_amount": order.refunded_amount,
        "note": order.note,
        "created_at": iso(order.created_at),
        "items": [
            {"sku": i.sku, "name": i.name, "unit_price": i.unit_price, "quantity": i.quantity} for i in order.items
        ],
        "vouchers": [
            {
                "kind": v.kind,
                "product_id": v.product_id,
                "serial_number": v.serial_number,
                "name": v.name,
                "amount": v.amount,
            }
            for v in order.vouchers
        ],
        "invoice": invoice,
        "checkout": checkout_payload(order),
        "needs_attention": bool(attention),
        "attention": attention,
    }
