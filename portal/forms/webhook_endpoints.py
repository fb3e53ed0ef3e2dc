"""The webhook endpoints' forms (Settings → Webhooks)."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from wtforms import SelectChoice, SelectMultipleField, StringField, URLField
from wtforms.validators import DataRequired, Optional
from wtforms.widgets import CheckboxInput, ListWidget

from portal.forms.base import PlainText, PortalForm, SentOnce, _strip

EVENT_LABELS = {
    "order.paid": _l("Order paid"),
    "order.failed": _l("Payment failed"),
    "order.expired": _l("Payment link expired"),
    "order.cancelled": _l("Payment link cancelled"),
    "order.refunded": _l("Order refunded"),
    "order.partially_refunded": _l("Order partly refunded"),
}

URL_MESSAGES = {
    "format": _l("Enter a full address starting with https:// (no user name or # part)."),
    "https": _l("Use an https:// address."),
    "private": _l("This address reaches a private or internal network; use your system's public https address."),
}


class WebhookEndpointForm(SentOnce, PortalForm):
    url = URLField(
        _l("Endpoint URL"),
        filters=[_strip],
        validators=[DataRequired(_l("Enter the address that receives the events.")), PlainText(2048)],
        render_kw={"placeholder": "https://shop.example.com/portal-webhooks", "autocomplete": "off"},
    )
    events = SelectMultipleField(
        _l("Events"),
        choices=[SelectChoice(value, label) for value, label in EVENT_LABELS.items()],
        widget=ListWidget(prefix_label=False),
        option_widget=CheckboxInput(),
        validate_choice=True,
        description=_l("None ticked: every event, including those added later."),
    )
    description = StringField(_l("Description"), filters=[_strip], validators=[Optional(), PlainText(200)])


class WebhookActionForm(PortalForm):
    """Enable, disable, delete, roll the secret or resend (the CSRF token is the only field)."""
