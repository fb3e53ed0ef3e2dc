"""Every code-to-label table of the interface, in one place, registered once for templates.

Codes (states, providers, audit actions, roles) are stored and compared as codes; a person reads these labels, in
their language (lazy strings: each request renders its own). An unknown code shows as itself.
"""

from __future__ import annotations

import json
from datetime import datetime

from babel.lists import format_list
from flask import Flask
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from portal.filters import mask_cards, taipei, twd
from portal.forms import ProviderSettingsForm
from portal.forms.webhook_endpoints import EVENT_LABELS
from portal.models import PAID_STATES, CallbackStatus, CheckoutState

# The providers as the interface names them (zh-TW: 應援科技, MyPay, 歐付寶).
PROVIDER_NAMES = {"oen": _l("Oen Tech"), "mypay": _l("MyPay"), "opay": _l("O'Pay")}

STATE_LABELS = {
    "draft": _l("Draft"),
    "creating": _l("Creating link"),
    "awaiting_payment": _l("Awaiting payment"),
    "authorised": _l("Authorised"),
    "processing": _l("Charging card"),
    "paid": _l("Paid"),
    "failed": _l("Failed"),
    "expired": _l("Expired"),
    "cancelled": _l("Cancelled"),
    "partially_refunded": _l("Partially refunded"),
    "refunded": _l("Refunded"),
    "unknown": _l("Unknown"),
}

SOURCE_LABELS = {
    "create": _l("link created"),
    "callback": _l("provider callback"),
    "callback+query": _l("callback confirmed by query"),
    "query": _l("provider query"),
    "reconcile": _l("reconcile"),
    "refresh": _l("refresh from provider"),
    "return": _l("customer returned"),
    "expiry": _l("link expired"),
    "manual": _l("by an admin"),
    "refund": _l("refund"),
    "cancel": _l("cancelled by staff"),
    "switch": _l("provider switched by staff"),
    "card_again": _l("customer entered the card again"),
}


ACTION_LABELS = {
    "login": _l("Logged in"),
    "login_failed": _l("Failed login"),
    "logout": _l("Logged out"),
    "password_changed": _l("Password changed"),
    "two_factor_enabled": _l("Two-factor sign-in turned on"),
    "two_factor_disabled": _l("Two-factor sign-in turned off"),
    "two_factor_used": _l("Logged in with two-factor sign-in"),
    "two_factor_failed": _l("Wrong two-factor code"),
    "two_factor_reset": _l("Two-factor sign-in reset by an admin"),
    "two_factor_requirement_changed": _l("Two-factor requirement for admins changed"),
    "order_created": _l("Order created"),
    "order_edited": _l("Draft order changed"),
    "order_deleted": _l("Draft order deleted"),
    "order_duplicated": _l("Order copied as a new draft"),
    "orders_exported": _l("Orders exported as CSV"),
    "settings_changed": _l("Shop settings changed"),  # providers, contact for customers, notices
    "user_created": _l("User created"),
    "user_changed": _l("User changed"),
    "card_token_read": _l("Card token read"),
    "callback_refused": _l("Callback refused"),
    "provider_state_applied": _l("Provider's state applied"),
    "refund_recorded": _l("Refund recorded by hand"),
    "refund_requested": _l("Refund requested"),
    # refunds.py writes refund_{state} when the provider's answer settles a requested refund
    "refund_succeeded": _l("Refund succeeded"),
    "refund_pending": _l("Refund accepted, money moves later"),
    "refund_failed": _l("Refund not made"),
    "refund_unknown": _l("Refund outcome unknown"),
    "refund_checked": _l("Refund checked with the provider"),
    "link_cancelled": _l("Payment link cancelled"),
    "link_switched": _l("Payment link switched to another provider"),
    "link_sent": _l("Payment link e-mailed to the customer"),
    "attention_handled": _l("Payment that needed attention marked as handled"),
    "api_key_created": _l("API key created"),
    "api_key_revoked": _l("API key revoked"),
    "webhook_endpoint_created": _l("Webhook endpoint added"),
    "webhook_endpoint_enabled": _l("Webhook endpoint enabled"),
    "webhook_endpoint_disabled": _l("Webhook endpoint disabled"),
    "webhook_endpoint_deleted": _l("Webhook endpoint deleted"),
    "webhook_secret_rolled": _l("Webhook signing secret replaced"),
    "webhook_resent": _l("Webhook event sent again"),
}

