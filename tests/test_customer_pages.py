"""The pages a customer sees: the shop's name and contact, no staff navigation, a friendly page for a bad link."""

from __future__ import annotations

import re

import pytest

from portal.extensions import db
from portal.models import Checkout, Merchant
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


def test_the_contact_labels_end_with_the_colon_of_the_readers_language(app, seed, client):
    """「電話：」 beside 「付款金額：」 on a zh-TW page (it read "電話: "), "Phone: " in English."""
    set_contact(app, seed.merchant_id, contact_phone="02-2345-6789", contact_email="help@shop-a.example")
    token = new_link(app, seed.merchant_id)
    zh = client.get(f"/pay/{token}", headers={"Accept-Language": "zh-TW"}).get_data(as_text=True)
    assert "電話：<a" in zh and "電子郵件：<a" in zh and "電話: " not in zh
    en = client.get(f"/pay/{token}", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "Phone: <a" in en and "E-mail: <a" in en


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
    text = other.get_data(as_text=True)
    assert other.status_code == 404 and "/login" not in text
    # …but it is not called a payment link: it is a page that does not exist
    assert "The page you asked for does not exist." in text and "payment link" not in text
    assert "<h1>Page not found</h1>" in text and "Link not found" not in text  # its heading and title too
    assert "No payment was made through this page" not in text  # said of a payment link only
    assert "<h1>Link not found</h1>" in page


def test_staff_still_get_their_own_error_page(app, seed, client, auth):
    auth.login()
    page = client.get("/no-such-page", headers={"Accept-Language": "en"})
    assert page.status_code == 404
    text = page.get_data(as_text=True)
    assert "/orders" in text
    assert "<h1>Page not found</h1>" in text and "<title>Page not found" in text  # named, not a bare 404


def test_admin_sets_the_shop_contact_and_mail_settings_and_customers_see_them(app, seed, client, auth):
    from tests.test_settings import settings_form

    auth.login()
    reply = client.post(
        "/settings",
        data=settings_form(
            contact_phone="02-2345-6789",
            contact_email="Help@Shop-A.example",
            contact_note="LINE ID: @shopa, 10:00–18:00",
            notify_email="orders@shop-a.example",
            reminder_hours="0",
        ),
    )
    assert reply.status_code == 303
    with app.app_context():
        merchant = db.session.get(Merchant, seed.merchant_id)
        assert (merchant.contact_phone, merchant.contact_email, merchant.contact_note) == (
            "02-2345-6789",
            "help@shop-a.example",
            "LINE ID: @shopa, 10:00–18:00",
        )
        assert merchant.notify_email == "orders@shop-a.example" and merchant.reminder_hours == 0
        from portal.models import AuditEvent

        fields = db.session.execute(db.select(AuditEvent).filter_by(action="settings_changed")).scalar_one().detail
        assert "contact_phone" in str(fields) and "02-2345-6789" not in str(fields)
    page = client.get("/settings").get_data(as_text=True)
    assert 'value="02-2345-6789"' in page and 'value="0"' in page
    token = new_link(app, seed.merchant_id)
    auth.logout()
    pay = client.get(f"/pay/{token}").get_data(as_text=True)
    assert "02-2345-6789" in pay and "LINE ID: @shopa" in pay


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("contact_phone", "call me", "Use digits"),
        ("contact_phone", "02-2345-6789<script>", "Use digits"),
        ("contact_phone", "1" * 41, "At most 40 characters"),
        ("contact_email", "not-an-address", "valid e-mail"),
        ("notify_email", "a@", "valid e-mail"),
        ("contact_note", "x" * 201, "At most 200 characters"),
        ("contact_note", "<b>hi</b>", "HTML tags"),
        ("reminder_hours", "-1", "whole hours"),
        ("reminder_hours", "1000", "whole hours"),
        ("reminder_hours", "2.5", "whole hours"),
    ],
)
def test_bad_shop_settings_are_refused_on_the_field(app, seed, client, auth, field, value, message):
    from tests.test_settings import settings_form

    auth.login()
    reply = client.post("/settings", data=settings_form(**{field: value}))
    assert reply.status_code == 400
    assert message in reply.get_data(as_text=True)
    with app.app_context():
        merchant = db.session.get(Merchant, seed.merchant_id)
        assert merchant.contact_phone is None and merchant.reminder_hours == 24


