"""Where usage records live: SQLite (default, one node) or PostgreSQL (multi-node clusters).

Stores are synchronous and thread-safe; the ledger calls them from a worker thread.
"""

from collections.abc import Sequence
from typing import Any, Protocol

from serve_app.accounting.db import (
    ConnectionHolder,
    connect_postgres,
    connect_sqlite,
    ensure_parent_dir,
    parse_database_url,
)

COLUMNS = (
    "ts",
    "request_id",
    "key_id",
    "model_id",
    "provider",
    "served_model",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "latency_ms",
    "outcome",
    "status",
    "cache_hit",
    "saved_usd",
)
SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
    ts DOUBLE PRECISION NOT NULL,
    request_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    model_id TEXT NOT NULL,
    provider TEXT NOT NULL,
    served_model TEXT NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cost_usd DOUBLE PRECISION NOT NULL,
    latency_ms DOUBLE PRECISION NOT NULL,
    outcome TEXT NOT NULL,
    status INTEGER NOT NULL,
    cache_hit INTEGER NOT NULL DEFAULT 0,
    saved_usd DOUBLE PRECISION NOT NULL DEFAULT 0
)
"""
# Tables made before the response cache lack its two columns (issue 13 moves these
# additions to Alembic migrations).
ADDED_COLUMNS = (
    ("cache_hit", "INTEGER NOT NULL DEFAULT 0"),
    ("saved_usd", "DOUBLE PRECISION NOT NULL DEFAULT 0"),
)
INDEX = "CREATE INDEX IF NOT EXISTS usage_ts ON usage (ts)"
SUMMARY_SQL = """
SELECT provider, model_id, COUNT(*),
       SUM(CASE WHEN outcome = 'ok' THEN 0 ELSE 1 END),
       SUM(input_tokens), SUM(output_tokens), SUM(cost_usd),
       SUM(cache_hit), SUM(saved_usd)
FROM usage WHERE ts >= {p} AND ts < {p} {key_filter}
GROUP BY provider, model_id ORDER BY provider, model_id
"""


def summary_query(
    mark: str, since: float | None, until: float | None, key_id: str | None
) -> tuple[str, tuple[Any, ...]]:
    """The usage summary SQL for a paramstyle mark, optionally for one key only."""
    params: tuple[Any, ...] = (since or 0.0, until or FAR_FUTURE)
    key_filter = ""
    if key_id is not None:
        key_filter, params = f"AND key_id = {mark}", (*params, key_id)
    return SUMMARY_SQL.format(p=mark, key_filter=key_filter), params


FAR_FUTURE = 1e12


class UsageStore(Protocol):
    backend: str

    def write(self, rows: Sequence[tuple[Any, ...]]) -> None: ...

    def summarize(
        self, since: float | None, until: float | None, key_id: str | None = None
    ) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...


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


class SQLiteStore(ConnectionHolder):
    backend = "sqlite"

    def __init__(self, path: str) -> None:
        import sqlite3

        super().__init__()
        ensure_parent_dir(path)
        self.path = path
        self._sqlite3 = sqlite3

    def _connect(self) -> Any:
        if self._connection is None:
            connection = connect_sqlite(self.path, SCHEMA, INDEX)
            present = {row[1] for row in connection.execute("PRAGMA table_info(usage)")}
            with connection:
                for name, kind in ADDED_COLUMNS:
                    if name not in present:
                        connection.execute(f"ALTER TABLE usage ADD COLUMN {name} {kind}")
            self._connection = connection
        return self._connection

    def write(self, rows: Sequence[tuple[Any, ...]]) -> None:
        marks = ", ".join("?" for _ in COLUMNS)
        with self._lock:
            connection = self._connect()
            try:
                with connection:
                    connection.executemany(
                        f"INSERT INTO usage ({', '.join(COLUMNS)}) VALUES ({marks})", rows
                    )
            except self._sqlite3.Error:
                self._drop_connection()
                raise

    def summarize(
        self, since: float | None, until: float | None, key_id: str | None = None
    ) -> list[dict[str, Any]]:
        with self._lock:
            cursor = self._connect().execute(*summary_query("?", since, until, key_id))
            return _summary_rows(cursor.fetchall())


class PostgresStore(ConnectionHolder):
    backend = "postgresql"

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url

    def _connect(self) -> Any:
        if self._connection is None or self._connection.closed:
            added = [
                f"ALTER TABLE usage ADD COLUMN IF NOT EXISTS {name} {kind}"
                for name, kind in ADDED_COLUMNS
            ]
            self._connection = connect_postgres(self.url, SCHEMA, INDEX, *added)
        return self._connection

    def write(self, rows: Sequence[tuple[Any, ...]]) -> None:
        marks = ", ".join("%s" for _ in COLUMNS)
        with self._lock:
            try:
                connection = self._connect()
                with connection.transaction(), connection.cursor() as cursor:
                    cursor.executemany(
                        f"INSERT INTO usage ({', '.join(COLUMNS)}) VALUES ({marks})", rows
                    )
            except Exception:
                self._drop_connection()
                raise

    def summarize(
        self, since: float | None, until: float | None, key_id: str | None = None
    ) -> list[dict[str, Any]]:
        with self._lock:
            connection = self._connect()
            with connection.transaction():
                cursor = connection.execute(*summary_query("%s", since, until, key_id))
                return _summary_rows(cursor.fetchall())


def open_store(url: str) -> UsageStore:
    """The usage store for a database URL (see `serve_app.accounting.db.parse_database_url`)."""
    kind, target = parse_database_url(url)
    return SQLiteStore(target) if kind == "sqlite" else PostgresStore(target)
