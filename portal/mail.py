"""Mails to customers and to the shop's staff: enqueued in the outbox with the change that causes them, composed and
sent by the worker over SMTP (the standard library's smtplib and email), in the reader's language.

Topics: "link" (staff e-mail the customer link), "receipt" (the order is paid), "refund" (money went back to the
customer), "reminder" (a link still unpaid after the shop's delay), "staff_paid" (a notice to the shop's address).
Each is composed when it is sent, from the order as it is then; a card shows as its last four digits at most; nothing
secret is put in a mail.
"""

from __future__ import annotations

import hashlib
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid

from flask import current_app, render_template
from flask_babel import force_locale
from flask_babel import gettext as _
from sqlalchemy import bindparam, select

from portal import outbox
from portal.extensions import db, execute_core
from portal.gateways import kept_merchant
from portal.models import Checkout, Merchant, Order, OutboxMessage, Refund

KIND = "mail"
TOPICS = ("link", "receipt", "refund", "reminder", "staff_paid")
LOCALES = ("zh_TW", "en")


class MailNotSent(Exception):
    """The mail server refused or could not be reached (retried by the outbox)."""


def mail_enabled() -> bool:
    return bool(current_app.config.get("MAIL_SERVER"))


def customer_locale(order: Order, chosen: str | None = None) -> str:
    """The customer's language: as chosen, else as they last read the link, else zh-TW."""
    for locale in (chosen, order.customer_locale):
        if locale in LOCALES:
            return locale
    return "zh_TW"


def enqueue_mail(topic: str, order: Order, *, to: str, dedupe_key: str, locale: str, **data) -> bool:
    """Put a mail about the order in the outbox, in the caller's transaction; False when mail is off on this portal or
    the event already has its mail."""
    if not mail_enabled() or not to:
        return False
    payload = {"to": to, "locale": locale, **data}
    return outbox.enqueue(
        KIND, topic, dedupe_key=dedupe_key, merchant_id=order.merchant_id, order_id=order.id, payload=payload
    )


def customer_link(order: Order) -> str:
    """The customer's link for the order, as the portal's public address."""
    base = current_app.config["PORTAL_BASE_URL"]
    if order.link_token:
        return f"{base}/pay/{order.link_token}"
    latest = order.checkouts[-1] if order.checkouts else None
    return f"{base}/pay/{latest.public_token}" if latest else ""


# ---------------------------------------------------------------- the order's events


# Built once, on the table: where the shop's staff want to hear of a paid order (read in the paying transaction).
_merchants = Merchant.__table__
NOTIFY_EMAIL = select(_merchants.c.notify_email).where(_merchants.c.id == bindparam("merchant_id"))


def on_order_paid(order: Order) -> None:
    """The order has just been paid (called in the transaction that says so): the receipt, and the staff's notice."""
    enqueue_mail(
        "receipt", order, to=order.customer_email, dedupe_key=f"receipt:{order.id}", locale=customer_locale(order)
    )
    kept = kept_merchant(order.merchant_id)  # read with a callback that paid it; else read now
    if kept is not None:
        notify_email = kept.notify_email
    else:
        notify_email = execute_core(NOTIFY_EMAIL, {"merchant_id": order.merchant_id}).scalar()
    if notify_email:
        enqueue_mail("staff_paid", order, to=notify_email, dedupe_key=f"staff_paid:{order.id}", locale="zh_TW")


def on_refund_made(refund: Refund, order: Order) -> None:
    """A refund has been made (called in the transaction that records it as made): the customer is told, once."""
    enqueue_mail(
        "refund",
        order,
        to=order.customer_email,
        dedupe_key=f"refund:{refund.id}",
        locale=customer_locale(order),
        refund_id=refund.id,
    )


# ---------------------------------------------------------------- composing


