"""The Redis limiter against a real `redis-server`: shared exact counts, same semantics."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis as AsyncRedis

from deployments.limits.rate_limiter import SlidingWindowLimiter
from deployments.limits.redis_limiter import RedisSlidingWindowLimiter
from serve_app.contracts.limits import Decision, LimitSpec
from tests.fakes.redis_server import redis_server


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One throwaway redis-server (no persistence) on a free loopback port per module."""
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
def prefix() -> str:
    """A fresh key namespace per test, so tests never see each other's counters."""
    return f"test:{uuid.uuid4().hex}:"


@pytest.fixture
async def limiters(redis_url: str, prefix: str) -> AsyncIterator[list[RedisSlidingWindowLimiter]]:
    """Two limiters with their own connections: two ingress replicas sharing one Redis."""
    pair = [RedisSlidingWindowLimiter(redis_url, 60.0, prefix) for _ in range(2)]
    yield pair
    for limiter in pair:
        await limiter.close()


async def test_concurrent_acquisitions_from_two_replicas_let_exactly_n_through(
    limiters: list[RedisSlidingWindowLimiter],
) -> None:
    n = 25
    spec = [LimitSpec("shared", rpm=n)]
    calls = [limiters[i % 2].acquire(spec) for i in range(n + 1)]
    decisions = await asyncio.gather(*calls)
    assert sum(d.allowed for d in decisions) == n
    refused = [d for d in decisions if not d.allowed]
    assert len(refused) == 1 and refused[0].remaining_requests == 0
    assert 0 < refused[0].retry_after_s <= 60.0
    # further attempts from either replica are refused too: the state is shared
    assert not (await limiters[1].acquire(spec)).allowed
    assert not (await limiters[0].acquire(spec)).allowed


async def test_more_concurrent_calls_than_pooled_connections_wait_for_a_connection(
    redis_url: str, prefix: str
) -> None:
    limiter = RedisSlidingWindowLimiter(redis_url, 60.0, prefix, max_connections=3)
    try:
        spec = [LimitSpec("k", rpm=100, tpm=1000)]
        decisions = await asyncio.gather(*(limiter.acquire(spec, 30) for _ in range(60)))
        assert sum(d.allowed for d in decisions) == 33  # 33 * 30 <= 1000 < 34 * 30
    finally:
        await limiter.close()


async def test_tokens_per_minute(limiters: list[RedisSlidingWindowLimiter]) -> None:
    first, second = limiters
    spec = [LimitSpec("k", tpm=100)]
    assert (await first.acquire(spec, 60)).allowed
    refused = await second.acquire(spec, 50)
    assert not refused.allowed and refused.remaining_tokens == 40
    assert 59.0 < refused.retry_after_s <= 60.0  # the 60-token event must leave the window
    allowed = await second.acquire(spec, 40)
    assert allowed.allowed and allowed.remaining_tokens == 0
    assert not (await first.acquire(spec, 1)).allowed
    assert (await first.acquire(spec, 0)).allowed


async def test_acquisition_is_all_or_nothing_across_counters(
    limiters: list[RedisSlidingWindowLimiter],
) -> None:
    limiter = limiters[0]
    provider, model = LimitSpec("p", rpm=10), LimitSpec("m", rpm=1)
    assert (await limiter.acquire([provider, model])).allowed
    assert not (await limiter.acquire([provider, model])).allowed
    # the refused call did not consume a provider slot
    assert (await limiter.acquire([provider])).remaining_requests == 8


async def test_retry_after_is_positive_bounded_and_honest(redis_url: str, prefix: str) -> None:
    window = 0.6
    limiter = RedisSlidingWindowLimiter(redis_url, window, prefix)
    try:
        spec = [LimitSpec("k", rpm=2)]
        assert (await limiter.acquire(spec)).allowed
        await asyncio.sleep(0.2)
        assert (await limiter.acquire(spec)).allowed
        refused = await limiter.acquire(spec)
        assert not refused.allowed
        assert 0 < refused.retry_after_s <= window
        assert refused.retry_after_s < window - 0.1  # the oldest event is ~0.2 s old
        await asyncio.sleep(refused.retry_after_s + 0.02)
        assert (await limiter.acquire(spec)).allowed
    finally:
        await limiter.close()


