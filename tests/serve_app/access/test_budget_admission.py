"""Admission with a limiter store: budget reservations (64 concurrent calls, $0.01), the
limiter's deadline and `on_failure`, and one set of rate-limit headers per response."""

import asyncio
from typing import Any

import pytest

from deployments.limits.rate_limiter import RateLimiter
from serve_app.access.admission import Admission
from serve_app.access.auth import RequestContext
from serve_app.access.key_cache import KeyCache
from serve_app.access.key_store import KeySpec, open_key_store
from serve_app.contracts.config import GatewayConfig
from serve_app.contracts.errors import BudgetExceededError, ServiceUnavailableError
from serve_app.contracts.wire import GenerationParams


class Mark:
    def read(self) -> None:
        return None

    def touch(self, now: float) -> None:
        return None


class Store:
    """The RateLimiter deployment's code, called in-process, optionally slow or dead."""

    def __init__(self, delay_s: float = 0.0, dead: bool = False) -> None:
        self.limiter = RateLimiter(mark=Mark())
        self.delay_s = delay_s
        self.dead = dead

    async def _maybe_fail(self) -> None:
        await asyncio.sleep(self.delay_s)
        if self.dead:
            raise ConnectionError("limiter replica died")

    async def acquire(self, specs: Any, tokens: int = 0) -> Any:
        await self._maybe_fail()
        return await self.limiter.acquire(specs, tokens)

    async def reserve(self, hold: Any) -> Any:
        await self._maybe_fail()
        return await self.limiter.reserve(hold)

    async def settle(self, *args: Any) -> None:
        await self._maybe_fail()
        await self.limiter.settle(*args)


class Metrics:
    def __init__(self) -> None:
        self.failures: list[str] = []

    def record_limiter_failure(self, on_failure: str) -> None:
        self.failures.append(on_failure)

    def record_rate_limited(self, scope: str) -> None:
        return None


def params(request_id: str) -> GenerationParams:
    return GenerationParams(request_id=request_id, model_id="gpt", prompt="hi", max_tokens=10)


def admission(store: Store, **rate_limits: Any) -> tuple[Admission, Any, Metrics]:
    config = GatewayConfig.model_validate({"rate_limits": rate_limits})
    keys = KeyCache(open_key_store("sqlite://:memory:"), ttl_s=5)
    metrics = Metrics()
    return Admission(config, keys, store, environ={}, metrics=metrics), keys, metrics


async def test_64_concurrent_calls_never_overrun_a_one_cent_budget() -> None:
    gate, keys, _ = admission(Store(delay_s=0.001), timeout_ms=10_000)  # no deadline at play
    key, _ = await keys.create(KeySpec("tight", budget_usd=0.01))
    max_cost, real_cost = 0.0015, 0.0012

    async def call(index: int) -> str:
        ctx = RequestContext(f"req-{index}", "10.0.0.1", key=key)
        try:
            await gate.admit(ctx, params(f"req-{index}"), max_cost)
        except BudgetExceededError:
            return "refused"
        await asyncio.sleep(0.01)  # the upstream call
        await gate.budgets.settle(ctx, f"req-{index}", real_cost)
        return "ok"

    outcomes: list[str] = []
    for _ in range(3):  # three waves: later waves see the settled spend
        outcomes += await asyncio.gather(*(call(i) for i in range(64)))
    served = outcomes.count("ok")
    assert served * real_cost <= 0.01 + max_cost
    assert served == 8  # $0.0096 spent: the ninth call's $0.0015 maximum no longer fits
    assert outcomes.count("refused") == 3 * 64 - served


async def test_a_slow_or_dead_limiter_answers_503_when_closed() -> None:
    for store in (Store(delay_s=0.2), Store(dead=True)):
        gate, keys, metrics = admission(store, timeout_ms=50, key_rpm=10)
        key, _ = await keys.create(KeySpec("k", budget_usd=1.0))
        ctx = RequestContext("r1", "10.0.0.1", key=key)
        with pytest.raises(ServiceUnavailableError) as error:
            await gate.admit(ctx, params("r1"), 0.001)
        assert error.value.code == "rate_limiter_unavailable"
        assert error.value.retry_after_s == 1.0 and metrics.failures == ["closed"]


async def test_a_dead_limiter_lets_calls_through_when_open() -> None:
    gate, keys, metrics = admission(Store(dead=True), on_failure="open", key_rpm=10)
    key, _ = await keys.create(KeySpec("k", budget_usd=1.0))
    ctx = RequestContext("r1", "10.0.0.1", key=key)
    await gate.admit(ctx, params("r1"), 0.001)
    assert metrics.failures == ["open", "open"]  # the reservation, then the rate limit
    spent, _ = await keys.create(KeySpec("spent", budget_usd=0.0))
    with pytest.raises(BudgetExceededError):  # open: the budget is checked on the ledger
        await gate.admit(RequestContext("r2", "10.0.0.1", key=spent), params("r2"), 0.0)


async def test_one_set_of_rate_limit_headers_per_response() -> None:
    gate, keys, _ = admission(Store(), key_rpm=10)
    key, _ = await keys.create(KeySpec("k"))
    ctx = RequestContext("batch", "10.0.0.1", key=key)
    for index in range(4):  # the items of one /generate/batch
        await gate.admit(ctx, params(f"batch-{index}"))
    names = [name for name, _ in ctx.rate_limit_headers]
    assert names.count(b"x-ratelimit-remaining-requests") == 1
    assert dict(ctx.rate_limit_headers)[b"x-ratelimit-remaining-requests"] == b"6"