def compose(message: OutboxMessage) -> EmailMessage | None:
    """The mail as it is to be sent now; None when there is nothing left to send (the order is gone)."""
    order = db.session.get(Order, message.order_id) if message.order_id else None
    if order is None:
        return None
    merchant = db.session.get(Merchant, order.merchant_id)
    payload = message.payload or {}
    locale = payload.get("locale") if payload.get("locale") in LOCALES else "zh_TW"
    paid = next((c for c in reversed(order.checkouts) if c.is_paid), None)
    context = {
        "order": order,
        "merchant": merchant,
        "paid": paid,
        "link": payload.get("url") or customer_link(order),
        "order_url": f"{current_app.config['PORTAL_BASE_URL']}/orders/{order.id}",
        "expires_at": _link_expiry(order),
        "refund": _refund(payload, order) if message.topic == "refund" else None,
    }
    if message.topic == "refund" and context["refund"] is None:
        return None
    with force_locale(locale):
        subject = _subject(message.topic, order, merchant)
        text = render_template(f"mail/{message.topic}.txt", **context)
        html = render_template(f"mail/{message.topic}.html", subject=subject, **context)
    mail = EmailMessage()
    mail["Subject"] = subject
    mail["From"] = formataddr((merchant.name if merchant else "", current_app.config["MAIL_FROM"]))
    mail["To"] = payload["to"]
    if merchant is not None and merchant.contact_email and message.topic != "staff_paid":
        mail["Reply-To"] = merchant.contact_email
    mail["Date"] = formatdate(usegmt=True)
    # The same Message-ID on every attempt: a mail sent again after a crash shows once in the reader's client.
    domain = current_app.config["MAIL_FROM"].rpartition("@")[2] or "localhost"
    digest = hashlib.sha256(message.dedupe_key.encode()).hexdigest()[:16]
    mail["Message-ID"] = make_msgid(idstring=f"{message.id}.{digest}", domain=domain)
    mail["Content-Language"] = "zh-TW" if locale == "zh_TW" else "en"
    mail.set_content(text)
    mail.add_alternative(html, subtype="html")
    return mail


def _subject(topic: str, order: Order, merchant: Merchant | None) -> str:
    shop = merchant.name if merchant else ""
    if topic == "link":
        return _("%(shop)s: payment link for order %(number)s", shop=shop, number=order.number)
    if topic == "receipt":
        return _("%(shop)s: receipt for order %(number)s", shop=shop, number=order.number)
    if topic == "refund":
        return _("%(shop)s: refund for order %(number)s", shop=shop, number=order.number)
    if topic == "reminder":
        return _("%(shop)s: order %(number)s is waiting for your payment", shop=shop, number=order.number)
    return _("Order %(number)s is paid", number=order.number)


def _refund(payload: dict, order: Order) -> Refund | None:
    """The refund a "refund" mail is about, if it is still the order's."""
    refund = db.session.get(Refund, payload.get("refund_id")) if isinstance(payload.get("refund_id"), int) else None
    return refund if refund is not None and refund.order_id == order.id else None


def _link_expiry(order: Order):
    if order.link_expires_at:
        return order.link_expires_at
    latest = order.checkouts[-1] if order.checkouts else None
    return latest.expires_at if isinstance(latest, Checkout) else None


# ---------------------------------------------------------------- sending


def send(mail: EmailMessage) -> None:
    """Hand the mail to the SMTP server (MAIL_*); MailNotSent when it cannot be."""
    config = current_app.config
    host, port, timeout = config["MAIL_SERVER"], int(config["MAIL_PORT"]), int(config["MAIL_TIMEOUT_S"])
    if not host:
        raise MailNotSent("MAIL_SERVER is not set")
    security = config["MAIL_SECURITY"]
    try:
        if security == "tls":
            smtp = smtplib.SMTP_SSL(host, port, timeout=timeout, context=ssl.create_default_context())
        else:
            smtp = smtplib.SMTP(host, port, timeout=timeout)
        with smtp:
            if security == "starttls":
                smtp.starttls(context=ssl.create_default_context())
            if config.get("MAIL_USERNAME"):
                smtp.login(config["MAIL_USERNAME"], config.get("MAIL_PASSWORD") or "")
            refused = smtp.send_message(mail)
    except (OSError, smtplib.SMTPException) as exc:
        raise MailNotSent(f"{host}:{port}: {type(exc).__name__}: {exc}") from exc
    if refused:
        raise MailNotSent(f"refused recipients: {', '.join(refused)}")


def send_outbox_mail(message: OutboxMessage) -> None:
    """The outbox's sender for mails."""
    mail = compose(message)
    if mail is not None:
        send(mail)


outbox.register(KIND, send_outbox_mail, outbox.MAIL_RETRY)
