"""Budget periods (UTC calendar windows) and what crosses a handle to reserve spend.

A key's budget applies to its current period: `total` (since the key exists), `daily`
(from 00:00 UTC), `weekly` (from Monday 00:00 UTC) or `monthly` (from the 1st, 00:00 UTC).
"""

import datetime as dt
from dataclasses import dataclass
from typing import Literal, get_args

BudgetPeriod = Literal["total", "daily", "weekly", "monthly"]
BUDGET_PERIODS: tuple[str, ...] = get_args(BudgetPeriod)
TOTAL_START = 0.0


def period_bounds(period: str, ts: float) -> tuple[float, float | None]:
    """(start, end) of the period holding `ts`, as epoch seconds; `total` never ends."""
    if period == "total":
        return TOTAL_START, None
    day = dt.datetime.fromtimestamp(ts, dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "daily":
        start, end = day, day + dt.timedelta(days=1)
    elif period == "weekly":
        start = day - dt.timedelta(days=day.weekday())
        end = start + dt.timedelta(days=7)
    elif period == "monthly":
        start = day.replace(day=1)
        end = (start + dt.timedelta(days=32)).replace(day=1)
    else:
        raise ValueError(f"unknown budget period {period!r}: one of {', '.join(BUDGET_PERIODS)}")
    return start.timestamp(), end.timestamp()


def period_start(period: str, ts: float) -> float:
    return period_bounds(period, ts)[0]


@dataclass(frozen=True, slots=True)
class BudgetHold:
    """Reserve `amount_usd` against `key_id`'s budget for the period starting at
    `period_start`. `floor_usd` is the spend the database already knows for that period:
    the store's count never goes below it (after a limiter restart, or a Redis key expiry)."""

    key_id: str
    period_start: float
    budget_usd: float
    amount_usd: float
    floor_usd: float
    ttl_s: float  # how long the store keeps the counter (past the period's end)


@dataclass(frozen=True, slots=True)
class BudgetDecision:
    allowed: bool
    spent_usd: float  # settled spend in the period, reservations excluded
    reserved_usd: float  # held by calls in flight, this one included when allowed
    reservation_id: str | None = None
