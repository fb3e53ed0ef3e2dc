"""The background worker and its mails, against a real SMTP server: receipts and reminders once per event, retried
while the mail server is down, and sent once when two worker processes run at once."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from portal import mail, worker
from portal.extensions import db
from portal.models import Checkout, Merchant, OutboxMessage, utcnow
from portal.payments import refresh_order
from tests.support.apps import seed_merchants
from tests.support.factories import make_checkout, make_order
from tests.support.providers import opay_notice

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def shop(mail_app):
    return seed_merchants(mail_app)


def _opay_checkout(app, merchant_id, **order):
    with app.app_context():
        checkout = make_checkout(make_order(merchant_id, **order), provider="opay")
        return checkout.id, checkout.reference, checkout.amount, checkout.order.number


def _outbox(app):
    with app.app_context():
        rows = db.session.execute(db.select(OutboxMessage).order_by(OutboxMessage.id)).scalars().all()
        return [(m.topic, m.state, m.attempts, m.last_error) for m in rows]


def _body(message) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


def test_a_paid_order_gets_one_receipt_however_often_the_provider_says_so(mail_app, shop, smtp):
    client = mail_app.test_client()
    _id, reference, amount, number = _opay_checkout(mail_app, shop.merchant_id)
    notice = opay_notice(reference, amount)
    assert client.post("/webhooks/opay", data=notice).data == b"1|OK"
    assert client.post("/webhooks/opay", data=notice).data == b"1|OK"  # an exact resend
    assert client.post("/webhooks/opay", data=opay_notice(reference, amount)).data == b"1|OK"  # a new notice
    assert worker.run_once(mail_app)
    assert worker.run_once(mail_app)  # a second run sends nothing more
    [receipt] = smtp.wait_for(1)
    time.sleep(0.3)
    assert len(smtp.messages) == 1
    assert receipt["To"] == "buyer@example.com"
    assert number in receipt["Subject"] and "收據" in receipt["Subject"]  # zh-TW unless the customer read in English
    text = _body(receipt)
    assert "NT$1,060" in text and "王小明" in text
    assert receipt.get_body(preferencelist=("html",)) is not None
    assert _outbox(mail_app) == [("receipt", "sent", 1, None)]


def test_a_receipt_already_in_the_outbox_is_not_enqueued_again_and_the_order_is_still_paid(mail_app, shop, smtp):
    """The order's row and the mails its payment sends are written together (on PostgreSQL in one statement): a mail
    whose dedupe key is already taken is left as it is, and the order is paid all the same."""
    from portal import outbox

    client = mail_app.test_client()
    checkout_id, reference, amount, _number = _opay_checkout(mail_app, shop.merchant_id)
    with mail_app.app_context():
        order_id = db.session.get(Checkout, checkout_id).order_id
        outbox.enqueue(mail.KIND, "receipt", dedupe_key=f"receipt:{order_id}", merchant_id=shop.merchant_id)
        db.session.commit()
    assert client.post("/webhooks/opay", data=opay_notice(reference, amount)).data == b"1|OK"
    with mail_app.app_context():
        checkout = db.session.get(Checkout, checkout_id)
        assert (checkout.state, checkout.order.state, checkout.order.paid_amount) == ("paid", "paid", amount)
    assert _outbox(mail_app) == [("receipt", "pending", 0, None)]


def test_the_receipt_speaks_the_customers_language_and_shows_no_more_than_the_last_four_digits(mail_app, shop, smtp):
    client = mail_app.test_client()
    checkout_id, reference, amount, number = _opay_checkout(mail_app, shop.merchant_id)
    with mail_app.app_context():
        checkout = db.session.get(Checkout, checkout_id)
        checkout.order.customer_locale = "en"
        checkout.card_last4 = "4242"
        db.session.commit()
    client.post("/webhooks/opay", data=opay_notice(reference, amount))
    worker.run_once(mail_app)
    [receipt] = smtp.wait_for(1)
    assert receipt["Subject"] == f"Shop A: receipt for order {number}"
    text = _body(receipt)
    assert "card ending in 4242" in text and "Paid: NT$1,060" in text


def test_a_mail_is_retried_while_the_mail_server_is_down_and_arrives_once_it_is_up(mail_app, shop, smtp):
    client = mail_app.test_client()
    _id, reference, amount, number = _opay_checkout(mail_app, shop.merchant_id)
    client.post("/webhooks/opay", data=opay_notice(reference, amount))
    smtp.stop()
    worker.run_once(mail_app)
    [(topic, state, attempts, error)] = _outbox(mail_app)
    assert (topic, state, attempts) == ("receipt", "pending", 1)
    assert "ConnectionRefusedError" in error
    with mail_app.app_context():
        message = db.session.execute(db.select(OutboxMessage)).scalar_one()
        assert message.next_attempt_at > utcnow() + timedelta(seconds=30)  # it waits before the next try
        worker.run_once(mail_app)
        assert db.session.get(OutboxMessage, message.id, populate_existing=True).attempts == 1  # not due yet
        message.next_attempt_at = utcnow()  # the delay has passed
        db.session.commit()
    smtp.start()
    worker.run_once(mail_app)
    [receipt] = smtp.wait_for(1)
    assert number in receipt["Subject"]
    assert _outbox(mail_app) == [("receipt", "sent", 2, None)]


def test_a_reminder_goes_once_after_the_shops_delay_and_never_for_a_paid_order(mail_app, shop, smtp):
    with mail_app.app_context():
        merchant = db.session.get(Merchant, shop.merchant_id)
        merchant.reminder_hours = 24
        late = make_checkout(make_order(shop.merchant_id, email="late@example.com"), provider="opay")
        recent = make_checkout(make_order(shop.merchant_id, email="recent@example.com"), provider="opay")
        paid = make_checkout(make_order(shop.merchant_id, email="paid@example.com"), provider="opay", state="paid")
        for checkout in (late, paid):
            checkout.created_at = utcnow() - timedelta(hours=25)
        for checkout in (late, recent, paid):
            checkout.expires_at = utcnow() + timedelta(days=3)
        db.session.flush()
        for checkout in (late, recent, paid):
            refresh_order(checkout.order)
        db.session.commit()
        late_number = late.order.number
    worker.run_once(mail_app)
    worker.run_once(mail_app)
    smtp.wait_for(2)
    time.sleep(0.3)
    # The paid order's receipt, and one reminder: to the late customer only.
    assert sorted(str(m["To"]) for m in smtp.messages) == ["late@example.com", "paid@example.com"]
    [reminder] = [m for m in smtp.messages if m["To"] == "late@example.com"]
    assert late_number in reminder["Subject"]
    assert "/pay/" in _body(reminder)
    assert sorted(topic for topic, _s, _a, _e in _outbox(mail_app)) == ["receipt", "reminder"]


def test_no_reminder_when_the_shop_turned_them_off(mail_app, shop, smtp):
    with mail_app.app_context():
        db.session.get(Merchant, shop.merchant_id).reminder_hours = 0
        checkout = make_checkout(make_order(shop.merchant_id), provider="opay")
        checkout.created_at = utcnow() - timedelta(days=2)
        checkout.expires_at = utcnow() + timedelta(days=3)
        db.session.commit()
    worker.run_once(mail_app)
    time.sleep(0.3)
    assert smtp.messages == []


def test_a_scheduled_job_runs_in_one_worker_at_a_time(mail_app, shop):
    job = worker.Job("reconcile", timedelta(minutes=5), lambda: None)
    results = []
    barrier = threading.Barrier(4)

    def claim():
        with mail_app.app_context():
            barrier.wait()
            results.append(worker.claim_run(job))
            db.session.remove()

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(results) == [False, False, False, True]
    with mail_app.app_context():
        assert not worker.claim_run(job)  # and not again before its interval


def test_two_worker_processes_send_each_mail_once(mail_app, shop, smtp, tmp_path):
    count = 30
    with mail_app.app_context():
        orders = [make_order(shop.merchant_id, email=f"buyer{n}@example.com") for n in range(count)]
        db.session.flush()
        for order in orders:
            mail.enqueue_mail("link", order, to=order.customer_email, dedupe_key=f"link:{order.id}", locale="zh_TW")
        db.session.commit()
        url = db.engine.url.render_as_string(hide_password=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PORTAL_", "MAIL_", "SANDBOX_"))}
    env.update(
        DATABASE_URL=url,
        SECRET_KEY="test-secret-key",
        PORTAL_DATA_KEY="test-data-key",
        PROVIDER_ENV="sandbox",
        MAIL_SERVER=smtp.host,
        MAIL_PORT=str(smtp.port),
        WORKER_POLL_S="1",
        LOG_LEVEL="WARNING",
    )
    flask = str(Path(sys.executable).with_name("flask"))
    workers = [
        subprocess.Popen(  # noqa: S603  (our own CLI)
            [flask, "--app", "wsgi", "worker"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(tmp_path / f"worker{n}.log", "w"),  # noqa: SIM115
        )
        for n in range(2)
    ]
    try:
        smtp.wait_for(count, timeout=60)
        time.sleep(3)  # both workers have had time to send anything twice
    finally:
        for process in workers:
            process.terminate()
        for process in workers:
            process.wait(20)
    recipients = sorted(str(m["To"]) for m in smtp.messages)
    assert recipients == sorted(f"buyer{n}@example.com" for n in range(count))
    assert len({m["Message-ID"] for m in smtp.messages}) == count
    assert all(state == "sent" for _topic, state, _a, _e in _outbox(mail_app))
    logs = "".join((tmp_path / f"worker{n}.log").read_text() for n in range(2))
    assert "Traceback" not in logs


def test_worker_once_is_a_command_for_cron(mail_app, shop, smtp):
    result = mail_app.test_cli_runner().invoke(args=["worker", "--once"])
    assert result.exit_code == 0
    assert "outbox" in result.output and "reconcile" in result.output
