"""Fallbacks: when a model fails upstream, try the next model of its `fallbacks` list.

Only errors worth another model (429, 5xx, timeouts, an open circuit) move on; a client
mistake (400, 403, ...) is returned at once. Streams fall back only before their first chunk.
The whole chain shares the request's deadline. Every attempt is accounted in the ledger with
the model asked for and the model that served (or failed).
"""

import dataclasses
import time
from collections.abc import Iterator
from typing import Protocol

from serve_app.access.auth import RequestContext
from serve_app.contracts.errors import GatewayError
from serve_app.contracts.wire import GenerationOutput, GenerationParams, StreamChunk
from serve_app.core.breakers import worth_a_fallback
from serve_app.core.capabilities import can_serve
from serve_app.core.catalog import ModelCatalog, ModelRoute
from serve_app.core.streaming import ChunkStream


class Attempts(Protocol):
    """What a fallback chain needs of the gateway: the catalog and one attempt's call."""

    catalog: ModelCatalog

    async def call_model(
        self,
        route: ModelRoute,
        params: GenerationParams,
        ctx: RequestContext,
        requested: str | None = None,
    ) -> tuple[GenerationOutput, float, float]: ...

    async def open_stream_once(
        self, route: ModelRoute, params: GenerationParams, ctx: RequestContext, requested: str
    ) -> tuple[ChunkStream, StreamChunk]: ...


def candidates(
    gateway: Attempts, route: ModelRoute, params: GenerationParams, ctx: RequestContext
) -> Iterator[tuple[ModelRoute, GenerationParams]]:
    """The requested model, then each fallback the caller's key may use and that can
    honour the request's fields."""
    yield route, params
    for model_id in route.fallbacks:
        fallback = gateway.catalog.find(model_id)  # None: e.g. its provider is not deployed
        if fallback is None or (ctx.key is not None and not ctx.key.allows(fallback.model_id)):
            continue
        if not can_serve(fallback, params):  # e.g. images to a text-only model
            continue
        yield fallback, params_for(fallback, params)


def params_for(route: ModelRoute, params: GenerationParams) -> GenerationParams:
    """The same request for another model: its id and adapter, its caps and defaults."""
    temperature, top_p = route.resolve_sampling(params.temperature, params.top_p)
    return dataclasses.replace(
        params,
        model_id=route.model_id,
        adapter=route.adapter,
        max_tokens=min(params.max_tokens, route.max_tokens_cap),
        temperature=temperature,
        top_p=top_p,
    )


async def complete_with_fallbacks(
    gateway: Attempts, route: ModelRoute, params: GenerationParams, ctx: RequestContext
) -> tuple[ModelRoute, GenerationOutput, float, float]:
    """(the route that answered, its output, latency ms, cost)."""
    last_error: GatewayError | None = None
    for candidate, candidate_params in candidates(gateway, route, params, ctx):
        try:
            output, latency_ms, cost = await gateway.call_model(
                candidate, candidate_params, ctx, requested=route.model_id
            )
        except GatewayError as error:
            if not worth_a_fallback(error) or time.time() >= ctx.deadline:
                raise
            last_error = error
            continue
        return candidate, output, latency_ms, cost
    assert last_error is not None
    raise last_error


async def stream_with_fallbacks(
    gateway: Attempts, route: ModelRoute, params: GenerationParams, ctx: RequestContext
) -> tuple[ChunkStream, StreamChunk]:
    last_error: GatewayError | None = None
    for candidate, candidate_params in candidates(gateway, route, params, ctx):
        try:
            return await gateway.open_stream_once(
                candidate, candidate_params, ctx, requested=route.model_id
            )
        except GatewayError as error:
            if not worth_a_fallback(error) or time.time() >= ctx.deadline:
                raise
            last_error = error
    assert last_error is not None
    raise last_error
