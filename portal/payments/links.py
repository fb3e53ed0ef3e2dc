"""The order's customer link: made and switched by staff, retried by the customer, ended by staff.

The link (/pay/<order.link_token>) belongs to the order and stays the same across attempts: after a decline or an
expiry the customer opens a new attempt (a new provider reference) on the same link; staff may switch its provider
(the open attempt is cancelled first) or end it. Every change runs under the order's row lock, and start_checkout
refuses a second open attempt under the same lock, so two clicks or two tabs never open two live attempts.

No provider of PROVIDERS.md has a call that cancels a hosted payment page: a cancelled attempt's page may still take a
payment until it expires; such a payment is applied and flagged for attention (state.apply_state).
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from flask import current_app
from flask_babel import gettext as _

from portal.extensions import db
from portal.models import Checkout, CheckoutState, Order, utcnow
from portal.payments.attempts import (
    CheckoutError,
    keep_merchant,
    locked_order,
    open_at_provider,
    prepare_attempt,
    provider_choices,
)
from portal.payments.locking import locked_checkout, write_transaction
from portal.payments.snapshots import customer_message
from portal.payments.state import detail, move, refresh_order
from portal.providers.base import ProviderError
from portal.security import audit

CHOICE = "choice"  # the customer picks the provider on the link's page
# How long after a card attempt opened the customer may start it over when its provider has not told the portal about
# their card (Oen's token notice lost or late): such an attempt can be charged by nobody.
CARD_WAIT = timedelta(minutes=2)
# Attempts a person must not end from the portal: a card charge is under way at the provider.
BUSY_STATES = (CheckoutState.AUTHORISED, CheckoutState.PROCESSING)


def link_live(order: Order) -> bool:
    """The order has a link the customer can still use (not ended by staff, not past its time)."""
    return bool(
        order.link_token
        and order.link_ended_at is None
        and order.link_expires_at is not None
        and order.link_expires_at > utcnow()
    )


def customer_providers(order: Order) -> list[str]:
    """The providers the customer may pick for this order (configured for the merchant and the operator)."""
    return [name for name, ok, _why in provider_choices(order) if ok]


def _end_open_attempts(order: Order, source: str, **evidence) -> list[str]:
    """Cancel the order's open attempts (the order is locked); returns their references."""
    ended = []
    for checkout in list(order.checkouts):
        if not checkout.is_open:
            continue
        if checkout.state in BUSY_STATES:
            raise CheckoutError(
                _("A card payment is being processed for this order right now. Refresh from the provider first.")
            )
        locked = locked_checkout(checkout.id)
        move(locked, CheckoutState.CANCELLED, source, detail(**evidence))
        ended.append(locked.reference)
    return ended


def open_link(
    order: Order, provider: str, user_id: int | None, customer_ip: str = "", *, switch: bool = False
) -> Checkout | None:
    """Staff: make the order's link with a provider (or the customer's choice), or (switch) change a live link's.

    A live link keeps its address; an ended or expired one is replaced by a new address. For a fixed provider the
    first attempt is opened at once (start_checkout); returns it (None for the customer's choice). A new link whose
    first attempt the provider refuses is not kept. Without `switch` a live link is left alone (a second click).
    """
    order_id, merchant = order.id, keep_merchant(order)
    with write_transaction(keep_reads=True):
        order = locked_order(order_id, lines=provider != CHOICE, merchant=merchant)
        if order.is_paid:
            raise CheckoutError(_("This order is already paid."))
        if provider == CHOICE:
            if not customer_providers(order):
                raise CheckoutError(_("No payment provider can take this order yet."))
        else:
            allowed = {name: (ok, why) for name, ok, why in provider_choices(order)}
            if provider not in allowed:
                raise CheckoutError(_("Choose Oen Tech, MyPay or O'Pay."))
            if not allowed[provider][0]:
                raise CheckoutError(allowed[provider][1])
        made = not link_live(order)
        if not switch and (not made or any(c.is_open for c in order.checkouts)):
            raise CheckoutError(_("This order already has a payment link that is still open or paid."))
        switched = _end_open_attempts(order, "switch", to=provider, user_id=user_id)
        link = {"link_provider": provider}
        if made:
            ttl = timedelta(hours=current_app.config["CHECKOUT_LINK_TTL_H"])
            link.update(link_token=secrets.token_urlsafe(24), link_expires_at=utcnow() + ttl, link_ended_at=None)
        if switched:
            audit("link_switched", merchant_id=order.merchant_id, order_id=order.id, provider=provider, ended=switched)
        # The link's columns are written with the order's state, in one statement (refresh_order's `also`).
        if provider == CHOICE:
            refresh_order(order, also=link)
            return None
        # The first attempt is stored in this same transaction (its refresh_order derives the order's state with the
        # link and the attempt): one transaction before the provider call, one after it.
        prepared = prepare_attempt(order, provider, user_id, customer_ip, also=link)
    try:
        return open_at_provider(prepared)
    except CheckoutError:
        if made:  # the provider refused the new link's first attempt: no link is left for the customer
            with write_transaction():
                order = locked_order(order_id, lines=False)
                order.link_token = order.link_provider = order.link_expires_at = None
                refresh_order(order)
        raise


