"""Read-side views of the catalog: model listings, readiness, commercial catalog and probes.

Deployments are asked (with a short deadline) to describe themselves; a deployment that
does not answer is reported as not ready with the reason, and nothing else is affected.
"""

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from serve_app.catalog import ModelRoute
from serve_app.errors import GatewayError
from serve_app.handle_calls import call_with_deadline

if TYPE_CHECKING:
    from serve_app.gateway import Gateway


class DeploymentProbe:
    def __init__(self, gateway: "Gateway", handles: Mapping[str, Any]) -> None:
        self.gateway = gateway
        self.handles = dict(handles)
        self._metadata: dict[str, dict[str, Any]] = {}

    @property
    def timeout_s(self) -> float:
        return self.gateway.config.ingress.status_probe_timeout_s

    async def describe(self, deployment: str) -> dict[str, Any]:
        """`{"status": "available"|"unavailable", ...}` for one deployment, never raising."""
        try:
            description = await call_with_deadline(
                self.handles[deployment].describe.remote(), deployment, self.timeout_s
            )
        except GatewayError as error:
            return {"status": "unavailable", "unavailable_reason": error.message}
        if "metadata" in description:
            self._metadata[deployment] = description["metadata"]
        return {"status": "available", **description}

    async def describe_all(self) -> dict[str, dict[str, Any]]:
        names = sorted({route.deployment for route in self.gateway.catalog})
        results = await asyncio.gather(*(self.describe(name) for name in names))
        return dict(zip(names, results))

    def model_info(self, route: ModelRoute, description: dict[str, Any]) -> dict[str, Any]:
        metadata: dict[str, Any] = dict(self._metadata.get(route.deployment, {}))
        if route.model_type == "commercial":
            metadata = commercial_metadata(route)
        if description.get("unavailable_reason"):
            metadata["unavailable_reason"] = description["unavailable_reason"]
        return {
            "id": route.model_id,
            "type": route.model_type,
            "provider": route.provider,
            "description": route.description,
            "status": description.get("status", "unknown"),
            "limits": {
                "max_tokens": route.max_tokens_cap,
                "context_length": metadata.get("context_length", route.context_length),
                "max_prompt_chars": self.gateway.config.ingress.max_prompt_chars,
                "rpm": route.rpm,
                "tpm": route.tpm,
            },
            "metadata": metadata,
        }

    async def list_models(self, model_type: str | None = None) -> list[dict[str, Any]]:
        descriptions = await self.describe_all()
        return [
            self.model_info(route, descriptions[route.deployment])
            for route in self.gateway.catalog
            if model_type is None or route.model_type == model_type
        ]

    async def get_model(self, model_id: str) -> dict[str, Any]:
        route = self.gateway.catalog.get(model_id)
        return self.model_info(route, await self.describe(route.deployment))

    async def readiness(self) -> tuple[bool, dict[str, str]]:
        """Ready when every local model deployment answers; providers never block readiness."""
        local = sorted({r.deployment for r in self.gateway.catalog if r.model_type == "fine_tuned"})
        results = await asyncio.gather(*(self.describe(name) for name in local))
        not_ready = {
            name: str(result.get("unavailable_reason"))
            for name, result in zip(local, results)
            if result["status"] != "available"
        }
        return not not_ready, not_ready

    async def test_providers(self) -> list[dict[str, Any]]:
        providers = sorted(
            {r.deployment for r in self.gateway.catalog if r.model_type == "commercial"}
        )
        return list(await asyncio.gather(*(self._test_provider(name) for name in providers)))

    async def _test_provider(self, provider: str) -> dict[str, Any]:
        timeout = self.gateway.config.ingress.request_timeout_s
        try:
            result: dict[str, Any] = await call_with_deadline(
                self.handles[provider].check_upstream.remote(), provider, timeout
            )
        except GatewayError as error:
            result = {"provider": provider, "reachable": False, "error": error.message}
        return result


def commercial_metadata(route: ModelRoute) -> dict[str, Any]:
    price = route.price
    return {
        "upstream_model": route.upstream_model,
        "context_length": route.context_length,
        "price": {
            "input_per_million_usd": price.input_per_million_usd,
            "output_per_million_usd": price.output_per_million_usd,
            "as_of": price.as_of.isoformat() if price.as_of else None,
        },
    }
