"""The pages a customer sees: the shop's name and contact, no staff navigation, a friendly page for a bad link."""

from __future__ import annotations

from portal.extensions import db
from portal.models import Merchant
from tests.support.factories import make_checkout, make_order


def set_contact(app, merchant_id, **fields):
    with app.app_context():
        merchant = db.session.get(Merchant, merchant_id)
        for name, value in fields.items():
            setattr(merchant, name, value)
        db.session.commit()


def new_link(app, merchant_id, provider="mypay", **order):
    with app.app_context():
        checkout = make_checkout(make_order(merchant_id, **order), provider)
        return checkout.public_token


def test_pay_page_names_the_shop_and_its_contact_without_staff_links(app, seed, client):
    set_contact(
        app,
        seed.merchant_id,
        contact_phone="+886 2-2345-6789",
        contact_email="help@shop-a.example",
        contact_note="LINE @shopa",
    )
    token = new_link(app, seed.merchant_id)
    for path in (f"/pay/{token}", f"/pay/{token}/return"):
        page = client.get(path).get_data(as_text=True)
        assert "+886 2-2345-6789" in page
        assert 'href="tel:+886223456789"' in page
        assert "mailto:help@shop-a.example" in page
        assert "LINE @shopa" in page
        assert "/login" not in page
        assert "/orders" not in page
        assert "Log out" not in page


def test_contact_is_left_out_when_the_shop_gave_none(app, seed, client):
    token = new_link(app, seed.merchant_id)
    page = client.get(f"/pay/{token}").get_data(as_text=True)
    assert "Contact the shop" not in page
    assert "data-shop-name" in page


def test_mistyped_link_is_a_friendly_not_found_page_in_both_languages(app, seed, client):
    reply = client.get("/pay/not-a-real-link")
    page = reply.get_data(as_text=True)
    assert reply.status_code == 404
    assert "We could not find this payment link" in page
    assert "/login" not in page and "Traceback" not in page
    zh = client.get("/pay/not-a-real-link", headers={"Accept-Language": "zh-TW"}).get_data(as_text=True)
    assert "找不到這個付款連結" in zh
    assert "/login" not in zh
    # a mistyped address outside /pay/ while signed out is the customer's page too
    other = client.get("/pya/abc")
    assert other.status_code == 404 and "/login" not in other.get_data(as_text=True)


def test_staff_still_get_their_own_error_page(app, seed, client, auth):
    auth.login()
    page = client.get("/no-such-page")
    assert page.status_code == 404
    assert "/orders" in page.get_data(as_text=True)
