"""A customer back from Oen's card page whose card Oen never told the portal about (its token notice lost or late):
nothing can be charged on that attempt, so after a while the waiting page says so and lets the customer enter the card
again, on a new attempt; a token arriving late for the old attempt is recorded and never charged."""

from __future__ import annotations

import re
import secrets
import time
from datetime import timedelta
from html import unescape

import pytest
import responses

from portal.extensions import db
from portal.models import Checkout, Order, utcnow
from portal.payments import refresh_order
from tests.support.factories import make_checkout, make_order


@pytest.fixture
def oen_link(app, seed):
    """An order's live Oen link whose attempt opened 5 minutes ago and awaits the customer's card (no token)."""
    with app.app_context():
        order = make_order(seed.merchant_id, items=((1200, 1),), shipping=0)
        order.link_token, order.link_provider = secrets.token_urlsafe(24), "oen"
        order.link_expires_at = utcnow() + timedelta(hours=24)
        checkout = make_checkout(order, "oen")
        checkout.provider_checkout_id = "chk-old"
        checkout.provider_url = "https://shopa.testing.oen.tw/checkout/subscription/create/chk-old"
        checkout.opened_at = utcnow() - timedelta(minutes=5)
        refresh_order(order)
        db.session.commit()
        return order.id, order.link_token, checkout.public_token, checkout.reference


def oen_asked(app, rsps, *references: str) -> None:
    """Oen's transactions query answers that it has none for these attempts."""
    for reference in references:
        url = f"{app.config['OEN_API_URL']}/order/{reference}/transactions"
        rsps.get(url, json={"code": "S0000", "data": {"transactions": []}})


def page_text(response) -> str:
    return unescape(response.get_data(as_text=True))


def test_the_waiting_page_offers_the_card_again_once_the_customer_has_waited(app, client, oen_link):
    order_id, link_token, public_token, reference = oen_link
    with responses.RequestsMock() as rsps:
        oen_asked(app, rsps, reference)
        first = page_text(client.get(f"/pay/{public_token}/return", headers={"Accept-Language": "zh-TW"}))
        since = int(re.search(r'content="5; url=/pay/[^"]+since=(\d+)"', first).group(1))
        assert abs(since - time.time()) < 60  # the first return is counted from now, and carried by the reload
        assert "data-card-again" not in first  # a token notice a few seconds late is the usual case: it waits
        later = client.get(
            f"/pay/{public_token}/return?since={since - 150}", headers={"Accept-Language": "zh-TW"}
        ).get_data(as_text=True)
    assert "data-card-again" in later and 'http-equiv="refresh"' not in later
    assert "應援科技 尚未通知我們您的卡片資料。" in unescape(later) and "尚未扣款" in later
    assert f'action="/pay/{link_token}/retry"' in later and 'name="card_again" value="1"' in later

    # The customer enters the card again: the old attempt is cancelled, a new one opened at Oen, and on to its page.
    with responses.RequestsMock() as rsps:
        rsps.post(f"{app.config['OEN_API_URL']}/checkout-token", json={"code": "S0000", "data": {"id": "chk-new"}})
        again = client.post(f"/pay/{link_token}/retry", data={"card_again": "1", "provider": "oen"})
    assert again.status_code == 307 and "/go" in again.headers["Location"]
    with app.app_context():
        order = db.session.get(Order, order_id)
        assert [c.state for c in order.checkouts] == ["cancelled", "awaiting_payment"]
        assert order.checkouts[1].provider_checkout_id == "chk-new" and order.state == "awaiting_payment"
        assert order.checkouts[0].events[-1].source == "card_again"

    # Oen's token notice for the old attempt arrives late after all: kept, never charged.
    late = {"success": True, "purpose": "token", "merchantId": "shopa", "customId": reference, "id": "chk-old",
            "token": "tok-late"}  # fmt: skip
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        oen_asked(app, rsps, reference)
        assert client.post("/webhooks/oen", json=late).status_code == 200
        assert not [call for call in rsps.calls if call.request.method == "POST"]  # no charge sent
    with app.app_context():
        old = db.session.execute(db.select(Checkout).filter_by(reference=reference)).scalar_one()
        assert old.state == "cancelled" and old.card_token_enc is None


def test_an_attempt_just_opened_is_not_started_over(app, client, oen_link):
    """The server does not take the page's word for how long the customer waited: an attempt opened less than two
    minutes ago is left alone (its card may be on its way)."""
    order_id, link_token, _public_token, _reference = oen_link
    with app.app_context():
        db.session.get(Order, order_id).checkouts[0].opened_at = utcnow()
        db.session.commit()
    refused = client.post(f"/pay/{link_token}/retry", data={"card_again": "1", "provider": "oen"})
    assert refused.status_code == 303
    with app.app_context():
        assert [c.state for c in db.session.get(Order, order_id).checkouts] == ["awaiting_payment"]


def test_a_mypay_attempt_is_never_started_over_this_way(app, client, seed):
    """Only a card the provider keeps a token for (Oen) can go unheard of; other attempts wait for their provider."""
    with app.app_context():
        order = make_order(seed.merchant_id)
        order.link_token, order.link_provider = secrets.token_urlsafe(24), "mypay"
        order.link_expires_at = utcnow() + timedelta(hours=24)
        checkout = make_checkout(order, "mypay")
        checkout.opened_at = utcnow() - timedelta(hours=1)
        db.session.commit()
        order_id, link_token = order.id, order.link_token
    assert client.post(f"/pay/{link_token}/retry", data={"card_again": "1"}).status_code == 303
    with app.app_context():
        assert [c.state for c in db.session.get(Order, order_id).checkouts] == ["awaiting_payment"]
