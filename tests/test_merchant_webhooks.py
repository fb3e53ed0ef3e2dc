"""Webhooks to the merchant's systems, over real HTTP to a receiver on loopback that verifies every signature: the
event with the state change, retries with growing delays, redirects not followed, a slow endpoint beside a quick one,
three days of failures, a resend from the page, merchants kept apart, and production's refusals."""

from __future__ import annotations

import logging
import re
import threading
import time
from datetime import timedelta
from html import unescape

import pytest

from portal import merchant_webhooks as hooks
from portal import worker
from portal.extensions import db
from portal.models import AuditEvent, MerchantEvent, OutboxMessage, WebhookAttempt, WebhookEndpoint, utcnow
from tests.support.apps import AuthActions
from tests.support.factories import make_checkout, make_order
from tests.support.hook_receiver import HookReceiver
from tests.support.providers import opay_notice

SECRET_RE = re.compile(r'value="(whsec_[^"]+)"')


@pytest.fixture
def receiver():
    server = HookReceiver()
    yield server
    server.stop()


def add_endpoint(client, url, events=(), description="ERP") -> tuple[int, str]:
    """Add an endpoint on the Settings page as an admin; (its id, the secret the page shows once)."""
    page = client.post("/settings/webhooks", data={"url": url, "events": list(events), "description": description})
    assert page.status_code == 200, page.text
    secret = unescape(SECRET_RE.search(page.text).group(1))
    endpoint_id = int(re.search(r'data-endpoint-id="(\d+)"', page.text).group(1))
    return endpoint_id, secret


def pay(app, client, merchant_id) -> tuple[int, str]:
    """An O'Pay payment notice marks a new order paid; (order id, order number)."""
    with app.app_context():
        checkout = make_checkout(make_order(merchant_id), provider="opay")
        order_id, number, reference, amount = (
            checkout.order_id,
            checkout.order.number,
            checkout.reference,
            checkout.amount,
        )
    assert client.post("/webhooks/opay", data=opay_notice(reference, amount)).data == b"1|OK"
    return order_id, number


def deliver(app) -> int:
    return worker.run_job(app, worker.Job("webhooks", timedelta(seconds=1), worker.send_webhooks, every_worker=True))


def rows(app):
    with app.app_context():
        return (
            db.session.execute(db.select(OutboxMessage).filter_by(kind="webhook").order_by(OutboxMessage.id))
            .scalars()
            .all()
        )


def make_due(app) -> None:
    """The retry's delay has passed."""
    with app.app_context():
        for message in db.session.execute(
            db.select(OutboxMessage).filter_by(kind="webhook", state="pending")
        ).scalars():
            message.next_attempt_at = utcnow()
        db.session.commit()


@pytest.fixture
def admin(client, seed):
    AuthActions(client).login()
    return client


def test_a_paid_order_reaches_the_endpoint_signed_once_and_only_this_merchants(app, seed, admin, receiver):
    endpoint_id, secret = add_endpoint(admin, receiver.url + "/hooks/a")
    receiver.secret = secret
    _refunds_only, _ = add_endpoint(admin, receiver.url + "/hooks/refunds", events=["order.refunded"])
    other = app.test_client()
    AuthActions(other).login("admin@b.example")
    add_endpoint(other, receiver.url + "/hooks/b")

    order_id, number = pay(app, admin, seed.merchant_id)
    pay(app, admin, seed.merchant_id)[0]  # a second order: its own event
    # the provider says so again: no second event
    with app.app_context():
        assert db.session.execute(db.select(MerchantEvent)).scalars().all().__len__() == 2
    deliver(app)
    got = receiver.wait_for(2)
    time.sleep(0.3)
    assert {d.path for d in receiver.deliveries} == {"/hooks/a"}  # not merchant B's, not the refunds-only endpoint
    first = next(d for d in got if d.event["data"]["order"]["id"] == order_id)
    assert first.verified and first.status == 200
    assert first.headers["Content-Type"] == "application/json"
    assert first.headers["Portal-Event-Id"] == first.event["id"] and first.event["id"].startswith("evt_")
    assert first.headers["User-Agent"].startswith("MerchantPortal-Webhooks/")
    assert first.event["type"] == "order.paid" and abs(first.event["created"] - time.time()) < 60
    order = first.event["data"]["order"]
    assert order["number"] == number and order["state"] == "paid" and order["paid_amount"] == order["payable"]
    with app.app_context():
        attempt = db.session.execute(db.select(WebhookAttempt).filter_by(endpoint_id=endpoint_id)).scalars().first()
        assert attempt.status_code == 200 and attempt.duration_ms is not None and attempt.response_excerpt
        assert len(attempt.response_excerpt) == 500  # the first bytes of the answer
    deliver(app)
    time.sleep(0.3)
    assert len(receiver.deliveries) == 2  # each event once per endpoint
    page = admin.get(f"/settings/webhooks/{endpoint_id}")
    assert first.event["id"] in page.text and "200" in page.text


