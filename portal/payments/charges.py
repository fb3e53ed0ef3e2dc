"""Saved cards (Oen tokens): charged exactly once, confirmed by query; admins charge again or retry after a doubt."""

from __future__ import annotations

from datetime import timedelta

from flask_babel import gettext as _

from portal.extensions import db
from portal.gateways import provider_for
from portal.models import PAID_STATES, Checkout, CheckoutState, Order, utcnow
from portal.payments.attempts import CheckoutError, refresh_checkout, start_checkout
from portal.payments.locking import locked_checkout, write_transaction
from portal.payments.snapshots import checkout_ref, checkout_request
from portal.payments.state import apply_state, detail, keep_error, move, record
from portal.providers import REGISTRY
from portal.providers.base import ProviderError
from portal.security import audit, decrypt_secret

# A charge whose outcome was unknown may be tried again by an admin only after this long (and a query showing none).
CHARGE_RETRY_AFTER = timedelta(minutes=2)


def saved_cards(order: Order) -> list[Checkout]:
    """Paid attempts of the same customer whose card token is kept (for "charge again")."""
    card_savers = [name for name, cls in REGISTRY.items() if cls.saves_cards]
    stmt = (
        db.select(Checkout)
        .join(Order, Checkout.order_id == Order.id)
        .where(
            Checkout.merchant_id == order.merchant_id,
            Checkout.provider.in_(card_savers),
            Checkout.card_token_enc.is_not(None),
            Checkout.state.in_(PAID_STATES),
            db.func.lower(Order.customer_email) == order.customer_email.lower(),
        )
        .order_by(Checkout.id.desc())
        .limit(5)
    )
    return list(db.session.execute(stmt).scalars())


def read_card_token(checkout: Checkout, purpose: str, user_id: int | None = None) -> str:
    """Decrypt a checkout's card token; every read is audited."""
    audit("card_token_read", merchant_id=checkout.merchant_id, user_id=user_id, checkout=checkout.id, purpose=purpose)
    return decrypt_secret(checkout.card_token_enc) or ""


def charge_card(checkout_id: int, source: str, user_id: int | None = None, retry: bool = False) -> bool:
    """Charge the checkout's saved card once (it must be "processing"), then confirm by query; True when sent."""
    with write_transaction():
        checkout = locked_checkout(checkout_id)
        started = checkout.charge_started_at
        if checkout.state != CheckoutState.PROCESSING or not checkout.card_token_enc:
            return False
        if started is not None and (not retry or utcnow() - started < CHARGE_RETRY_AFTER):
            return False  # a charge was already sent (or is being sent): never a second one by accident
        checkout.charge_started_at = utcnow()
        token = read_card_token(checkout, purpose="charge", user_id=user_id)  # the audit names the attempt
    provider = provider_for(checkout.merchant, checkout.provider)
    ref = checkout_ref(checkout)
    request = checkout_request(checkout)
    db.session.commit()
    try:
        txn = provider.charge(ref, token, request)
    except ProviderError as exc:
        with write_transaction():
            checkout = locked_checkout(checkout_id)
            keep_error(checkout, exc)
            if exc.retryable:
                # Outcome unknown: leave it "processing"; the order transactions query settles it.
                evidence = detail(charge="unknown", error=exc.code)
                record(checkout, source, checkout.state, checkout.state, evidence, applied=False)
                checkout.next_query_at = utcnow()
            else:
                evidence = detail(charge="refused", error=exc.code, message=exc.message_en)
                move(checkout, CheckoutState.FAILED, source, evidence)
        if exc.retryable:
            refresh_checkout(checkout_id, source="query")
        return False
    with write_transaction():
        checkout = locked_checkout(checkout_id)
        apply_state(
            checkout,
            txn.state,
            source=source,
            detail=detail(charge=txn.transaction_id, amount=txn.amount),
            amount=txn.amount,
            transaction_id=txn.transaction_id,
        )
    refresh_checkout(checkout_id, source="query")
    return True


def charge_again(order: Order, previous: Checkout, user_id: int) -> Checkout:
    """Charge the card saved with an earlier checkout of the same customer for this order (admins only)."""
    if not previous.provider_rules.saves_cards or not previous.card_token_enc:
        raise CheckoutError(_("That payment has no saved card."))
    if previous.merchant_id != order.merchant_id or previous.order.customer_email.lower() != (
        order.customer_email.lower()
    ):
        raise CheckoutError(_("A saved card can only be charged for the same customer."))
    checkout = start_checkout(order, previous.provider, user_id)
    with write_transaction():
        checkout = locked_checkout(checkout.id)
        checkout.card_token_enc = previous.card_token_enc  # the same encrypted token, read only to charge
        move(checkout, CheckoutState.PROCESSING, "manual", detail(charge_again_from=previous.reference))
    charge_card(checkout.id, source="manual", user_id=user_id)
    return db.session.get(Checkout, checkout.id, populate_existing=True)


def retry_charge(checkout_id: int, user_id: int) -> Checkout:
    """A charge whose outcome was unknown: ask the provider first, and charge again only if it shows no charge."""
    checkout = db.session.get(Checkout, checkout_id, populate_existing=True)
    if not checkout.provider_rules.saves_cards or checkout.state != CheckoutState.PROCESSING:
        raise CheckoutError(_("This payment is not waiting for a card charge."))
    if checkout.charge_started_at and utcnow() - checkout.charge_started_at < CHARGE_RETRY_AFTER:
        raise CheckoutError(_("The last charge was sent less than two minutes ago. Refresh from the provider first."))
    _changed, error = refresh_checkout(checkout_id, source="manual")
    if error:
        raise CheckoutError(error)
    still_open = db.session.get(Checkout, checkout_id, populate_existing=True).state == CheckoutState.PROCESSING
    if still_open and not charge_card(checkout_id, source="manual", user_id=user_id, retry=True):
        raise CheckoutError(_("Another charge of this card is already on its way."))
    return db.session.get(Checkout, checkout_id, populate_existing=True)
