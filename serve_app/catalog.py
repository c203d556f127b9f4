"""The model catalog as the ingress sees it: model id -> where to send it and what it costs."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from serve_app.config import GatewayConfig, GenerationDefaults, PriceConfig
from serve_app.errors import model_not_found

ModelType = Literal["fine_tuned", "commercial"]


@dataclass(frozen=True, slots=True)
class ModelRoute:
    """Everything the ingress needs to serve one model id without another lookup."""

    model_id: str
    model_type: ModelType
    provider: str
    deployment: str
    handle: Any
    max_tokens_cap: int
    defaults: GenerationDefaults
    price: PriceConfig
    description: str
    context_length: int | None = None
    upstream_model: str | None = None
    rpm: int | None = None
    tpm: int | None = None


class ModelCatalog:
    """Immutable map of model ids to routes, built once per ingress replica."""

    def __init__(self, routes: list[ModelRoute]) -> None:
        self._routes = {route.model_id: route for route in routes}

    @classmethod
    def from_config(cls, config: GatewayConfig, handles: Mapping[str, Any]) -> "ModelCatalog":
        routes = [
            ModelRoute(
                model_id=model.id,
                model_type="fine_tuned",
                provider="local",
                deployment=model.id,
                handle=handles[model.id],
                max_tokens_cap=model.max_new_tokens,
                defaults=model.defaults,
                price=model.price,
                description=model.description,
            )
            for model in config.models
        ]
        return cls(routes)

    def get(self, model_id: str) -> ModelRoute:
        route = self._routes.get(model_id)
        if route is None:
            raise model_not_found(model_id)
        return route

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._routes.values())

    def __len__(self) -> int:
        return len(self._routes)