def test_an_endpoint_that_fails_gets_the_event_again_later_and_recovers(app, seed, admin, receiver):
    endpoint_id, receiver.secret = add_endpoint(admin, receiver.url + "/hooks")
    receiver.answer_next((500, 0))
    pay(app, admin, seed.merchant_id)
    deliver(app)
    [failed] = receiver.wait_for(1)
    assert failed.status == 500
    [message] = rows(app)
    assert message.state == "pending" and message.attempts == 1 and message.last_error == "DeliveryFailed: HTTP 500"
    assert message.next_attempt_at >= utcnow() + timedelta(seconds=50)  # a minute first, then longer
    with app.app_context():
        assert db.session.get(WebhookEndpoint, endpoint_id).failing_since is not None
    deliver(app)
    time.sleep(0.3)
    assert len(receiver.deliveries) == 1  # not due yet
    page = admin.get("/settings/webhooks").text
    assert "Deliveries failing since" in page
    make_due(app)
    deliver(app)
    retried = receiver.wait_for(2)[1]
    assert retried.status == 200 and retried.verified and retried.event["id"] == failed.event["id"]
    [message] = rows(app)
    assert message.state == "sent" and message.attempts == 2
    with app.app_context():
        assert db.session.get(WebhookEndpoint, endpoint_id).failing_since is None
        codes = [
            a.status_code for a in db.session.execute(db.select(WebhookAttempt).order_by(WebhookAttempt.id)).scalars()
        ]
        assert codes == [500, 200]
    # the delays grow, up to six hours, for three days
    policy, start = hooks.WEBHOOK_RETRY, utcnow()
    delays = [policy.next_attempt(n, start, start) - start for n in (1, 2, 3, 10, 20)]
    assert delays == [
        timedelta(minutes=1),
        timedelta(minutes=2),
        timedelta(minutes=4),
        timedelta(hours=6),
        timedelta(hours=6),
    ]
    assert policy.next_attempt(30, start - timedelta(days=3), start) is None


def test_a_redirect_is_not_followed_and_counts_as_a_failure(app, seed, admin, receiver):
    _id, receiver.secret = add_endpoint(admin, receiver.url + "/hooks")
    receiver.answer_next((302, 0))
    pay(app, admin, seed.merchant_id)
    deliver(app)
    receiver.wait_for(1)
    time.sleep(0.5)
    assert [d.path for d in receiver.deliveries] == ["/hooks"]  # never to /elsewhere
    [message] = rows(app)
    assert message.state == "pending" and "redirect not followed" in message.last_error


def test_a_slow_endpoint_does_not_hold_up_another_endpoints_delivery(app, seed, admin, receiver, monkeypatch):
    monkeypatch.setattr(hooks, "TIMEOUT_S", 2)
    quick = HookReceiver()
    try:
        add_endpoint(admin, receiver.url + "/slow")
        _id, quick.secret = add_endpoint(admin, quick.url + "/quick")
        receiver.answer_next((200, 4))  # answers after the timeout
        pay(app, admin, seed.merchant_id)
        thread = threading.Thread(target=deliver, args=(app,))
        thread.start()
        quick.wait_for(1, timeout=10)
        thread.join(timeout=15)
        # The quick endpoint was reached while the slow one was still waiting for its answer, not after its timeout
        # (compared by when each request came in, so a busy machine does not make it fail).
        [slow_arrived], [quick_arrived] = receiver.arrivals, quick.arrivals
        assert quick_arrived - slow_arrived < hooks.TIMEOUT_S
        with app.app_context():
            errors = (
                db.session.execute(db.select(WebhookAttempt.error).where(WebhookAttempt.error.is_not(None)))
                .scalars()
                .all()
            )
        assert errors == ["no answer within 2 s"]
        assert sorted(m.state for m in rows(app)) == ["pending", "sent"]
    finally:
        quick.stop()


