"""What the routes call: resolve a request against the catalog, call one deployment, account.

One `Gateway` lives in each ingress replica. It holds no HTTP types, so it is tested with
fake handles and no server. Each generation is one handle call (ingress -> model or
provider deployment); its usage is appended to the ledger buffer, written off the path.
"""

import asyncio
import dataclasses
import datetime as dt
import functools
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

from serve_app import __version__
from serve_app.access.admission import Admission
from serve_app.access.auth import RequestContext
from serve_app.accounting.ledger import Ledger
from serve_app.accounting.response_store import ResponseStore
from serve_app.contracts.config import GatewayConfig
from serve_app.contracts.errors import GatewayError, InvalidRequestError, UpstreamTimeoutError
from serve_app.contracts.pricing import cost_usd
from serve_app.contracts.tracing import Tracing
from serve_app.contracts.wire import (
    ChatMessage,
    GenerationOutput,
    GenerationParams,
    StreamChunk,
    prompt_chars,
)
from serve_app.core.adapter_admin import AdapterAdmin
from serve_app.core.breakers import CircuitBreakers
from serve_app.core.cache import ResponseCache
from serve_app.core.cached_calls import CachedCalls
from serve_app.core.capabilities import check_capabilities, check_limits
from serve_app.core.catalog import ModelCatalog, ModelRoute
from serve_app.core.handle_calls import call_with_deadline
from serve_app.core.metrics import in_flight_until_accounted
from serve_app.core.probes import DeploymentProbe
from serve_app.core.runtime_adapters import RuntimeAdapters
from serve_app.core.streaming import ChunkStream, estimate_prompt_tokens, open_stream
from serve_app.core.traced_calls import traced_call_model, traced_open_stream_once
from serve_app.core.usage import UsageAccountant, cancelled


