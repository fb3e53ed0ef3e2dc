"""The order list as CSV: every order the list's filters match, read in batches and written as it goes.

UTF-8 with a byte-order mark (Excel then reads Chinese), a header row in the reader's language, and every text cell
that a spreadsheet would take for a formula (= + - @, a tab or a carriage return first) prefixed with ' (OWASP's CSV
injection advice).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

from flask_babel import lazy_gettext as _l

from portal.extensions import db
from portal.filters import taipei
from portal.labels import provider_label, state_label
from portal.models import PAID_STATES, Checkout, Order
from portal.orders import OrderFilter, order_batches

BOM = "\ufeff"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

COLUMNS = (
    _l("Order number"),
    _l("Created (Taipei time)"),
    _l("Customer name"),
    _l("Customer e-mail"),
    _l("State"),
    _l("To pay"),
    _l("Paid amount"),
    _l("Refunded amount"),
    _l("Provider fee"),
    _l("Provider"),
    _l("E-invoice type"),
    _l("Invoice carrier"),
    _l("Business tax ID"),
    _l("Business name"),
    _l("Donation code"),
    _l("Note"),
)

INVOICE_KIND_LABELS = {
    "paper": _l("Paper invoice"),
    "mobile": _l("Mobile barcode"),
    "citizen": _l("Citizen certificate"),
    "business": _l("Business (tax ID)"),
    "donation": _l("Donated"),
}


def neutralise(value) -> str | int:
    """A cell as written: numbers as they are, None empty, text a spreadsheet would run as a formula prefixed."""
    if value is None:
        return ""
    if isinstance(value, int):
        return value
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _checkout_figures(order_ids: list[int]) -> dict[int, tuple[int | None, str]]:
    """Per order: the providers' fees summed (None when no provider reported one) and the provider that took the
    money (else the latest attempt's)."""
    rows = db.session.execute(
        db.select(Checkout.order_id, Checkout.provider, Checkout.state, Checkout.fee_amount)
        .where(Checkout.order_id.in_(order_ids))
        .order_by(Checkout.id)
    ).all()
    fees: dict[int, int | None] = {}
    provider: dict[int, str] = {}
    paid_provider: dict[int, str] = {}
    for order_id, name, state, fee in rows:
        if fee is not None:
            fees[order_id] = (fees.get(order_id) or 0) + fee
        provider[order_id] = name
        if state in PAID_STATES:
            paid_provider.setdefault(order_id, name)
    return {
        order_id: (fees.get(order_id), paid_provider.get(order_id) or provider.get(order_id, ""))
        for order_id in order_ids
    }


def _row(order: Order, fee: int | None, provider: str) -> list:
    kind = order.invoice_kind
    return [
        order.number,
        taipei(order.created_at, "%Y-%m-%d %H:%M:%S"),
        order.customer_name,
        order.customer_email,
        state_label(order.state),
        order.payable,
        order.paid_amount,
        order.refunded_amount,
        fee,
        provider_label(provider) if provider else "",
        str(INVOICE_KIND_LABELS.get(kind, kind)) if kind else "",
        order.invoice_carrier,
        order.invoice_tax_id,
        order.invoice_title,
        order.invoice_donation_code,
        order.note,
    ]


def csv_chunks(merchant_id: int, flt: OrderFilter) -> Iterator[bytes]:
    """The CSV, as UTF-8 bytes, one chunk per batch of orders (the header with the byte-order mark first)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([neutralise(str(title)) for title in COLUMNS])
    yield (BOM + buffer.getvalue()).encode("utf-8")
    for batch in order_batches(merchant_id, flt):
        buffer.seek(0)
        buffer.truncate()
        figures = _checkout_figures([order.id for order in batch])
        for order in batch:
            writer.writerow([neutralise(cell) for cell in _row(order, *figures[order.id])])
        yield buffer.getvalue().encode("utf-8")
