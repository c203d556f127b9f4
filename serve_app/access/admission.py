"""Who may make this call: authentication, model permission, budget and rate limits.

One `Admission` per ingress replica. Keys are checked against an in-memory cache of the
hashed key table (refreshed every `auth.cache_ttl_s`), so a request costs no database round
trip; per-key and per-IP limits are exact across replicas (the shared `RateLimiter`
deployment, or Redis) and cost one call only when a limit is configured.
"""

import asyncio
import logging
import math
import os
import time
from collections.abc import Awaitable, Mapping
from typing import Any, Protocol, TypeVar

from serve_app.access.auth import (
    RequestContext,
    is_admin_key,
    missing_key_error,
    presented_key,
)
from serve_app.access.budgets import BudgetGuard
from serve_app.access.key_cache import KeyCache
from serve_app.contracts.config import GatewayConfig
from serve_app.contracts.errors import (
    InvalidRequestError,
    RateLimitError,
    ServiceUnavailableError,
)
from serve_app.contracts.limits import LimitSpec
from serve_app.contracts.wire import GenerationParams, estimate_tokens

logger = logging.getLogger("llm_gateway")
TIMEOUT_HEADER = "x-request-timeout"
T = TypeVar("T")


class Limiter(Protocol):
    async def acquire(self, specs: Any, tokens: int = 0) -> Any: ...

    async def reserve(self, hold: Any) -> Any: ...

    async def settle(
        self, key_id: str, period_start: float, reservation_id: str | None, cost_usd: float
    ) -> None: ...


class LimiterUnavailable(Exception):
    """The limiter store did not answer within its deadline, or failed."""


async def with_deadline(call: Awaitable[T], timeout_s: float, what: str) -> T:
    """`call` within `timeout_s`; any failure of the store is `LimiterUnavailable`."""
    try:
        return await asyncio.wait_for(call, timeout_s)
    except TimeoutError:
        raise LimiterUnavailable(f"{what}: no answer within {timeout_s * 1000:.0f} ms") from None
    except Exception as exc:  # a dead replica, a lost connection: the store is unavailable
        raise LimiterUnavailable(f"{what}: {type(exc).__name__}: {exc}") from exc