def test_three_days_of_failures_stop_the_endpoint_until_an_admin_enables_it(app, seed, admin, receiver):
    endpoint_id, receiver.secret = add_endpoint(admin, receiver.url + "/hooks")
    receiver.answer_next(*[(503, 0)] * 3)
    pay(app, admin, seed.merchant_id)
    deliver(app)
    receiver.wait_for(1)
    with app.app_context():  # the event is almost three days old, the endpoint failing since then
        message = db.session.execute(db.select(OutboxMessage).filter_by(kind="webhook")).scalar_one()
        message.created_at -= timedelta(days=3) - timedelta(minutes=1)
        message.next_attempt_at = utcnow()
        db.session.get(WebhookEndpoint, endpoint_id).failing_since = message.created_at
        db.session.commit()
    deliver(app)
    receiver.wait_for(2)
    [message] = rows(app)
    assert message.state == "failed"  # given up
    with app.app_context():
        endpoint = db.session.get(WebhookEndpoint, endpoint_id)
        assert endpoint.flagged_at is not None and not endpoint.enabled
    assert 'data-endpoint-state="flagged"' in admin.get("/settings/webhooks").text
    pay(app, admin, seed.merchant_id)
    assert len(rows(app)) == 1  # a stopped endpoint gets no new deliveries
    assert admin.post(f"/settings/webhooks/{endpoint_id}/enable").status_code == 303
    assert 'data-endpoint-state="enabled"' in admin.get("/settings/webhooks").text
    pay(app, admin, seed.merchant_id)
    deliver(app)
    assert receiver.wait_for(3)[2].status == 503
    with app.app_context():
        assert db.session.execute(db.select(AuditEvent).filter_by(action="webhook_endpoint_enabled")).scalar_one()


def test_a_delivery_resent_from_the_page_arrives_again(app, seed, admin, receiver):
    endpoint_id, receiver.secret = add_endpoint(admin, receiver.url + "/hooks")
    pay(app, admin, seed.merchant_id)
    deliver(app)
    [first] = receiver.wait_for(1)
    page = admin.get(f"/settings/webhooks/{endpoint_id}").text
    action = re.search(r'action="([^"]+/resend)"', page).group(1)
    assert first.event["id"] in action
    assert admin.post(action).status_code == 303
    deliver(app)
    again = receiver.wait_for(2)[1]
    assert again.event["id"] == first.event["id"] and again.verified
    assert "Resent" in admin.get(f"/settings/webhooks/{endpoint_id}").text
    with app.app_context():
        assert [
            a.resend for a in db.session.execute(db.select(WebhookAttempt).order_by(WebhookAttempt.id)).scalars()
        ] == [False, True]
    # another merchant's admin cannot resend it
    other = app.test_client()
    AuthActions(other).login("admin@b.example")
    assert other.post(action).status_code == 404


def test_the_secret_is_shown_once_and_kept_out_of_pages_audit_and_logs(app, seed, admin, receiver, caplog):
    caplog.set_level(logging.DEBUG)
    endpoint_id, secret = add_endpoint(admin, receiver.url + "/hooks", events=["order.paid"])
    assert secret.startswith("whsec_") and len(secret) > 40
    with app.app_context():
        endpoint = db.session.get(WebhookEndpoint, endpoint_id)
        assert endpoint.events == ["order.paid"]
        assert secret not in endpoint.secret_enc
        details = [str(a.detail) for a in db.session.execute(db.select(AuditEvent)).scalars()]
    assert secret not in admin.get("/settings/webhooks").text
    rolled = admin.post(f"/settings/webhooks/{endpoint_id}/roll-secret")
    new_secret = unescape(SECRET_RE.search(rolled.text).group(1))
    assert new_secret != secret
    receiver.secret = new_secret
    pay(app, admin, seed.merchant_id)
    deliver(app)
    assert receiver.wait_for(1)[0].verified  # signed with the new secret
    assert not any(s in text for s in (secret, new_secret) for text in [*details, caplog.text])
    assert "Webhook endpoint added" in admin.get("/settings/audit").text


