"""LoRA adapters registered at run time: the record and its table (SQLite or PostgreSQL).

Stored next to the API keys (`adapters.store_url`, else `auth.key_store_url`, else the
ledger's database), in the style of `key_store`: synchronous, thread-safe, one connection.
Every ingress replica and every model replica reads the table every `auth.cache_ttl_s`.
"""

import builtins
import json
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from serve_app.accounting.db import (
    ConnectionHolder,
    connect_postgres,
    connect_sqlite,
    ensure_parent_dir,
    parse_database_url,
)
from serve_app.contracts.errors import ConflictError, NotFoundError

ADAPTER_SCHEMA = """
CREATE TABLE IF NOT EXISTS lora_adapters (
    id TEXT PRIMARY KEY,
    base TEXT NOT NULL,
    path TEXT NOT NULL,
    description TEXT NOT NULL,
    price TEXT,
    fallbacks TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
)
"""
COLUMNS = ("id", "base", "path", "description", "price", "fallbacks", "created_at")
SELECT = f"SELECT {', '.join(COLUMNS)} FROM lora_adapters"
Rows = list[tuple[Any, ...]]


@dataclass(frozen=True, slots=True)
class RuntimeAdapter:
    id: str
    base: str
    path: str
    description: str = ""
    price: dict[str, Any] | None = None  # a PriceConfig as JSON
    fallbacks: tuple[str, ...] = ()
    created_at: float = 0.0

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "base": self.base,
            "path": self.path,
            "description": self.description,
            "price": self.price,
            "fallbacks": list(self.fallbacks),
            "created_at": self.created_at,
            "source": "runtime",
        }


def _as_row(adapter: RuntimeAdapter) -> tuple[Any, ...]:
    price = None if adapter.price is None else json.dumps(adapter.price)
    return (
        adapter.id,
        adapter.base,
        adapter.path,
        adapter.description,
        price,
        json.dumps(list(adapter.fallbacks)),
        adapter.created_at,
    )


def _from_row(row: Sequence[Any]) -> RuntimeAdapter:
    adapter_id, base, path, description, price, fallbacks, created_at = row
    return RuntimeAdapter(
        id=adapter_id,
        base=base,
        path=path,
        description=description,
        price=None if price is None else json.loads(price),
        fallbacks=tuple(json.loads(fallbacks)),
        created_at=float(created_at),
    )


class AdapterStore(ConnectionHolder):
    """Both backends; `mark` is the placeholder, `_connect`/`_transaction` differ."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.kind, self.target = parse_database_url(url)
        self.mark = "?" if self.kind == "sqlite" else "%s"
        if self.kind == "sqlite":
            ensure_parent_dir(self.target)

    def _connect(self) -> Any:
        if self.kind == "sqlite":
            if self._connection is None:
                self._connection = connect_sqlite(self.target, ADAPTER_SCHEMA)
        elif self._connection is None or self._connection.closed:
            self._connection = connect_postgres(self.target, ADAPTER_SCHEMA)
        return self._connection

    def _transaction(self, connection: Any) -> AbstractContextManager[Any]:
        return connection if self.kind == "sqlite" else connection.transaction()

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> tuple[Rows, int]:
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

    def create(self, adapter: RuntimeAdapter) -> RuntimeAdapter:
        """Insert; an id already registered is a 409."""
        record = RuntimeAdapter(**{**_fields(adapter), "created_at": time.time()})
        marks = ", ".join(self.mark for _ in COLUMNS)
        sql = (
            f"INSERT INTO lora_adapters ({', '.join(COLUMNS)}) VALUES ({marks}) "
            "ON CONFLICT (id) DO NOTHING"
        )
        _, inserted = self._execute(sql, _as_row(record))
        if inserted != 1:
            raise ConflictError(
                f"An adapter {adapter.id!r} is already registered.", param="id", code="conflict"
            )
        return record

    def list(self, base: str | None = None) -> builtins.list[RuntimeAdapter]:
        if base is None:
            rows = self._execute(f"{SELECT} ORDER BY created_at, id")[0]
        else:
            sql = f"{SELECT} WHERE base = {self.mark} ORDER BY created_at, id"
            rows = self._execute(sql, (base,))[0]
        return [_from_row(row) for row in rows]

    def delete(self, adapter_id: str) -> None:
        sql = f"DELETE FROM lora_adapters WHERE id = {self.mark}"
        if self._execute(sql, (adapter_id,))[1] != 1:
            raise NotFoundError(
                f"No adapter {adapter_id!r} is registered.", param="id", code="adapter_not_found"
            )


def _fields(adapter: RuntimeAdapter) -> dict[str, Any]:
    return {name: getattr(adapter, name) for name in COLUMNS}


def live_adapter_paths(url: str, base: str) -> dict[str, str]:
    """Id -> path of the run-time adapters of one base model: what a model replica polls
    (passed to it by the builder; `deployments/` never imports this module)."""
    store = AdapterStore(url)
    try:
        return {adapter.id: adapter.path for adapter in store.list(base)}
    finally:
        store.close()