class HandleLimiter:
    """The `RateLimiter` deployment behind a handle, with the limiter's interface."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    async def acquire(self, specs: Any, tokens: int = 0) -> Any:
        return await self.handle.acquire.remote(specs, tokens)

    async def reserve(self, hold: Any) -> Any:
        return await self.handle.reserve.remote(hold)

    async def settle(
        self, key_id: str, period_start: float, reservation_id: str | None, cost_usd: float
    ) -> None:
        await self.handle.settle.remote(key_id, period_start, reservation_id, cost_usd)


def estimated_tokens(params: GenerationParams) -> int:
    """Prompt tokens (estimated from its characters) plus the most the call may produce."""
    return estimate_tokens(params.prompt_chars()) + params.max_tokens


def rate_limit_headers(decision: Any, specs: list[Any]) -> list[tuple[bytes, bytes]]:
    """OpenAI-style x-ratelimit-* headers for the tightest of the counters checked."""
    headers = []
    for kind, limits, remaining in (
        ("requests", [s.rpm for s in specs if s.rpm], decision.remaining_requests),
        ("tokens", [s.tpm for s in specs if s.tpm], decision.remaining_tokens),
    ):
        if remaining is None or not limits:
            continue
        limit = min(limits)
        headers += [
            (f"x-ratelimit-limit-{kind}".encode(), str(limit).encode()),
            (f"x-ratelimit-remaining-{kind}".encode(), str(remaining).encode()),
            (f"x-ratelimit-reset-{kind}".encode(), f"{decision.reset_s:g}s".encode()),
        ]
    return headers


class Admission:
    def __init__(
        self,
        config: GatewayConfig,
        keys: KeyCache | None,
        limiter: Limiter | None,
        environ: Mapping[str, str] | None = None,
        metrics: Any = None,
    ) -> None:
        self.config = config
        self.keys = keys
        self.limiter = limiter
        self.metrics = metrics
        self.budgets = BudgetGuard(config, keys, limiter, self.guarded)
        self.admin_key = (environ if environ is not None else os.environ).get(
            config.auth.admin_key_env
        ) or None

    async def identify(self, headers: Mapping[str, str], state: dict[str, Any]) -> RequestContext:
        """Authenticate the caller (401 for a missing, unknown or disabled key)."""
        ctx = RequestContext(
            request_id=state["request_id"],
            client_ip=state.get("client_ip", ""),
            log=state.setdefault("log", {}),
            rate_limit_headers=state.setdefault("rate_limit_headers", []),
        )
        seconds = self.timeout_s(headers)
        ctx.deadline = time.time() + seconds
        ctx.deadline_shortened = seconds < self.config.ingress.request_timeout_s
        ctx.apply_cache_control(headers.get("cache-control"))
        presented = presented_key(dict(headers))
        if is_admin_key(presented, self.admin_key):
            ctx.is_admin = True
        elif self.config.auth.enabled:
            if presented is None:
                raise missing_key_error()
            assert self.keys is not None
            ctx.key = await self.keys.authenticate(presented)
        ctx.log["key_id"] = ctx.key_id
        return ctx

    def timeout_s(self, headers: Mapping[str, str]) -> float:
        """The configured deadline, or less when the client asks (`X-Request-Timeout`)."""
        limit = self.config.ingress.request_timeout_s
        asked = headers.get(TIMEOUT_HEADER)
        if asked is None:
            return limit
        try:
            seconds = float(asked)
        except ValueError:
            seconds = math.nan
        if not 0 < seconds < math.inf:
            raise InvalidRequestError(
                f"{TIMEOUT_HEADER} must be a positive number of seconds.", param=TIMEOUT_HEADER
            )
        return min(seconds, limit)

    async def guarded(self, call: Awaitable[T], what: str) -> T | None:
        """A limiter call with its deadline; when the store fails, `on_failure` decides:
        `closed` answers 503 rate_limiter_unavailable, `open` returns None (let through)."""
        limits = self.config.rate_limits
        try:
            return await with_deadline(call, limits.timeout_ms / 1000, what)
        except LimiterUnavailable as exc:
            logger.warning("rate limiter unavailable (on_failure=%s): %s", limits.on_failure, exc)
            if self.metrics is not None:
                self.metrics.record_limiter_failure(limits.on_failure)
            if limits.on_failure == "open":
                return None
            raise ServiceUnavailableError(
                "The rate limiter is unavailable; retry shortly.",
                code="rate_limiter_unavailable",
                retry_after_s=limits.failure_retry_after_s,
            ) from None

    async def admit(
        self, ctx: RequestContext, params: GenerationParams, max_cost_usd: float = 0.0
    ) -> None:
        """Model permission (403), budget (402: the call's maximum cost is reserved), then
        per-key and per-IP limits (429)."""
        await self.admit_usage(
            ctx, params.model_id, params.request_id, estimated_tokens(params), max_cost_usd
        )

    async def admit_usage(
        self,
        ctx: RequestContext,
        model_id: str,
        request_id: str,
        tokens: int,
        max_cost_usd: float = 0.0,
    ) -> None:
        """`admit` for a call of about `tokens` tokens (an embeddings batch: its inputs)."""
        ctx.log["model"] = model_id
        ctx.require_model(model_id)
        if ctx.key is not None:
            await self.budgets.reserve(ctx, request_id, max_cost_usd)
        specs = self._limit_specs(ctx)
        if not specs or self.limiter is None:
            return
        try:
            await self._rate_limit(ctx, tokens, specs)
        except BaseException:
            await self.budgets.release(ctx, request_id)
            raise

    async def _rate_limit(self, ctx: RequestContext, tokens: int, specs: list[Any]) -> None:
        assert self.limiter is not None
        decision = await self.guarded(self.limiter.acquire(specs, tokens), "acquire")
        if decision is None:  # on_failure: open
            return
        # One set per response: a batch asks once per item, the last answer is the freshest.
        ctx.rate_limit_headers[:] = rate_limit_headers(decision, specs)
        if not decision.allowed:
            if self.metrics is not None:
                self.metrics.record_rate_limited("key" if ctx.key is not None else "ip")
            raise RateLimitError(
                "Rate limit reached for this API key or client address.",
                code="rate_limit_exceeded",
                retry_after_s=decision.retry_after_s,
            )

    def settle(self, ctx: RequestContext, request_id: str, cost_usd: float) -> None:
        """The call's real cost replaces its reservation, in the background."""
        self.budgets.settle_soon(ctx, request_id, cost_usd)

    def _limit_specs(self, ctx: RequestContext) -> list[Any]:
        limits = self.config.rate_limits
        specs = []
        if ctx.key is not None:
            rpm = ctx.key.rpm or limits.key_rpm
            tpm = ctx.key.tpm or limits.key_tpm
            if rpm or tpm:
                specs.append(LimitSpec(f"key:{ctx.key.id}", rpm, tpm))
        if (limits.ip_rpm or limits.ip_tpm) and not ctx.is_admin:
            specs.append(LimitSpec(f"ip:{ctx.client_ip}", limits.ip_rpm, limits.ip_tpm))
        return specs
