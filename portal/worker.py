"""The background worker (`flask --app wsgi worker`): sends the outbox and runs the scheduled jobs.

Scheduling is APScheduler's (a BlockingScheduler with interval jobs; no loop of our own). Several workers may run at
once, on several hosts: the outbox is claimed under row locks (portal.outbox), and each scheduled job is claimed in
the database (JobRun) before it runs, so one worker runs it each time and a second one skips it. `--once` runs every
job once and exits, for cron instead of a long-running worker.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.blocking import BlockingScheduler
from flask import Flask
from sqlalchemy import update

from portal import mail, merchant_webhooks, outbox
from portal.extensions import db, insert_ignoring_conflicts
from portal.models import (
    OPEN_STATES,
    Checkout,
    JobRun,
    Merchant,
    Order,
    OrderState,
    OutboxMessage,
    OutboxState,
    WebhookAttempt,
    utcnow,
)
from portal.payments.locking import write_transaction

log = logging.getLogger(__name__)

HOLDER = f"{socket.gethostname()}:{os.getpid()}"[:100]
OUTBOX_BATCH = 20
SENT_KEPT = timedelta(days=30)


@dataclass(frozen=True)
class Job:
    name: str
    every: timedelta
    run: Callable[[], object]
    lease: timedelta = timedelta(minutes=10)  # longer than a run can take; a crashed worker's claim ends with it
    every_worker: bool = False  # runs in every worker at once (it claims its own work, row by row)


# ---------------------------------------------------------------- the jobs


def send_outbox() -> int:
    """Send what is due in the outbox, batch after batch, until nothing is due; how many were sent. Webhooks have
    their own job (send_webhooks), so a slow endpoint never holds the mails up."""
    kinds = tuple(kind for kind in outbox.SENDERS if kind != merchant_webhooks.KIND)
    total = 0
    while True:
        sent, failed = outbox.deliver_due(OUTBOX_BATCH, kinds=kinds)
        total += sent
        if sent + failed < OUTBOX_BATCH:
            return total


def send_webhooks() -> int:
    """Deliver the due webhooks to the merchants' endpoints, several at once; how many went."""
    return merchant_webhooks.deliver_due()


def reconcile() -> object:
    from portal.payments import reconcile_open_checkouts

    return reconcile_open_checkouts(older_than_minutes=1)


def expire_links() -> int:
    """Expire the links whose time is up (after asking their provider, which may say they were paid)."""
    from portal.payments.attempts import expire_if_due

    due = db.session.execute(
        db.select(Checkout.id).where(Checkout.state.in_(OPEN_STATES), Checkout.expires_at <= utcnow())
    ).scalars()
    return sum(1 for checkout_id in list(due) if expire_if_due(checkout_id))


def send_reminders() -> int:
    """A reminder to each customer whose link is still unpaid after the shop's delay; once per link."""
    now = utcnow()
    rows = db.session.execute(
        db.select(Order, Checkout, Merchant.reminder_hours)
        .join(Checkout, Checkout.order_id == Order.id)
        .join(Merchant, Merchant.id == Order.merchant_id)
        .where(
            Order.state == OrderState.AWAITING_PAYMENT.value,
            Checkout.state.in_(OPEN_STATES),
            Merchant.reminder_hours > 0,
            Checkout.expires_at > now,
            Checkout.created_at <= now - timedelta(hours=1),
        )
    ).all()
    count = 0
    for order, checkout, hours in rows:
        if checkout.created_at > now - timedelta(hours=hours):
            continue
        with write_transaction():
            link = order.link_token or checkout.public_token
            queued = mail.enqueue_mail(
                "reminder",
                order,
                to=order.customer_email,
                dedupe_key=f"reminder:{order.id}:{link}",
                locale=mail.customer_locale(order),
            )
        count += int(queued)
    return count