async def test_keys_expire_shortly_after_the_window(redis_url: str, prefix: str) -> None:
    limiter = RedisSlidingWindowLimiter(redis_url, 2.0, prefix)
    client = AsyncRedis.from_url(redis_url)
    try:
        assert (await limiter.acquire([LimitSpec("k", rpm=5, tpm=50)], 7)).allowed
        events, token_sum = limiter.keys("k")
        for key in (events, token_sum):
            assert 2000 < await client.pttl(key) <= 3000
        assert int(await client.get(token_sum) or 0) == 7
    finally:
        await client.aclose()
        await limiter.close()


async def test_script_is_reloaded_after_script_flush(
    redis_url: str, limiters: list[RedisSlidingWindowLimiter]
) -> None:
    client = AsyncRedis.from_url(redis_url)
    try:
        assert (await limiters[0].acquire([LimitSpec("k", rpm=2)])).allowed
        await client.script_flush()  # the next EVALSHA answers NOSCRIPT
        assert (await limiters[1].acquire([LimitSpec("k", rpm=2)])).remaining_requests == 0
    finally:
        await client.aclose()


async def test_no_limits_always_pass(limiters: list[RedisSlidingWindowLimiter]) -> None:
    decision = await limiters[0].acquire([LimitSpec("k")], 10**6)
    assert decision.allowed and decision.remaining_requests is None
    assert decision.remaining_tokens is None
    assert (await limiters[0].acquire([])).allowed


# (pause before the step in s, specs, tokens); window 1 s, pauses clear of every boundary.
SCRIPT: list[tuple[float, list[LimitSpec], int]] = [
    (0.0, [LimitSpec("p", rpm=3, tpm=100), LimitSpec("m", rpm=2)], 30),
    (0.0, [LimitSpec("p", rpm=3, tpm=100), LimitSpec("m", rpm=2)], 30),
    (0.0, [LimitSpec("p", rpm=3, tpm=100), LimitSpec("m", rpm=2)], 10),  # m full
    (0.0, [LimitSpec("p", rpm=3, tpm=100)], 50),  # tpm: 60 + 50 > 100
    (0.0, [LimitSpec("p", rpm=3, tpm=100)], 40),
    (0.0, [LimitSpec("p", rpm=3, tpm=100)], 0),  # rpm full
    (0.0, [LimitSpec("q", tpm=20), LimitSpec("q", rpm=5)], 15),  # same key twice
    (0.0, [LimitSpec("q", tpm=20)], 10),
    (0.35, [LimitSpec("m", rpm=2)], 0),
    (0.0, [LimitSpec("p", tpm=100)], 5),
    (0.8, [LimitSpec("p", rpm=3, tpm=100), LimitSpec("m", rpm=2)], 80),  # first events left
    (0.0, [LimitSpec("m", rpm=2)], 0),
    (0.0, [LimitSpec("q", tpm=20)], 10),
]


def _comparable(decision: Decision) -> tuple[bool, int | None, int | None]:
    return decision.allowed, decision.remaining_requests, decision.remaining_tokens


async def test_same_decisions_as_the_in_memory_limiter(redis_url: str, prefix: str) -> None:
    window = 1.0
    local = SlidingWindowLimiter(window)
    shared = RedisSlidingWindowLimiter(redis_url, window, prefix)
    try:
        for pause, specs, tokens in SCRIPT:
            await asyncio.sleep(pause)
            expected, actual = local.acquire(specs, tokens), await shared.acquire(specs, tokens)
            assert _comparable(actual) == _comparable(expected), (specs, tokens)
            assert actual.retry_after_s == pytest.approx(expected.retry_after_s, abs=0.05)
            assert actual.reset_s == pytest.approx(expected.reset_s, abs=0.05)
    finally:
        await shared.close()
