"""The model catalog as the ingress sees it: model id -> where to send it and what it costs."""

import dataclasses
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from serve_app.access.adapter_store import RuntimeAdapter
from serve_app.contracts.config import (
    AdapterConfig,
    CommercialModelConfig,
    GatewayConfig,
    GenerationDefaults,
    LocalModelConfig,
    PriceConfig,
)
from serve_app.contracts.errors import model_not_found

ModelType = Literal["fine_tuned", "commercial"]
logger = logging.getLogger("ray.serve")


@dataclass(frozen=True, slots=True)
class ModelRoute:
    """Everything the ingress needs to serve one model id without another lookup."""

    model_id: str
    model_type: ModelType
    provider: str
    deployment: str
    handle: Any
    max_tokens_cap: int
    defaults: GenerationDefaults | None
    price: PriceConfig
    description: str
    context_length: int | None = None
    upstream_model: str | None = None
    rpm: int | None = None
    tpm: int | None = None
    default_max_tokens: int | None = None
    adapter: str | None = None  # a LoRA fine-tune served by the `deployment` of its base
    fallbacks: tuple[str, ...] = ()
    task: str = "generate"  # or "embed": /v1/embeddings only
    dimensions: int | None = None  # an embedding model's vector length (None: unknown)
    shortenable: bool = False  # an embedding model that takes `dimensions`
    vision: bool = False  # takes images (commercial catalog `vision: true`)
    adapter_path: str | None = None  # set for adapters registered at run time

    def resolve_max_tokens(self, requested: int | None) -> int:
        if requested is not None:
            return requested
        if self.defaults is not None:
            return min(self.defaults.max_tokens, self.max_tokens_cap)
        return self.default_max_tokens or self.max_tokens_cap

    def resolve_sampling(
        self, temperature: float | None, top_p: float | None
    ) -> tuple[float | None, float | None]:
        """The request's temperature and top_p, else this model's defaults (else None: the
        deployment's own)."""
        defaults = self.defaults
        if temperature is None and defaults is not None:
            temperature = defaults.temperature
        if top_p is None and defaults is not None:
            top_p = defaults.top_p
        return temperature, top_p


def local_route(model: LocalModelConfig, handle: Any) -> ModelRoute:
    return ModelRoute(
        model_id=model.id,
        model_type="fine_tuned",
        provider="local",
        deployment=model.id,
        handle=handle,
        max_tokens_cap=model.max_new_tokens,
        defaults=model.defaults,
        price=model.price,
        description=model.description,
        fallbacks=tuple(model.fallbacks),
        task=model.task,
    )


def adapter_route(adapter: AdapterConfig, base: LocalModelConfig, handle: Any) -> ModelRoute:
    """Calls go to the base model's deployment, routed by Serve to a replica that has the
    adapter loaded (`multiplexed_model_id`)."""
    return ModelRoute(
        model_id=adapter.id,
        model_type="fine_tuned",
        provider="local",
        deployment=base.id,
        handle=handle.options(multiplexed_model_id=adapter.id),
        max_tokens_cap=base.max_new_tokens,
        defaults=base.defaults,
        price=adapter.price or base.price,
        description=adapter.description,
        adapter=adapter.id,
        fallbacks=tuple(adapter.fallbacks),
    )


def runtime_adapter_route(
    adapter: RuntimeAdapter, base: LocalModelConfig, handle: Any
) -> ModelRoute:
    """An adapter registered at run time: its path travels with each request, so the base
    model's replicas load it on demand without a redeploy."""
    declared = AdapterConfig(
        id=adapter.id,
        base=adapter.base,
        path=adapter.path,
        description=adapter.description,
        price=PriceConfig.model_validate(adapter.price) if adapter.price else None,
        fallbacks=list(adapter.fallbacks),
    )
    route = adapter_route(declared, base, handle)
    return dataclasses.replace(route, adapter_path=adapter.path)


def commercial_route(model: CommercialModelConfig, handle: Any) -> ModelRoute:
    return ModelRoute(
        model_id=model.id,
        model_type="commercial",
        provider=model.provider,
        deployment=model.provider,
        handle=handle,
        max_tokens_cap=model.max_output_tokens,
        defaults=None,
        price=model.price,
        description=model.description,
        context_length=model.context_window,
        upstream_model=model.upstream_model,
        rpm=model.rpm,
        tpm=model.tpm,
        default_max_tokens=min(model.default_max_tokens, model.max_output_tokens),
        fallbacks=tuple(model.fallbacks),
        task=model.task,
        dimensions=model.dimensions,
        shortenable=model.shortenable,
        vision=model.vision,
    )


class ModelCatalog:
    """Model ids to routes: the configured ones (fixed for the replica's life) and the
    adapters registered at run time (replaced as a whole by `set_runtime`)."""

    def __init__(
        self,
        routes: list[ModelRoute],
        bases: Mapping[str, LocalModelConfig] | None = None,
        handles: Mapping[str, Any] | None = None,
    ) -> None:
        self._routes = {route.model_id: route for route in routes}
        # A fine-tune also answers as `<base>:<adapter>`.
        self._aliases = {
            f"{route.deployment}:{route.adapter}": route for route in routes if route.adapter
        }
        self._bases = dict(bases or {})
        self._handles = dict(handles or {})
        self._runtime: dict[str, ModelRoute] = {}
        self.runtime_version = -1

    @classmethod
    def from_config(cls, config: GatewayConfig, handles: Mapping[str, Any]) -> "ModelCatalog":
        routes = [local_route(model, handles[model.id]) for model in config.models]
        bases = {model.id: model for model in config.models}
        routes += [
            adapter_route(adapter, bases[adapter.base], handles[adapter.base])
            for adapter in config.adapters.declared
        ]
        if config.commercial is not None:
            routes += [
                commercial_route(model, handles[model.provider])
                for model in config.commercial.models
                if model.provider in handles
            ]
        return cls(routes, bases, handles)

    def is_configured(self, model_id: str) -> bool:
        return model_id in self._routes or model_id in self._aliases

    def is_local_base(self, model_id: str) -> bool:
        return model_id in self._bases

    def set_runtime(self, adapters: list[RuntimeAdapter], version: int) -> None:
        """Replace the run-time adapters (a configured id keeps its configured route)."""
        runtime: dict[str, ModelRoute] = {}
        for adapter in adapters:
            base = self._bases.get(adapter.base)
            clash = self.is_configured(adapter.id) or self.is_configured(
                f"{adapter.base}:{adapter.id}"
            )
            if base is None or clash:
                logger.warning("run-time adapter %s skipped: base gone or id taken", adapter.id)
                continue
            route = runtime_adapter_route(adapter, base, self._handles[adapter.base])
            runtime[adapter.id] = runtime[f"{adapter.base}:{adapter.id}"] = route
        self._runtime = runtime
        self.runtime_version = version

    def find(self, model_id: str) -> ModelRoute | None:
        return (
            self._routes.get(model_id) or self._aliases.get(model_id) or self._runtime.get(model_id)
        )

    def get(self, model_id: str) -> ModelRoute:
        route = self.find(model_id)
        if route is None:
            raise model_not_found(model_id)
        return route

    def __iter__(self) -> Iterator[ModelRoute]:
        yield from self._routes.values()
        yield from (r for key, r in self._runtime.items() if key == r.model_id)

    def __len__(self) -> int:
        return len(self._routes) + sum(1 for k, r in self._runtime.items() if k == r.model_id)
