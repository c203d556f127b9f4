"""Embeddings: one handle call to the model's deployment (a local `task: embed` model, or the
OpenAI proxy), checked, admitted and accounted like a generation.

Each input counts toward `ingress.max_batch_items` and `max_prompt_chars`, and all of them
toward the key's token limits. Embedding calls have no fallbacks and no response cache.
"""

import dataclasses
import time
from typing import Protocol

from opentelemetry.trace import SpanKind

from serve_app.access.admission import Admission
from serve_app.access.auth import RequestContext
from serve_app.contracts.config import GatewayConfig
from serve_app.contracts.errors import GatewayError, InvalidRequestError
from serve_app.contracts.pricing import cost_usd
from serve_app.contracts.tracing import Tracing, embedding_attributes
from serve_app.contracts.wire import (
    EmbeddingOutput,
    EmbeddingParams,
    GenerationOutput,
    estimate_tokens,
)
from serve_app.core.catalog import ModelCatalog, ModelRoute
from serve_app.core.handle_calls import call_with_deadline
from serve_app.core.usage import AccountFn


class Embedder(Protocol):
    config: GatewayConfig
    catalog: ModelCatalog
    admission: Admission
    tracing: Tracing

    def admit_call(self, route: ModelRoute, ctx: RequestContext) -> float: ...

    def record_outcome(
        self, route: ModelRoute, error: GatewayError, ctx: RequestContext
    ) -> None: ...

    account: AccountFn


def embedding_route(catalog: ModelCatalog, model_id: str) -> ModelRoute:
    route = catalog.get(model_id)
    if route.task != "embed":
        kind = "a Claude model" if route.provider == "anthropic" else "not an embedding model"
        raise InvalidRequestError(
            f"The model {route.model_id!r} is {kind}: it has no embeddings. Use an embedding "
            "model (a local `task: embed` model, text-embedding-3-small, ...).",
            param="model",
            code="model_not_supported",
        )
    return route


def check_inputs(config: GatewayConfig, route: ModelRoute, params: EmbeddingParams) -> None:
    cap = config.ingress.max_batch_items
    if not params.inputs:
        raise InvalidRequestError("input must not be empty.", param="input")
    if len(params.inputs) > cap:
        raise InvalidRequestError(
            f"input holds at most {cap} items; got {len(params.inputs)}.", param="input"
        )
    limit = config.ingress.max_prompt_chars
    for index, item in enumerate(params.inputs):
        if not item:
            raise InvalidRequestError(f"input[{index}] is empty.", param="input")
        if isinstance(item, str) and len(item) > limit:
            raise InvalidRequestError(
                f"input[{index}] has {len(item)} characters; the limit is {limit}.",
                param="input",
                code="prompt_too_long",
            )
    dimensions = params.dimensions
    if dimensions is not None and not (
        route.shortenable and route.dimensions is not None and dimensions <= route.dimensions
    ):
        allowed = f"1 to {route.dimensions}" if route.shortenable else "no `dimensions` parameter"
        raise InvalidRequestError(
            f"dimensions={dimensions} is not supported by {route.model_id!r} (it takes {allowed}).",
            param="dimensions",
        )


async def embed(
    gateway: Embedder,
    ctx: RequestContext,
    model_id: str,
    inputs: tuple[str | tuple[int, ...], ...],
    dimensions: int | None,
) -> tuple[ModelRoute, EmbeddingOutput]:
    route = embedding_route(gateway.catalog, model_id)
    params = EmbeddingParams(ctx.request_id, route.model_id, inputs, dimensions)
    check_inputs(gateway.config, route, params)
    tokens = estimate_tokens(params.input_chars())
    max_cost = cost_usd(route.price, tokens, 0)  # what a budget reserves before the call
    await gateway.admission.admit_usage(ctx, route.model_id, ctx.request_id, tokens, max_cost)
    if gateway.tracing.enabled:
        attributes = embedding_attributes(params, route.provider, route.upstream_model or model_id)
        name = f"embeddings {route.model_id}"
        with gateway.tracing.span(name, SpanKind.CLIENT, attributes) as span:
            params = dataclasses.replace(params, traceparent=gateway.tracing.traceparent(span))
            output = await call_embed(gateway, route, params, ctx)
            span.set_attribute("gen_ai.usage.input_tokens", output.input_tokens)
            return route, output
    return route, await call_embed(gateway, route, params, ctx)


async def call_embed(
    gateway: Embedder, route: ModelRoute, params: EmbeddingParams, ctx: RequestContext
) -> EmbeddingOutput:
    started = time.perf_counter()
    try:
        timeout_s = gateway.admit_call(route, ctx)
        if ctx.deadline != float("inf"):
            params = dataclasses.replace(params, deadline=ctx.deadline)
        output: EmbeddingOutput = await call_with_deadline(
            route.handle.embed.remote(params), route.deployment, timeout_s
        )
    except GatewayError as error:
        gateway.record_outcome(route, error, ctx)
        gateway.account(route, params.request_id, ctx, started, None, error)
        raise
    usage = GenerationOutput("", output.input_tokens, 0, "stop", route.model_id)
    gateway.account(route, params.request_id, ctx, started, usage, None)
    return output
