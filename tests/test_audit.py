"""The audit page: admins only, own merchant only, newest first, filtered, paged, and read only."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from html import unescape
from html.parser import HTMLParser

from portal.extensions import db
from portal.models import AuditEvent, Refund, User
from tests.support.accounts import SHOP_A
from tests.support.factories import make_checkout, make_order

WRITE_METHODS = ("post", "put", "patch", "delete")


def add_events(app, merchant_id, count, action="order_created", start=datetime(2024, 1, 1), **detail):
    """count audit entries, one minute apart from start (UTC)."""
    with app.app_context():
        for i in range(count):
            db.session.add(
                AuditEvent(
                    merchant_id=merchant_id,
                    action=action,
                    detail={"n": i, **detail},
                    created_at=start + timedelta(minutes=i),
                )
            )
        db.session.commit()


def rows(body: str) -> list[str]:
    """The action codes of the table rows, top to bottom."""
    return re.findall(r'<tr data-action="([^"]+)">', body)


class FormCollector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.forms: list[dict] = []

    def handle_starttag(self, tag, attrs):
        if tag == "form":
            self.forms.append(dict(attrs))


def forms_of(body: str) -> list[dict]:
    parser = FormCollector()
    parser.feed(body)
    return parser.forms


def test_staff_get_403(client, auth, seed):
    auth.login(seed.staff)
    assert client.get("/settings/audit").status_code == 403
    assert client.get("/settings/audit?action=login").status_code == 403


def test_no_route_writes_to_the_audit_trail(app, client, auth, seed):
    audit_rules = [rule for rule in app.url_map.iter_rules() if rule.rule.startswith("/settings/audit")]
    assert [rule.endpoint for rule in audit_rules] == ["settings.audit"]
    for rule in audit_rules:
        assert rule.methods <= {"GET", "HEAD", "OPTIONS"}, rule
    # Nothing anywhere in the app deletes or edits an AuditEvent through a route named for it.
    for rule in app.url_map.iter_rules():
        if "audit" in rule.rule:
            assert rule.methods <= {"GET", "HEAD", "OPTIONS"}, rule

    add_events(app, seed.merchant_id, 1)
    with app.app_context():
        event_id = db.session.execute(db.select(AuditEvent.id)).scalars().first()
    auth.login(seed.admin)
    for method in WRITE_METHODS:
        assert getattr(client, method)("/settings/audit").status_code == 405
        for path in (f"/settings/audit/{event_id}", f"/settings/audit/{event_id}/delete"):
            assert getattr(client, method)(path).status_code == 404
    with app.app_context():
        assert db.session.get(AuditEvent, event_id) is not None


def test_audit_page_has_no_form_that_changes_anything(app, client, auth, seed):
    add_events(app, seed.merchant_id, 3)
    auth.login(seed.admin)
    body = client.get("/settings/audit").get_data(as_text=True)
    forms = forms_of(body)
    posting = [form for form in forms if (form.get("method") or "get").lower() != "get"]
    # The only non-GET form is the log-out button in the page header.
    assert [form.get("action") for form in posting] == ["/logout"]
    assert any(form.get("action") == "/settings/audit" for form in forms)


def test_entries_newest_first_with_who_when_and_detail(app, client, auth, seed):
    with app.app_context():
        admin_id = db.session.execute(db.select(User.id).filter_by(email=seed.admin)).scalar_one()
        db.session.add_all(
            [
                AuditEvent(
                    merchant_id=seed.merchant_id,
                    user_id=admin_id,
                    action="settings_changed",
                    detail={"fields": ["oen_merchant_id", "oen_token"]},
                    created_at=datetime(2024, 3, 1, 16, 30, 5),  # UTC: 2024-03-02 00:30:05 in Taipei
                ),
                AuditEvent(
                    merchant_id=seed.merchant_id,
                    action="order_created",
                    detail={"number": "A-1"},
                    created_at=datetime(2024, 3, 1, 10, 0, 0),
                ),
            ]
        )
        db.session.commit()
    auth.login(seed.admin)  # the login itself is audited, now: the newest entry
    body = client.get("/settings/audit").get_data(as_text=True)
    assert rows(body) == ["login", "settings_changed", "order_created"]
    assert "2024-03-02 00:30:05" in body
    assert "2024-03-01 18:00:00" in body
    assert "Oen merchant id and Oen CRM token" in body  # the settings' names as the settings page labels them
    assert "Shop settings changed" in body  # providers, the contact for customers and notices alike
    assert seed.admin in body


def test_changed_settings_are_named_as_things_not_as_their_form_prompts(app, client, auth, seed):
    """The settings page labels two fields as prompts that lead into their input ("Notify staff of paid orders at",
    訂單付款通知寄給): listed in the audit log they read as cut-off sentences. They are named as what they are."""
    with app.app_context():
        db.session.add(
            AuditEvent(
                merchant_id=seed.merchant_id,
                action="settings_changed",
                detail={"fields": ["notify_email", "reminder_hours", "contact_phone"]},
            )
        )
        db.session.commit()
    auth.login(seed.admin)
    body = " ".join(unescape(client.get("/settings/audit").get_data(as_text=True)).split())
    assert "Paid-order notices to staff, Hours before an unpaid-link reminder, and Phone for customers" in body
    assert "paid orders at" not in body
    client.get("/lang/zh_TW")
    body = " ".join(unescape(client.get("/settings/audit").get_data(as_text=True)).split())
    assert "員工付款通知信箱、未付款提醒時數和顧客聯絡電話" in body, body[body.find("fields") - 200 :][:600]


def test_other_merchants_entries_are_never_shown(app, client, auth, seed):
    add_events(app, seed.merchant_id, 2, marker="only-for-shop-a")
    add_events(app, seed.other_merchant_id, 2, action="callback_refused", marker="only-for-shop-b")
    add_events(app, None, 1, action="login_failed", marker="no-merchant")
    auth.login(seed.other_admin)
    body = client.get("/settings/audit").get_data(as_text=True)
    assert "only-for-shop-b" in body
    assert "only-for-shop-a" not in body
    assert "no-merchant" not in body
    assert "order_created" not in body  # not even in the action filter
    body = client.get("/settings/audit?action=order_created").get_data(as_text=True)
    assert rows(body) == []


def test_filter_by_action(app, client, auth, seed):
    add_events(app, seed.merchant_id, 3, action="order_created")
    add_events(app, seed.merchant_id, 2, action="card_token_read")
    auth.login(seed.admin)
    body = client.get("/settings/audit?action=card_token_read").get_data(as_text=True)
    assert rows(body) == ["card_token_read", "card_token_read"]
    assert '<option value="card_token_read" selected>' in body
    assert rows(client.get("/settings/audit?action=nothing-like-this").get_data(as_text=True)) == []


def test_one_hundred_a_page(app, client, auth, seed):
    add_events(app, seed.merchant_id, 150)
    auth.login(seed.admin)  # one more: 151 entries
    first = client.get("/settings/audit").get_data(as_text=True)
    assert len(rows(first)) == 100
    assert 'rel="next" href="/settings/audit?page=2"' in first
    second = client.get("/settings/audit?page=2").get_data(as_text=True)
    assert len(rows(second)) == 51
    assert "2024-01-01 08:00:00" in second  # the oldest entry, last
    assert 'rel="prev"' in second
    filtered = client.get("/settings/audit?action=order_created&page=2").get_data(as_text=True)
    assert len(rows(filtered)) == 50


def test_odd_page_and_filter_values_never_fail(app, client, auth, seed):
    auth.login(seed.admin)
    for query in ("page=abc", "page=-3", "page=0", "page=99999999999999999999999", "action=" + "x" * 500, "action=%00"):
        assert client.get(f"/settings/audit?{query}").status_code == 200, query


def test_detail_is_escaped_and_card_numbers_masked(app, client, auth, seed):
    add_events(app, seed.merchant_id, 1, note="<script>alert(1)</script>", card="4111 1111 1111 1111")
    auth.login(seed.admin)
    body = client.get("/settings/audit").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in body
    assert "&lt;script&gt;" in body
    assert "4111 1111 1111 1111" not in body
    assert "1111" in body


def test_settings_and_user_changes_appear_in_the_trail(app, client, auth, seed):
    auth.login(seed.admin)
    client.post(
        "/settings",
        data={
            "oen_merchant_id": "shopa",
            "mypay_store_uid": SHOP_A["mypay"],
            "opay_merchant_id": SHOP_A["opay"][0],
            "oen_token": "rotated-oen-token-1",
        },
    )
    client.post("/settings/users", data={"email": "clerk@a.example", "role": "staff", "password": "clerk-password-1"})
    with app.app_context():
        clerk_id = db.session.execute(db.select(User.id).filter_by(email="clerk@a.example")).scalar_one()
    client.post(f"/settings/users/{clerk_id}/role", data={"role": "admin"})
    client.post(f"/settings/users/{clerk_id}/deactivate")
    body = client.get("/settings/audit").get_data(as_text=True)
    assert rows(body) == ["user_changed", "user_changed", "user_created", "settings_changed", "login"]
    assert "clerk@a.example" in body
    assert "Deactivated" in body
    assert "Oen CRM token" in body
    assert "rotated-oen-token-1" not in body
    assert "clerk-password-1" not in body


def refunded_order(merchant_id: int, provider: str, provider_refund_id: str):
    """A paid order with a NT$300 refund the provider confirmed under its own reference (in the caller's app
    context, flushed): (order, checkout, refund)."""
    order = make_order(merchant_id)
    checkout = make_checkout(order, provider, "paid")
    refund = Refund(
        checkout_id=checkout.id,
        order_id=order.id,
        merchant_id=merchant_id,
        amount=300,
        reason="damaged",
        state="succeeded",
        idempotency_key=f"audit-refund-{provider_refund_id}",
        provider_refund_id=provider_refund_id,
    )
    db.session.add(refund)
    db.session.flush()
    return order, checkout, refund


def test_an_order_refund_shows_the_order_number_and_references_not_ids(app, client, auth, seed):
    """Database ids stay out of sight: an order's refund shows its order number and the provider's reference."""
    with app.app_context():
        order, checkout, refund = refunded_order(seed.merchant_id, "oen", "RF-OEN-778899")
        # ids far from any number on the page, so a leaked one is seen
        detail = {"refund_id": refund.id, "order_id": order.id, "checkout": checkout.reference, "amount": 300}
        db.session.add(AuditEvent(merchant_id=seed.merchant_id, action="refund_succeeded", detail=detail))
        db.session.add(
            AuditEvent(merchant_id=seed.merchant_id, action="card_token_read", detail={"checkout": checkout.id})
        )
        db.session.commit()
        number, reference, ids = order.number, checkout.reference, (refund.id, order.id, checkout.id)
    auth.login()
    body = client.get("/settings/audit").get_data(as_text=True)
    cells = re.findall(r"<dl class=\"facts small\">(.*?)</dl>", body, re.S)
    assert len(cells) == 2
    text = " ".join(re.sub(r"<[^>]+>", " ", cell) for cell in cells)
    assert number in text and "RF-OEN-778899" in text and reference in text
    for label in ("Order id", "Refund id", "訂單 ID", "退款 ID"):
        assert label not in body
    shown = set(re.findall(r"\b\d+\b", text)) - {"300"}
    assert not shown & {str(i) for i in ids}, shown


def test_a_detail_with_no_value_is_left_out_and_the_refund_reference_shown_once(app, client, auth, seed):
    """A sent refund's entry names the provider's reference once (not once more, empty, for the hand-kept reference
    it does not have), and a detail recorded without a value (an empty code) is not shown as an empty row."""
    with app.app_context():
        _order, _checkout, refund = refunded_order(seed.merchant_id, "mypay", "95704")
        detail = {"refund_id": refund.id, "manual_reference": None, "amount": 300, "code": ""}
        db.session.add(AuditEvent(merchant_id=seed.merchant_id, action="refund_sent", detail=detail))
        db.session.commit()
    auth.login()
    body = client.get("/settings/audit").get_data(as_text=True)
    cell = re.findall(r"<dl class=\"facts small\">(.*?)</dl>", body, re.S)[0]
    terms = re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", cell)
    assert [text for _name, text in terms].count("95704") == 1
    assert len({name for name, _text in terms}) == len(terms), terms  # no label twice
    assert all(text.strip() for _name, text in terms), terms  # no empty row


def test_amounts_read_as_money_and_webhook_events_by_their_names(app, client, auth, seed):
    """A refund's amount reads NT$2,480 (not 2480); a webhook endpoint's events read as the form names them, and an
    endpoint created without any ticked (it then receives every event) says so instead of an empty row."""
    with app.app_context():
        add = db.session.add
        add(AuditEvent(merchant_id=seed.merchant_id, action="refund_succeeded", detail={"amount": 2480}))
        add(AuditEvent(merchant_id=seed.merchant_id, action="order_edited", detail={"payable_before": 1060}))
        for events in ([], ["order.paid", "order.refunded"]):
            add(
                AuditEvent(
                    merchant_id=seed.merchant_id,
                    action="webhook_endpoint_created",
                    detail={"url": "https://erp.example/hooks", "events": events},
                )
            )
        db.session.commit()
    auth.login()
    body = client.get("/settings/audit", headers={"Accept-Language": "en"}).get_data(as_text=True)
    terms = re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", body)
    shown = {(name, text) for name, text in terms}
    assert ("Amount", "NT$2,480") in shown
    assert any(text == "NT$1,060" for _name, text in terms)
    events = [text for name, text in terms if name == "Events"]
    assert sorted(events) == ["All events", "Order paid and Order refunded"], terms
    body = client.get("/settings/audit", headers={"Accept-Language": "zh-TW"}).get_data(as_text=True)
    events = [text for name, text in re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", body) if name == "事件"]
    assert len(events) == 2 and any("、" in text or "和" in text for text in events), events
    assert not any(", " in text for text in events)


def test_a_card_token_read_says_why_in_the_readers_language(app, client, auth, seed):
    """Reading a saved card's token to charge it is audited with its attempt's reference and why, as a person reads
    it ("To charge the card" / zh-TW), not the code "charge" followed by the reference once more."""
    from portal.payments.charges import read_card_token
    from portal.security import encrypt_secret

    with app.app_context():
        order = make_order(seed.merchant_id)
        checkout = make_checkout(order, "oen", state="processing")
        checkout.card_token_enc = encrypt_secret("tok_secret_123")
        db.session.commit()
        with app.test_request_context():
            assert read_card_token(checkout, purpose="charge") == "tok_secret_123"
        db.session.commit()
        reference = checkout.reference
    auth.login()
    for language, why in (("en", "To charge the card"), ("zh-TW", "刷卡扣款")):
        body = client.get("/settings/audit?action=card_token_read", headers={"Accept-Language": language})
        page = body.get_data(as_text=True)
        values = [value for _name, value in re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", page)]
        assert reference in values and why in values, values
        assert "tok_secret_123" not in page and not any(value.startswith("charge") for value in values)


def test_what_the_portal_did_by_itself_says_so_and_an_entry_with_no_detail_has_no_empty_detail(app, client, auth, seed):
    """A saved card charged after the customer's callback was listed as read by 「（無使用者）」 (no user), which reads
    as if someone unknown had used the card; and a login's empty Detail cell stood as a bare label on a phone."""
    add_events(app, seed.merchant_id, 1, action="card_token_read", purpose="charge")
    auth.login()
    body = unescape(client.get("/settings/audit", headers={"Accept-Language": "zh-TW"}).get_data(as_text=True))
    system = body.split('<tr data-action="card_token_read">')[1].split("</tr>")[0]
    assert "系統自動" in system and "無使用者" not in system
    login = body.split('<tr data-action="login">')[1].split("</tr>")[0]
    assert re.search(r'<td data-label="[^"]+" class="blank">', login), login
    assert 'class="blank"' not in system  # its detail is shown
