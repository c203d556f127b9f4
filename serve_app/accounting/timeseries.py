"""Usage over time, aggregated in SQL: one row per (time bucket, group), on SQLite and
PostgreSQL alike, plus the window's totals and latency percentiles.

The SQL is plain text over the `usage` table with the store's placeholder, so it ports to
any layer that can run a parameterised SELECT (`UsageStore.query`). Buckets are UTC: the
bucket of a row is `floor(ts / size) * size` (SQLite: an integer cast, exact for ts >= 0).
"""

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

Bucket = Literal["hour", "day"]
GroupBy = Literal["model", "provider", "key"]
StatusFilter = Literal["ok", "error"]
BUCKET_SECONDS: dict[str, int] = {"hour": 3600, "day": 86400}
GROUP_COLUMNS: dict[str, str] = {"model": "model_id", "provider": "provider", "key": "key_id"}
FIGURES = ("requests", "errors", "input_tokens", "output_tokens", "cost_usd")
PERCENTILES = (50, 95)


class QueryableStore(Protocol):
    backend: str

    def query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]: ...


@dataclass(frozen=True, slots=True)
class TimeseriesQuery:
    since: float  # epoch seconds, inclusive
    until: float  # epoch seconds, exclusive
    bucket: Bucket = "hour"
    group_by: GroupBy = "model"
    key_id: str | None = None
    model_id: str | None = None
    provider: str | None = None
    status: StatusFilter | None = None

    @property
    def bucket_s(self) -> int:
        return BUCKET_SECONDS[self.bucket]

    @property
    def first_bucket(self) -> float:
        return math.floor(self.since / self.bucket_s) * self.bucket_s

    def point_count(self) -> int:
        """Buckets from the one holding `since` to the one holding the last instant."""
        return max(1, math.ceil((self.until - self.first_bucket) / self.bucket_s))


def _mark(backend: str) -> str:
    return "%s" if backend == "postgresql" else "?"


def _bucket_sql(backend: str, size: int) -> str:
    if backend == "postgresql":
        return f"FLOOR(ts / {size}) * {size}"
    return f"CAST(ts / {size} AS INTEGER) * {size}"


def where_clause(query: TimeseriesQuery, mark: str) -> tuple[str, tuple[Any, ...]]:
    """The window and the filters, as SQL with placeholders and its parameters."""
    clauses = [f"ts >= {mark}", f"ts < {mark}"]
    params: list[Any] = [query.since, query.until]
    for column, value in (
        ("key_id", query.key_id),
        ("model_id", query.model_id),
        ("provider", query.provider),
    ):
        if value is not None:
            clauses.append(f"{column} = {mark}")
            params.append(value)
    if query.status == "ok":
        clauses.append("outcome = 'ok'")
    elif query.status == "error":
        clauses.append("outcome <> 'ok'")
    return " AND ".join(clauses), tuple(params)


def series_sql(query: TimeseriesQuery, backend: str) -> tuple[str, tuple[Any, ...]]:
    where, params = where_clause(query, _mark(backend))
    group = GROUP_COLUMNS[query.group_by]
    sql = (
        f"SELECT {_bucket_sql(backend, query.bucket_s)} AS bucket, {group} AS grp, COUNT(*), "
        "SUM(CASE WHEN outcome = 'ok' THEN 0 ELSE 1 END), SUM(input_tokens), "
        f"SUM(output_tokens), SUM(cost_usd) FROM usage WHERE {where} "
        "GROUP BY 1, 2 ORDER BY 1, 2"
    )
    return sql, params


def latency_sql(query: TimeseriesQuery, backend: str) -> tuple[str, tuple[Any, ...]]:
    """Nearest-rank p50 and p95 of the latency of the window's successful requests."""
    where, params = where_clause(query, _mark(backend))
    ranks = " OR ".join(f"rn = (n * {p} + 99) / 100" for p in PERCENTILES)
    sql = (
        "SELECT rn, n, latency_ms FROM (SELECT latency_ms, "
        "ROW_NUMBER() OVER (ORDER BY latency_ms) AS rn, COUNT(*) OVER () AS n "
        f"FROM usage WHERE {where} AND outcome = 'ok') AS ranked WHERE {ranks}"
    )
    return sql, params


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat()


def _latencies(rows: Sequence[Sequence[Any]]) -> dict[str, float | None]:
    by_rank = {int(rn): (int(n), float(latency)) for rn, n, latency in rows}
    result: dict[str, float | None] = {}
    for p in PERCENTILES:
        found = [lat for rn, (n, lat) in by_rank.items() if rn == (n * p + 99) // 100]
        result[f"latency_p{p}_ms"] = round(found[0], 3) if found else None
    return result


def shape(
    query: TimeseriesQuery, rows: Sequence[Sequence[Any]], latency_rows: Sequence[Sequence[Any]]
) -> dict[str, Any]:
    """Dense series (one value per bucket, zeros where nothing happened), largest cost first."""
    count = query.point_count()
    starts = [query.first_bucket + i * query.bucket_s for i in range(count)]
    index = {int(start): i for i, start in enumerate(starts)}
    series: dict[str, dict[str, list[float]]] = {}
    for bucket, group, *values in rows:
        position = index.get(int(float(bucket)))
        if position is None:  # cannot happen for rows inside the window
            continue
        figures = series.setdefault(str(group), {name: [0] * count for name in FIGURES})
        for name, value in zip(FIGURES, values):
            figures[name][position] = float(value or 0) if name == "cost_usd" else int(value or 0)
    shaped = [_one_series(name, figures) for name, figures in series.items()]
    shaped.sort(key=lambda s: (-s["totals"]["cost_usd"], -s["totals"]["requests"], s["name"]))
    totals = {name: sum(s["totals"][name] for s in shaped) for name in FIGURES}
    totals["cost_usd"] = round(totals["cost_usd"], 9)
    return {
        "since": _iso(query.since),
        "until": _iso(query.until),
        "bucket": query.bucket,
        "group_by": query.group_by,
        "buckets": [_iso(start) for start in starts],
        "series": shaped,
        "totals": {**totals, **_latencies(latency_rows)},
    }


def _one_series(name: str, figures: dict[str, list[float]]) -> dict[str, Any]:
    figures["cost_usd"] = [round(value, 9) for value in figures["cost_usd"]]
    totals = {key: sum(values) for key, values in figures.items()}
    totals["cost_usd"] = round(totals["cost_usd"], 9)
    return {"name": name, **figures, "totals": totals}


def run(store: QueryableStore, query: TimeseriesQuery) -> dict[str, Any]:
    """Both queries against the store (synchronous: call it from a worker thread)."""
    rows = store.query(*series_sql(query, store.backend))
    latency_rows = store.query(*latency_sql(query, store.backend))
    return shape(query, rows, latency_rows)