class Gateway(CachedCalls):
    def __init__(
        self,
        config: GatewayConfig,
        handles: Mapping[str, Any],
        ledger: Ledger | None = None,
        admission: Admission | None = None,
        metrics: Any = None,
        cache: ResponseCache | None = None,
        tracing: Tracing | None = None,
        runtime_adapters: RuntimeAdapters | None = None,
    ) -> None:
        self.config = config
        self.catalog = ModelCatalog.from_config(config, handles)
        self.adapters = AdapterAdmin(config, self.catalog, runtime_adapters)
        self.ledger = ledger or Ledger(config.ledger)
        self.admission = admission or Admission(config, None, None)
        self.usage = UsageAccountant(self.ledger, self.admission, metrics)
        self.account = self.usage.account  # what the cached calls and the embedder call
        self.probe = DeploymentProbe(config, self.catalog, handles)
        self.breakers = CircuitBreakers(config.circuit_breaker)
        self.cache = cache or ResponseCache(config.cache)
        # /v1/responses with store: true, in the ledger's database (its pooled engine)
        self.responses = ResponseStore(self.ledger.store.engine)
        self.tracing = tracing or Tracing(capture_content=config.tracing.capture_content)
        self.background: set[asyncio.Task[None]] = set()  # cache writes in flight
        self.started_at = time.monotonic()
        self.started_wall = time.time()

    @property
    def metrics(self) -> Any:
        """The replica's metrics (None: none), held by the accountant that records them."""
        return self.usage.metrics

    # ---- generation -------------------------------------------------------------------

    def prepare(
        self,
        model_id: str,
        request_id: str,
        *,
        prompt: str = "",
        messages: tuple[ChatMessage, ...] = (),
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        stop: list[str] | None = None,
        options: Mapping[str, Any] | None = None,
        image_at: tuple[str, ...] = (),
    ) -> tuple[ModelRoute, GenerationParams]:
        """Check a validated request against the model's limits and fill in its defaults.

        `options` are the other `GenerationParams` fields (tools, sampling, formats);
        `image_at` names where each image of the request is, for the error that refuses it."""
        route = self.catalog.get(model_id)
        if route.task != "generate":
            raise InvalidRequestError(
                f"The model {route.model_id!r} is an embedding model: call /v1/embeddings.",
                param="model",
                code="model_not_supported",
            )
        self.check_prompt_length(prompt_chars(prompt, messages))
        resolved_max = route.resolve_max_tokens(max_tokens)
        if resolved_max > route.max_tokens_cap:
            raise InvalidRequestError(
                f"max_tokens must be between 1 and {route.max_tokens_cap} for model "
                f"{route.model_id!r}; got {resolved_max}.",
                param="max_tokens",
            )
        temperature, top_p = route.resolve_sampling(temperature, top_p)
        params = GenerationParams(
            request_id=request_id,
            model_id=route.model_id,
            prompt=prompt,
            max_tokens=resolved_max,
            temperature=temperature,
            top_p=top_p,
            stop=self.check_stop(stop or []),
            messages=messages,
            adapter=route.adapter,
            **(options or {}),
            adapter_path=route.adapter_path,
        )
        check_limits(self.config.ingress, params, image_at)
        check_capabilities(route, params, image_at)
        return route, params

    async def admitted(
        self, ctx: RequestContext, model_id: str, **request: Any
    ) -> tuple[ModelRoute, GenerationParams]:
        """`prepare` (limits, defaults) then admission (permission, budget, rate limits)."""
        await self.adapters.sync()
        route, params = self.prepare(model_id, ctx.request_id, **request)
        await self.admission.admit(ctx, params, self.max_cost(route, params))
        return route, params

    @staticmethod
    def max_cost(route: ModelRoute, params: GenerationParams) -> float:
        """The most a call may cost: the prompt estimate and `max_tokens`, at its prices
        (what a budget reserves before the call)."""
        return cost_usd(route.price, estimate_prompt_tokens(params), params.max_tokens)

    async def count_tokens(
        self, ctx: RequestContext, model_id: str, **request: Any
    ) -> dict[str, Any]:
        """Input tokens of a request on `model_id` (its deployment counts them: the local
        tokenizer, Anthropic's endpoint, or an estimate for OpenAI models). Needs the
        key's permission for the model; no rate-limit slot, nothing is generated."""
        route, params = self.prepare(model_id, ctx.request_id, **request)
        ctx.require_model(route.model_id)
        timeout_s = ctx.remaining_s(self.config.ingress.request_timeout_s)
        answer = await call_with_deadline(
            route.handle.count_tokens.remote(params), route.deployment, timeout_s
        )
        return {"input_tokens": answer} if isinstance(answer, int) else dict(answer)

    def check_prompt_length(self, chars: int) -> None:
        limit = self.config.ingress.max_prompt_chars
        if chars > limit:
            raise InvalidRequestError(
                f"The prompt has {chars} characters; the limit is {limit}.",
                param="prompt",
                code="prompt_too_long",
            )

    def check_stop(self, stop: list[str]) -> tuple[str, ...]:
        limit = self.config.ingress.max_stop_sequences
        if len(stop) > limit or any(not s for s in stop):
            raise InvalidRequestError(
                f"stop takes at most {limit} non-empty strings.", param="stop"
            )
        return tuple(stop)

    async def generate(
        self,
        ctx: RequestContext,
        model_id: str,
        request: Mapping[str, Any],
        request_id: str | None = None,
        use_cache: bool = True,
    ) -> dict[str, Any]:
        """One non-streamed generation (`request`: `prepare`'s keyword arguments)."""
        rid = request_id or ctx.request_id
        await self.adapters.sync()
        route, params = self.prepare(model_id, rid, **request)
        await self.admission.admit(ctx, params, self.max_cost(route, params))
        used, output, latency_ms, cost = await self.complete(route, params, ctx, use_cache)
        return self.shape_response(used, output, latency_ms, cost, rid, requested=route)

    async def open_stream_once(
        self, route: ModelRoute, params: GenerationParams, ctx: RequestContext, requested: str
    ) -> tuple[ChunkStream, StreamChunk]:
        """One attempt at a stream (in a span when tracing is on)."""
        if self.tracing.enabled:
            return await traced_open_stream_once(self, route, params, ctx, requested)
        return await self.untraced_open_stream_once(route, params, ctx, requested)

    async def untraced_open_stream_once(
        self, route: ModelRoute, params: GenerationParams, ctx: RequestContext, requested: str
    ) -> tuple[ChunkStream, StreamChunk]:
        account = functools.partial(self.account, requested=requested)
        started = time.perf_counter()
        try:
            timeout_s = self.admit_call(route, ctx)
        except GatewayError as error:
            account(route, params.request_id, ctx, started, None, error)
            raise
        tracked = in_flight_until_accounted(self.metrics, route.model_id, account)
        stream = open_stream(route, self.with_deadline(params, ctx), ctx, tracked)
        try:
            first = await stream.first(timeout_s)
        except GatewayError as error:
            self.record_outcome(route, error, ctx)
            raise
        except asyncio.CancelledError:
            self.breakers.release(route.deployment)
            raise
        self.breakers.record(route.deployment, None)
        return stream, first

    def admit_call(self, route: ModelRoute, ctx: RequestContext) -> float:
        """The circuit lets the call through, and the deadline leaves time for it: the
        seconds it may take."""
        self.breakers.check(route.deployment)
        remaining = ctx.remaining_s(self.config.ingress.request_timeout_s)
        if remaining <= 0:
            self.breakers.release(route.deployment)
            raise UpstreamTimeoutError(
                f"The request's deadline passed before {route.model_id!r} was called.",
                code="deadline_exceeded",
            )
        return remaining

    def record_outcome(self, route: ModelRoute, error: GatewayError, ctx: RequestContext) -> None:
        """A deadline the client shortened says nothing about the upstream's health."""
        if error.code == "deadline_exceeded" and ctx.deadline_shortened:
            self.breakers.release(route.deployment)
        else:
            self.breakers.record(route.deployment, error)

    @staticmethod
    def with_deadline(params: GenerationParams, ctx: RequestContext) -> GenerationParams:
        """The deadline travels with the call (a model skips rows whose time is up)."""
        if not math.isfinite(ctx.deadline):
            return params
        return dataclasses.replace(params, deadline=ctx.deadline)

    async def call_model(
        self,
        route: ModelRoute,
        params: GenerationParams,
        ctx: RequestContext,
        requested: str | None = None,
    ) -> tuple[GenerationOutput, float, float]:
        """One handle call (in a span when tracing is on)."""
        if self.tracing.enabled:
            return await traced_call_model(self, route, params, ctx, requested)
        return await self.untraced_call_model(route, params, ctx, requested)

    async def untraced_call_model(
        self,
        route: ModelRoute,
        params: GenerationParams,
        ctx: RequestContext,
        requested: str | None = None,
    ) -> tuple[GenerationOutput, float, float]:
        """One handle call, accounted for in the counters and the ledger either way."""
        started = time.perf_counter()
        try:
            timeout_s = self.admit_call(route, ctx)
        except GatewayError as error:
            self.account(route, params.request_id, ctx, started, None, error, requested)
            raise
        if self.metrics is not None:
            self.metrics.request_started(route.model_id)
        try:
            output: GenerationOutput = await call_with_deadline(
                route.handle.generate.remote(self.with_deadline(params, ctx)),
                route.deployment,
                timeout_s,
            )
        except GatewayError as error:
            self.record_outcome(route, error, ctx)
            self.account(route, params.request_id, ctx, started, None, error, requested)
            raise
        except asyncio.CancelledError:  # the client went away; the handle call is cancelled
            self.breakers.release(route.deployment)
            self.account(
                route, params.request_id, ctx, started, cancelled(route, params), None, requested
            )
            raise
        finally:
            if self.metrics is not None:
                self.metrics.request_finished(route.model_id)
        self.breakers.record(route.deployment, None)
        latency_ms, cost = self.account(
            route, params.request_id, ctx, started, output, None, requested
        )
        return output, latency_ms, cost

    async def generate_batch(
        self, ctx: RequestContext, items: Sequence[tuple[str, Mapping[str, Any], bool]]
    ) -> dict[str, list[dict[str, Any]]]:
        """Each item is (model id, `prepare`'s keyword arguments, whether it may use the
        response cache); results in input order."""
        cap = self.config.ingress.max_batch_items
        if len(items) > cap:
            raise InvalidRequestError(
                f"A batch holds at most {cap} requests; got {len(items)}.",
                param="requests",
            )
        calls = [
            self._generate_item(ctx, model_id, request, f"{ctx.request_id}-{index}", use_cache)
            for index, (model_id, request, use_cache) in enumerate(items)
        ]
        return {"results": list(await asyncio.gather(*calls))}

    async def _generate_item(
        self,
        ctx: RequestContext,
        model_id: str,
        request: Mapping[str, Any],
        item_id: str,
        use_cache: bool,
    ) -> dict[str, Any]:
        try:
            return await self.generate(ctx, model_id, request, item_id, use_cache)
        except GatewayError as error:
            return {"error": error.to_dict()}

    @staticmethod
    def shape_response(
        route: ModelRoute,
        output: GenerationOutput,
        latency_ms: float,
        cost: float,
        request_id: str,
        requested: ModelRoute | None = None,
    ) -> dict[str, Any]:
        """`model_id` is the model that answered; `metadata.requested_model` the one asked
        for (they differ when a fallback answered)."""
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
                "cost_usd": cost,
                "finish_reason": output.finish_reason,
                "request_id": request_id,
                "requested_model": (requested or route).model_id,
                "fallback_used": requested is not None and requested is not route,
            },
            "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
        }

    # ---- status -------------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        return {
            "version": __version__,
            "uptime_s": round(time.monotonic() - self.started_at, 3),
            "models": await self.probe.model_states(self.usage.counters),
            "ledger": self.ledger.health(),
            "circuit_breakers": self.breakers.snapshot(),
            "cache": self.cache.stats(),
        }

    async def close(self) -> None:
        await self.probe.close()
        if self.background:
            await asyncio.gather(*self.background, return_exceptions=True)
        await self.cache.close()
        await self.ledger.close()
        if self.metrics is not None:
            self.metrics.flush()
        self.tracing.shutdown()
