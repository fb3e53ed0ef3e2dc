"""A refund: amount and reason, MyPay's e-invoice choice, O'Pay's back-office reference, the confirmation key."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from wtforms import (
    SelectChoice,
    SelectField,
    StringField,
    TextAreaField,
)

from portal import money
from portal.forms.base import (
    _NUMERIC,
    Amount,
    PlainText,
    PortalForm,
    Required,
    _strip,
)

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
