"""The one database that API keys, usage and running spend share: URL forms and the engine.

SQLAlchemy 2 Core with a connection pool, on SQLite (one node) or PostgreSQL through psycopg 3
(any number of nodes). Stores are synchronous and thread-safe (each call checks a connection
out of the pool); the ingress calls them from worker threads, never on the event loop.
"""

from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import StaticPool

DatabaseKind = Literal["sqlite", "postgresql"]
CONNECT_TIMEOUT_S = 5


class DatabaseUrlError(ValueError):
    """A database URL that can't be used; the message never holds its password."""


def redact(url: str) -> str:
    """The URL with its password replaced by ***, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "<unparseable url>"


def parse_database_url(url: str, setting: str = "ledger.url") -> tuple[DatabaseKind, URL]:
    """`sqlite:///relative.db`, `sqlite:////absolute.db`, `sqlite://:memory:`, or
    `postgresql://…` / `postgres://…` (psycopg 3) -> the kind and SQLAlchemy URL.

    `setting` names where the URL came from (e.g. `LEDGER_URL`) in the error message."""
    if url.startswith("sqlite://:memory:"):
        url = "sqlite://"
    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise DatabaseUrlError(
            f"{setting} is not a database URL ({redact(url)}): "
            "use sqlite:///path.db or postgresql://user:password@host:5432/db"
        ) from None
    if parsed.get_backend_name() == "sqlite":
        return "sqlite", parsed
    if parsed.get_backend_name() == "postgresql":
        if not parsed.host and not parsed.query.get("host"):
            raise DatabaseUrlError(f"{setting} ({redact(url)}) names no PostgreSQL host")
        return "postgresql", parsed.set(drivername="postgresql+psycopg")
    raise DatabaseUrlError(
        f"{setting} uses an unsupported database ({parsed.get_backend_name()!r}): "
        "use sqlite:/// or postgresql://"
    )


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite:")


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def create_db_engine(url: str, pool_size: int = 5, setting: str = "ledger.url") -> Engine:
    """A pooled engine. SQLite files run in WAL mode (readers never wait for the writer);
    `:memory:` keeps one shared connection (else every connection would be a new database)."""
    kind, parsed = parse_database_url(url, setting)
    if kind == "postgresql":
        return create_engine(
            parsed,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=True,
            pool_timeout=10,
            connect_args={"connect_timeout": CONNECT_TIMEOUT_S},
        )
    args = {"check_same_thread": False, "timeout": CONNECT_TIMEOUT_S}
    if not parsed.database or parsed.database == ":memory:":
        return create_engine("sqlite://", poolclass=StaticPool, connect_args=args)
    Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed, pool_size=pool_size, max_overflow=pool_size, connect_args=args)
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine
