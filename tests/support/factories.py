"""Small builders for test data (straight into the database, bypassing the forms)."""

from __future__ import annotations

import secrets
from datetime import timedelta

from portal.extensions import db
from portal.models import Checkout, Order, OrderItem, Voucher, utcnow
from portal.payments import refresh_order


def make_order(merchant_id: int, *, items=((500, 2),), shipping=60, vouchers=(), email="buyer@example.com") -> Order:
    """An order with items [(unit price, qty)], shipping and vouchers [(kind, amount)]; totals computed."""
    subtotal = sum(price * qty for price, qty in items)
    voucher_total = sum(amount for _kind, amount in vouchers)
    order = Order(
        merchant_id=merchant_id,
        number=f"T{secrets.token_hex(5).upper()}",
        customer_name="王小明",
        customer_email=email,
        shipping_fee=shipping,
        subtotal=subtotal,
        voucher_total=voucher_total,
        payable=subtotal + shipping - voucher_total,
        state="draft",
    )
    for pos, (price, qty) in enumerate(items):
        order.items.append(OrderItem(position=pos, sku=f"SKU{pos}", name=f"商品{pos}", unit_price=price, quantity=qty))
    for pos, (kind, amount) in enumerate(vouchers):
        order.vouchers.append(
            Voucher(
                position=pos, kind=kind, product_id=f"P{pos}", serial_number=f"SN{pos}", name=f"券{pos}", amount=amount
            )
        )
    db.session.add(order)
    db.session.commit()
    return order


def make_checkout(order: Order, provider: str = "mypay", state: str = "awaiting_payment") -> Checkout:
    """An attempt in the given state, without calling any provider."""
    checkout = Checkout(
        order=order,
        merchant_id=order.merchant_id,
        provider=provider,
        reference="C" + secrets.token_hex(8).upper(),
        public_token=secrets.token_urlsafe(24),
        amount=order.payable,
        state=state,
        expires_at=utcnow() + timedelta(hours=1),
        opened_at=None if state == "creating" else utcnow(),  # past "creating": the provider made it
    )
    db.session.add(checkout)
    db.session.flush()
    refresh_order(order)
    db.session.commit()
    return checkout
