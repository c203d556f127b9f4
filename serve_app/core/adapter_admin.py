"""Registering, listing and deleting LoRA adapters at run time (`/api/v1/admin/adapters`).

A registration is checked (id free, base a local model, path under `adapters.allowed_roots`,
a LoRA adapter that fits the base), stored, and visible at once on this ingress replica and
within `auth.cache_ttl_s` on the others (each re-reads the table at most that often). The
base model's replicas load it on demand (`@serve.multiplexed`) from the path that travels
with each request, and drop it within `auth.cache_ttl_s` of its deletion, once the requests
using it have finished.
"""

import asyncio
from dataclasses import dataclass
from typing import Any

from serve_app.access.adapter_store import RuntimeAdapter
from serve_app.contracts.config import GatewayConfig
from serve_app.contracts.errors import (
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
)
from serve_app.core.adapter_check import check_adapter
from serve_app.core.catalog import ModelCatalog
from serve_app.core.runtime_adapters import RuntimeAdapters


@dataclass(frozen=True, slots=True)
class AdapterRequest:
    id: str
    base: str
    path: str
    description: str = ""
    price: dict[str, Any] | None = None
    fallbacks: tuple[str, ...] = ()


class AdapterAdmin:
    def __init__(
        self, config: GatewayConfig, catalog: ModelCatalog, runtime: RuntimeAdapters | None
    ) -> None:
        self.config = config
        self.catalog = catalog
        self.runtime = runtime

    async def sync(self) -> None:
        """Bring the catalog up to the store (at most one read per `auth.cache_ttl_s`)."""
        if self.runtime is None:
            return
        if self.runtime.stale():
            await self.runtime.refresh()
        self._publish()

    def _publish(self) -> None:
        assert self.runtime is not None
        if self.catalog.runtime_version != self.runtime.version:
            self.catalog.set_runtime(list(self.runtime.records.values()), self.runtime.version)

    def _registry(self) -> RuntimeAdapters:
        if self.runtime is None:
            raise PermissionDeniedError(
                "Run-time adapter registration is off: `adapters.allowed_roots` is empty.",
                code="adapter_registration_disabled",
            )
        return self.runtime

    def _check_ids(self, request: AdapterRequest) -> None:
        alias = f"{request.base}:{request.id}"
        commercial = self.config.commercial
        configured = self.config.local_ids() | {
            model.id for model in (commercial.models if commercial else [])
        }
        for taken in (request.id, alias):
            if self.catalog.is_configured(taken) or taken in configured:
                raise ConflictError(
                    f"{taken!r} is already a model or alias id.", param="id", code="conflict"
                )
        if not self.catalog.is_local_base(request.base):
            raise InvalidRequestError(
                f"base {request.base!r} is not a local model of this gateway.", param="base"
            )
        unknown = [f for f in request.fallbacks if self.catalog.find(f) is None]
        if unknown:
            raise InvalidRequestError(f"Unknown fallback models: {unknown}.", param="fallbacks")

    async def register(self, request: AdapterRequest) -> RuntimeAdapter:
        registry = self._registry()
        await registry.refresh(force=True)  # see the other replicas' registrations
        self._publish()
        self._check_ids(request)
        if request.id in registry.records:
            raise ConflictError(
                f"An adapter {request.id!r} is already registered.", param="id", code="conflict"
            )
        base = next(m for m in self.config.models if m.id == request.base)
        await asyncio.to_thread(
            check_adapter, request.path, self.config.adapters.allowed_roots, base.id, base.path
        )
        record = await registry.create(
            RuntimeAdapter(
                id=request.id,
                base=request.base,
                path=request.path,
                description=request.description,
                price=request.price,
                fallbacks=request.fallbacks,
            )
        )
        self._publish()
        return record

    async def list(self) -> list[dict[str, Any]]:
        declared = [
            {**adapter.model_dump(mode="json"), "source": "config"}
            for adapter in self.config.adapters.declared
        ]
        if self.runtime is None:
            return declared
        await self.runtime.refresh(force=True)
        self._publish()
        return declared + [record.public() for record in self.runtime.records.values()]

    async def delete(self, adapter_id: str) -> None:
        if any(adapter.id == adapter_id for adapter in self.config.adapters.declared):
            raise ConflictError(
                f"Adapter {adapter_id!r} is declared in the config; remove it there.",
                param="id",
                code="conflict",
            )
        registry = self._registry()
        try:
            await registry.delete(adapter_id)
        except NotFoundError:
            raise NotFoundError(
                f"No adapter {adapter_id!r} is registered.", param="id", code="adapter_not_found"
            ) from None
        self._publish()
