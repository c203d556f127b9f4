"""Where usage records live, with the running spend per key that budgets read.

`UsageStore.write` inserts a batch of records and adds their cost to `key_spend` (per key, for
each budget period under way) in the same transaction, so the spend a budget check reads is
one indexed row, never a scan of `usage`. Synchronous and thread-safe (pooled connections);
the ledger calls it from a worker thread.
"""

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Engine, Insert, and_, case, func, insert, or_, select
from sqlalchemy.dialects import postgresql, sqlite

from serve_app.accounting.db import create_db_engine
from serve_app.accounting.migrate import ensure_schema
from serve_app.accounting.schema import key_spend, usage
from serve_app.contracts.budgets import BUDGET_PERIODS, period_start

COLUMNS = tuple(column.name for column in usage.columns)
FAR_FUTURE = 1e12
SpendKey = tuple[str, str, float]  # key id, period, period start


def spend_increments(records: Iterable[Mapping[str, Any]]) -> dict[SpendKey, tuple[float, int]]:
    """Cost and request count per (key, period, period start) of a batch of records."""
    totals: dict[SpendKey, tuple[float, int]] = {}
    for record in records:
        for period in BUDGET_PERIODS:
            spend_key = (record["key_id"], period, period_start(period, record["ts"]))
            spent, count = totals.get(spend_key, (0.0, 0))
            totals[spend_key] = (spent + float(record["cost_usd"]), count + 1)
    return totals


def upsert_spend(engine: Engine, totals: Mapping[SpendKey, tuple[float, int]]) -> Insert:
    """One INSERT … ON CONFLICT DO UPDATE adding to the running sums (both dialects)."""
    dialect_insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
    statement = dialect_insert(key_spend)
    return statement.on_conflict_do_update(
        index_elements=["key_id", "period", "period_start"],
        set_={
            "spent_usd": key_spend.c.spent_usd + statement.excluded.spent_usd,
            "requests": key_spend.c.requests + statement.excluded.requests,
            "updated_at": statement.excluded.updated_at,
        },
    )


class UsageStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.backend = engine.dialect.name

    def write(self, rows: Sequence[tuple[Any, ...]]) -> None:
        if not rows:
            return
        records = [dict(zip(COLUMNS, row)) for row in rows]
        totals = spend_increments(records)
        now = time.time()
        spend_rows = [
            {
                "key_id": key_id,
                "period": period,
                "period_start": start,
                "spent_usd": spent,
                "requests": count,
                "updated_at": now,
            }
            for (key_id, period, start), (spent, count) in sorted(totals.items())
        ]  # fmt: skip  (sorted: concurrent writers lock rows in one order, no deadlock)
        with self.engine.begin() as connection:
            connection.execute(insert(usage), records)
            connection.execute(upsert_spend(self.engine, totals), spend_rows)

    def summarize(
        self, since: float | None, until: float | None, key_id: str | None = None
    ) -> list[dict[str, Any]]:
        query = (
            select(
                usage.c.provider,
                usage.c.model_id,
                func.count(),
                func.sum(case((usage.c.outcome == "ok", 0), else_=1)),
                func.sum(usage.c.input_tokens),
                func.sum(usage.c.output_tokens),
                func.sum(usage.c.cost_usd),
                func.sum(usage.c.cache_hit),
                func.sum(usage.c.saved_usd),
            )
            .where(usage.c.ts >= (since or 0.0), usage.c.ts < (until or FAR_FUTURE))
            .group_by(usage.c.provider, usage.c.model_id)
            .order_by(usage.c.provider, usage.c.model_id)
        )
        if key_id is not None:
            query = query.where(usage.c.key_id == key_id)
        with self.engine.connect() as connection:
            return _summary_rows(connection.execute(query).all())

    def current_spend(self, now: float | None = None) -> dict[tuple[str, str], float]:
        """USD spent per (key id, period) in each period under way."""
        now = time.time() if now is None else now
        column = key_spend.c
        current = [
            and_(column.period == period, column.period_start == period_start(period, now))
            for period in BUDGET_PERIODS
        ]
        query = select(key_spend.c.key_id, key_spend.c.period, key_spend.c.spent_usd).where(
            or_(*current)
        )
        with self.engine.connect() as connection:
            return {(k, p): float(s) for k, p, s in connection.execute(query).all()}

    def query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """One read-only SELECT in the driver's own placeholder style (`?` on SQLite, `%s`
        on PostgreSQL; e.g. `serve_app.accounting.timeseries`)."""
        with self.engine.connect() as connection:
            result = connection.exec_driver_sql(sql, tuple(params))
            return [tuple(row) for row in result.all()]

    def close(self) -> None:
        self.engine.dispose()


def _summary_rows(rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    return [
        {
            "provider": provider,
            "model_id": model_id,
            "requests": int(requests),
            "errors": int(errors or 0),
            "input_tokens": int(input_tokens or 0),
            "output_tokens": int(output_tokens or 0),
            "cost_usd": round(float(cost or 0.0), 9),
            "cache_hits": int(hits or 0),
            "saved_usd": round(float(saved or 0.0), 9),
        }
        for (
            provider,
            model_id,
            requests,
            errors,
            input_tokens,
            output_tokens,
            cost,
            hits,
            saved,
        ) in rows
    ]


def open_engine(url: str, auto_migrate: bool = True, setting: str = "ledger.url") -> Engine:
    """A pooled engine on a database whose schema fits this code (see `ensure_schema`)."""
    engine = create_db_engine(url, setting=setting)
    try:
        ensure_schema(engine, auto_migrate, setting)
    except BaseException:
        engine.dispose()
        raise
    return engine


def open_store(url: str, auto_migrate: bool = True) -> UsageStore:
    """A usage store on its own engine (tools and tests; the ingress shares one engine)."""
    return UsageStore(open_engine(url, auto_migrate))