ROLE_LABELS = {"admin": _l("Admin"), "staff": _l("Staff")}

# The names in audit details (security.audit's keyword arguments); an unknown name shows as is.
DETAIL_LABELS = {
    "amount": _l("Amount"),
    "change": _l("Change"),
    "changed": _l("Changed"),
    "checkout": _l("Reference"),  # a payment's reference, as the order page's attempts name it
    "code": _l("Code"),
    "prefix": _l("Key begins with"),
    "refunds": _l("May refund"),
    "date_from": _l("From (Taipei date)"),
    "date_to": _l("To (Taipei date)"),
    "description": _l("Description"),
    "email": _l("E-mail"),
    "event": _l("Event id"),
    "event_type": _l("Event"),
    "events": _l("Events"),
    "flagged": _l("Had been stopped"),
    "url": _l("Endpoint URL"),
    "ended": _l("Attempts ended"),
    "error": _l("Error"),
    "fields": _l("Settings"),
    "invoice_state": _l("E-invoice"),
    "locale": _l("Language"),
    "manual_reference": _l("Provider's refund reference"),
    "method": _l("Method"),
    "message": _l("Message"),
    "name": _l("Name"),
    "number": _l("Order number"),
    "payable": _l("To pay"),
    "payable_before": _l("To pay before"),
    "provider": _l("Provider"),
    "provider_refunded": _l("Refunded at the provider"),
    "purpose": _l("Purpose"),
    "reason": _l("Reason"),
    "required": _l("Required"),
    "role": _l("Role"),
    "role_from": _l("Role before"),
    "role_to": _l("Role after"),
    "search": _l("Customer or order number"),
    "source": _l("Copied from order"),
    "state": _l("State"),
    "to": _l("Sent to"),
}

USER_CHANGE_LABELS = {"deactivated": _l("Deactivated"), "reactivated": _l("Reactivated")}
# Why a saved card's token was read (charges.read_card_token).
TOKEN_PURPOSE_LABELS = {"charge": _l("To charge the card")}
# MyPay's invoice_state on a refund: void the e-invoice (4) or issue an allowance (6)
INVOICE_REFUND_LABELS = {"4": _l("Void"), "6": _l("Allowance")}


# How a payment was made, as the providers' codes name it (Oen: card, atm, cvs; MyPay's pfn; O'Pay's WECHAT); matched
# without regard to case. An unknown code shows as the provider sent it.
PAYMENT_METHOD_LABELS = {
    "card": _l("Credit card"),
    "credit": _l("Credit card"),
    "creditcard": _l("Credit card"),
    "credit_card": _l("Credit card"),
    "atm": _l("ATM transfer"),
    "webatm": _l("ATM transfer"),
    "e_collection": _l("ATM transfer"),
    "virtualaccount": _l("ATM transfer"),
    "cvs": _l("Convenience store"),
    "cstorecode": _l("Convenience store"),
    "ibon": _l("Convenience store"),
    "famiport": _l("Convenience store"),
    "barcode": _l("Convenience store bar code"),
    "wechat": _l("WeChat Pay"),
    "alipay": _l("Alipay"),
    "applepay": _l("Apple Pay"),
    "googlepay": _l("Google Pay"),
    "linepayon": _l("LINE Pay"),
    "all": _l("Not chosen yet (every method offered)"),  # MyPay's pfn before the customer picks one on its page
}


def payment_method_label(method: str | None) -> str:
    """A provider's payment method code as the reader's language names it."""
    if not method:
        return ""
    return str(PAYMENT_METHOD_LABELS.get(str(method).strip().lower(), method))


def audit_action_label(action: str) -> str:
    """An audit action as a person reads it; unknown actions show their code."""
    return _label(ACTION_LABELS, action)


def role_label(role: str) -> str:
    return _label(ROLE_LABELS, role)


# A refund's state.
REFUND_STATE_LABELS = {
    "requested": _l("Being sent"),
    "succeeded": _l("Refunded"),
    "pending": _l("Accepted, money moves later"),
    "failed": _l("Not made"),
    "unknown": _l("Outcome unknown"),
}

# A stored callback's status; the code stays in the filter's value and the badge's CSS class.
CALLBACK_STATUS_LABELS = {
    "refused": _l("Refused"),
    "error": _l("Error"),
    "applied": _l("Applied"),
    "recorded": _l("Recorded, no change"),
    "unconfirmed": _l("Not confirmed by the provider, no change"),
    "received": _l("Received, not processed yet"),
}


