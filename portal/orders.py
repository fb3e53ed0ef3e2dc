"""Order services: load an order scoped to the merchant, list, search and filter orders, save, edit, copy and delete
drafts."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from flask import abort
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import and_, bindparam, exists, func, or_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload, selectinload

from portal import money
from portal.extensions import db
from portal.filters import TAIPEI
from portal.forms import OrderDraft
from portal.labels import PROVIDER_NAMES
from portal.models import ORDER_STATES, Checkout, Order, OrderItem, OrderState, Voucher
from portal.security import audit

PER_PAGE = 50
MAX_PAGE = 100_000
SEARCH_MAX_CHARS = 100
# Orders read per query by the CSV export.
EXPORT_BATCH = 500
# Attempts at a fresh order number when another order took the same one at the same moment.
NUMBER_ATTEMPTS = 5


def get_order(
    order_id: int, *, merchant_id: int | None = None, lock: bool = False, with_merchant: bool = False
) -> Order:
    """The order if it belongs to the merchant (default: the current user's), else 404; lock = SELECT … FOR UPDATE;
    with_merchant: its merchant read in the same query (opening a link needs its providers' settings)."""
    if merchant_id is None:
        merchant_id = current_user.merchant_id
    query = _merchants_order(with_merchant, lock)
    order = db.session.execute(query, {"order_id": order_id, "merchant_id": merchant_id}).scalar_one_or_none()
    if order is None:
        abort(404)
    return order


def get_attempt(order_id: int, checkout_id: int) -> Checkout:
    """One payment attempt of the current merchant's order (the staff's forms on an order's attempts), else 404."""
    checkout = next((c for c in get_order(order_id).checkouts if c.id == checkout_id), None)
    if checkout is None:
        abort(404)
    return checkout


@functools.cache
def _merchants_order(with_merchant: bool, lock: bool):
    """Built once per kind (most staff pages of an order run it; building costs more than running it)."""
    query = db.select(Order).where(Order.id == bindparam("order_id"), Order.merchant_id == bindparam("merchant_id"))
    if with_merchant:
        query = query.options(joinedload(Order.merchant, innerjoin=True))
    return query.with_for_update() if lock else query


@dataclass(frozen=True)
class OrderFilter:
    """The order list's query parameters, cleaned: bad values fall back to none / page 1; a date that cannot be read
    is left out of the filter and named in `errors` (the form shows them)."""

    state: str = ""
    q: str = ""
    page: int = 1
    provider: str = ""
    date_from: date | None = None  # Taipei calendar days, both ends included
    date_to: date | None = None
    raw_from: str = ""  # as typed, shown again in the form
    raw_to: str = ""
    errors: tuple[tuple[str, str], ...] = ()  # (field, message)

    @classmethod
    def from_args(cls, args) -> OrderFilter:
        state = args.get("state", "")
        state = state if state in ORDER_STATES else ""
        provider = args.get("provider", "")
        provider = provider if provider in PROVIDER_NAMES else ""
        q = (args.get("q") or "").strip()[:SEARCH_MAX_CHARS]
        raw_page = args.get("page", "")
        page = int(raw_page) if raw_page.isascii() and raw_page.isdigit() and len(raw_page) <= 6 else 1
        errors = []
        raw_from, raw_to = (args.get(name, "").strip()[:DATE_MAX_CHARS] for name in ("from", "to"))
        date_from, date_to = _parse_day(raw_from), _parse_day(raw_to)
        for name, raw, day in (("from", raw_from, date_from), ("to", raw_to, date_to)):
            if raw and day is None:
                errors.append((name, str(_l("Enter the date as YYYY-MM-DD, e.g. 2025-03-14."))))
        if date_from and date_to and date_from > date_to:
            errors.append(("to", str(_l("The end date is before the start date."))))
            date_from = date_to = None
        return cls(
            state=state,
            q=q,
            page=min(max(page, 1), MAX_PAGE),
            provider=provider,
            date_from=date_from,
            date_to=date_to,
            raw_from=raw_from,
            raw_to=raw_to,
            errors=tuple(errors),
        )

    @property
    def active(self) -> bool:
        return bool(self.state or self.q or self.provider or self.date_from or self.date_to)

    def args(self) -> dict[str, str]:
        """The filters as query parameters (for the pager and the export link), without the page."""
        values = {
            "from": self.date_from.isoformat() if self.date_from else "",
            "to": self.date_to.isoformat() if self.date_to else "",
            "provider": self.provider,
            "state": self.state,
            "q": self.q,
        }
        return {name: value for name, value in values.items() if value}

    def error(self, name: str) -> str:
        return " ".join(message for field, message in self.errors if field == name)


DATE_MAX_CHARS = 10
# Dates a shop's orders can have; outside, a typo (and 0001-01-01 in Taipei is before the first UTC day).
FIRST_YEAR, LAST_YEAR = 2000, 2999


def _parse_day(text: str) -> date | None:
    if not (len(text) == DATE_MAX_CHARS and text.isascii()):
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        return None
    return day if FIRST_YEAR <= day.year <= LAST_YEAR else None


def _taipei_midnight_utc(day: date) -> datetime:
    """The start of a Taipei calendar day as a naive UTC time (how created_at is stored)."""
    return datetime.combine(day, time(0), tzinfo=TAIPEI).astimezone(UTC).replace(tzinfo=None)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def filtered_orders(merchant_id: int, flt: OrderFilter):
    """SELECT of the merchant's orders the filters and the search match, newest first (no page)."""
    query = db.select(Order).filter_by(merchant_id=merchant_id)
    return _filtered(query, merchant_id, flt).order_by(Order.created_at.desc(), Order.id.desc())


def _filtered(query, merchant_id: int, flt: OrderFilter):
    if flt.state:
        query = query.filter_by(state=flt.state)
    # The dates bound created_at, which the (merchant, created) and (merchant, state, created) indexes order.
    if flt.date_from:
        query = query.where(Order.created_at >= _taipei_midnight_utc(flt.date_from))
    if flt.date_to:
        query = query.where(Order.created_at < _taipei_midnight_utc(flt.date_to + timedelta(days=1)))
    if flt.provider:
        # Any of the order's payment attempts at that provider (checkout.order_id is indexed).
        query = query.where(
            exists().where(
                Checkout.order_id == Order.id, Checkout.merchant_id == merchant_id, Checkout.provider == flt.provider
            )
        )
    if flt.q:
        number = _whole_number(merchant_id, flt.q)
        if number is not None:
            # An order number typed whole finds that order, by the (merchant, number) unique index: a search for it
            # as part of any name, e-mail or number reads every order of the shop (SQLite has no index for it).
            return query.where(Order.number == number)
        pattern = f"%{_like_escape(flt.q.lower())}%"
        query = query.where(
            or_(
                func.lower(Order.customer_name).like(pattern, escape="\\"),
                func.lower(Order.customer_email).like(pattern, escape="\\"),
                func.lower(Order.number).like(pattern, escape="\\"),
            )
        )
    return query


NUMBER_LIKE = re.compile(r"[A-Za-z0-9-]{2,32}")


def _whole_number(merchant_id: int, q: str) -> str | None:
    """The merchant's order number the search text is, whole (in any case), if it is one."""
    text = q.strip()
    if not NUMBER_LIKE.fullmatch(text):
        return None
    found = db.session.execute(_number_lookup(), {"merchant_id": merchant_id, "numbers": [text, text.upper()]})
    return found.scalar()


@functools.cache
def _number_lookup():
    """Built once: an order number of the merchant, among the given spellings."""
    return (
        db.select(Order.number)
        .where(Order.merchant_id == bindparam("merchant_id"), Order.number.in_(bindparam("numbers", expanding=True)))
        .limit(1)
    )


def list_orders(merchant_id: int, flt: OrderFilter):
    """One page of the merchant's orders, newest first, filtered and searched."""
    # The page shows each order's checkouts (needs attention): one query for the page's, not one per order.
    query = filtered_orders(merchant_id, flt).options(selectinload(Order.checkouts))
    # One row more than a page says whether there is an older page; no count of every match, which on a large shop
    # would read every row the filters match on each visit.
    rows = list(db.session.execute(query.limit(PER_PAGE + 1).offset((flt.page - 1) * PER_PAGE)).scalars())
    return Page(items=rows[:PER_PAGE], page=flt.page, has_next=len(rows) > PER_PAGE)


def order_batches(merchant_id: int, flt: OrderFilter, size: int | None = None):
    """Every order the filters match, newest first, in lists of at most `size` (keyset: each batch is its own query
    continuing after the last row of the one before, so no more than a batch is held)."""
    size = size or EXPORT_BATCH
    after = None
    while True:
        query = filtered_orders(merchant_id, flt)
        if after is not None:
            created, order_id = after
            query = query.where(or_(Order.created_at < created, and_(Order.created_at == created, Order.id < order_id)))
        batch = list(db.session.execute(query.limit(size)).scalars())
        if not batch:
            return
        yield batch
        after = (batch[-1].created_at, batch[-1].id)
        if len(batch) < size:
            return


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
    totals = _totals(draft)
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
        state="draft",
        created_by_id=user_id,
    )
    _fill_order(order, draft, totals)
    return order


# E-invoice data the order form may carry (OrderDraft attributes of the same names as the order's columns).
INVOICE_FIELDS = ("invoice_kind", "invoice_carrier", "invoice_tax_id", "invoice_title", "invoice_donation_code")


def _fill_order(order: Order, draft: OrderDraft, totals: money.OrderTotals) -> None:
    """The draft's customer, items, vouchers, note and the server's totals onto the order (new or a draft edited)."""
    order.customer_name = draft.customer_name
    order.customer_email = draft.customer_email
    order.shipping_fee = totals.shipping_fee
    order.subtotal = totals.subtotal
    order.voucher_total = totals.voucher_total
    order.payable = totals.payable
    order.note = draft.note
    for name in INVOICE_FIELDS:
        if hasattr(draft, name):
            setattr(order, name, getattr(draft, name))
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


def _totals(draft: OrderDraft) -> money.OrderTotals:
    return money.check_order(
        [money.Line(item.unit_price, item.quantity) for item in draft.items],
        draft.shipping_fee,
        [voucher.amount for voucher in draft.vouchers],
    )


def is_editable(order: Order) -> bool:
    """A draft nobody has been asked to pay: no payment attempt and no customer link. Only such an order is edited
    or deleted (its amount is not yet anywhere but here)."""
    if order.state != OrderState.DRAFT.value or order.link_token:
        return False
    return not db.session.execute(db.select(exists().where(Checkout.order_id == order.id))).scalar()


def update_draft(order: Order, draft: OrderDraft, *, user_id: int | None) -> Order:
    """Replace a draft's customer, items, vouchers and note; the totals are recomputed here. The caller has locked the
    order and checked is_editable. Raises money.AmountError like create_order. Commits."""
    totals = _totals(draft)
    before = order.payable
    # The old rows go first: a voucher kept with the same serial number would otherwise meet itself (unique).
    order.items = []
    order.vouchers = []
    db.session.flush()
    _fill_order(order, draft, totals)
    audit("order_edited", order_id=order.id, number=order.number, payable_before=before, payable=order.payable)
    db.session.commit()
    return order


def delete_draft(order: Order) -> None:
    """Delete a draft with its items and vouchers (the caller has locked it and checked is_editable). Commits."""
    audit("order_deleted", order_id=order.id, number=order.number, payable=order.payable)
    db.session.delete(order)
    db.session.commit()


def duplicate_order(order: Order, *, user_id: int | None) -> Order:
    """A new draft with the order's customer, items, shipping, vouchers, note and e-invoice data, and a new number.
    Any order may be copied, whatever its state. Commits; retries the number if another order took it."""
    source = {
        "number": order.number,
        "customer_name": order.customer_name,
        "customer_email": order.customer_email,
        "note": order.note,
        "items": [(i.sku, i.name, i.unit_price, i.quantity) for i in order.items],
        "vouchers": [(v.kind, v.product_id, v.serial_number, v.name, v.amount) for v in order.vouchers],
        "invoice": {name: getattr(order, name) for name in INVOICE_FIELDS},
        "totals": (order.shipping_fee, order.subtotal, order.voucher_total, order.payable),
    }
    for attempt in range(NUMBER_ATTEMPTS):
        copy = Order(
            merchant_id=order.merchant_id,
            number=next_order_number(order.merchant_id),
            customer_name=source["customer_name"],
            customer_email=source["customer_email"],
            note=source["note"],
            state="draft",
            created_by_id=user_id,
            **source["invoice"],
        )
        copy.shipping_fee, copy.subtotal, copy.voucher_total, copy.payable = source["totals"]
        copy.items = [
            OrderItem(position=n, sku=sku, name=name, unit_price=price, quantity=quantity)
            for n, (sku, name, price, quantity) in enumerate(source["items"])
        ]
        copy.vouchers = [
            Voucher(position=n, kind=kind, product_id=product, serial_number=serial, name=name, amount=amount)
            for n, (kind, product, serial, name, amount) in enumerate(source["vouchers"])
        ]
        db.session.add(copy)
        try:
            db.session.flush()
            audit("order_duplicated", order_id=copy.id, number=copy.number, source=source["number"])
            db.session.commit()
            return copy
        except IntegrityError:
            db.session.rollback()
            if attempt == NUMBER_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover
