"""The response cache around a gateway's calls: look a deterministic request up before
calling the model, replay a hit (as JSON or as a stream), store what the model answered.

`Gateway` inherits `CachedCalls`; the attributes below are the gateway's.
"""

import asyncio
import functools
import time
from typing import Any, cast

from opentelemetry import trace

from serve_app.access.auth import RequestContext
from serve_app.contracts.config import GatewayConfig
from serve_app.contracts.errors import GatewayError
from serve_app.contracts.tracing import Tracing
from serve_app.contracts.wire import GenerationOutput, GenerationParams, StreamChunk
from serve_app.core.cache import CACHE_HEADER, CachedAnswer, ResponseCache
from serve_app.core.cache_replay import ReplayResponse, replay_chunks
from serve_app.core.catalog import ModelCatalog, ModelRoute
from serve_app.core.fallbacks import Attempts, complete_with_fallbacks, stream_with_fallbacks
from serve_app.core.streaming import ChunkStream
from serve_app.core.usage import AccountFn


class CachedCalls:
    config: GatewayConfig
    catalog: ModelCatalog
    cache: ResponseCache
    background: set[asyncio.Task[None]]
    account: AccountFn
    tracing: Tracing

    def attempts(self) -> Attempts:
        """The gateway, as the fallback chain sees it."""
        return cast(Attempts, self)

    def cache_key(self, params: GenerationParams, ctx: RequestContext) -> str | None:
        """The request's cache key, when the cache is on, the request deterministic and the
        client did not opt out; the `x-cache` header says whether it was a hit."""
        if not (ctx.cache_read or ctx.cache_write):
            return None
        return self.cache.key_for(params)

    async def cached(
        self, key: str | None, ctx: RequestContext
    ) -> tuple[CachedAnswer | None, float]:
        """(a cached answer or None, when the lookup started)."""
        started = time.perf_counter()
        if key is None or not ctx.cache_read:
            return None, started
        answer = await self.cache.lookup(key)
        ctx.rate_limit_headers.append((CACHE_HEADER, b"hit" if answer else b"miss"))
        ctx.log["cache"] = "hit" if answer else "miss"
        if self.tracing.enabled:
            trace.get_current_span().set_attribute("llm_gateway.cache", ctx.log["cache"])
        return answer, started

    def remember(
        self, key: str | None, ctx: RequestContext, output: GenerationOutput, served: ModelRoute
    ) -> None:
        """Store a finished answer off the request path (a task for a Redis write)."""
        if key is None or not ctx.cache_write or output.finish_reason == "cancelled":
            return
        task = asyncio.get_running_loop().create_task(self.cache.save(key, output, served.model_id))
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def complete(
        self,
        route: ModelRoute,
        params: GenerationParams,
        ctx: RequestContext,
        use_cache: bool = True,
    ) -> tuple[ModelRoute, GenerationOutput, float, float]:
        """A non-streamed generation from the cache or the model (with its fallbacks)."""
        key = self.cache_key(params, ctx) if use_cache else None
        answer, started = await self.cached(key, ctx)
        if answer is not None:
            used = self.catalog.find(answer.served_model) or route
            latency_ms, cost = self.account(
                used,
                params.request_id,
                ctx,
                started,
                answer.output,
                None,
                route.model_id,
                cached=True,
            )
            return used, answer.output, latency_ms, cost
        attempts = self.attempts()
        used, output, latency_ms, cost = await complete_with_fallbacks(attempts, route, params, ctx)
        self.remember(key, ctx, output, used)
        return used, output, latency_ms, cost

    async def open_stream(
        self, route: ModelRoute, params: GenerationParams, ctx: RequestContext
    ) -> tuple[ChunkStream, StreamChunk]:
        """Start a streamed generation, falling back before the first chunk if need be;
        the first chunk is in hand (errors raise here). `stream.route` is what answers.
        A cached answer is replayed as chunks."""
        key = self.cache_key(params, ctx)
        answer, _ = await self.cached(key, ctx)
        if answer is not None:
            return await self.replay(route, params, ctx, answer)
        stream, first = await stream_with_fallbacks(self.attempts(), route, params, ctx)
        if key is not None and ctx.cache_write and _stream_keeps_all(params):
            stream.account = self._remembering(stream.account, key, ctx)
        return stream, first

    async def replay(
        self,
        route: ModelRoute,
        params: GenerationParams,
        ctx: RequestContext,
        answer: CachedAnswer,
    ) -> tuple[ChunkStream, StreamChunk]:
        used = self.catalog.find(answer.served_model) or route
        account = functools.partial(self.account, requested=route.model_id, cached=True)
        response = ReplayResponse(replay_chunks(answer.output, answer.served_model))
        stream = ChunkStream(used, params, ctx, response, account)
        return stream, await stream.first(self.config.ingress.request_timeout_s)

    def _remembering(self, account: Any, key: str, ctx: RequestContext) -> Any:
        """The stream's accounting, which also stores a stream that completed."""

        def account_and_store(
            route: ModelRoute,
            request_id: str,
            ctx_: RequestContext,
            started: float,
            output: GenerationOutput | None,
            error: GatewayError | None,
        ) -> tuple[float, float]:
            if output is not None and error is None:
                self.remember(key, ctx, output, route)
            result: tuple[float, float] = account(route, request_id, ctx_, started, output, error)
            return result

        return account_and_store


def _stream_keeps_all(params: GenerationParams) -> bool:
    """A stream's accounting keeps its text and counts only: no tool calls, extra choices or
    logprobs, so streams asking for those are not stored (their JSON answers are)."""
    return not params.tools and params.n == 1 and not params.logprobs
