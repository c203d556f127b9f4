"""The PostgreSQL usage ledger and key store, against a real throwaway PostgreSQL server."""

import contextlib
import itertools
import time
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("psycopg")

import psycopg
from sqlalchemy.exc import DBAPIError

from serve_app.access.key_store import KeySpec, hash_key, open_key_store
from serve_app.accounting.ledger import Ledger, UsageRecord, as_row
from serve_app.accounting.usage_store import open_store
from serve_app.contracts.config import LedgerConfig
from serve_app.contracts.errors import NotFoundError
from tests.fakes.postgres_server import PostgresServer, postgres_server

_databases = itertools.count()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    with postgres_server(tmp_path_factory.mktemp("postgres")) as running:
        yield running


def create_database(server_url: str) -> str:
    """A fresh empty database on the server; its URL."""
    name = f"test_{next(_databases)}"
    with psycopg.connect(server_url, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    return server_url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture
def db_url(server: PostgresServer) -> str:
    return create_database(server.url)


def record(
    ts: float,
    key_id: str = "key-a",
    provider: str = "openai",
    model_id: str = "gpt",
    tokens: tuple[int, int] = (10, 5),
    cost: float = 0.25,
    outcome: str = "ok",
) -> UsageRecord:
    return UsageRecord(
        ts=ts,
        request_id=f"req-{ts}-{key_id}",
        key_id=key_id,
        model_id=model_id,
        provider=provider,
        served_model=f"{model_id}-served",
        input_tokens=tokens[0],
        output_tokens=tokens[1],
        cost_usd=cost,
        latency_ms=12.5,
        outcome=outcome,
        status=200 if outcome == "ok" else 502,
    )


RECORDS = [
    record(100.0),
    record(101.0, key_id="key-b", cost=0.5, tokens=(20, 10)),
    record(102.0, outcome="upstream_error", tokens=(0, 0), cost=0.0),
    record(103.0, provider="anthropic", model_id="claude", cost=1.0, tokens=(7, 3)),
    record(200.0, cost=2.0),  # outside the [100, 200) window
]


# --- the usage ledger --------------------------------------------------------------------------


def test_open_store_postgres_url_is_postgres_store(db_url: str) -> None:
    for url in (db_url, db_url.replace("postgresql://", "postgres://")):
        store = open_store(url)
        assert store.backend == "postgresql" and store.engine.driver == "psycopg"
        store.close()


def test_ledger_store_writes_and_summarizes(db_url: str) -> None:
    store = open_store(db_url)
    try:
        assert store.backend == "postgresql"
        assert store.summarize(None, None) == []
        store.write([as_row(r) for r in RECORDS])

        summary = store.summarize(100.0, 200.0)
        assert summary == [
            {
                "provider": "anthropic",
                "model_id": "claude",
                "requests": 1,
                "errors": 0,
                "input_tokens": 7,
                "output_tokens": 3,
                "cost_usd": 1.0,
                "cache_hits": 0,
                "saved_usd": 0.0,
            },
            {
                "provider": "openai",
                "model_id": "gpt",
                "requests": 3,
                "errors": 1,
                "input_tokens": 30,
                "output_tokens": 15,
                "cost_usd": 0.75,
                "cache_hits": 0,
                "saved_usd": 0.0,
            },
        ]
        for row in summary:
            assert all(type(row[k]) is int for k in ("requests", "errors", "input_tokens"))
            assert type(row["cost_usd"]) is float

        by_key = store.summarize(100.0, 200.0, key_id="key-b")
        assert by_key == [
            {
                "provider": "openai",
                "model_id": "gpt",
                "requests": 1,
                "errors": 0,
                "input_tokens": 20,
                "output_tokens": 10,
                "cost_usd": 0.5,
                "cache_hits": 0,
                "saved_usd": 0.0,
            }
        ]
        assert store.summarize(None, None, key_id="nobody") == []

        # no bounds: everything; since inclusive, until exclusive
        everything = {r["model_id"]: r["requests"] for r in store.summarize(None, None)}
        assert everything == {"claude": 1, "gpt": 4}
        assert [r["requests"] for r in store.summarize(200.0, None)] == [1]
        assert store.summarize(None, 100.0) == []
        assert [r["requests"] for r in store.summarize(None, 100.5)] == [1]
    finally:
        store.close()


def test_ledger_store_data_survives_a_new_connection(db_url: str) -> None:
    first = open_store(db_url)
    first.write([as_row(RECORDS[0])])
    first.close()
    second = open_store(db_url)
    try:
        assert [r["requests"] for r in second.summarize(None, None)] == [1]
        with psycopg.connect(db_url) as connection:
            row = connection.execute("SELECT * FROM usage").fetchone()
        assert row == as_row(RECORDS[0])
    finally:
        second.close()


async def test_ledger_flushes_to_postgres(db_url: str) -> None:
    ledger = Ledger(LedgerConfig(url=db_url, flush_interval_s=60))
    try:
        assert ledger.health()["backend"] == "postgresql"
        for r in RECORDS:
            ledger.record(r)
        assert ledger.pending == len(RECORDS)
        assert await ledger.flush() is True
        assert ledger.pending == 0 and not ledger.degraded
        summary = await ledger.summarize(None, None, key_id="key-a")
        assert {r["model_id"]: r["requests"] for r in summary} == {"claude": 1, "gpt": 3}
        ledger.record(record(300.0, key_id="key-c"))
    finally:
        await ledger.close()  # flushes the last record
    store = open_store(db_url)
    try:
        assert [r["requests"] for r in store.summarize(300.0, None, key_id="key-c")] == [1]
    finally:
        store.close()


# --- the key store -----------------------------------------------------------------------------


def test_key_store_round_trip(db_url: str) -> None:
    store = open_key_store(db_url)
    try:
        assert store.backend == "postgresql"
        assert store.list() == []
        first, first_plain = store.create(
            KeySpec("first", ["gpt", "claude"], rpm=60, tpm=1000, budget_usd=5)
        )
        second, second_plain = store.create(KeySpec("second"))

        assert [k.id for k in store.list()] == [first.id, second.id]
        assert store.get(first.id) == first
        assert first.allowed_models == ("gpt", "claude")
        assert (first.rpm, first.tpm, first.budget_usd, first.enabled) == (60, 1000, 5.0, True)
        assert store.get(second.id) == second
        assert second.allowed_models == () and second.rpm is None and second.budget_usd is None
        assert store.get("missing") is None

        assert store.find_by_hash(hash_key(first_plain)) == first
        assert store.find_by_hash(hash_key(second_plain)) == second
        assert store.find_by_hash(hash_key("gw-not-a-key")) is None

        disabled = store.set_enabled(first.id, False)
        assert disabled.enabled is False and disabled.id == first.id
        assert store.get(first.id) == disabled
        assert store.set_enabled(first.id, True).enabled is True
        with pytest.raises(NotFoundError):
            store.set_enabled("missing", False)
        assert store.get(first.id) is not None  # the failed update changed nothing
    finally:
        store.close()

    # the plain key is never stored, only its hash and display prefix
    with psycopg.connect(db_url) as connection:
        rows = connection.execute("SELECT * FROM api_keys").fetchall()
    dump = repr(rows)
    assert all(row[-1] == "total" for row in rows)  # budget_period
    assert len(rows) == 2
    assert first_plain not in dump and second_plain not in dump
    assert first_plain.removeprefix("gw-") not in dump
    assert hash_key(first_plain) in dump and f"'{first.prefix}'" in dump
    assert first_plain.removeprefix("gw-").startswith(first.prefix)

    reopened = open_key_store(db_url)
    try:
        assert [k.name for k in reopened.list()] == ["first", "second"]
    finally:
        reopened.close()


def test_spend_by_key_without_usage(db_url: str) -> None:
    store = open_key_store(db_url)
    try:
        lonely, _ = store.create(KeySpec("lonely"))
        assert store.spend_by_key() == {lonely.id: 0.0}
    finally:
        store.close()


def test_running_spend_is_written_with_the_records(db_url: str) -> None:
    ledger = open_store(db_url)
    keys = open_key_store(db_url)
    try:
        ledger.write([as_row(r) for r in RECORDS])
        total = {k: v for (k, period), v in ledger.current_spend().items() if period == "total"}
        assert total == pytest.approx({"key-a": 3.25, "key-b": 0.5})
        key, _ = keys.create(KeySpec("live", budget_usd=1.0, budget_period="monthly"))
        ledger.write([as_row(record(time.time(), key_id=key.id, cost=0.125))] * 2)
        assert keys.spend_by_key()[key.id] == pytest.approx(0.25)
    finally:
        ledger.close()
        keys.close()


# --- outages -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def outage_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """A server of its own that the tests stop and start (each leaves it running)."""
    with postgres_server(tmp_path_factory.mktemp("postgres-outage")) as running:
        yield running


@pytest.fixture
def pg(outage_server: PostgresServer) -> Iterator[PostgresServer]:
    """The outage server, running again after each test even when the test failed."""
    if not outage_server.running:
        outage_server.start()
    yield outage_server
    if not outage_server.running:
        outage_server.start()


def test_key_update_and_usage_by_key(db_url: str) -> None:
    ledger = open_store(db_url)
    keys = open_key_store(db_url)
    try:
        record_a, _ = keys.create(KeySpec("a", ["demo"], rpm=5, budget_usd=2.0))
        assert keys.usage_by_key() == {}
        changed = keys.update(record_a.id, {"rpm": None, "tpm": 100, "allowed_models": []})
        assert (changed.rpm, changed.tpm, changed.allowed_models, changed.budget_usd) == (
            None,
            100,
            (),
            2.0,
        )
        with pytest.raises(NotFoundError):
            keys.update("key_missing", {"rpm": 1})
        ledger.write(
            [as_row(record(10.0, key_id=record_a.id)), as_row(record(30.0, key_id=record_a.id))]
        )
        assert keys.usage_by_key() == {
            record_a.id: {"spend_usd": 0.5, "last_used_at": 30.0, "requests": 2}
        }
    finally:
        ledger.close()
        keys.close()


def test_stores_recover_after_postgres_restart(pg: PostgresServer) -> None:
    url = create_database(pg.url)
    ledger = open_store(url)
    keys = open_key_store(url)
    try:
        ledger.write([as_row(RECORDS[0])])
        key, _ = keys.create(KeySpec("before"))

        pg.stop()
        with pytest.raises(DBAPIError):
            ledger.write([as_row(RECORDS[1])])
        with pytest.raises(DBAPIError):
            ledger.write([as_row(RECORDS[1])])  # reconnecting fails too
        with pytest.raises(DBAPIError):
            ledger.summarize(None, None)
        with pytest.raises(DBAPIError):
            keys.get(key.id)
        with pytest.raises(DBAPIError):
            keys.create(KeySpec("during"))

        pg.start()
        ledger.write([as_row(RECORDS[1])])
        assert [r["requests"] for r in ledger.summarize(None, None)] == [2]
        assert keys.get(key.id) == key
        keys.create(KeySpec("after"))
        assert [k.name for k in keys.list()] == ["before", "after"]
        assert keys.spend_by_key()[key.id] == 0.0

        # a restart between two calls: the stale connection fails one call at most
        pg.stop()
        pg.start()
        for call in (lambda: ledger.summarize(None, None), keys.list):
            with contextlib.suppress(DBAPIError):
                call()
            assert call()
    finally:
        ledger.close()
        keys.close()


async def test_ledger_buffers_while_postgres_is_down(pg: PostgresServer) -> None:
    url = create_database(pg.url)
    ledger = Ledger(LedgerConfig(url=url, flush_interval_s=60))
    try:
        ledger.record(RECORDS[0])
        assert await ledger.flush() is True
        pg.stop()
        ledger.record(RECORDS[1])
        assert await ledger.flush() is False
        assert ledger.degraded and ledger.pending == 1
        pg.start()
        assert await ledger.flush() is True
        assert not ledger.degraded and ledger.pending == 0
        summary = await ledger.summarize(None, None)
        assert [r["requests"] for r in summary] == [2]
    finally:
        await ledger.close()


# --- stored Responses (/v1/responses) ------------------------------------------------------------


def test_response_store_puts_gets_and_deletes(db_url: str, tmp_path: Any) -> None:
    from serve_app.accounting.response_store import ResponseStore
    from serve_app.accounting.usage_store import open_engine

    for url in (db_url, f"sqlite:///{tmp_path}/responses.db"):
        store = ResponseStore(open_engine(url))
        try:
            assert store.get("resp_1") is None
            store.put(("resp_1", "key-a", 1.0, "demo", '{"id": "resp_1"}', "[]"))
            assert store.get("resp_1") == ("key-a", '{"id": "resp_1"}', "[]")
            with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
                store.put(("resp_1", "key-b", 2.0, "demo", "{}", "[]"))
            store.delete("resp_1")
            assert store.get("resp_1") is None
        finally:
            store.engine.dispose()