def callback_errors() -> dict:
    """The portal's own callback refusal reasons, stored in English (evidence), shown in the reader's language.

    Reasons from the provider layer (InvalidCallback, ProviderError) are shown as stored.
    """
    from portal.payments import NO_MERCHANT, NOT_READY  # the intake defines its reasons; labels only translate them

    return {
        NO_MERCHANT: _l("The callback names no merchant known to this portal."),
        NOT_READY: _l("The payment link was still being opened; the provider will send the callback again."),
    }


def _label(table: dict, code) -> str:
    return str(table.get(code, code))


def provider_label(provider: str) -> str:
    """A provider code as the reader's language names it."""
    return _label(PROVIDER_NAMES, provider)


def refund_state_label(state: str) -> str:
    """A refund's state as a person reads it."""
    return _label(REFUND_STATE_LABELS, state)


def callback_status_label(status: str) -> str:
    return _label(CALLBACK_STATUS_LABELS, status)


def callback_outcome(status: str, said: str | None, attempt_state: str | None) -> str:
    """A stored callback's status beside it in the list; one recorded without a change that said what its attempt
    already was (a payment the customer's return page had applied a moment before) says so, not "no change" alone,
    which reads as if the payment had not been taken."""
    paid = said == CheckoutState.PAID and attempt_state in PAID_STATES
    if status == CallbackStatus.RECORDED and said is not None and (said == attempt_state or paid):
        return _("Recorded, already so")
    return callback_status_label(status)


def callback_error_text(error: str) -> str:
    """A stored callback error in the reader's language when it is one of the portal's own; otherwise as stored."""
    return _label(callback_errors(), error)


def reads_english() -> bool:
    """Whether the reader reads the portal in English (else Traditional Chinese, the default)."""
    return str(get_locale() or "").startswith("en")


def attempt_error(checkout) -> str:
    """An attempt's last provider error in the reader's language (kept in both); as stored when only English was."""
    if checkout.last_error_zh and not reads_english():
        return checkout.last_error_zh
    return checkout.last_error or ""


# Why a payment needs attention (models.AttentionReason), beside its flag on the order page.
ATTENTION_LABELS = {
    "amount_differs": _l("The provider took another amount than was asked."),
    "paid_after_end": _l("Paid after the link had expired or been cancelled."),
    "paid_twice": _l("The order had already been paid through another payment: this is a double payment."),
}
STAFF_REFUND_ADVICE = _l("Ask an admin to refund one of the two payments.")
# What staff can do about it, shown while the flag is up.
ATTENTION_ADVICE = {
    "amount_differs": _l("Check the amount with the customer before shipping."),
    "paid_after_end": _l("Ask the customer whether they still want the order, or refund it."),
    "paid_twice": _l("Refund one of the two payments."),
}


def attention_label(reason: str | None) -> str:
    """What a payment's attention reason means; "" when none was recorded (flagged before reasons were kept)."""
    return str(ATTENTION_LABELS.get(reason or "", reason or ""))


def attention_advice(reason: str | None, *, admin: bool = True) -> str:
    """Why the payment was flagged and what the reader can do about it, as two sentences of the reader's language
    (staff, who may not refund, are told to ask an admin)."""
    advice = str(ATTENTION_ADVICE.get(reason or "", "") if admin or reason != "paid_twice" else STAFF_REFUND_ADVICE)
    said = attention_label(reason)
    return f"{said}{' ' if reads_english() and said and advice else ''}{advice}"


def state_label(state: str) -> str:
    return str(STATE_LABELS.get(state, state))


def source_label(source: str) -> str:
    return str(SOURCE_LABELS.get(source, source))


def history_step(event) -> str:
    """What one row of an attempt's history says happened: a move ("Awaiting payment → Paid"), or, for a provider's
    word that changed nothing (history_badge beside it), what it was: a state it reported, an error it answered with,
    a charge whose outcome it did not give, the payment page it sent."""
    if event.applied:
        if event.from_state != event.to_state:
            return f"{state_label(event.from_state)} → {state_label(event.to_state)}"
        return state_label(event.to_state)
    kind = _unapplied_kind(event)
    if kind == "error":
        return _("the provider answered with an error")
    if kind == "unknown":
        return _("the charge's outcome is not known yet")
    if kind == "page":
        return _("the provider's payment page was received")
    return _("reported %(state)s", state=state_label(event.to_state))