def test_unknown_events_are_refused_on_the_form(admin, receiver):
    page = admin.post("/settings/webhooks", data={"url": receiver.url, "events": ["order.nope"]})
    assert page.status_code == 400
    for bad in ("ftp://example.com/x", "not a url", "http://user:pw@127.0.0.1/x", "https://" + "a" * 3000):
        assert admin.post("/settings/webhooks", data={"url": bad}).status_code == 400


def test_deleting_needs_the_box_ticked_and_removes_the_log(app, seed, admin, receiver):
    endpoint_id, receiver.secret = add_endpoint(admin, receiver.url + "/hooks")
    pay(app, admin, seed.merchant_id)
    deliver(app)
    receiver.wait_for(1)
    admin.post(f"/settings/webhooks/{endpoint_id}/delete")
    with app.app_context():
        assert db.session.get(WebhookEndpoint, endpoint_id) is not None
    assert admin.post(f"/settings/webhooks/{endpoint_id}/delete", data={"confirm": "yes"}).status_code == 303
    with app.app_context():
        assert db.session.get(WebhookEndpoint, endpoint_id) is None
        assert not db.session.execute(db.select(WebhookAttempt)).scalars().all()
    assert admin.get(f"/settings/webhooks/{endpoint_id}").status_code == 404


def test_the_command_line_prints_the_secret_alone_on_the_last_line(app, seed, runner, receiver):
    result = runner.invoke(
        args=[
            "webhook-endpoint",
            "create",
            "--merchant",
            "shop-a",
            "--url",
            receiver.url + "/cli",
            "--events",
            "order.paid,order.refunded",
        ]
    )
    assert result.exit_code == 0, result.output
    receiver.secret = result.output.strip().splitlines()[-1]
    assert receiver.secret.startswith("whsec_")
    with app.app_context():
        assert db.session.execute(db.select(WebhookEndpoint)).scalar_one().events == ["order.paid", "order.refunded"]
    assert (
        runner.invoke(args=["webhook-endpoint", "create", "--merchant", "nope", "--url", receiver.url]).exit_code != 0
    )
    bad = runner.invoke(
        args=["webhook-endpoint", "create", "--merchant", "shop-a", "--url", receiver.url, "--events", "order.nope"]
    )
    assert bad.exit_code != 0 and "unknown event type" in bad.output
    client = app.test_client()
    pay(app, client, seed.merchant_id)
    deliver(app)
    assert receiver.wait_for(1)[0].verified


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/hooks",
        "https://127.0.0.1/hooks",
        "https://localhost:8443/hooks",
        "https://10.1.2.3/hooks",
        "https://192.168.0.10/hooks",
        "https://169.254.169.254/latest",
        "https://[::1]/hooks",
        "https://[fd00::1]/hooks",
        "https://224.0.0.1/hooks",
        "https://[::ffff:127.0.0.1]/hooks",
    ],
)
def test_production_refuses_plain_http_and_non_public_addresses(app, seed, admin, runner, url):
    app.config["PROVIDER_ENV"] = "production"
    page = admin.post("/settings/webhooks", data={"url": url})
    assert page.status_code == 400 and "whsec_" not in page.text
    result = runner.invoke(args=["webhook-endpoint", "create", "--merchant", "shop-a", "--url", url])
    assert result.exit_code != 0 and "PROVIDER_ENV=production" in result.output
    with app.app_context():
        assert not db.session.execute(db.select(WebhookEndpoint)).scalars().all()