@pytest.mark.parametrize(
    ("provider", "state", "offline"), [("oen", "processing", False), ("mypay", "awaiting_payment", True)]
)
def test_the_waiting_page_speaks_of_atm_and_stores_only_where_the_customer_can_pay_so(
    app, seed, client, provider, state, offline
):
    """A card being charged at Oen Tech is not paid at a convenience store: the waiting page says only that it
    updates itself; MyPay, where the customer may have paid at an ATM or a store, says that can take a while."""
    import responses

    with app.app_context():
        token = make_checkout(make_order(seed.merchant_id), provider, state=state).public_token
    with responses.RequestsMock(assert_all_requests_are_fired=False):  # a query finds no provider: still waiting
        page = client.get(f"/pay/{token}/return", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "Waiting for the payment provider to confirm your payment" in page
    assert "This page updates itself." in page
    assert ("convenience store" in page) is offline and ("ATM" in page) is offline


@pytest.mark.parametrize("status", [500, 400])
def test_a_provider_failure_tells_the_customer_what_they_can_do_not_the_staffs_advice(app, seed, client, status):
    """O'Pay's trade cannot be created when the customer goes on to pay: the customer reads that nothing was charged
    and what to do, not the advice meant for staff ("refresh the order") or the provider's codes."""
    import responses

    with app.app_context():
        token = make_checkout(make_order(seed.merchant_id), provider="opay").public_token
    with responses.RequestsMock() as rsps:
        rsps.post(app.config["OPAY_API_URL"] + "/WxAPI/Create", status=status, body="{}")
        reply = client.post(f"/pay/{token}/go", headers={"Accept-Language": "zh-TW"})
    text = reply.get_data(as_text=True)
    assert reply.status_code == 502
    assert "沒有任何扣款" in text and "重新整理訂單" not in text and "HTTP" not in text


def test_a_failed_retry_on_the_shops_link_tells_the_customer_what_they_can_do(app, seed, client):
    """Trying again on the shop's link when MyPay cannot open the payment: the customer's message, not the staff's."""
    import secrets
    from datetime import timedelta

    import responses

    from portal.models import Order, utcnow
    from portal.payments import refresh_order

    with app.app_context():
        order = db.session.get(Order, make_order(seed.merchant_id).id)
        order.link_token, order.link_provider = secrets.token_urlsafe(24), "mypay"
        order.link_expires_at = utcnow() + timedelta(hours=1)
        refresh_order(order)
        db.session.commit()
        token = order.link_token
    with responses.RequestsMock() as rsps:
        rsps.post(app.config["MYPAY_API_URL"], status=500, body="{}")
        reply = client.post(f"/pay/{token}/retry", headers={"Accept-Language": "en"}, follow_redirects=True)
    text = reply.get_data(as_text=True)
    assert "The payment provider is not answering right now. Nothing was charged" in text
    assert "refresh the order" not in text and "HTTP 500" not in text


@pytest.mark.parametrize("page", ["", "/return"])
def test_an_earlier_page_of_an_order_paid_through_another_says_it_is_paid(app, seed, client, page):
    """Staff switched the link and the customer paid on the new page, then came back through the first one (Oen's
    page still open in a tab): its pages said 「付款已取消。」 in red above 「狀態：已付款」, or told the customer to
    ask the shop for a new link. They say the order is paid, and that this page took nothing."""
    from portal.payments.state import move

    with app.app_context():
        order = make_order(seed.merchant_id)
        first = make_checkout(order, "oen", state="cancelled")
        second = make_checkout(order, "oen")
        db.session.commit()
        move(second, "paid", "callback", "{}")
        db.session.commit()
        token = first.public_token
    html = client.get(f"/pay/{token}{page}", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "This order is already paid. Thank you!" in html
    assert "no payment through it has reached the shop" in html
    assert "cancelled" not in html and "no longer be used" not in html and "Try again" not in html
    client.get("/lang/zh_TW")
    html = client.get(f"/pay/{token}{page}").get_data(as_text=True)
    assert "這筆訂單已付款，謝謝！" in html and "已取消" not in html


# ---------------------------------------------------------------- nothing paid twice across a switched link


def paid_with_another_open(app, seed) -> tuple[int, str]:
    """An order paid through its first attempt (MyPay, cancelled when staff switched the link, then paid on its still
    open page) while its second (O'Pay) still awaits payment: (order id, the open attempt's token)."""
    from portal.payments.locking import locked_checkout
    from portal.payments.state import apply_state

    with app.app_context():
        order = make_order(seed.merchant_id)
        first = make_checkout(order, "mypay", state="cancelled")
        second = make_checkout(order, "opay")
        db.session.commit()
        checkout = locked_checkout(first.id, with_order=True)
        apply_state(checkout, "paid", source="callback", detail="{}", amount=checkout.amount)
        db.session.commit()
        return order.id, second.public_token


def test_an_open_attempt_of_a_paid_order_offers_no_payment(app, seed, client):
    """The walkthrough paid an order on a switched-away MyPay page, then paid it again with WeChat Pay: the O'Pay
    attempt's page still showed its pay button, and going on created the trade. Neither is offered on a paid order:
    the page says it is paid, and going on asks no provider (the mock answers nothing: a call would fail the test)."""
    import responses

    _order_id, token = paid_with_another_open(app, seed)
    html = client.get(f"/pay/{token}", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "This order is already paid. Thank you!" in html and "Pay with WeChat Pay" not in html
    with responses.RequestsMock():  # no provider is asked
        gone = client.post(f"/pay/{token}/go", headers={"Accept-Language": "en"})
    assert gone.status_code == 302 and gone.headers["Location"].endswith(f"/pay/{token}")
    with app.app_context():
        assert db.session.execute(db.select(Checkout).filter_by(public_token=token)).scalar_one().state == (
            "awaiting_payment"
        )


def test_a_second_payment_of_an_order_is_flagged_for_attention(app, seed):
    """Paid again on another attempt (a provider page that could not be closed): the order's staff must see it, to
    refund one. The second payment was applied with no flag at all."""
    from portal.payments.locking import locked_checkout
    from portal.payments.state import apply_state

    order_id, token = paid_with_another_open(app, seed)
    with app.app_context():
        second = db.session.execute(db.select(Checkout).filter_by(public_token=token)).scalar_one()
        checkout = locked_checkout(second.id, with_order=True)
        assert apply_state(checkout, "paid", source="callback", detail="{}", amount=checkout.amount)
        db.session.commit()
        paid = db.session.execute(db.select(Checkout).filter_by(order_id=order_id, state="paid")).scalars().all()
        assert len(paid) == 2 and all(c.needs_attention for c in paid)


def test_a_customer_who_paid_twice_is_told_so_on_coming_back(app, seed, client):
    """The second payment, on a provider's page already open, was received and flagged for the staff, but the customer
    read only 「已收到您的付款，謝謝！」, with no word that the order had been paid before: they learnt of it from their
    statement. The return page says it was paid twice, that the shop sees both, and to ask the shop for a refund."""
    from portal.payments.locking import locked_checkout
    from portal.payments.state import apply_state

    _order_id, token = paid_with_another_open(app, seed)
    with app.app_context():
        second = db.session.execute(db.select(Checkout).filter_by(public_token=token)).scalar_one()
        checkout = locked_checkout(second.id, with_order=True)
        apply_state(checkout, "paid", source="callback", detail="{}", amount=checkout.amount)
        db.session.commit()
        first = db.session.execute(
            db.select(Checkout).filter(Checkout.order_id == checkout.order_id, Checkout.id != checkout.id)
        ).scalar_one()
        first_token = first.public_token
    for paid_token in (token, first_token):  # said on either payment's page: neither says which came first
        html = client.get(f"/pay/{paid_token}/return", headers={"Accept-Language": "en"}).get_data(as_text=True)
        assert "Payment received. Thank you!" in html
        assert "This order has been paid twice, through two payment pages" in html
        assert "please contact the shop to have one of them refunded" in html
    client.get("/lang/zh_TW")
    html = client.get(f"/pay/{token}/return").get_data(as_text=True)
    assert "共付了兩次" in html and "退還其中一筆" in html
    with app.app_context():  # the shop refunds one: the customer is no longer asked to ask for it
        refunded = db.session.get(Checkout, first.id)
        refunded.state, refunded.refunded_amount = "refunded", refunded.paid_amount
        db.session.commit()
    html = client.get(f"/pay/{token}/return").get_data(as_text=True)
    assert "已收到您的付款，謝謝！" in html and "共付了兩次" not in html


def test_a_single_payment_reads_as_one(app, seed, client):
    """An order paid once, after an attempt that failed: no word of a second payment."""
    from portal.payments.state import move

    with app.app_context():
        order = make_order(seed.merchant_id)
        make_checkout(order, "oen", state="failed")
        paid = make_checkout(order, "oen")
        db.session.commit()
        move(paid, "paid", "callback", "{}")
        db.session.commit()
        token = paid.public_token
    html = client.get(f"/pay/{token}/return", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "Payment received. Thank you!" in html and "already been paid" not in html


def test_coming_back_from_a_cancelled_attempts_page_asks_the_provider(app, seed, client):
    """Staff switched the link; the customer paid on MyPay's page, still open, and came back: the return page said
    「付款已取消。」 with 「再試一次」, inviting a second payment, until a reload. It asks MyPay, finds the payment, and
    says it was received (the attempt flagged for attention, as paid after it was cancelled)."""
    import responses

    from tests.test_money_truth import awaiting_mypay, mypay_answer

    _order_id, checkout_id, reference = awaiting_mypay(app, seed)
    with app.app_context():
        checkout = db.session.get(Checkout, checkout_id)
        checkout.state = "cancelled"
        db.session.commit()
        token = checkout.public_token
    with responses.RequestsMock() as rsps:
        rsps.post(app.config["MYPAY_API_URL"], json=mypay_answer(reference))
        html = client.get(f"/pay/{token}/return", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "Payment received. Thank you!" in html and "Try again" not in html and "cancelled" not in html
    with app.app_context():
        checkout = db.session.get(Checkout, checkout_id)
        assert checkout.state == "paid" and checkout.needs_attention


def test_staff_see_no_link_to_send_for_an_attempt_still_open_on_a_paid_order(app, seed, auth, client):
    """After the order was paid on the switched-away page, its order page still showed the O'Pay attempt's link box
    (「歐付寶 付款連結 待付款」, copy, QR code, expiry): a link staff could send, which now only says "paid". And its
    live view read the open attempt's own record as 「待付款 已付款 NT$0」."""
    order_id, token = paid_with_another_open(app, seed)
    auth.login("staff@a.example")
    page = client.get(f"/orders/{order_id}", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert token not in page and "Payment link via" not in page
    import responses

    with responses.RequestsMock(assert_all_requests_are_fired=False):  # the providers are not reached: no answer
        live = client.get(f"/orders/{order_id}/transactions", headers={"Accept-Language": "en"}).get_data(as_text=True)
    records = re.findall(r'data-portal-state="(\w+)">[^<]*</span>\s*([^<]*)</dd>', live)
    assert sorted(records) == [("awaiting_payment", ""), ("paid", "paid NT$1,060, refunded NT$0")], records
