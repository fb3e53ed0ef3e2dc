"""What the providers say now about checkouts: asked concurrently, cached briefly, compared with the portal's record.

Providers are asked from a bounded thread pool; what each worker needs (credentials, the checkout's reference) is read
in the request thread, so workers never touch the database; a merchant's credentials are decrypted once per provider and
request, not once per row. Answers are kept for CACHE_TTL_S seconds in this process
only (each worker process of a deployment keeps its own); a provider that has not answered by the deadline leaves its
rows "unknown" and the page renders without waiting for it.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from flask import Flask, current_app
from flask_babel import get_locale
from flask_babel import gettext as _
from sqlalchemy import func
from sqlalchemy.orm import joinedload
from sqlalchemy.orm.attributes import set_committed_value

from portal.extensions import db
from portal.gateways import http_session, merchant_settings
from portal.labels import provider_label
from portal.models import ENDED_HERE, Checkout, Order, Refund
from portal.payments import (
    PAID_STATES,
    RANK,
    checkout_ref,
    queryable,
    refresh_checkout,
    state_from_transactions,
    write_transaction,
)
from portal.payments.locking import end_reads
from portal.providers import Provider, provider_class
from portal.providers.base import CheckoutRef, ProviderError, ProviderTransaction, State
from portal.security import audit

log = logging.getLogger(__name__)

OVERVIEW_LIMIT = 50  # the overview's rows: the merchant's latest checkouts
MAX_WORKERS = OVERVIEW_LIMIT  # one worker per row at most, so a full overview takes about one provider call
OVERVIEW_DEADLINE_S = 2.0
CACHE_TTL_S = 30.0


# ---------------------------------------------------------------- asking the providers


@dataclass(frozen=True)
class LiveView:
    """One checkout as its provider reports it now, or why it could not say."""

    checkout_id: int
    status: str  # "ok"; "error": the provider answered with an error; "unknown": no answer in time; "not_sent"
    transactions: tuple[ProviderTransaction, ...] = ()
    message: str = ""
    answered_at: datetime | None = None  # UTC
    cached: bool = False


@dataclass(frozen=True)
class _Job:
    checkout_id: int
    provider: str
    settings: dict[str, str]  # the merchant's settings for this provider, decrypted (shared by the request's jobs)
    ref: CheckoutRef
    unreadable: str = ""  # "cannot read the answer", in the reader's language: workers have no request context


class LiveCache:
    """The providers' recent answers per checkout, kept CACHE_TTL_S seconds, in this process only."""

    def __init__(self, ttl: float):
        self.ttl = ttl
        self._lock = threading.Lock()
        self._items: dict[int, tuple[float, LiveView]] = {}

    def get(self, checkout_id: int) -> LiveView | None:
        with self._lock:
            item = self._items.get(checkout_id)
            if item is None or time.monotonic() - item[0] > self.ttl:
                self._items.pop(checkout_id, None)
                return None
            return replace(item[1], cached=True)

    def put(self, view: LiveView) -> None:
        with self._lock:
            self._items[view.checkout_id] = (time.monotonic(), view)

    def forget(self, checkout_id: int | None = None) -> None:
        with self._lock:
            if checkout_id is None:
                self._items.clear()
            else:
                self._items.pop(checkout_id, None)


def live_cache(app: Flask) -> LiveCache:
    """The app's cache of provider answers (one per application object)."""
    return app.extensions.setdefault("live_transactions_cache", LiveCache(CACHE_TTL_S))


def forget_live(checkout_id: int | None = None) -> None:
    """Drop a checkout's cached answer (after a refund or an applied state), or all of them."""
    live_cache(current_app._get_current_object()).forget(checkout_id)


_POOL_LOCK = threading.Lock()


def query_client(provider: str, settings: dict[str, str]) -> Provider:
    """A provider client for queries, in a worker thread: the thread's own reused HTTP session, no database (a query
    never records a nonce)."""
    return provider_class(provider).from_settings(current_app.config, settings, session=http_session())


def _ask(app: Flask, job: _Job, locale: str) -> LiveView:
    """One provider query, in a worker thread."""
    with app.app_context():
        try:
            txns = query_client(job.provider, job.settings).query(job.ref)
        except ProviderError as exc:
            return LiveView(job.checkout_id, "error", message=exc.message(locale), answered_at=datetime.now(UTC))
        except Exception:  # a broken answer must not break the page
            log.exception("live query of checkout %s failed", job.checkout_id)
            return LiveView(job.checkout_id, "error", message=job.unreadable, answered_at=datetime.now(UTC))
        view = LiveView(job.checkout_id, "ok", tuple(txns), answered_at=datetime.now(UTC))
        live_cache(app).put(view)
        return view