def test_production_takes_a_public_https_address(app, seed, admin):
    app.config["PROVIDER_ENV"] = "production"
    add_endpoint(admin, "https://93.184.215.14/hooks")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_production_never_delivers_to_a_loopback_address_even_when_the_name_moved_there(app, seed, receiver, host):
    """An endpoint whose host name later resolves to a loopback address (DNS rebinding) is refused at delivery."""
    with app.app_context():
        hooks.create_endpoint(seed.merchant_id, receiver.url.replace("127.0.0.1", host) + "/hooks")
        db.session.commit()
    app.config["PROVIDER_ENV"] = "production"
    pay(app, app.test_client(), seed.merchant_id)
    deliver(app)
    time.sleep(0.3)
    assert receiver.deliveries == []
    [message] = rows(app)
    assert message.state == "pending"
    with app.app_context():
        assert db.session.execute(db.select(WebhookAttempt.error)).scalar_one().startswith("refused: the host resolves")


def test_the_page_that_showed_a_new_secret_sent_again_adds_no_second_endpoint(app, seed, admin):
    """A reload after "add" sends the same form again: recognised by its one-time token, so the merchant's system is
    not sent every event twice by two identical endpoints."""
    page = admin.get("/settings/webhooks").get_data(as_text=True)
    token = re.search(r'name="form_token" type="hidden" value="([^"]+)"', page).group(1)
    form = {"url": "https://erp.example.com/hooks", "events": ["order.paid"], "form_token": token}
    first = admin.post("/settings/webhooks", data=form)
    assert "whsec_" in first.get_data(as_text=True)
    again = admin.post("/settings/webhooks", data=form, follow_redirects=True)
    text = again.get_data(as_text=True)
    assert "This form was sent already" in text and "whsec_" not in text
    with app.app_context():
        assert len(db.session.execute(db.select(WebhookEndpoint)).scalars().all()) == 1


def test_a_delivery_that_could_not_connect_is_told_in_the_readers_language(app, seed, admin):
    endpoint_id, _secret = add_endpoint(admin, "http://127.0.0.1:9/hooks")
    with app.app_context():
        event = MerchantEvent(public_id="evt_lang", merchant_id=seed.merchant_id, type="order.paid", data={})
        db.session.add(event)
        db.session.flush()
        db.session.add(WebhookAttempt(endpoint_id=endpoint_id, event_id=event.id, error="could not connect"))
        db.session.commit()
    admin.get("/lang/zh_TW")
    page = admin.get(f"/settings/webhooks/{endpoint_id}").get_data(as_text=True)
    assert "無法連線" in page and ">could not connect<" not in page


def test_the_endpoint_form_shows_each_event_as_a_checkbox_beside_its_name(app, admin):
    """Each event is a checkbox inside its own label (the box beside its name, the name clickable), not a bulleted
    list of bare boxes; deleting an endpoint's confirmation box sits in its label too."""
    from portal.merchant_webhooks import EVENT_TYPES

    add_endpoint(admin, "https://erp.example/hooks")
    page = admin.get("/settings/webhooks").text
    for event_type in EVENT_TYPES:
        box = rf'<input[^>]*type="checkbox"[^>]*value="{re.escape(event_type)}"[^>]*>'
        assert re.search(rf'<label class="choice">{box} [^<]+</label>', page), event_type
    assert "<ul" not in page.split('action="/settings/webhooks"')[-1].split("</form>")[0]
    assert re.search(r'<label class="choice"><input type="checkbox" name="confirm"', page)


def test_an_endpoints_events_are_listed_as_the_readers_language_writes_a_list(app, admin, seed):
    """The endpoints page names the events an endpoint receives 「訂單已付款和付款失敗」 in zh-TW, "… and …" in English;
    not joined with an ASCII comma."""
    with app.app_context():
        hooks.create_endpoint(seed.merchant_id, "https://erp.example/hooks", events=["order.paid", "order.failed"])
        db.session.commit()
    for language in ("zh-TW", "en"):
        page = admin.get("/settings/webhooks", headers={"Accept-Language": language}).get_data(as_text=True)
        events = re.findall(r'<td data-label="(?:事件|Events)">\s*(.*?)\s*</td>', page, re.S)
        assert len(events) == 1 and ", " not in events[0], events
        assert ("和" if language == "zh-TW" else " and ") in events[0], events
