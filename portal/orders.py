"""Order services: load an order scoped to the merchant, list and search orders, save a new order."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from flask import abort
from flask_login import current_user
from sqlalchemy import func, or_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from portal import money
from portal.extensions import db
from portal.filters import TAIPEI
from portal.forms import OrderDraft
from portal.models import ORDER_STATES, Order, OrderItem, Voucher
from portal.security import audit

PER_PAGE = 50
MAX_PAGE = 100_000
SEARCH_MAX_CHARS = 100
# Attempts at a fresh order number when another order took the same one at the same moment.
NUMBER_ATTEMPTS = 5


def get_order(order_id: int, *, merchant_id: int | None = None, lock: bool = False) -> Order:
    """The order if it belongs to the merchant (default: the current user's), else 404; lock = SELECT … FOR UPDATE."""
    if merchant_id is None:
        merchant_id = current_user.merchant_id
    query = db.select(Order).filter_by(id=order_id, merchant_id=merchant_id)
    if lock:
        query = query.with_for_update()
    order = db.session.execute(query).scalar_one_or_none()
    if order is None:
        abort(404)
    return order


@dataclass(frozen=True)
class OrderFilter:
    """The order list's query parameters, cleaned: bad values fall back to none / page 1."""

    state: str = ""
    q: str = ""
    page: int = 1

    @classmethod
    def from_args(cls, args) -> OrderFilter:
        state = args.get("state", "")
        state = state if state in ORDER_STATES else ""
        q = (args.get("q") or "").strip()[:SEARCH_MAX_CHARS]
        raw_page = args.get("page", "")
        page = int(raw_page) if raw_page.isascii() and raw_page.isdigit() and len(raw_page) <= 6 else 1
        return cls(state=state, q=q, page=min(max(page, 1), MAX_PAGE))


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def list_orders(merchant_id: int, flt: OrderFilter):
    """One page (Flask-SQLAlchemy Pagination) of the merchant's orders, newest first, filtered and searched."""
    query = db.select(Order).filter_by(merchant_id=merchant_id)
    if flt.state:
        query = query.filter_by(state=flt.state)
    if flt.q:
        pattern = f"%{_like_escape(flt.q.lower())}%"
        query = query.where(
            or_(
                func.lower(Order.customer_name).like(pattern, escape="\\"),
                func.lower(Order.customer_email).like(pattern, escape="\\"),
                func.lower(Order.number).like(pattern, escape="\\"),
            )
        )
    # The page shows each order's checkouts (needs attention): one query for the page's, not one per order.
    query = query.options(selectinload(Order.checkouts)).order_by(Order.created_at.desc(), Order.id.desc())
    # One row more than a page says whether there is an older page; no count of every match, which on a large shop
    # would read every row the filters match on each visit.
    rows = list(db.session.execute(query.limit(PER_PAGE + 1).offset((flt.page - 1) * PER_PAGE)).scalars())
    return Page(items=rows[:PER_PAGE], page=flt.page, has_next=len(rows) > PER_PAGE)


@dataclass(frozen=True)
class Page:
    """A page of a list, newest first, without a total (the pagination macro shows "Page N")."""

    items: list
    page: int
    has_next: bool
    pages: int | None = None

    @property
    def has_prev(self) -> bool:
        return self.page > 1

    @property
    def prev_num(self) -> int:
        return self.page - 1

    @property
    def next_num(self) -> int:
        return self.page + 1


def next_order_number(merchant_id: int, now: datetime | None = None) -> str:
    """The merchant's next order number: "A" + the Taipei date (YYMMDD) + a 4-digit daily sequence, e.g. A2503140007."""
    now = now or datetime.now(UTC)
    prefix = "A" + now.astimezone(TAIPEI).strftime("%y%m%d")
    last = db.session.execute(
        db.select(Order.number)
        .filter_by(merchant_id=merchant_id)
        .where(Order.number.like(prefix + "%"))
        .order_by(func.length(Order.number).desc(), Order.number.desc())
        .limit(1)
    ).scalar_one_or_none()
    tail = last[len(prefix) :] if last else ""
    sequence = int(tail) + 1 if tail.isascii() and tail.isdigit() else 1
    return f"{prefix}{sequence:04d}"


def create_order(draft: OrderDraft, *, merchant_id: int, user_id: int | None) -> Order:
    """Save a draft order with its items and vouchers; the totals are recomputed here, whatever the browser said.

    Raises money.AmountError if the draft breaks a money rule. Commits; retries the number if another order took it.
    """
    totals = money.check_order(
        [money.Line(item.unit_price, item.quantity) for item in draft.items],
        draft.shipping_fee,
        [voucher.amount for voucher in draft.vouchers],
    )
    for attempt in range(NUMBER_ATTEMPTS):
        order = _build_order(draft, totals, merchant_id=merchant_id, user_id=user_id)
        db.session.add(order)
        try:
            db.session.flush()
            audit("order_created", merchant_id=merchant_id, user_id=user_id, order_id=order.id, number=order.number)
            db.session.commit()
            return order
        except IntegrityError:
            db.session.rollback()
            if attempt == NUMBER_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _build_order(draft: OrderDraft, totals: money.OrderTotals, *, merchant_id: int, user_id: int | None) -> Order:
    order = Order(
        merchant_id=merchant_id,
        number=next_order_number(merchant_id),
        customer_name=draft.customer_name,
        customer_email=draft.customer_email,
        shipping_fee=totals.shipping_fee,
        subtotal=totals.subtotal,
        voucher_total=totals.voucher_total,
        payable=totals.payable,
        note=draft.note,
        state="draft",
        created_by_id=user_id,
    )
    order.items = [
        OrderItem(position=i, sku=item.sku, name=item.name, unit_price=item.unit_price, quantity=item.quantity)
        for i, item in enumerate(draft.items)
    ]
    order.vouchers = [
        Voucher(
            position=i,
            kind=v.kind,
            product_id=v.product_id,
            serial_number=v.serial_number,
            name=v.name,
            amount=v.amount,
        )
        for i, v in enumerate(draft.vouchers)
    ]
    return order