def query_pool(app: Flask) -> ThreadPoolExecutor:
    """One bounded pool per application, reused across requests so its threads keep their provider connections."""
    pool = app.extensions.get("live_query_pool")
    if pool is None:
        with _POOL_LOCK:
            pool = app.extensions.get("live_query_pool")
            if pool is None:
                pool = ThreadPoolExecutor(max_workers=MAX_WORKERS, thread_name_prefix="live-query")
                app.extensions["live_query_pool"] = pool
    return pool


def ask_providers(checkouts: list[Checkout], *, deadline: float, use_cache: bool = True) -> dict[int, LiveView]:
    """Each checkout's live view, asked concurrently; no answer by the deadline makes a view "unknown".

    Each query is handed to the pool as soon as its job is built: the first are on the wire while the last are built.
    """
    app = current_app._get_current_object()
    cache = live_cache(app)
    pool = query_pool(app)
    locale = str(get_locale() or "zh_TW")
    views: dict[int, LiveView] = {}
    futures: dict[Future[LiveView], _Job] = {}
    settings: dict[tuple[int, str], dict[str, str]] = {}  # decrypted once per merchant and provider
    unreadable: dict[str, str] = {}
    end_reads()  # no transaction is held while the providers are asked (what was read stays as it was)
    try:
        for checkout in checkouts:
            if not queryable(checkout):
                views[checkout.id] = LiveView(checkout.id, "not_sent")
                continue
            hit = cache.get(checkout.id) if use_cache else None
            if hit is not None:
                views[checkout.id] = hit
                continue
            key = (checkout.merchant_id, checkout.provider)
            if key not in settings:
                settings[key] = merchant_settings(checkout.merchant, provider_class(checkout.provider))
            if checkout.provider not in unreadable:
                unreadable[checkout.provider] = _(
                    "%(provider)s sent an answer the portal cannot read.", provider=provider_label(checkout.provider)
                )
            ref = checkout_ref(checkout, lines=False)  # a query needs the ids, not the order's lines
            job = _Job(checkout.id, checkout.provider, settings[key], ref, unreadable[checkout.provider])
            futures[pool.submit(_ask, app, job, locale)] = job
    except BaseException:
        for future in futures:
            future.cancel()  # the page fails: what has not started need not be asked
        raise
    if db.session().in_transaction():
        end_reads()  # a row was loaded lazily above (the order page's merchants): no transaction held while waiting

    if not futures:
        return views
    done, _late = wait(futures, timeout=deadline)
    for future in futures:
        future.cancel()  # not started yet: no use any more; stragglers already running finish and fill the cache
    for future, job in futures.items():
        if future in done:
            views[job.checkout_id] = future.result()
        else:
            views[job.checkout_id] = LiveView(
                job.checkout_id,
                "unknown",
                message=_(
                    "%(provider)s did not answer within %(seconds)s seconds.",
                    provider=provider_label(job.provider),
                    seconds=f"{deadline:g}",
                ),
            )
    return views


# ---------------------------------------------------------------- comparing with the portal's record


@dataclass(frozen=True)
class Comparison:
    """The provider's view next to the portal's record of one checkout."""

    live_state: str  # a portal state name; "none": the provider has no record; "unknown": no answer
    live_paid: int | None = None
    live_refunded: int = 0
    differs: bool = False
    can_apply: bool = False  # applying the provider's state would change the portal's record


def manual_refunded(checkout_ids: list[int]) -> dict[int, int]:
    """Refunds recorded by hand (O'Pay), which the provider's query never shows, per checkout."""
    if not checkout_ids:
        return {}
    stmt = (
        db.select(Refund.checkout_id, func.sum(Refund.amount))
        .where(Refund.checkout_id.in_(checkout_ids), Refund.manual.is_(True), Refund.state == "succeeded")
        .group_by(Refund.checkout_id)
    )
    return {checkout_id: int(total or 0) for checkout_id, total in db.session.execute(stmt)}