def history_badge(event) -> str:
    """Beside a provider's word that changed nothing: whether it confirmed the state the attempt was already in (a
    query after the callback, a callback after the query), or a payment the attempt then came to (a hint, applied once
    the provider's query said the same), or was kept as evidence and not applied (a state behind the attempt's, an
    error, a charge not known yet)."""
    kind = _unapplied_kind(event)
    if kind == "page":
        return ""  # the page is kept to show it again: a record, with no state to apply
    if not history_confirms(event):
        return _("recorded, not applied")
    return _("already so") if kind == "confirms" else _("confirmed afterwards")


def history_confirms(event) -> bool:
    """A history row that changed nothing and left nothing out: the provider only confirmed the state the attempt was
    in, or said it was paid before the attempt was (a MyPay or Oen notice is a hint until their query says the same)
    and the attempt is paid now, or sent the payment page kept to show again (O'Pay)."""
    if event.applied:
        return False
    kind = _unapplied_kind(event)
    if kind == "reported":
        attempt = event.checkout
        return event.to_state == "paid" and attempt is not None and attempt.state in PAID_STATES
    return kind in ("confirms", "page")


def _unapplied_kind(event) -> str:
    """What a history row that changed nothing was: error, unknown (a charge's outcome), page (the provider's payment
    page), confirms (the state the attempt was in) or reported (a state it did not move to)."""
    try:
        evidence = json.loads(event.detail or "{}")
    except ValueError:
        evidence = {}
    evidence = evidence if isinstance(evidence, dict) else {}
    if event.from_state != event.to_state:
        return "reported"
    if "error" in (evidence.get("provider_state"), evidence.get("state")):
        return "error"
    if evidence.get("charge") == "unknown":
        return "unknown"
    if evidence.get("provider_page"):
        return "page"
    return "confirms"


# The names in an attempt's evidence (payments.state.detail's keyword arguments) as its history shows them.
HISTORY_LABELS = {
    "amount": _l("Amount"),
    "callback": _l("Callback"),
    "card_token": _l("Card token"),
    "charge": _l("Charge"),
    "charge_again_from": _l("Card saved with"),
    "checkout_id": _l("Provider's checkout id"),
    "error": _l("Error"),
    "expires_at": _l("Link expiry"),
    "message": _l("Provider's message"),
    "paid": _l("Paid"),
    "provider": _l("Provider"),
    "provider_page": _l("Payment page"),
    "provider_state": _l("The provider says"),
    "reason": _l("Reason"),
    "refunded": _l("Refunded"),
    "state": _l("The callback says"),
    "to": _l("Switched to"),
    "transactions": _l("The provider's transactions"),
    "uid": _l("Provider's order id"),
    "url": _l("Payment page"),
}
# Evidence values that are the portal's own words, as stored (English), shown in the reader's language.
HISTORY_WORDS = {
    "received": _l("received"),
    "unknown": _l("outcome not known"),
    "refused": _l("refused"),
    "none": _l("nothing on record"),
    "no card token from the provider": _l("the provider sent no card token"),
}
# Evidence that names the portal's own database ids (who switched or ended a link, which refund moved the attempt): the
# audit log names the person, the refunds page the refund.
HISTORY_HIDDEN = ("user_id", "by")


def history_details(event) -> list[tuple[str, str]]:
    """An attempt's history row's evidence as (label, text) pairs in the reader's language: states, providers, amounts
    and times as the page shows them elsewhere, anything card-like masked; evidence that is not a JSON object shows
    as stored."""
    try:
        evidence = json.loads(event.detail or "{}")
    except ValueError:
        evidence = event.detail
    if not isinstance(evidence, dict):
        return [(_("Recorded"), mask_cards(str(evidence)))] if evidence not in (None, "", [], {}) else []
    pairs = []
    for key, value in evidence.items():
        if key in HISTORY_HIDDEN or value is None or value == "" or value == []:
            continue
        pairs.append((str(HISTORY_LABELS.get(key, key)), mask_cards(_history_value(str(key), value))))
    return pairs


