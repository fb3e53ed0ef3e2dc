"""What every portal form shares: the base class and the field rules the forms have in common."""

from __future__ import annotations

import re
import secrets
import unicodedata

from flask import request
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.form import _Auto
from wtforms import HiddenField
from wtforms.validators import Length, StopValidation

from portal import invoices, money


class PortalForm(FlaskForm):
    """The base of every portal form: reads only form fields, never a JSON body (which WTForms cannot take)."""

    class Meta:
        def wrap_formdata(self, form, formdata):
            if formdata is _Auto and request.method in ("POST", "PUT", "PATCH", "DELETE"):
                return request.form
            return FlaskForm.Meta.wrap_formdata(self, form, formdata)


# Amounts are text fields (parsed by money.parse_amount); the phone shows a number pad.
_NUMERIC = {"inputmode": "numeric", "autocomplete": "off"}


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
    if code == "digits":
        return _l("Use the digits 0–9 (such as 1200 or 1,200).")
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
        return _l("Put a comma every three digits (1,200) or none at all (1200).")
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


def invoice_message(code: str):
    """The message a person reads for refused e-invoice data (codes from portal.invoices)."""
    if code == "kind":
        return _l("Choose how the customer takes the invoice.")
    if code == "carrier_required":
        return _l("Please enter the carrier number.")
    if code == "mobile_format":
        return _l("A mobile barcode is / followed by 7 characters from 0–9, A–Z, . + - (such as /ABC+123).")
    if code == "citizen_format":
        return _l("A citizen certificate number is 2 capital letters and 14 digits (such as AB12345678901234).")
    if code == "tax_id_required":
        return _l("Please enter the tax ID.")
    if code == "tax_id_format":
        return _l("A tax ID is 8 digits.")
    if code == "tax_id_checksum":
        return _l("This is not a valid tax ID: please check the 8 digits.")
    if code == "title_required":
        return _l("Please enter the company name for the invoice.")
    if code == "title_too_long":
        return _l("At most %(max)s characters.", max=f"{invoices.TITLE_MAX_CHARS:,}")
    if code == "title_characters":
        return _l("Remove the control characters and < > from the company name.")
    if code == "donation_required":
        return _l("Please enter the donation code.")
    if code == "donation_format":
        return _l("A donation code is 3 to 7 digits.")
    return _l("Please check this field.")


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
        field.data = str(field.amount)  # shown back as the portal reads it: １，２００ becomes 1200


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


def _add_error(field, message) -> None:
    field.errors = [*field.errors, message]


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


def new_form_token() -> str:
    return secrets.token_urlsafe(24)


class SentOnce:
    """A form whose POST creates something: a one-time token rendered with it, so that the same form sent again (a
    reload, a double click) is recognised instead of creating a second one. Stored unique with what it created."""

    form_token = HiddenField(default=new_form_token, validators=[Length(min=16, max=64)])
