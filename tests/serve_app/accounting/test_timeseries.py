"""Usage timeseries aggregated in SQL: the same answers on SQLite and a real PostgreSQL, and
totals equal to the ledger's summary (what /api/v1/usage shows) for the same window."""

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from serve_app.accounting import timeseries
from serve_app.accounting.ledger import UsageRecord, as_row
from serve_app.accounting.timeseries import TimeseriesQuery
from serve_app.accounting.usage_store import UsageStore, open_store
from tests.fakes.postgres_server import PostgresServer, postgres_server

DAY = 86400.0
T0 = 1_700_000_000.0 - (1_700_000_000.0 % DAY)  # midnight UTC
_databases = itertools.count()


def rec(
    ts: float, key: str, provider: str, model: str, cost: float, latency: float, outcome: str = "ok"
) -> UsageRecord:
    return UsageRecord(
        ts,
        f"r{ts}{key}",
        key,
        model,
        provider,
        model,
        10,
        5,
        cost,
        latency,
        outcome,
        200 if outcome == "ok" else 502,
    )


ROWS = [
    rec(T0 + 10, "k1", "openai", "gpt", 0.5, 100.0),
    rec(T0 + 20, "k1", "openai", "gpt", 0.25, 300.0),
    rec(T0 + 3700, "k2", "anthropic", "claude", 1.0, 200.0),
    rec(T0 + 3800, "k2", "local", "demo", 0.0, 50.0, outcome="upstream_error"),
    rec(T0 + DAY + 5, "k1", "local", "demo", 0.125, 400.0),
    rec(T0 + 2 * DAY, "k1", "openai", "gpt", 9.0, 1.0),  # == until: outside the window
]


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    pytest.importorskip("psycopg")
    with postgres_server(tmp_path_factory.mktemp("postgres")) as running:
        yield running


def _pg_url(server: PostgresServer) -> str:
    import psycopg

    name = f"ts_{next(_databases)}"
    with psycopg.connect(server.url, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    return server.url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[UsageStore]:
    if request.param == "sqlite":
        opened = open_store(f"sqlite:///{tmp_path}/usage.db")
    else:
        opened = open_store(_pg_url(request.getfixturevalue("pg")))
    opened.write([as_row(r) for r in ROWS])
    yield opened
    opened.close()


def test_hourly_by_model_is_dense_and_sums_to_the_summary(store: UsageStore) -> None:
    query = TimeseriesQuery(T0, T0 + 2 * DAY, "hour", "model")
    result = timeseries.run(store, query)
    assert len(result["buckets"]) == 48 and result["buckets"][0].startswith("2023-11-14T00:00")
    names = [s["name"] for s in result["series"]]
    assert names == ["claude", "gpt", "demo"]  # largest cost first
    gpt = result["series"][1]
    assert gpt["requests"][0] == 2 and gpt["cost_usd"][0] == 0.75 and sum(gpt["requests"]) == 2
    assert all(len(s["requests"]) == 48 for s in result["series"])
    summary = store.summarize(T0, T0 + 2 * DAY)
    totals = result["totals"]
    assert totals["requests"] == sum(r["requests"] for r in summary) == 5
    assert totals["errors"] == sum(r["errors"] for r in summary) == 1
    assert totals["cost_usd"] == pytest.approx(sum(r["cost_usd"] for r in summary)) == 1.875
    # nearest rank over the 4 successful latencies [100, 200, 300, 400]
    assert (totals["latency_p50_ms"], totals["latency_p95_ms"]) == (200.0, 400.0)


def test_daily_by_key_with_filters(store: UsageStore) -> None:
    query = TimeseriesQuery(T0, T0 + 2 * DAY, "day", "key", key_id="k1", status="ok")
    result = timeseries.run(store, query)
    assert [s["name"] for s in result["series"]] == ["k1"]
    assert result["series"][0]["requests"] == [2, 1]
    assert result["series"][0]["cost_usd"] == [0.75, 0.125]
    errors = timeseries.run(store, TimeseriesQuery(T0, T0 + DAY, "day", "provider", status="error"))
    assert [(s["name"], s["errors"]) for s in errors["series"]] == [("local", [1])]
    assert errors["totals"]["latency_p50_ms"] is None


def test_unaligned_window_counts_partial_buckets() -> None:
    query = TimeseriesQuery(T0 + 1800, T0 + 3 * 3600 + 1, "hour")
    assert query.point_count() == 4 and query.first_bucket == T0
