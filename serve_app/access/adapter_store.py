"""LoRA adapters registered at run time: the record and the `lora_adapters` table of the
gateway's database (migration `0004_lora_adapters`), next to the API keys.

Synchronous and thread-safe (SQLAlchemy Core, pooled), like `key_store`. Every ingress
replica and every model replica reads the table every `auth.cache_ttl_s`.
"""

import builtins
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, delete, insert, select
from sqlalchemy.exc import IntegrityError

from serve_app.accounting.db import create_db_engine
from serve_app.accounting.schema import lora_adapters
from serve_app.contracts.errors import ConflictError, NotFoundError

COLUMNS = ("id", "base", "path", "description", "price", "fallbacks", "created_at")


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


class AdapterStore:
    """`create` (409 on a registered id), `list` (of one base, or all) and `delete` (404)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, adapter: RuntimeAdapter) -> RuntimeAdapter:
        """Insert; an id already registered is a 409."""
        record = RuntimeAdapter(**{**_fields(adapter), "created_at": time.time()})
        try:
            with self.engine.begin() as connection:
                connection.execute(insert(lora_adapters), dict(zip(COLUMNS, _as_row(record))))
        except IntegrityError:
            raise ConflictError(
                f"An adapter {adapter.id!r} is already registered.", param="id", code="conflict"
            ) from None
        return record

    def list(self, base: str | None = None) -> builtins.list[RuntimeAdapter]:
        query = select(*(lora_adapters.c[column] for column in COLUMNS)).order_by(
            lora_adapters.c.created_at, lora_adapters.c.id
        )
        if base is not None:
            query = query.where(lora_adapters.c.base == base)
        with self.engine.connect() as connection:
            return [_from_row(row) for row in connection.execute(query).all()]

    def delete(self, adapter_id: str) -> None:
        with self.engine.begin() as connection:
            deleted = connection.execute(
                delete(lora_adapters).where(lora_adapters.c.id == adapter_id)
            ).rowcount
        if deleted != 1:
            raise NotFoundError(
                f"No adapter {adapter_id!r} is registered.", param="id", code="adapter_not_found"
            )

    def close(self) -> None:
        self.engine.dispose()


def _fields(adapter: RuntimeAdapter) -> dict[str, Any]:
    return {name: getattr(adapter, name) for name in COLUMNS}


def live_adapter_paths(url: str, base: str) -> dict[str, str]:
    """Id -> path of the run-time adapters of one base model: what a model replica polls
    (passed to it by the builder; `deployments/` never imports this module)."""
    store = AdapterStore(create_db_engine(url, pool_size=1))
    try:
        return {adapter.id: adapter.path for adapter in store.list(base)}
    finally:
        store.close()
