"""The order builder: items and vouchers as rows, the no-script add and remove buttons, the draft it yields."""

from __future__ import annotations

from dataclasses import dataclass

from flask_babel import lazy_gettext as _l
from werkzeug.datastructures import MultiDict
from wtforms import (
    FieldList,
    Form,
    FormField,
    RadioField,
    SelectChoice,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import Email

from portal import invoices, money
from portal.forms.base import (
    _NUMERIC,
    Amount,
    PlainText,
    PortalForm,
    Required,
    _add_error,
    _strip,
    amount_message,
    invoice_message,
)

MAX_ITEM_ROWS = 100


MAX_VOUCHER_ROWS = 20


NOTE_MAX_CHARS = 2000


VOUCHER_KINDS = ("paid", "free")


def _name_validators():
    return [Required(_l("Please enter a name.")), PlainText(100)]


class RowList(FieldList):
    """A FieldList of rows posted as PREFIX-N-field, N in any order with gaps; at most max_rows rows are read."""

    def __init__(self, unbound_field, *, max_rows: int, too_many, **kwargs):
        # One row more than allowed is read, so that too many rows is refused with a message, not cut silently.
        super().__init__(unbound_field, max_entries=max_rows + 1, **kwargs)
        self.max_rows = max_rows
        self.too_many = too_many

    def _extract_indices(self, prefix, formdata):
        """Only short ASCII-digit indices count (int() would choke on '²' or on thousands of digits)."""
        start = prefix + self._separator
        for key in formdata:
            if key.startswith(start):
                index = key[len(start) :].split(self._field_separator, 1)[0]
                if index.isascii() and index.isdigit() and len(index) <= 6:
                    yield int(index)

    @property
    def full(self) -> bool:
        return len(self.entries) >= self.max_rows

    def filled(self) -> list:
        """The rows that are not entirely blank, as subforms."""
        return [entry.form for entry in self.entries if not entry.form.is_blank()]

    def validate(self, form, extra_validators=()):
        ok = super().validate(form, extra_validators)
        if len(self.entries) > self.max_rows:
            self.errors.append(self.too_many)
            return False
        return ok


class RowForm(Form):
    """A row of a RowList; a row left entirely blank is skipped (not validated, not saved)."""

    blank_fields: tuple[str, ...] = ()

    def is_blank(self) -> bool:
        return not any(isinstance(self[name].data, str) and self[name].data.strip() for name in self.blank_fields)

    def validate(self, extra_validators=None):
        if self.is_blank():
            return True
        return super().validate(extra_validators)


class ItemForm(RowForm):
    blank_fields = ("sku", "name", "unit_price")

    sku = StringField(_l("SKU"), filters=[_strip], validators=[PlainText(64)])
    name = StringField(_l("Item"), filters=[_strip], validators=_name_validators())
    unit_price = StringField(_l("Unit price (NT$)"), validators=[Amount(money.UNIT_PRICE)], render_kw=_NUMERIC)
    quantity = StringField(_l("Quantity"), default="1", validators=[Amount(money.QUANTITY)], render_kw=_NUMERIC)


class VoucherForm(RowForm):
    blank_fields = ("product_id", "serial_number", "name", "amount")

    kind = SelectField(
        _l("Kind"),
        choices=[SelectChoice("paid", _l("Paid voucher")), SelectChoice("free", _l("Free voucher"))],
        default="paid",
        invalid_choice_message=_l("Choose paid or free."),
    )
    product_id = StringField(
        _l("Product id"),
        filters=[_strip],
        validators=[Required(_l("Please enter the product id.")), PlainText(32, max_bytes=32)],
    )
    serial_number = StringField(
        _l("Serial number"),
        filters=[_strip],
        validators=[Required(_l("Please enter the serial number.")), PlainText(64)],
    )
    name = StringField(_l("Voucher name"), filters=[_strip], validators=_name_validators())
    amount = StringField(_l("Amount (NT$)"), validators=[Amount(money.VOUCHER_AMOUNT)], render_kw=_NUMERIC)


@dataclass(frozen=True)
class ItemDraft:
    sku: str
    name: str
    unit_price: int
    quantity: int


@dataclass(frozen=True)
class VoucherDraft:
    kind: str
    product_id: str
    serial_number: str
    name: str
    amount: int


@dataclass(frozen=True)
class OrderDraft:
    """A validated order, ready for orders.create_order (which recomputes the totals itself)."""

    customer_name: str
    customer_email: str
    shipping_fee: int
    note: str
    items: tuple[ItemDraft, ...]
    vouchers: tuple[VoucherDraft, ...]
    invoice: invoices.Invoice | None = None  # e-invoice data; None when none was given

    # The e-invoice data under the Order columns' names (saving reads these).
    @property
    def invoice_kind(self) -> str | None:
        return invoices.columns(self.invoice)["invoice_kind"]

    @property
    def invoice_carrier(self) -> str | None:
        return invoices.columns(self.invoice)["invoice_carrier"]

    @property
    def invoice_tax_id(self) -> str | None:
        return invoices.columns(self.invoice)["invoice_tax_id"]

    @property
    def invoice_title(self) -> str | None:
        return invoices.columns(self.invoice)["invoice_title"]

    @property
    def invoice_donation_code(self) -> str | None:
        return invoices.columns(self.invoice)["invoice_donation_code"]


class OrderForm(PortalForm):
    customer_name = StringField(_l("Customer name"), filters=[_strip], validators=_name_validators())
    customer_email = StringField(
        _l("Customer e-mail"),
        filters=[_strip],
        validators=[
            Required(_l("Please enter the customer's e-mail.")),
            PlainText(254),
            Email(_l("Please enter a valid e-mail address.")),
        ],
        render_kw={"type": "email", "autocomplete": "off"},
    )
    shipping_fee = StringField(
        _l("Shipping (NT$)"), default="0", validators=[Amount(money.SHIPPING_FEE, blank=0)], render_kw=_NUMERIC
    )
    note = TextAreaField(_l("Note"), filters=[_strip], validators=[PlainText(NOTE_MAX_CHARS, tags=True, newlines=True)])
    items = RowList(
        FormField(ItemForm),
        min_entries=1,
        max_rows=MAX_ITEM_ROWS,
        too_many=_l("At most %(max)s items per order.", max=MAX_ITEM_ROWS),
    )
    vouchers = RowList(
        FormField(VoucherForm),
        max_rows=MAX_VOUCHER_ROWS,
        too_many=_l("At most %(max)s vouchers per order.", max=MAX_VOUCHER_ROWS),
    )

    # E-invoice data: how the customer takes the invoice; only the chosen kind's fields are read.
    invoice_kind = RadioField(
        _l("How the customer takes the invoice"),
        choices=[
            SelectChoice("", _l("Not given")),
            SelectChoice(invoices.PAPER, _l("Paper invoice")),
            SelectChoice(invoices.MOBILE, _l("Mobile barcode")),
            SelectChoice(invoices.CITIZEN, _l("Citizen certificate")),
            SelectChoice(invoices.BUSINESS, _l("Business (tax ID)")),
            SelectChoice(invoices.DONATION, _l("Donation")),
        ],
        default="",
        validate_choice=False,  # checked by invoices.read_invoice, with its message
    )
    invoice_carrier = StringField(
        _l("Carrier number (mobile barcode or citizen certificate)"),
        filters=[_strip],
        render_kw={"autocomplete": "off", "autocapitalize": "characters", "spellcheck": "false"},
    )
    invoice_tax_id = StringField(_l("Tax ID"), filters=[_strip], render_kw=_NUMERIC)
    invoice_title = StringField(_l("Company name"), filters=[_strip], render_kw={"autocomplete": "off"})
    invoice_donation_code = StringField(_l("Donation code"), filters=[_strip], render_kw=_NUMERIC)

    totals: money.OrderTotals | None = None
    invoice: invoices.Invoice | None = None

    def validate(self, extra_validators=None):
        """Field rules first; then unique serial numbers, at least one item and the money rules across rows."""
        ok = super().validate(extra_validators)
        items, vouchers = self.items.filled(), self.vouchers.filled()
        if not items:
            _add_error(self.items.entries[0].form.name, amount_message(money.AmountError("no_items")))
            ok = False
        seen: set[str] = set()
        for voucher in vouchers:
            serial = voucher.serial_number.data
            if serial and serial in seen and not voucher.serial_number.errors:
                _add_error(voucher.serial_number, _l("This serial number is already on this order."))
                ok = False
            seen.add(serial)
        if not self._validate_invoice():
            ok = False
        if not ok:
            return False
        try:
            self.totals = money.check_order(
                [money.Line(i.unit_price.amount, i.quantity.amount) for i in items],
                self.shipping_fee.amount,
                [v.amount.amount for v in vouchers],
            )
        except money.AmountError as exc:
            _add_error(self._field_for(exc.field, items, vouchers), amount_message(exc))
            return False
        return True

    def _validate_invoice(self) -> bool:
        """The e-invoice fields by portal.invoices' rules; the normalised values are shown back."""
        self.invoice, errors, values = invoices.read_invoice(
            self.invoice_kind.data if isinstance(self.invoice_kind.data, str) else "",
            self.invoice_carrier.data,
            self.invoice_tax_id.data,
            self.invoice_title.data,
            self.invoice_donation_code.data,
        )
        for name, value in values.items():
            self[name].data = value
        for name, code in errors.items():
            _add_error(self[name], invoice_message(code))
        return not errors

    def _field_for(self, name: str, items: list, vouchers: list):
        """The field an AmountError names: items-N-x / vouchers-N-x by position among filled rows, or a top field."""
        group, _, rest = name.partition("-")
        if group in ("items", "vouchers") and rest:
            position, _, field_name = rest.partition("-")
            rows = items if group == "items" else vouchers
            return rows[int(position)][field_name]
        return self[name]

    def preview_totals(self) -> money.OrderTotals:
        """Best-effort totals of what parses so far (display only; rows that do not parse count as 0)."""

        def value(text, limits):
            try:
                return money.parse_in_range(text, limits)
            except money.AmountError:
                return 0

        lines = [
            money.Line(value(i.unit_price.data, money.UNIT_PRICE), value(i.quantity.data, money.QUANTITY))
            for i in self.items.filled()
        ]
        vouchers = [value(v.amount.data, money.VOUCHER_AMOUNT) for v in self.vouchers.filled()]
        return money.order_totals(lines, value(self.shipping_fee.data, money.SHIPPING_FEE), vouchers)

    def draft(self) -> OrderDraft:
        """The validated order (call after validate() returned True)."""
        return OrderDraft(
            customer_name=self.customer_name.data,
            customer_email=self.customer_email.data,
            shipping_fee=self.shipping_fee.amount,
            note=self.note.data or "",
            items=tuple(
                ItemDraft(i.sku.data or "", i.name.data, i.unit_price.amount, i.quantity.amount)
                for i in self.items.filled()
            ),
            vouchers=tuple(
                VoucherDraft(v.kind.data, v.product_id.data, v.serial_number.data, v.name.data, v.amount.amount)
                for v in self.vouchers.filled()
            ),
            invoice=self.invoice,
        )

    def add_row(self, rows: RowList) -> bool:
        """One more empty row (the no-script "add row" button); False when the list is full."""
        if rows.full:
            return False
        rows.append_entry()
        return True


def without_row(formdata: MultiDict, prefix: str, index: str) -> MultiDict:
    """The posted data less one row (PREFIX-INDEX-*), for the no-script "remove row" button."""
    start = f"{prefix}-{index}-"
    return MultiDict([(key, value) for key, value in formdata.items(multi=True) if not key.startswith(start)])
