"""Budget reservations in the limiter (in memory and in Redis), the limiter's restart
refusal and its pruning of idle windows (200k client addresses)."""

import asyncio
import gc
import uuid
from collections.abc import Iterator

import psutil
import pytest

from deployments.limits.budgets import BudgetCounter
from deployments.limits.rate_limiter import RateLimiter, SlidingWindowLimiter
from deployments.limits.redis_limiter import RedisSlidingWindowLimiter
from serve_app.contracts.budgets import BudgetHold
from serve_app.contracts.limits import LimitSpec
from tests.fakes.redis_server import redis_server


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def hold(amount: float, budget: float = 0.01, floor: float = 0.0) -> BudgetHold:
    return BudgetHold("key_a", 0.0, budget, amount, floor, ttl_s=3600)


def test_reservations_never_let_spend_past_the_budget() -> None:
    counter = BudgetCounter(Clock())
    allowed = [counter.reserve(hold(0.003)) for _ in range(64)]
    granted = [d for d in allowed if d.allowed]
    assert len(granted) == 3  # 3 x 0.003 <= 0.01 < 4 x 0.003
    assert not allowed[3].allowed and allowed[3].reserved_usd == pytest.approx(0.009)
    for decision in granted:  # each call cost less than its maximum
        counter.settle("key_a", 0.0, decision.reservation_id, 0.001)
    more = [counter.reserve(hold(0.003)) for _ in range(64)]
    assert sum(d.allowed for d in more) == 2  # 0.003 spent + 2 x 0.003 <= 0.01
    for decision in more:
        if decision.allowed:
            counter.settle("key_a", 0.0, decision.reservation_id, 0.003)
    assert counter.reserve(hold(0.0)).allowed is True  # $0.009 < $0.01: a free call fits
    counter.settle("key_a", 0.0, None, 0.002)  # a fallback's cost, not reserved
    assert counter.reserve(hold(0.0)).allowed is False  # spent >= budget: nothing more


def test_the_ledger_floor_and_expired_reservations() -> None:
    clock = Clock()
    counter = BudgetCounter(clock)
    assert not counter.reserve(hold(0.001, floor=0.0095)).allowed  # the database knows more
    first = counter.reserve(hold(0.0004, floor=0.0095))
    assert first.allowed and first.spent_usd == pytest.approx(0.0095)
    clock.now += 601  # its ingress died: the reservation is dropped after its ttl
    assert counter.reserve(hold(0.0004, floor=0.0)).allowed


def test_budget_accounts_of_past_periods_are_pruned() -> None:
    clock = Clock()
    counter = BudgetCounter(clock)
    for index in range(1000):
        counter.reserve(BudgetHold(f"k{index}", 0.0, 1.0, 0.1, 0.0, ttl_s=60))
    assert len(counter) == 1000
    clock.now += 700
    assert counter.prune() == 1000 and len(counter) == 0


class FakeMark:
    def __init__(self, last: float | None) -> None:
        self.last = last

    def read(self) -> float | None:
        return self.last

    def touch(self, now: float) -> None:
        self.last = now


async def test_a_restarted_limiter_refuses_until_its_predecessors_windows_pass() -> None:
    import time

    spec = [LimitSpec("provider:openai", rpm=60)]
    fresh = RateLimiter(window_s=60, mark=FakeMark(None))
    assert (await fresh.acquire(spec)).allowed
    restarted = RateLimiter(window_s=60, mark=FakeMark(time.time() - 10))
    decision = await restarted.acquire(spec)
    assert not decision.allowed and 40 < decision.retry_after_s <= 51
    long_gone = RateLimiter(window_s=60, mark=FakeMark(time.time() - 120))
    assert (await long_gone.acquire(spec)).allowed


IPS = 200_000
RSS_BOUND_BYTES = 64 * 1024 * 1024


def test_200k_client_addresses_leave_a_bounded_limiter() -> None:
    """200k distinct IPv6 clients over 10 minutes: windows without events are pruned, so
    the limiter holds about one window's worth (1/10 of them), and its heap and RSS stay
    within the bounds above."""
    clock = Clock()
    limiter = SlidingWindowLimiter(60.0, clock=clock)
    gc.collect()
    rss_before = psutil.Process().memory_info().rss
    for index in range(IPS):
        clock.now += 600 / IPS
        limiter.acquire([LimitSpec(f"ip:2001:db8::{index:x}", rpm=10)], 1)
    rss_growth = psutil.Process().memory_info().rss - rss_before
    print(f"\n200k IPs: {len(limiter)} windows kept, RSS +{rss_growth / 2**20:.1f} MiB")
    assert len(limiter) <= IPS * 75 / 600  # one window plus the pruning period
    assert rss_growth < RSS_BOUND_BYTES


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis-budgets")) as url:
        yield url


async def test_redis_reservations_hold_across_two_replicas(redis_url: str) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    replicas = [RedisSlidingWindowLimiter(redis_url, prefix=prefix) for _ in range(2)]
    try:
        decisions = await asyncio.gather(*(replicas[i % 2].reserve(hold(0.003)) for i in range(64)))
        granted = [d for d in decisions if d.allowed]
        assert len(granted) == 3
        for decision in granted:
            await replicas[0].settle("key_a", 0.0, decision.reservation_id, 0.001)
        again = await asyncio.gather(*(replicas[1].reserve(hold(0.003)) for _ in range(8)))
        assert sum(d.allowed for d in again) == 2
        floor = await replicas[0].reserve(BudgetHold("key_b", 0.0, 1.0, 0.1, 0.95, 60))
        assert not floor.allowed and floor.spent_usd == pytest.approx(0.95)
    finally:
        for replica in replicas:
            await replica.close()