def purge() -> int:
    """Refused callbacks past their retention, and sent mails after 30 days."""
    from flask import current_app

    from portal.payments.callbacks import purge_callbacks

    removed = purge_callbacks(int(current_app.config["CALLBACK_RETENTION_DAYS"]))
    old_sent = (OutboxMessage.state == OutboxState.SENT.value) & (OutboxMessage.sent_at < utcnow() - SENT_KEPT)
    with write_transaction():
        # A webhook's attempts stay on its deliveries page without the row that sent them.
        db.session.execute(
            update(WebhookAttempt)
            .where(WebhookAttempt.outbox_message_id.in_(db.select(OutboxMessage.id).where(old_sent)))
            .values(outbox_message_id=None)
        )
        result = db.session.execute(db.delete(OutboxMessage).where(old_sent))
    return removed + (result.rowcount or 0)


def jobs(config) -> list[Job]:
    return [
        Job("outbox", timedelta(seconds=int(config["WORKER_POLL_S"])), send_outbox, every_worker=True),
        Job("webhooks", timedelta(seconds=int(config["WORKER_POLL_S"])), send_webhooks, every_worker=True),
        Job("reconcile", timedelta(minutes=int(config["RECONCILE_EVERY_MIN"])), reconcile),
        Job("expire_links", timedelta(minutes=1), expire_links),
        Job("reminders", timedelta(minutes=5), send_reminders),
        Job("purge", timedelta(hours=24), purge),
    ]


# ---------------------------------------------------------------- claiming a run


def claim_run(job: Job, *, on_schedule: bool = True) -> bool:
    """Whether this worker runs the job now: no other worker holds it, and (on schedule) its time has come."""
    now = utcnow()
    # Due a little early rather than a whole interval late when two workers' ticks fall apart.
    due_before = now - job.every * 0.9 if on_schedule else now
    with write_transaction():
        db.session.execute(insert_ignoring_conflicts(JobRun), {"name": job.name})
        claimed = db.session.execute(
            update(JobRun)
            .where(
                JobRun.name == job.name,
                (JobRun.locked_until.is_(None)) | (JobRun.locked_until < now),
                (JobRun.last_started_at.is_(None)) | (JobRun.last_started_at <= due_before),
            )
            .values(last_started_at=now, locked_until=now + job.lease, holder=HOLDER)
        ).rowcount
    return claimed == 1


def _release(job: Job, error: str | None) -> None:
    with write_transaction():
        db.session.execute(
            update(JobRun)
            .where(JobRun.name == job.name, JobRun.holder == HOLDER)
            .values(locked_until=None, last_finished_at=utcnow(), last_error=error)
        )


def run_job(app: Flask, job: Job, *, force: bool = False) -> bool:
    """Run the job in an app context if this worker claims it; True when it ran."""
    with app.app_context():
        try:
            if not job.every_worker and not claim_run(job, on_schedule=not force):
                return False  # not due yet, or another worker is running it right now
            error = None
            try:
                result = job.run()
                if result:
                    log.info("worker %s: %s", job.name, result)
            except Exception as exc:  # logged and recorded; the next run tries again
                db.session.rollback()
                log.exception("worker job %s failed", job.name)
                error = f"{type(exc).__name__}: {exc}"[:500]
            if not job.every_worker:
                _release(job, error)
            return True
        finally:
            db.session.remove()


# ---------------------------------------------------------------- running


def run_once(app: Flask) -> list[str]:
    """Every job once (cron); the names of those that ran."""
    return [job.name for job in jobs(app.config) if run_job(app, job, force=True)]


def run_forever(app: Flask) -> None:
    """Until SIGTERM or Ctrl-C; a job in progress finishes first."""
    scheduler = BlockingScheduler(
        timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 60}
    )
    for job in jobs(app.config):
        scheduler.add_job(
            run_job,
            "interval",
            args=(app, job),
            seconds=job.every.total_seconds(),
            id=job.name,
            next_run_time=utcnow_aware(),
        )

    def stop(signum, _frame):
        log.info("worker stopping (signal %s)", signum)
        scheduler.shutdown(wait=False)

    signal.signal(signal.SIGTERM, stop)
    log.info("worker %s started: %s", HOLDER, ", ".join(job.name for job in jobs(app.config)))
    with contextlib.suppress(KeyboardInterrupt, SystemExit):
        scheduler.start()


def utcnow_aware() -> datetime:
    return datetime.now(UTC)
