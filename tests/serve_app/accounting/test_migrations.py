"""Alembic migrations on SQLite and on a real PostgreSQL: a new database, the upgrade of a
database the gateway created before migrations (every row kept), and the start-up check."""

import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine, inspect, text

from serve_app.access.key_store import hash_key
from serve_app.accounting.db import create_db_engine
from serve_app.accounting.migrate import (
    SchemaError,
    current_revision,
    ensure_schema,
    head_revision,
    upgrade,
)
from serve_app.runtime.db_cli import main as cli
from tests.fakes.postgres_server import PostgresServer, postgres_server

# The schema as the gateway created it before Alembic (serve_app/accounting at 2721083).
LEGACY_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS usage (ts DOUBLE PRECISION NOT NULL,
    request_id TEXT NOT NULL, key_id TEXT NOT NULL, model_id TEXT NOT NULL,
    provider TEXT NOT NULL, served_model TEXT NOT NULL, input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL, cost_usd DOUBLE PRECISION NOT NULL,
    latency_ms DOUBLE PRECISION NOT NULL, outcome TEXT NOT NULL, status INTEGER NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS usage_ts ON usage (ts)",
    """CREATE TABLE IF NOT EXISTS api_keys (id TEXT PRIMARY KEY, name TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE, prefix TEXT NOT NULL, allowed_models TEXT NOT NULL,
    rpm INTEGER, tpm INTEGER, budget_usd DOUBLE PRECISION, enabled BOOLEAN NOT NULL,
    created_at DOUBLE PRECISION NOT NULL)""",
)
USAGE_ROWS = 1000
KEY_ROWS = 3
_databases = itertools.count()


def legacy_database(engine: Engine) -> None:
    """Today's tables with rows in them, written the way the old stores wrote them."""
    now = time.time()
    with engine.begin() as connection:
        for statement in LEGACY_SCHEMA:
            connection.execute(text(statement))
        connection.execute(
            text(
                "INSERT INTO api_keys VALUES (:id, :name, :hash, 'abcdefgh', '[]', 60, NULL, "
                ":budget, :enabled, :created)"
            ),
            [
                {"id": f"key_{i}", "name": f"k{i}", "hash": hash_key(f"gw-{i}"),
                 "budget": 5.0 if i else None, "enabled": i != 2, "created": now - i}
                for i in range(KEY_ROWS)
            ],
        )  # fmt: skip
        connection.execute(
            text(
                "INSERT INTO usage VALUES (:ts, :rid, :key, 'demo', 'local', 'demo', 3, 4, "
                ":cost, 1.5, 'ok', 200)"
            ),
            [
                {"ts": now - 3600 * i, "rid": f"r{i}", "key": f"key_{i % KEY_ROWS}", "cost": 0.001}
                for i in range(USAGE_ROWS)
            ],
        )


def counts(engine: Engine) -> dict[str, int]:
    tables = set(inspect(engine).get_table_names())
    with engine.connect() as connection:
        return {
            table: int(connection.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar() or 0)
            for table in ("usage", "api_keys", "key_spend")
            if table in tables
        }


def check_upgrade_keeps_rows(engine: Engine) -> dict[str, int]:
    legacy_database(engine)
    before = counts(engine)
    with engine.connect() as connection:
        usage_before = connection.execute(text("SELECT * FROM usage ORDER BY ts")).all()
        spend = connection.execute(
            text("SELECT key_id, SUM(cost_usd) FROM usage GROUP BY key_id ORDER BY key_id")
        ).all()
    assert current_revision(engine) is None
    with pytest.raises(SchemaError, match="older than this gateway"):
        ensure_schema(engine, auto_migrate=False)
    assert ensure_schema(engine, auto_migrate=True) == head_revision()
    after = counts(engine)
    assert after["usage"] == before["usage"] == USAGE_ROWS
    assert after["api_keys"] == before["api_keys"] == KEY_ROWS
    with engine.connect() as connection:
        # every row kept as it was; later revisions only add columns (cache_hit, saved_usd: 0)
        rows_after = connection.execute(text("SELECT * FROM usage ORDER BY ts")).all()
        assert [tuple(row)[: len(usage_before[0])] for row in rows_after] == [
            tuple(row) for row in usage_before
        ]
        assert {tuple(row)[len(usage_before[0]) :] for row in rows_after} == {(0, 0.0)}
        periods = connection.execute(text("SELECT DISTINCT budget_period FROM api_keys")).all()
        totals = connection.execute(
            text("SELECT key_id, spent_usd FROM key_spend WHERE period = 'total' ORDER BY key_id")
        ).all()
    assert periods == [("total",)]
    assert [(k, pytest.approx(v)) for k, v in spend] == [(k, v) for k, v in totals]
    print(f"\nupgrade on {engine.dialect.name}: before {before} -> after {after}")
    return after


