"""Gateway API keys: the record, where it is stored (SQLite or PostgreSQL) and a hot-path cache.

A key is `gw-` + 40 url-safe random characters. Only its SHA-256 (plus an 8-character display
prefix) is stored: the keys are high-entropy random strings, so a fast hash is enough, as for
GitHub tokens. Stores are synchronous and thread-safe, like `serve_app.accounting.usage_store`; the
`KeyCache` calls them from worker threads and answers the ingress from memory.
"""

import builtins
import hashlib
import json
import logging
import secrets
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, fields
from typing import Any, Protocol

from serve_app.accounting.db import (
    ConnectionHolder,
    connect_postgres,
    connect_sqlite,
    ensure_parent_dir,
    parse_database_url,
)
from serve_app.contracts.errors import (
    InvalidRequestError,
    NotFoundError,
)

logger = logging.getLogger("ray.serve")

KEY_PREFIX = "gw-"
KEY_LENGTH = len(KEY_PREFIX) + 40
DISPLAY_PREFIX_LENGTH = 8
KEY_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    allowed_models TEXT NOT NULL,
    rpm INTEGER,
    tpm INTEGER,
    budget_usd DOUBLE PRECISION,
    enabled BOOLEAN NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
)
"""
SPEND_SQL = "SELECT key_id, SUM(cost_usd) FROM usage GROUP BY key_id"
USAGE_BY_KEY_SQL = "SELECT key_id, SUM(cost_usd), MAX(ts), COUNT(*) FROM usage GROUP BY key_id"
EDITABLE = ("name", "allowed_models", "rpm", "tpm", "budget_usd")
Rows = list[tuple[Any, ...]]


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    name: str
    key_hash: str
    prefix: str
    allowed_models: tuple[str, ...]  # empty: every model
    rpm: int | None
    tpm: int | None
    budget_usd: float | None
    enabled: bool
    created_at: float

    def allows(self, model_id: str) -> bool:
        return not self.allowed_models or model_id in self.allowed_models

    def public(self) -> dict[str, Any]:
        """Everything but the hash: what list endpoints and the CLI show."""
        return {
            "id": self.id,
            "name": self.name,
            "prefix": self.prefix,
            "allowed_models": list(self.allowed_models),
            "rpm": self.rpm,
            "tpm": self.tpm,
            "budget_usd": self.budget_usd,
            "enabled": self.enabled,
            "created_at": self.created_at,
        }


KEY_COLUMNS = tuple(field.name for field in fields(ApiKey))  # the api_keys columns, in order
SELECT_KEYS = f"SELECT {', '.join(KEY_COLUMNS)} FROM api_keys"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(30)  # 30 bytes: exactly 40 characters


def new_key(
    name: str,
    allowed_models: Sequence[str] = (),
    rpm: int | None = None,
    tpm: int | None = None,
    budget_usd: float | None = None,
) -> tuple[ApiKey, str]:
    """A validated, enabled record and its plain key (not stored anywhere)."""
    if not name.strip():
        raise InvalidRequestError("A key needs a non-empty name.", param="name")
    for param, value in (("rpm", rpm), ("tpm", tpm)):
        if value is not None and value < 1:
            raise InvalidRequestError(f"{param} must be at least 1.", param=param)
    if budget_usd is not None and budget_usd < 0:
        raise InvalidRequestError("budget_usd must not be negative.", param="budget_usd")
    if isinstance(allowed_models, str):
        raise InvalidRequestError("allowed_models must be a list of model ids.", param="models")
    models = tuple(dict.fromkeys(m.strip() for m in allowed_models if m.strip()))
    plain = generate_key()
    record = ApiKey(
        id="key_" + secrets.token_hex(6),
        name=name.strip(),
        key_hash=hash_key(plain),
        prefix=plain[len(KEY_PREFIX) : len(KEY_PREFIX) + DISPLAY_PREFIX_LENGTH],
        allowed_models=models,
        rpm=None if rpm is None else int(rpm),
        tpm=None if tpm is None else int(tpm),
        budget_usd=None if budget_usd is None else float(budget_usd),
        enabled=True,
        created_at=time.time(),
    )
    return record, plain


def check_changes(changes: dict[str, Any]) -> dict[str, Any]:
    """Validated column values for an edit of `EDITABLE` fields (None clears a limit)."""
    unknown = set(changes) - set(EDITABLE)
    if unknown:
        raise InvalidRequestError(f"Cannot edit {sorted(unknown)}.", param=sorted(unknown)[0])
    name = changes.get("name", "x")
    models = changes.get("allowed_models", ())
    probe, _ = new_key(
        name if name is not None else "",
        models if models is not None else (),
        changes.get("rpm"),
        changes.get("tpm"),
        changes.get("budget_usd"),
    )
    values = {field: getattr(probe, field) for field in changes}
    if "allowed_models" in values:
        values["allowed_models"] = json.dumps(list(probe.allowed_models))
    return values


def _as_row(key: ApiKey) -> tuple[Any, ...]:
    """Values in `KEY_COLUMNS` order (the field order), the model list as JSON text."""
    values = [getattr(key, column) for column in KEY_COLUMNS]
    values[KEY_COLUMNS.index("allowed_models")] = json.dumps(list(key.allowed_models))
    return tuple(values)


def _from_row(row: Sequence[Any]) -> ApiKey:
    key_id, name, key_hash, prefix, models, rpm, tpm, budget, enabled, created_at = row
    return ApiKey(
        id=key_id,
        name=name,
        key_hash=key_hash,
        prefix=prefix,
        allowed_models=tuple(json.loads(models)),
        rpm=None if rpm is None else int(rpm),
        tpm=None if tpm is None else int(tpm),
        budget_usd=None if budget is None else float(budget),
        enabled=bool(enabled),
        created_at=float(created_at),
    )


class KeyStore(Protocol):
    backend: str

    def create(
        self,
        name: str,
        allowed_models: Sequence[str] = (),
        rpm: int | None = None,
        tpm: int | None = None,
        budget_usd: float | None = None,
    ) -> tuple[ApiKey, str]: ...

    def list(self) -> builtins.list[ApiKey]: ...

    def get(self, key_id: str) -> ApiKey | None: ...

    def find_by_hash(self, key_hash: str) -> ApiKey | None: ...

    def set_enabled(self, key_id: str, enabled: bool) -> ApiKey: ...

    def spend_by_key(self) -> dict[str, float]: ...

    def update(self, key_id: str, changes: dict[str, Any]) -> ApiKey: ...

    def usage_by_key(self) -> dict[str, dict[str, Any]]: ...

    def close(self) -> None: ...


class _SQLKeyStore(ConnectionHolder):
    """The SQL both backends share; subclasses connect (`mark`: their placeholder)."""

    backend = ""
    mark = "?"
    usage_exists_sql = ""

    def _connect(self) -> Any:
        raise NotImplementedError

    def _transaction(self, connection: Any) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> tuple[Rows, int]:
        """One statement in its own transaction: the rows it returned and the rows it changed."""
        with self._lock:
            try:
                connection = self._connect()
                with self._transaction(connection):
                    cursor = connection.execute(sql, params)
                    rows = cursor.fetchall() if cursor.description else []
                    return [tuple(row) for row in rows], int(cursor.rowcount)
            except Exception:
                self._drop_connection()
                raise

    def _fetch(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        return self._execute(sql, params)[0]

    def create(
        self,
        name: str,
        allowed_models: Sequence[str] = (),
        rpm: int | None = None,
        tpm: int | None = None,
        budget_usd: float | None = None,
    ) -> tuple[ApiKey, str]:
        record, plain = new_key(name, allowed_models, rpm, tpm, budget_usd)
        marks = ", ".join(self.mark for _ in KEY_COLUMNS)
        sql = f"INSERT INTO api_keys ({', '.join(KEY_COLUMNS)}) VALUES ({marks})"
        self._execute(sql, _as_row(record))
        return record, plain

    def list(self) -> builtins.list[ApiKey]:
        return [_from_row(row) for row in self._fetch(f"{SELECT_KEYS} ORDER BY created_at, id")]

    def _one(self, column: str, value: str) -> ApiKey | None:
        rows = self._fetch(f"{SELECT_KEYS} WHERE {column} = {self.mark}", (value,))
        return _from_row(rows[0]) if rows else None

    def get(self, key_id: str) -> ApiKey | None:
        return self._one("id", key_id)

    def find_by_hash(self, key_hash: str) -> ApiKey | None:
        return self._one("key_hash", key_hash)

    def set_enabled(self, key_id: str, enabled: bool) -> ApiKey:
        sql = f"UPDATE api_keys SET enabled = {self.mark} WHERE id = {self.mark}"
        _, changed = self._execute(sql, (enabled, key_id))
        key = self.get(key_id) if changed else None
        if key is None:
            raise NotFoundError(f"No API key {key_id!r}.", param="key_id", code="key_not_found")
        return key

    def update(self, key_id: str, changes: dict[str, Any]) -> ApiKey:
        """Edit the name, models, limits or budget of a key (`check_changes` first)."""
        values = check_changes(changes)
        key = self.get(key_id)
        if key is not None and values:
            assignments = ", ".join(f"{column} = {self.mark}" for column in values)
            sql = f"UPDATE api_keys SET {assignments} WHERE id = {self.mark}"
            self._execute(sql, (*values.values(), key_id))
            key = self.get(key_id)
        if key is None:
            raise NotFoundError(f"No API key {key_id!r}.", param="key_id", code="key_not_found")
        return key

    def usage_by_key(self) -> dict[str, dict[str, Any]]:
        """Per key: USD spent, requests and the time of the last one (epoch s), from the
        ledger's `usage` table when it is in this database."""
        if not self._fetch(self.usage_exists_sql)[0][0]:
            return {}
        return {
            key_id: {
                "spend_usd": round(float(total or 0.0), 9),
                "last_used_at": None if last is None else float(last),
                "requests": int(count or 0),
            }
            for key_id, total, last, count in self._fetch(USAGE_BY_KEY_SQL)
        }

    def spend_by_key(self) -> dict[str, float]:
        """USD spent per key, from the ledger's `usage` table when it is in this database."""
        if not self._fetch(self.usage_exists_sql)[0][0]:
            return {}
        return {key_id: float(total or 0.0) for key_id, total in self._fetch(SPEND_SQL)}


class SQLiteKeyStore(_SQLKeyStore):
    backend = "sqlite"
    usage_exists_sql = (
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'usage')"
    )

    def __init__(self, path: str) -> None:
        super().__init__()
        ensure_parent_dir(path)
        self.path = path

    def _connect(self) -> Any:
        if self._connection is None:
            self._connection = connect_sqlite(self.path, KEY_SCHEMA)
        return self._connection

    def _transaction(self, connection: Any) -> AbstractContextManager[Any]:
        return connection


class PostgresKeyStore(_SQLKeyStore):
    backend = "postgresql"
    mark = "%s"
    usage_exists_sql = "SELECT to_regclass('usage') IS NOT NULL"

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url

    def _connect(self) -> Any:
        if self._connection is None or self._connection.closed:
            self._connection = connect_postgres(self.url, KEY_SCHEMA)
        return self._connection

    def _transaction(self, connection: Any) -> AbstractContextManager[Any]:
        return connection.transaction()


def open_key_store(url: str) -> KeyStore:
    """The key store for a database URL (see `serve_app.accounting.db.parse_database_url`)."""
    kind, target = parse_database_url(url)
    return SQLiteKeyStore(target) if kind == "sqlite" else PostgresKeyStore(target)
