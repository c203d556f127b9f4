"""What the routes call: resolve a request against the catalog, call one deployment, shape it.

One `Gateway` lives in each ingress replica. It holds no HTTP types, so it is tested with
fake handles and no server.
"""

import asyncio
import datetime as dt
import time
from collections.abc import Mapping
from typing import Any

from serve_app import __version__
from serve_app.catalog import ModelCatalog, ModelRoute
from serve_app.config import GatewayConfig
from serve_app.errors import GatewayError, InvalidRequestError
from serve_app.handle_calls import call_with_deadline
from serve_app.pricing import cost_usd
from serve_app.schemas.internal import GenerationOutput, GenerationParams
from serve_app.schemas.native import BatchGenerateRequest, GenerateRequest
from serve_app.stats import ModelCounters


class Gateway:
    def __init__(self, config: GatewayConfig, handles: Mapping[str, Any]) -> None:
        self.config = config
        self.catalog = ModelCatalog.from_config(config, handles)
        self.counters = {route.model_id: ModelCounters() for route in self.catalog}
        self.started_at = time.monotonic()
        self._descriptions: dict[str, dict[str, Any]] = {}

    # ---- generation -------------------------------------------------------------------

    def resolve(self, request: GenerateRequest, request_id: str) -> tuple[ModelRoute, GenerationParams]:
        """Check a validated request against the model's limits and fill in its defaults."""
        route = self.catalog.get(request.model_id)
        limits = self.config.ingress
        if len(request.prompt) > limits.max_prompt_chars:
            raise InvalidRequestError(
                f"prompt has {len(request.prompt)} characters; the limit is "
                f"{limits.max_prompt_chars}.",
                param="prompt",
                code="prompt_too_long",
            )
        max_tokens = request.max_tokens or min(route.defaults.max_tokens, route.max_tokens_cap)
        if max_tokens > route.max_tokens_cap:
            raise InvalidRequestError(
                f"max_tokens must be between 1 and {route.max_tokens_cap} for model "
                f"{route.model_id!r}; got {max_tokens}.",
                param="max_tokens",
            )
        stop = request.stop_list()
        if len(stop) > limits.max_stop_sequences or any(not s for s in stop):
            raise InvalidRequestError(
                f"stop takes at most {limits.max_stop_sequences} non-empty strings.",
                param="stop",
            )
        params = GenerationParams(
            request_id=request_id,
            model_id=route.model_id,
            prompt=request.prompt,
            max_tokens=max_tokens,
            temperature=_first_set(request.temperature, route.defaults.temperature),
            top_p=_first_set(request.top_p, route.defaults.top_p),
            stop=tuple(stop),
        )
        return route, params

    async def generate(self, request: GenerateRequest, request_id: str) -> dict[str, Any]:
        route, params = self.resolve(request, request_id)
        started = time.perf_counter()
        ok = False
        try:
            output: GenerationOutput = await call_with_deadline(
                route.handle.generate.remote(params),
                route.deployment,
                self.config.ingress.request_timeout_s,
            )
            ok = True
        finally:
            latency_ms = (time.perf_counter() - started) * 1000
            self.counters[route.model_id].record(latency_ms, ok)
        return self.shape_response(route, output, latency_ms, request_id)

    async def generate_batch(
        self, batch: BatchGenerateRequest, request_id: str
    ) -> dict[str, list[dict[str, Any]]]:
        cap = self.config.ingress.max_batch_items
        if len(batch.requests) > cap:
            raise InvalidRequestError(
                f"A batch holds at most {cap} requests; got {len(batch.requests)}.",
                param="requests",
            )
        items = [
            self._generate_item(item, f"{request_id}-{index}")
            for index, item in enumerate(batch.requests)
        ]
        return {"results": list(await asyncio.gather(*items))}

    async def _generate_item(self, item: GenerateRequest, item_id: str) -> dict[str, Any]:
        try:
            return await self.generate(item, item_id)
        except GatewayError as error:
            return {"error": error.to_dict()}

    @staticmethod
    def shape_response(
        route: ModelRoute, output: GenerationOutput, latency_ms: float, request_id: str
    ) -> dict[str, Any]:
        return {
            "text": output.text,
            "model_id": route.model_id,
            "metrics": {
                "latency_ms": round(latency_ms, 3),
                "input_tokens": output.input_tokens,
                "output_tokens": output.output_tokens,
                "total_tokens": output.input_tokens + output.output_tokens,
            },
            "metadata": {
                "model_type": route.model_type,
                "provider": route.provider,
                "cost_usd": cost_usd(route.price, output.input_tokens, output.output_tokens),
                "finish_reason": output.finish_reason,
                "request_id": request_id,
            },
            "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
        }

    # ---- catalog, readiness, status -----------------------------------------------------

    async def _describe(self, route: ModelRoute) -> tuple[str, dict[str, Any] | str]:
        """Ask a local model deployment for its metadata; a string explains a failure."""
        timeout = self.config.ingress.status_probe_timeout_s
        try:
            description = await call_with_deadline(
                route.handle.describe.remote(), route.deployment, timeout
            )
        except GatewayError as error:
            return route.model_id, f"{error.error_type}: {error.message}"
        self._descriptions[route.model_id] = description
        return route.model_id, description

    async def describe_all(self) -> dict[str, dict[str, Any] | str]:
        local = [route for route in self.catalog if route.model_type == "fine_tuned"]
        return dict(await asyncio.gather(*(self._describe(route) for route in local)))

    def model_info(self, route: ModelRoute, description: dict[str, Any] | str | None) -> dict:
        metadata = dict(self._descriptions.get(route.model_id, {}).get("metadata", {}))
        if isinstance(description, dict):
            metadata = dict(description["metadata"])
        status = "available" if isinstance(description, dict) else "unavailable"
        info: dict[str, Any] = {
            "id": route.model_id,
            "type": route.model_type,
            "provider": route.provider,
            "description": route.description,
            "status": status,
            "limits": {
                "max_tokens": route.max_tokens_cap,
                "context_length": metadata.get("context_length", route.context_length),
                "max_prompt_chars": self.config.ingress.max_prompt_chars,
                "rpm": route.rpm,
                "tpm": route.tpm,
            },
            "metadata": metadata,
        }
        if isinstance(description, str):
            info["metadata"]["unavailable_reason"] = description
        return info

    async def list_models(self) -> list[dict[str, Any]]:
        descriptions = await self.describe_all()
        return [self.model_info(r, descriptions.get(r.model_id)) for r in self.catalog]

    async def get_model(self, model_id: str) -> dict[str, Any]:
        route = self.catalog.get(model_id)
        _, description = await self._describe(route)
        return self.model_info(route, description)

    async def readiness(self) -> tuple[bool, dict[str, str]]:
        descriptions = await self.describe_all()
        not_ready = {k: v for k, v in descriptions.items() if isinstance(v, str)}
        return not not_ready, not_ready

    async def status(self) -> dict[str, Any]:
        descriptions = await self.describe_all()
        models = []
        for route in self.catalog:
            counters = self.counters[route.model_id]
            p50, p95 = counters.latency_percentiles()
            description = descriptions.get(route.model_id)
            models.append(
                {
                    "id": route.model_id,
                    "type": route.model_type,
                    "provider": route.provider,
                    "state": "ready" if isinstance(description, dict) else str(description),
                    "requests": counters.requests,
                    "errors": counters.errors,
                    "latency_p50_ms": p50,
                    "latency_p95_ms": p95,
                    "average_batch_size": (
                        description.get("average_batch_size")
                        if isinstance(description, dict)
                        else None
                    ),
                }
            )
        uptime = round(time.monotonic() - self.started_at, 3)
        return {"version": __version__, "uptime_s": uptime, "models": models}


def _first_set(value: float | None, default: float) -> float:
    return default if value is None else value