def _history_value(key: str, value) -> str:
    if key in ("provider", "to"):
        return provider_label(str(value))
    if key in ("amount", "paid", "refunded") and isinstance(value, int) and not isinstance(value, bool):
        return twd(value)
    if key in ("state", "provider_state"):
        return str(HISTORY_WORDS.get(value, "")) or state_label(str(value))
    if key == "callback" and isinstance(value, int):
        return f"#{value}"
    if key == "expires_at" and isinstance(value, str):
        try:
            return taipei(datetime.fromisoformat(value), "%Y-%m-%d %H:%M:%S")
        except ValueError:
            return value
    if key == "transactions" and isinstance(value, list):
        return "; ".join(_history_transaction(t) for t in value)
    if isinstance(value, str) and value in HISTORY_WORDS:
        return str(HISTORY_WORDS[value])
    return _stored_text(value)


def _history_transaction(transaction) -> str:
    if not isinstance(transaction, dict):
        return _stored_text(transaction)
    parts = [str(transaction.get("id") or ""), state_label(str(transaction.get("state") or ""))]
    amount = transaction.get("amount")
    if isinstance(amount, int) and not isinstance(amount, bool):
        parts.append(twd(amount))
    return " ".join(part for part in parts if part)


# Settings whose form label leads into its input ("Notify staff of paid orders at" [address]), named as a list of
# changed settings reads them.
SETTING_NAMES = {
    "notify_email": _l("Paid-order notices to staff"),
    "reminder_hours": _l("Hours before an unpaid-link reminder"),
}


def setting_label(name: str) -> str:
    """A provider setting's name (settings_changed lists them): as its form field is labelled, or, where that label
    leads into the input, by SETTING_NAMES."""
    if name in SETTING_NAMES:
        return str(SETTING_NAMES[name])
    field = getattr(ProviderSettingsForm, name, None)
    args = getattr(field, "args", None)
    return str(args[0]) if args else name


def _detail_value(action: str, key: str, value) -> str | None:
    """A detail value that is a code, as a person reads it; None when the value is shown as stored."""
    if isinstance(value, bool):
        return _("Yes") if value else _("No")
    if key in ("role", "role_from", "role_to"):
        return role_label(str(value))
    if key == "provider":
        return provider_label(str(value))
    if key == "change":
        return str(USER_CHANGE_LABELS.get(value, value))
    if key == "purpose":
        return str(TOKEN_PURPOSE_LABELS.get(value, value))
    if key == "fields" and isinstance(value, list | tuple):
        return spoken_list(setting_label(str(v)) for v in value)
    if key == "invoice_state":
        return str(INVOICE_REFUND_LABELS.get(str(value), value))
    if key == "state" and action.startswith("refund"):
        return refund_state_label(str(value))
    if key == "state" and action == "orders_exported":
        return state_label(str(value))
    if key == "reason" and action == "callback_refused" and isinstance(value, str):
        return callback_error_text(value)
    if key == "reason" and action == "attention_handled" and isinstance(value, str):
        return attention_label(value)
    if key in MONEY_DETAILS and isinstance(value, int):
        return twd(value)
    if key == "events" and action.startswith("webhook_endpoint") and isinstance(value, list | tuple):
        # An endpoint with no event ticked receives every event (merchant_webhooks.clean_events).
        return spoken_list(str(EVENT_LABELS.get(str(v), v)) for v in value) or _("All events")
    return None


# Audit details that are amounts of money (whole TWD).
MONEY_DETAILS = ("amount", "payable", "payable_before", "provider_refunded")


# Audit details that are the portal's own database ids: never shown as such. Each is shown as what a person knows
# (an order's number, a user's e-mail, the provider's refund reference, a payment's reference, a callback's provider)
# when audit_references found it and the entry does not show it already; otherwise it is left out.
ID_DETAILS = ("order_id", "refund_id", "target_user_id", "key_id", "endpoint_id", "event_id", "checkout")


def audit_references(events, merchant_id: int) -> dict:
    """What the ids in these audit entries stand for, looked up within the merchant: {(detail name, id): text}."""
    from portal.extensions import db
    from portal.models import Checkout, Order, Refund, User, WebhookEvent

    sources = {
        "order_id": (Order, lambda row: row.number),
        "refund_id": (Refund, lambda row: row.provider_refund_id or row.manual_reference or ""),
        "target_user_id": (User, lambda row: row.email),
        "checkout": (Checkout, lambda row: row.reference),
        "event_id": (WebhookEvent, lambda row: provider_label(row.provider)),
    }
    wanted: dict[str, set[int]] = {key: set() for key in sources}
    for event in events:
        for key, ids in wanted.items():
            value = (event.detail or {}).get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                ids.add(value)
    found = {}
    for key, (model, text) in sources.items():
        if wanted[key]:
            stmt = db.select(model).where(model.id.in_(wanted[key]), model.merchant_id == merchant_id)
            for row in db.session.execute(stmt).scalars():
                found[(key, row.id)] = text(row)
    return found


