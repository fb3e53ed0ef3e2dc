"""One form class per form; field rules on the form, cross-field rules in validate_<field> or validate()."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from flask import current_app, request
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.form import _Auto
from werkzeug.datastructures import MultiDict
from wtforms import (
    BooleanField,
    EmailField,
    FieldList,
    Form,
    FormField,
    PasswordField,
    SelectChoice,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Email, Length, Regexp, StopValidation

from portal import money
from portal.accounts import MIN_PASSWORD_CHARS, PROVIDER_ID_FIELDS, PROVIDER_SECRET_FIELDS, password_problem
from portal.config import is_test_credential


class PortalForm(FlaskForm):
    """The base of every portal form: reads only form fields, never a JSON body (which WTForms cannot take)."""

    class Meta:
        def wrap_formdata(self, form, formdata):
            if formdata is _Auto and request.method in ("POST", "PUT", "PATCH", "DELETE"):
                return request.form
            return FlaskForm.Meta.wrap_formdata(self, form, formdata)


class LoginForm(PortalForm):
    email = EmailField(
        _l("E-mail"),
        validators=[
            DataRequired(_l("Please enter your e-mail.")),
            Length(max=254),
            # never a control character into the query (PostgreSQL refuses NUL with a server error)
            Regexp(
                r"^[^\x00-\x1f\x7f]*\Z",
                message=_l("Remove the control characters (invisible characters) from this text."),
            ),
        ],
    )
    password = PasswordField(
        _l("Password"), validators=[DataRequired(_l("Please enter your password.")), Length(max=1024)]
    )


# --- The order builder --------------------------------------------------------------------------------------------

# Amounts are text fields (parsed by money.parse_amount); the phone shows a number pad.
_NUMERIC = {"inputmode": "numeric", "autocomplete": "off"}
MAX_ITEM_ROWS = 100
MAX_VOUCHER_ROWS = 20
NOTE_MAX_CHARS = 2000
VOUCHER_KINDS = ("paid", "free")

_TAG = re.compile(r"<[^>]*>|<[A-Za-z!/?]")
# Bidirectional overrides and isolates: invisible, and they can make a name read as something else.
_BIDI_CONTROLS = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _strip(value):
    return value.strip() if isinstance(value, str) else value


def _has_control(text: str, allow_newlines: bool = False) -> bool:
    """Whether text holds a control character (newlines and tabs allowed when asked)."""
    allowed = "\r\n\t" if allow_newlines else ""
    return any((unicodedata.category(ch) == "Cc" and ch not in allowed) or ch in _BIDI_CONTROLS for ch in text)


def amount_message(error: money.AmountError):
    """The message a person reads for a refused amount or order rule (translated when shown)."""
    params = {key: f"{value:,}" for key, value in error.params.items()}
    code = error.code
    if code == "required":
        return _l("Please enter a whole number.")
    if code == "fullwidth":
        return _l("Use half-width digits 0–9, not full-width digits such as １２３.")
    if code == "spaces":
        return _l("Remove the spaces inside the number.")
    if code == "plus_sign":
        return _l("Leave out the + sign.")
    if code == "negative":
        return _l("Negative amounts are not allowed.")
    if code == "decimal":
        return _l("Whole numbers only: no decimals.")
    if code == "exponent":
        return _l("Write the number out in full, without an exponent such as 1e3.")
    if code == "separator":
        return _l("Leave out the thousands separators (write 1000, not 1,000).")
    if code == "too_long":
        return _l("This number is far too large.")
    if code in ("too_small", "too_large") and "max" in params:
        return _l("Enter a whole number from %(min)s to %(max)s.", **params)
    if code == "too_small":
        return _l("Enter a whole number of at least %(min)s.", **params)
    if code == "no_items":
        return _l("Add at least one item.")
    if code == "order_too_large":
        return _l("The order comes to more than NT$%(max)s; split it into smaller orders.", **params)
    if code == "vouchers_exceed":
        return _l("Vouchers together may take off at most NT$%(max)s (the subtotal plus shipping).", **params)
    if code == "payable_too_small":
        return _l("The amount to pay must be at least NT$%(min)s.", **params)
    return _l("Enter a whole number using the digits 0–9.")


class Amount:
    """Validator: a whole TWD amount within limits, parsed by money.parse_amount; the value is kept on field.amount."""

    def __init__(self, limits: tuple[int, int | None], blank: int | None = None):
        self.limits = limits
        self.blank = blank

    def __call__(self, form, field):
        field.amount = None
        text = field.data if isinstance(field.data, str) else ""
        if self.blank is not None and not text.strip():
            field.amount = self.blank
            return
        try:
            field.amount = money.parse_in_range(text, self.limits)
        except money.AmountError as exc:
            raise StopValidation(amount_message(exc)) from exc


class Required:
    """Validator: something other than spaces was entered."""

    def __init__(self, message):
        self.message = message

    def __call__(self, form, field):
        if not (isinstance(field.data, str) and field.data.strip()):
            raise StopValidation(self.message)


class PlainText:
    """Validator: at most max_chars characters (or max_bytes in UTF-8), no control characters, optionally no tags."""

    def __init__(self, max_chars: int, *, max_bytes: int | None = None, tags: bool = False, newlines: bool = False):
        self.max_chars = max_chars
        self.max_bytes = max_bytes
        self.tags = tags
        self.newlines = newlines

    def __call__(self, form, field):
        text = field.data or ""
        if len(text) > self.max_chars:
            raise StopValidation(_l("At most %(max)s characters.", max=f"{self.max_chars:,}"))
        if self.max_bytes is not None and len(text.encode("utf-8", "surrogatepass")) > self.max_bytes:
            raise StopValidation(_l("At most %(max)s bytes (a Chinese character takes 3).", max=f"{self.max_bytes:,}"))
        if _has_control(text, allow_newlines=self.newlines):
            raise StopValidation(_l("Remove the control characters (invisible characters) from this text."))
        if not self.tags and _TAG.search(text):
            raise StopValidation(_l("HTML tags such as <b> are not allowed here."))


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

    totals: money.OrderTotals | None = None

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
        )

    def add_row(self, rows: RowList) -> bool:
        """One more empty row (the no-script "add row" button); False when the list is full."""
        if rows.full:
            return False
        rows.append_entry()
        return True


def _add_error(field, message) -> None:
    field.errors = [*field.errors, message]


def without_row(formdata: MultiDict, prefix: str, index: str) -> MultiDict:
    """The posted data less one row (PREFIX-INDEX-*), for the no-script "remove row" button."""
    start = f"{prefix}-{index}-"
    return MultiDict([(key, value) for key, value in formdata.items(multi=True) if not key.startswith(start)])


# --- Settings: provider settings and users (admins) ---------------------------------------------------------------

ROLE_CHOICES = [SelectChoice("staff", _l("Staff")), SelectChoice("admin", _l("Admin"))]
# Browsers must neither fill in nor offer to remember a provider secret.
_SECRET_INPUT = {"autocomplete": "new-password", "spellcheck": "false"}


def _blank_stops(form, field):
    """Validator: an empty field passes without further checks."""
    if not field.data:
        raise StopValidation()


class Matches:
    """Validator: the whole text matches the pattern."""

    def __init__(self, pattern: str, message):
        self.pattern = re.compile(pattern)
        self.message = message

    def __call__(self, form, field):
        if not self.pattern.fullmatch(field.data or ""):
            raise StopValidation(self.message)


def _provider_id(max_chars: int) -> list:
    return [
        _blank_stops,
        Length(max=max_chars, message=_l("At most %(max)s characters.")),
        Matches(r"[A-Za-z0-9_-]+", _l("Use only letters, digits, - and _.")),
    ]


def _opay_cipher_secret() -> list:
    return [
        _blank_stops,
        Length(min=16, max=16, message=_l("Exactly 16 characters.")),
        Matches(r"[A-Za-z0-9]+", _l("Use only letters and digits.")),
    ]


class ProviderSettingsForm(PortalForm):
    """A merchant's provider settings; a secret left empty keeps its stored value, "remove" deletes it."""

    oen_merchant_id = StringField(
        _l("Oen merchant id"),
        filters=[_strip],
        validators=_provider_id(64),
        description=_l("Your Oen sub-domain: ming for https://ming.oen.tw."),
    )
    oen_token = PasswordField(
        _l("Oen CRM token"),
        filters=[_strip],
        validators=[
            _blank_stops,
            Length(min=8, max=4096, message=_l("Between %(min)s and %(max)s characters.")),
            Matches(r"[!-~]+", _l("Use only letters, digits and punctuation, with no spaces.")),
        ],
        render_kw=_SECRET_INPUT,
    )
    clear_oen_token = BooleanField(_l("Remove the stored Oen CRM token"))
    mypay_store_uid = StringField(
        _l("MyPay store uid"),
        filters=[_strip],
        validators=_provider_id(32),
        description=_l("The store (特約商店) uid MyPay gave you."),
    )
    opay_merchant_id = StringField(_l("O'Pay merchant id"), filters=[_strip], validators=_provider_id(32))
    opay_hash_key = PasswordField(
        _l("O'Pay HashKey"), filters=[_strip], validators=_opay_cipher_secret(), render_kw=_SECRET_INPUT
    )
    clear_opay_hash_key = BooleanField(_l("Remove the stored O'Pay HashKey"))
    opay_hash_iv = PasswordField(
        _l("O'Pay HashIV"), filters=[_strip], validators=_opay_cipher_secret(), render_kw=_SECRET_INPUT
    )
    clear_opay_hash_iv = BooleanField(_l("Remove the stored O'Pay HashIV"))

    def __init__(self, *args, merchant_id: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.merchant_id = merchant_id

    def validate(self, extra_validators=None):
        """Field rules; then a secret cannot be both replaced and removed, and ids belong to one merchant only."""
        ok = super().validate(extra_validators)
        for name in PROVIDER_SECRET_FIELDS:
            if self[name].data and self[f"clear_{name}"].data and not self[name].errors:
                _add_error(self[name], _l("Either enter a new value or remove the stored one, not both."))
                ok = False
        if current_app.config["PROVIDER_ENV"] == "production":
            for name in PROVIDER_SECRET_FIELDS:
                if is_test_credential(self[name].data) and not self[name].errors:
                    _add_error(
                        self[name],
                        _l("This is a public test value from the provider's documents; production needs your own."),
                    )
                    ok = False
        for name in PROVIDER_ID_FIELDS:
            if self[name].data and not self[name].errors and self._used_elsewhere(name, self[name].data):
                # Callbacks find the merchant by these ids, so two merchants may not share one.
                _add_error(self[name], _l("Another merchant on this portal already uses this id."))
                ok = False
        return ok

    def _used_elsewhere(self, column: str, value: str) -> bool:
        from portal.extensions import db
        from portal.models import Merchant

        stmt = db.select(Merchant.id).where(getattr(Merchant, column) == value, Merchant.id != self.merchant_id)
        return db.session.execute(stmt.limit(1)).first() is not None


def _lower(value):
    return value.lower() if isinstance(value, str) else value


def _email_in_use(email: str) -> bool:
    from portal.extensions import db
    from portal.models import User

    return db.session.execute(db.select(User.id).filter_by(email=email).limit(1)).first() is not None


class UserCreateForm(PortalForm):
    email = StringField(
        _l("E-mail"),
        filters=[_strip, _lower],
        validators=[
            Required(_l("Please enter an e-mail address.")),
            PlainText(254),
            Email(_l("Please enter a valid e-mail address.")),
        ],
        render_kw={"type": "email", "autocomplete": "off"},
    )
    role = SelectField(
        _l("Role"), choices=ROLE_CHOICES, default="staff", invalid_choice_message=_l("Choose admin or staff.")
    )
    password = PasswordField(
        _l("Initial password"),
        validators=[
            Required(_l("Please enter an initial password.")),
            Length(min=MIN_PASSWORD_CHARS, max=1024, message=_l("Between %(min)s and %(max)s characters.")),
        ],
        render_kw={"autocomplete": "new-password"},
        description=_l("At least %(min)s characters. Give it to the person privately.", min=MIN_PASSWORD_CHARS),
    )

    def validate_email(self, field):
        if _email_in_use(field.data):
            raise StopValidation(_l("This e-mail address is already in use."))

    def validate_password(self, field):
        if field.errors:  # too short or too long already said
            return
        problem = password_problem(field.data or "", user_inputs=(self.email.data or "",))
        if problem:
            raise StopValidation(problem)


class PasswordChangeForm(PortalForm):
    """A user's own new password: the current one first, the new one twice."""

    current_password = PasswordField(
        _l("Current password"),
        validators=[Required(_l("Please enter your current password."))],
        render_kw={"autocomplete": "current-password"},
    )
    new_password = PasswordField(
        _l("New password"),
        validators=[Required(_l("Please enter a new password.")), Length(max=1024)],
        render_kw={"autocomplete": "new-password"},
        description=_l("At least %(min)s characters, not easy to guess.", min=MIN_PASSWORD_CHARS),
    )
    confirm_password = PasswordField(
        _l("New password again"),
        validators=[Required(_l("Please enter the new password again."))],
        render_kw={"autocomplete": "new-password"},
    )

    def __init__(self, *args, user_inputs: tuple[str, ...] = (), **kwargs):
        super().__init__(*args, **kwargs)
        self.user_inputs = user_inputs

    def validate_new_password(self, field):
        problem = password_problem(field.data or "", user_inputs=self.user_inputs)
        if problem:
            raise StopValidation(problem)

    def validate_confirm_password(self, field):
        if field.data != self.new_password.data:
            raise StopValidation(_l("The two new passwords do not match."))


class UserRoleForm(PortalForm):
    role = SelectField(_l("Role"), choices=ROLE_CHOICES, invalid_choice_message=_l("Choose admin or staff."))


class UserStatusForm(PortalForm):
    """Deactivate or reactivate a user (the CSRF token is the only field)."""


# --- Refunds (portal/refunds.py, views/refunds.py) ------------------------------------------------------------------

REFUND_REASON_MAX_CHARS = 500
_HIDDEN = {"type": "hidden"}


class RefundForm(PortalForm):
    """A refund: amount and reason, MyPay's e-invoice choice, O'Pay's back-office reference, the confirmation key."""

    checkout_id = StringField(render_kw=_HIDDEN)
    amount = StringField(
        _l("Amount to refund (NT$)"), validators=[Amount((1, money.ORDER_AMOUNT_MAX))], render_kw=_NUMERIC
    )
    reason = TextAreaField(
        _l("Reason"),
        filters=[_strip],
        validators=[
            Required(_l("Please say why the money is given back.")),
            PlainText(REFUND_REASON_MAX_CHARS, newlines=True),
        ],
    )
    invoice_state = SelectField(
        _l("E-invoice"),
        choices=[SelectChoice("4", _l("Void the e-invoice")), SelectChoice("6", _l("Issue an allowance"))],
        default="4",
        invalid_choice_message=_l("Choose void or allowance."),
    )
    manual_reference = StringField(_l("O'Pay refund reference"), filters=[_strip], validators=[PlainText(128)])
    idempotency_key = StringField(render_kw=_HIDDEN, validators=[PlainText(64)])

    @property
    def checkout(self) -> int | None:
        """The chosen checkout id, or None."""
        text = self.checkout_id.data or ""
        return int(text) if text.isascii() and text.isdigit() and len(text) <= 12 else None
