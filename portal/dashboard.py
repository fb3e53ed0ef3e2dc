"""The shop's takings for the dashboard, summed in SQL by Taipei calendar day.

Takings of a day: what was paid that day (the moment a checkout first moved into a paid state, from its CheckoutEvent
evidence; the checkout's paid amount), less the refunds made that day (Refund rows that succeeded, by the day they were
made), less the provider's fees of the payments made that day where the provider reports them (Checkout.fee_amount).
Asia/Taipei is UTC+8 without daylight saving: a stored (naive UTC) time shifted by 8 hours has the Taipei date.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import and_, func, literal_column, select

from portal.extensions import db
from portal.filters import TAIPEI
from portal.models import (
    PAID_STATES,
    Checkout,
    CheckoutEvent,
    CheckoutState,
    Order,
    OrderState,
    Refund,
    RefundState,
)

CHART_DAYS = 30
PERIODS = (("today", 1), ("week", 7), ("month", 30))  # (key, calendar days ending today)
PAID = tuple(CheckoutState(s).value for s in PAID_STATES)
UNPAID_ENDS = (CheckoutState.FAILED.value, CheckoutState.EXPIRED.value)


def taipei_day(column):
    """The Taipei calendar date of a naive-UTC time column, in SQL (SQLite and PostgreSQL alike)."""
    if db.session.get_bind().dialect.name == "sqlite":
        return func.date(column, literal_column("'+8 hours'"))
    return func.date(column + literal_column("INTERVAL '8 hours'"))


def _as_date(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


@dataclass
class Figures:
    """Money and counts over some days."""

    paid: int = 0
    payments: int = 0
    refunded: int = 0
    fees: int = 0
    failed: int = 0
    expired: int = 0

    @property
    def net(self) -> int:
        return self.paid - self.refunded - self.fees

    def add(self, other: Figures) -> None:
        for name in ("paid", "payments", "refunded", "fees", "failed", "expired"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class Dashboard:
    today: date
    days: list[date]  # the chart's days, oldest first, ending today
    daily: dict[date, Figures]
    periods: dict[str, Figures]
    providers: dict[str, dict[str, Figures]]  # provider -> period key -> figures
    open_links: int = 0
    open_value: int = 0
    chart: list[tuple[date, int]] = field(default_factory=list)  # (day, net takings)
    # Payments flagged for a person (paid twice, another amount, paid after the link ended), newest first:
    # (order id, order number, attempt reference, attention reason)
    attention: list[tuple[int, str, str, str | None]] = field(default_factory=list)


# The flagged payments the dashboard lists at most (the orders list badges the rest).
ATTENTION_SHOWN = 20


def taipei_today(now: datetime | None = None) -> date:
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return now.astimezone(TAIPEI).date()


def _utc_start(day: date) -> datetime:
    """Taipei midnight at the start of `day`, as a naive UTC time (as stored)."""
    return datetime.combine(day, time(), TAIPEI).astimezone(UTC).replace(tzinfo=None)


def _events_by_day(merchant_id: int, start: datetime, end: datetime, columns, *conditions, group=()):
    """(Taipei day, provider, *columns) of the merchant's applied checkout events in [start, end) that meet the
    conditions, grouped by day, provider and `group` (on ix_checkout_event_to_state_created)."""
    day = taipei_day(CheckoutEvent.created_at).label("day")
    return db.session.execute(
        select(day, Checkout.provider, *columns)
        .join(Checkout, Checkout.id == CheckoutEvent.checkout_id)
        .where(
            Checkout.merchant_id == merchant_id,
            CheckoutEvent.created_at >= start,
            CheckoutEvent.created_at < end,
            CheckoutEvent.applied.is_(True),
            *conditions,
        )
        .group_by(day, Checkout.provider, *group)
    )


def build(merchant_id: int, now: datetime | None = None) -> Dashboard:
    """The merchant's takings today, over 7 and 30 days, per provider and per day; open links; failed and expired."""
    today = taipei_today(now)
    days = [today - timedelta(days=n) for n in range(CHART_DAYS - 1, -1, -1)]
    start, end = _utc_start(days[0]), _utc_start(today + timedelta(days=1))
    cells: dict[tuple[date, str], Figures] = {}

    def cell(day, provider) -> Figures:
        return cells.setdefault((_as_date(day), provider), Figures())

    # Payments, by the day they were paid: the one applied event that moved each checkout into a paid state.
    paid_amount = func.coalesce(func.nullif(Checkout.paid_amount, 0), Checkout.amount)
    fees = func.coalesce(Checkout.fee_amount, 0)
    paid = _events_by_day(
        merchant_id,
        start,
        end,
        (func.count(), func.sum(paid_amount), func.sum(fees)),
        CheckoutEvent.to_state.in_(PAID),
        CheckoutEvent.from_state.not_in(PAID),
    )
    for d, provider, count, amount, fees in paid:
        figures = cell(d, provider)
        figures.payments, figures.paid, figures.fees = count, int(amount or 0), int(fees or 0)

    # Refunds, by the day they were made.
    day = taipei_day(Refund.created_at).label("day")
    refunds = db.session.execute(
        select(day, Checkout.provider, func.sum(Refund.amount))
        .join(Checkout, Checkout.id == Refund.checkout_id)
        .where(
            Refund.merchant_id == merchant_id,
            Refund.state == RefundState.SUCCEEDED.value,
            Refund.created_at >= start,
            Refund.created_at < end,
        )
        .group_by(day, Checkout.provider)
    )
    for d, provider, amount in refunds:
        cell(d, provider).refunded = int(amount or 0)

    # Attempts that failed (a customer's payment, not a link the provider refused to create) or expired.
    ends = _events_by_day(
        merchant_id,
        start,
        end,
        (CheckoutEvent.to_state, func.count()),
        CheckoutEvent.to_state.in_(UNPAID_ENDS),
        CheckoutEvent.from_state != CheckoutState.CREATING.value,
        group=(CheckoutEvent.to_state,),
    )
    for d, provider, state, count in ends:
        setattr(cell(d, provider), state, count)

    daily = {d: Figures() for d in days}
    periods = {key: Figures() for key, _n in PERIODS}
    providers: dict[str, dict[str, Figures]] = {}
    for (d, provider), figures in sorted(cells.items()):
        if d not in daily:
            continue
        daily[d].add(figures)
        per_provider = providers.setdefault(provider, {key: Figures() for key, _n in PERIODS})
        for key, n in PERIODS:
            if d > today - timedelta(days=n):
                periods[key].add(figures)
                per_provider[key].add(figures)

    count, value = db.session.execute(
        select(func.count(), func.coalesce(func.sum(Order.payable), 0)).where(
            and_(Order.merchant_id == merchant_id, Order.state == OrderState.AWAITING_PAYMENT.value)
        )
    ).one()
    attention = db.session.execute(
        select(Order.id, Order.number, Checkout.reference, Checkout.attention_reason)
        .join(Order, Order.id == Checkout.order_id)
        .where(Checkout.merchant_id == merchant_id, Checkout.needs_attention.is_(True))
        .order_by(Checkout.updated_at.desc(), Checkout.id.desc())
        .limit(ATTENTION_SHOWN)
    ).all()
    return Dashboard(
        today=today,
        days=days,
        daily=daily,
        periods=periods,
        providers=dict(sorted(providers.items())),
        open_links=count,
        open_value=int(value),
        chart=[(d, daily[d].net) for d in days],
        attention=[tuple(row) for row in attention],
    )