def _reference(key: str, value, detail: dict, references: dict) -> tuple[str, str] | None:
    """An id detail as (label, text) a person reads, or None when it is left out."""
    if key == "checkout" and isinstance(value, str):
        return str(DETAIL_LABELS["checkout"]), value  # already the payment's reference
    known = references.get((key, value)) if isinstance(value, int) and not isinstance(value, bool) else None
    if not known:
        return None
    if key == "order_id" and "number" not in detail:
        return str(DETAIL_LABELS["number"]), known
    if key == "refund_id" and not detail.get("manual_reference"):
        return str(DETAIL_LABELS["manual_reference"]), known
    if key == "target_user_id" and "email" not in detail:
        return str(DETAIL_LABELS["email"]), known
    if key == "checkout":
        return str(DETAIL_LABELS["checkout"]), known
    if key == "event_id":
        return str(DETAIL_LABELS["provider"]), known
    return None


def describe(detail: dict | None, action: str = "", references: dict | None = None) -> list[tuple[str, str]]:
    """An audit entry's detail as (label, text) pairs in the reader's language, with anything card-like masked.

    The names are translated; values that are codes (roles, providers, states) show as labels, anything else as
    stored. Database ids are not shown: `references` (audit_references) turns them into what a person knows.
    """
    pairs = []
    detail = detail or {}
    for key, value in detail.items():
        if value is None or value == "":
            continue  # recorded without a value: nothing to read (and no empty row beside a label shown already)
        if str(key) in ID_DETAILS:
            shown = _reference(str(key), value, detail, references or {})
            if shown:
                pairs.append((shown[0], mask_cards(shown[1])))
            continue
        text = _detail_value(action, str(key), value)
        if text is None:
            text = _stored_text(value)
        pairs.append((str(DETAIL_LABELS.get(str(key), key)), mask_cards(text)))
    return pairs


def colon() -> str:
    """The colon after a label as the reader's language writes it: 「電話：」, "Phone: "."""
    return ": " if reads_english() else "："


def spoken_list(values) -> str:
    """A list as the reader's language writes one: 「甲、乙和丙」, "A, B, and C"."""
    return format_list([str(v) for v in values], locale=str(get_locale() or "zh_Hant_TW"))


def _stored_text(value) -> str:
    if isinstance(value, list | tuple):
        return spoken_list(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return "" if value is None else str(value)


def delivery_error_text(error: str) -> str:
    """A webhook delivery's transport error (stored in English, as evidence) in the reader's language."""
    if error == "could not connect":
        return _("Could not connect")
    if error == "TLS error (certificate or handshake)":
        return _("TLS error (certificate or handshake)")
    if error.startswith("no answer within "):
        return _("No answer within %(seconds)s s", seconds=error.removeprefix("no answer within ").removesuffix(" s"))
    if error.startswith("refused: "):
        return _("Refused: %(why)s", why=error.removeprefix("refused: "))
    if error.startswith("request failed ("):
        return _("The request failed (%(kind)s)", kind=error.removeprefix("request failed (").rstrip(")"))
    return error


def register(app: Flask) -> None:
    """The labels as template filters and globals (the one registration)."""
    for name, function in (
        ("state_label", state_label),
        ("attention_label", attention_label),
        ("attention_advice", attention_advice),
        ("source_label", source_label),
        ("history_step", history_step),
        ("history_badge", history_badge),
        ("history_confirms", history_confirms),
        ("history_details", history_details),
        ("provider_label", provider_label),
        ("audit_action_label", audit_action_label),
        ("role_label", role_label),
        ("refund_state_label", refund_state_label),
        ("callback_status_label", callback_status_label),
        ("callback_outcome", callback_outcome),
        ("callback_error_text", callback_error_text),
        ("attempt_error", attempt_error),
        ("spoken_list", spoken_list),
        ("colon", colon),
        ("payment_method_label", payment_method_label),
        ("delivery_error_text", delivery_error_text),
    ):
        app.jinja_env.filters[name] = function
        app.jinja_env.globals[name] = function
