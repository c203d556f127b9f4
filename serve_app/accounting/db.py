"""What the SQL stores (usage ledger, API keys) share: the database URL forms and one
lock-guarded, lazily opened connection per store."""

import threading
from pathlib import Path
from typing import Any, Literal

DatabaseKind = Literal["sqlite", "postgresql"]


def parse_database_url(url: str) -> tuple[DatabaseKind, str]:
    """`sqlite:///relative.db`, `sqlite:////absolute.db`, `sqlite://:memory:` -> a SQLite
    path; `postgresql://…` / `postgres://…` -> the URL itself."""
    if url.startswith("sqlite://"):
        path = url.removeprefix("sqlite://")
        return "sqlite", ":memory:" if path in ("", ":memory:") else path.removeprefix("/")
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql", url
    raise ValueError(f"unsupported database url {url!r}: use sqlite:/// or postgresql://")


def ensure_parent_dir(path: str) -> None:
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)


class ConnectionHolder:
    """One connection, opened by the subclass's `_connect`, dropped after a failure so the
    next call reconnects; every use holds `_lock` (stores are called from worker threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connection: Any = None

    def _drop_connection(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def close(self) -> None:
        with self._lock:
            self._drop_connection()


def connect_sqlite(path: str, *statements: str) -> Any:
    """A WAL-mode SQLite connection usable from worker threads, with the schema applied."""
    import sqlite3

    connection = sqlite3.connect(path, timeout=5, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    for statement in statements:
        connection.execute(statement)
    return connection


def connect_postgres(url: str, *statements: str) -> Any:
    """A psycopg 3 connection (explicit transactions), with the schema applied."""
    import psycopg

    connection = psycopg.connect(url, connect_timeout=5, autocommit=False)
    with connection.transaction():
        for statement in statements:
            connection.execute(statement)
    return connection