def compare(checkout: Checkout, view: LiveView, manual: int = 0) -> Comparison:
    """Whether the provider's view differs from the portal's record (hand-recorded refunds left out)."""
    if view.status != "ok":
        return Comparison("unknown" if view.status != "not_sent" else "none")
    state, figures = state_from_transactions(checkout, list(view.transactions))
    if state is None:
        return Comparison("none", differs=checkout.state in PAID_STATES)
    live = "paid" if state is State.PAID_MISMATCH else ("unknown" if state is State.ERROR else state.value)
    # What the provider took: nothing while it awaits payment (a transaction's amount is then what is asked).
    live_paid = figures.get("amount") if live in PAID_STATES else None
    live_refunded = int(figures.get("refunded") or 0)
    expected_refunded = max(checkout.refunded_amount - manual, 0)
    portal_state = checkout.state
    if manual and checkout.state in PAID_STATES:
        paid = checkout.paid_amount or checkout.amount
        portal_state = (
            "paid" if not expected_refunded else ("refunded" if expected_refunded >= paid else "partially_refunded")
        )
    differs = live != portal_state or (live in PAID_STATES and live_refunded != expected_refunded)
    if checkout.state in ENDED_HERE and live not in PAID_STATES:
        # Cancelled or expired here, and nothing paid there: the provider's page stays open until its own time runs
        # out (no provider lets the portal close it), so its "awaiting payment" is as expected, not a difference.
        differs = False
    can_apply = differs and (
        RANK.get(live, -1) > RANK.get(checkout.state, -1) or live_refunded > checkout.refunded_amount
    )
    return Comparison(live, live_paid, live_refunded, differs, can_apply)


# What the pages show of a checkout's record that a callback or a refund can change meanwhile (the reference, provider,
# amount and order stay as they were made); compare() reads the same.
REREAD_COLUMNS = (Checkout.state, Checkout.paid_amount, Checkout.refunded_amount)


def reread(checkouts: list[Checkout]) -> list[Checkout]:
    """The portal's record as it is now, after the providers were asked: the columns the pages show that can have
    changed, in one query, set on the rows read before (their other columns, orders and merchant stay as they were)."""
    if not checkouts:
        return checkouts
    by_id = {c.id: c for c in checkouts}
    stmt = db.select(Checkout.id, *REREAD_COLUMNS).where(Checkout.id.in_(by_id))
    for checkout_id, *values in db.session.execute(stmt):
        checkout = by_id[checkout_id]
        for column, value in zip(REREAD_COLUMNS, values, strict=True):
            set_committed_value(checkout, column.key, value)
    return checkouts


def live_rows(checkouts: list[Checkout], views: dict[int, LiveView]) -> list[tuple[Checkout, LiveView, Comparison]]:
    manual = manual_refunded([c.id for c in checkouts])
    return [(c, views[c.id], compare(c, views[c.id], manual.get(c.id, 0))) for c in checkouts]


# ---------------------------------------------------------------- what the pages show


def order_deadline() -> float:
    """The order page waits as long as one provider call may take."""
    return float(current_app.config["PROVIDER_TIMEOUT_S"]) + 1.0


def order_rows(order: Order) -> list[tuple[Checkout, LiveView, Comparison]]:
    """Each of the order's attempts, newest first, with what its provider says now (never from the cache)."""
    checkouts = list(reversed(order.checkouts))
    views = ask_providers(checkouts, deadline=order_deadline(), use_cache=False)
    return live_rows(reread(checkouts), views)


def overview_rows(merchant_id: int) -> list[tuple[Checkout, LiveView, Comparison]]:
    """The merchant's latest checkouts with their live state at the provider (cached answers allowed)."""
    stmt = (
        db.select(Checkout)
        .where(Checkout.merchant_id == merchant_id)
        # The order and the merchant in the same statement (the page shows no order lines).
        .options(joinedload(Checkout.order, innerjoin=True), joinedload(Checkout.merchant, innerjoin=True))
        .order_by(Checkout.id.desc())
        .limit(OVERVIEW_LIMIT)
    )
    checkouts = list(db.session.execute(stmt).scalars())
    views = ask_providers(checkouts, deadline=OVERVIEW_DEADLINE_S)
    return live_rows(reread(checkouts), views)


def apply_provider_state(order: Order, checkout: Checkout) -> tuple[bool, str | None]:
    """Apply what the provider says to the portal's record (the same path as callbacks), audited."""
    changed, error = refresh_checkout(checkout.id, source="manual")
    with write_transaction():
        audit(
            "provider_state_applied",
            merchant_id=order.merchant_id,
            order_id=order.id,
            checkout=checkout.reference,
            changed=changed,
            error=error,
        )
    forget_live(checkout.id)
    return changed, error