def check_refusals(engine: Engine) -> None:
    assert ensure_schema(engine, auto_migrate=False) == head_revision()  # up to date: fine
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    with pytest.raises(SchemaError, match="newer than this gateway"):
        ensure_schema(engine, auto_migrate=True)


def test_sqlite_new_database_and_upgrade(tmp_path: Path) -> None:
    fresh = create_db_engine(f"sqlite:///{tmp_path}/new.db")
    with pytest.raises(SchemaError, match="'empty'"):
        ensure_schema(fresh, auto_migrate=False)
    assert upgrade(fresh) == head_revision()
    assert set(inspect(fresh).get_table_names()) >= {"usage", "api_keys", "key_spend"}
    check_refusals(fresh)
    legacy = create_db_engine(f"sqlite:///{tmp_path}/legacy.db")
    check_upgrade_keeps_rows(legacy)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    with postgres_server(tmp_path_factory.mktemp("postgres")) as running:
        yield running


def new_database(server: PostgresServer) -> str:
    name = f"migrate_{next(_databases)}"
    with psycopg.connect(server.url, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    return server.url.rsplit("/", 1)[0] + f"/{name}"


def test_postgres_new_database_and_upgrade(server: PostgresServer) -> None:
    fresh = create_db_engine(new_database(server))
    assert upgrade(fresh) == head_revision()
    check_refusals(fresh)
    check_upgrade_keeps_rows(create_db_engine(new_database(server)))


def test_cli_upgrade_and_current(
    server: PostgresServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = new_database(server)
    monkeypatch.setenv("LEDGER_URL", url)
    assert cli(["db", "current"]) == 0
    assert "<none>" in capsys.readouterr().out
    assert cli(["db", "upgrade"]) == 0
    assert f"-> {head_revision()}" in capsys.readouterr().out
    assert cli(["db", "current", "--db", url]) == 0
    assert f": {head_revision()} " in capsys.readouterr().out


def test_cli_fails_clearly_on_an_unreachable_or_malformed_database(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEDGER_URL", "postgresql://gw:hunter2@127.0.0.1:1/gateway")
    assert cli(["db", "upgrade"]) == 1
    error = capsys.readouterr().err
    assert "127.0.0.1" in error and "hunter2" not in error and "***" in error
    monkeypatch.setenv("LEDGER_URL", "mongodb://gw:hunter2@db/x")
    assert cli(["db", "current"]) == 2
    error = capsys.readouterr().err
    assert "LEDGER_URL" in error and "hunter2" not in error


def test_replicas_starting_together_migrate_once(server: PostgresServer, tmp_path: Path) -> None:
    """Four replicas' start-up checks at the same moment, on each database."""
    from concurrent.futures import ThreadPoolExecutor

    for url in (new_database(server), f"sqlite:///{tmp_path}/together.db"):
        engines = [create_db_engine(url) for _ in range(4)]
        with ThreadPoolExecutor(4) as pool:
            reached = list(pool.map(lambda e: ensure_schema(e, auto_migrate=True), engines))
        assert reached == [head_revision()] * 4
        for engine in engines:
            engine.dispose()


def test_the_migrations_build_the_schema_the_code_declares(tmp_path: Path) -> None:
    """Alembic's autogenerate finds nothing between the migrated database and schema.py."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from serve_app.accounting.schema import metadata

    engine = create_db_engine(f"sqlite:///{tmp_path}/declared.db")
    upgrade(engine)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), metadata)
    assert diff == []