def card_not_heard(checkout: Checkout) -> bool:
    """A card attempt whose provider has not told the portal about the customer's card (no token) for CARD_WAIT since
    it opened: nothing can be charged on it, so the customer may start it over (retry_link's `card_again`)."""
    return bool(
        checkout.provider_rules.saves_cards
        and checkout.state == CheckoutState.AWAITING_PAYMENT
        and checkout.card_token_enc is None
        and checkout.opened_at is not None
        and utcnow() - checkout.opened_at >= CARD_WAIT
    )


def retry_link(order: Order, provider: str | None, customer_ip: str = "", *, card_again: bool = False) -> Checkout:
    """The customer: a new attempt on the order's live link (after a decline or an expiry, or their first pick).

    card_again: the customer came back from a card page whose provider never told the portal about their card
    (card_not_heard): that attempt is cancelled first (a token arriving later is recorded, never charged).
    """
    order_id, merchant = order.id, keep_merchant(order)
    with write_transaction(keep_reads=True):
        order = locked_order(order_id, merchant=merchant)
        if order.is_paid:
            raise CheckoutError(_("This order has been paid. Thank you!"))
        if not link_live(order):
            raise CheckoutError(_("This payment link can no longer be used. Please ask the shop for a new one."))
        for checkout in list(order.checkouts) if card_again else ():
            if checkout.is_open and card_not_heard(checkout):
                locked = locked_checkout(checkout.id, with_order=True)
                move(locked, CheckoutState.CANCELLED, "card_again", detail(reason="no card token from the provider"))
        if any(c.is_open for c in order.checkouts):
            raise CheckoutError(_("A payment for this order is already under way."))
        if order.link_provider != CHOICE:
            provider = order.link_provider
        elif provider not in customer_providers(order):
            raise CheckoutError(_("Please choose how to pay."))
        # Checked and stored in one transaction before the provider call (as start_checkout does), one after it.
        prepared = prepare_attempt(order, provider or "", None, customer_ip)
    try:
        return open_at_provider(prepared)
    except CheckoutError as exc:
        if isinstance(exc.__cause__, ProviderError):  # the customer reads what they can do, not the staff's advice
            raise CheckoutError(customer_message(exc.__cause__)) from exc.__cause__
        raise


def cancel_link(order: Order, user_id: int | None) -> list[str]:
    """Staff end the order's link: its open attempt is cancelled, the order is cancelled, the link is ended (audited).

    Returns the cancelled attempts' references. A new link (a new address) may follow (open_link).
    """
    order_id = order.id
    with write_transaction():
        order = locked_order(order_id, lines=False)
        if order.is_paid:
            raise CheckoutError(_("This order is already paid."))
        if not link_live(order) and not any(c.is_open for c in order.checkouts):
            raise CheckoutError(_("This order has no open payment link."))
        ended = _end_open_attempts(order, "cancel", user_id=user_id)
        order.link_ended_at = utcnow()
        refresh_order(order)
        audit("link_cancelled", merchant_id=order.merchant_id, order_id=order.id, ended=ended)
    return ended


def record_customer_locale(order: Order, locale: str) -> None:
    """Remember the language the customer reads the link in (mails to them use it)."""
    if locale not in ("zh_TW", "en") or order.customer_locale == locale:
        return
    order_id = order.id
    with write_transaction():
        locked = db.session.get(Order, order_id, populate_existing=True)
        locked.customer_locale = locale
