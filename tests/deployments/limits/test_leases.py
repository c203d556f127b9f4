"""Leases of rate-limit permits: exact limits (never granted twice, a lease only
under-spends), and the replica side spending locally with one hop per lease."""

import asyncio

from deployments.limits.lease_holder import LeaseHolder
from deployments.limits.leases import SETTLE_GRACE_S, LeaseBook, usage
from deployments.limits.rate_limiter import SlidingWindowLimiter
from serve_app.contracts.limits import LimitSpec
from tests.fakes.handles import FakeHandle


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def book(clock: FakeClock) -> LeaseBook:
    return LeaseBook(SlidingWindowLimiter(60.0, clock), wall_clock=clock)


def acquire_until_refused(leases: LeaseBook, specs: list[LimitSpec], tokens: int = 0) -> int:
    allowed = 0
    while leases.acquire(specs, tokens).allowed:
        allowed += 1
    return allowed


def test_a_leased_permit_is_never_granted_again_and_unused_ones_come_back() -> None:
    clock = FakeClock()
    leases = book(clock)
    specs = [LimitSpec("provider:openai", rpm=2000), LimitSpec("model:m", rpm=5000)]
    grant = leases.lease(specs, 0, 64, 1.0, 100)
    assert grant.lease_id is not None and grant.requests == 64 and grant.decision.allowed
    assert acquire_until_refused(leases, specs) == 2000 - 64
    leases.settle(grant.lease_id, 10, 0)  # 54 permits unused: back to everyone
    assert acquire_until_refused(leases, specs) == 54
    assert usage(leases.limiter, "provider:openai") == (2000, 0)
    leases.settle(grant.lease_id, 64, 0)  # a second settlement changes nothing
    assert usage(leases.limiter, "provider:openai") == (2000, 0)


def test_used_permits_count_from_settlement_never_earlier_than_their_use() -> None:
    clock = FakeClock()
    leases = book(clock)
    specs = [LimitSpec("k", rpm=4000)]
    grant = leases.lease(specs, 0, 64, 1.0, 100)
    assert grant.lease_id is not None
    clock.now += 0.9  # spent at the end of the lease
    leases.settle(grant.lease_id, 64, 0)
    clock.now += 59.6  # 60.5 s after the grant, 59.6 s after the settlement
    assert usage(leases.limiter, "k") == (64, 0)
    clock.now += 0.5
    assert usage(leases.limiter, "k") == (0, 0)


def test_an_unsettled_lease_counts_as_fully_used() -> None:
    clock = FakeClock()
    leases = book(clock)
    specs = [LimitSpec("k", rpm=4000)]
    grant = leases.lease(specs, 0, 64, 1.0, 100)
    clock.now += 1.0 + SETTLE_GRACE_S
    assert acquire_until_refused(leases, specs) == 4000 - 64
    assert grant.lease_id is not None
    leases.settle(grant.lease_id, 0, 0)  # too late: it already counted as used
    assert not leases.acquire(specs).allowed


def test_small_or_nearly_spent_limits_are_not_leased() -> None:
    clock = FakeClock()
    leases = book(clock)
    small = [LimitSpec("small", rpm=25)]
    grants = [leases.lease(small, 0, 64, 1.0, 100) for _ in range(30)]
    assert all(grant.lease_id is None for grant in grants)  # one permit each, as acquire
    assert [grant.decision.allowed for grant in grants] == [True] * 25 + [False] * 5
    large = [LimitSpec("large", rpm=1000)]
    first = leases.lease(large, 0, 1000, 1.0, 100)
    assert first.requests == 250  # at most a quarter of what is free
    assert acquire_until_refused(leases, large) == 750 - 0  # what the lease does not hold
    assert leases.lease(large, 0, 64, 1.0, 100).lease_id is None


def test_token_limits_are_leased_and_spent_by_the_token() -> None:
    clock = FakeClock()
    leases = book(clock)
    specs = [LimitSpec("k", rpm=100_000, tpm=100_000)]
    grant = leases.lease(specs, 100, 64, 1.0, 1000)
    assert grant.requests == 64 and grant.tokens == 6400
    assert grant.lease_id is not None
    leases.settle(grant.lease_id, 3, 250)
    assert usage(leases.limiter, "k") == (3, 250)


async def test_the_holder_spends_locally_and_settles_at_expiry() -> None:
    clock = FakeClock()
    leases = book(clock)
    handle = FakeHandle(lease=leases.lease, release=leases.settle, acquire=leases.acquire)
    holder = LeaseHolder(handle, size=10, ttl_s=0.05, min_free=100, wall_clock=clock)
    specs = [LimitSpec("k", rpm=10_000)]
    assert holder.leasable(specs) and not holder.leasable([LimitSpec("k", rpm=60)])
    decisions = [await holder.acquire(specs, 1) for _ in range(25)]
    assert all(decision.allowed for decision in decisions)
    assert len(handle.lease.calls) == 3  # type: ignore[attr-defined]
    await asyncio.sleep(0)  # settlements are sent in the background
    assert len(handle.release.calls) == 2  # type: ignore[attr-defined]
    await asyncio.sleep(0.1)  # the third lease expires: 5 used, 5 go back
    assert handle.release.calls[-1][1:] == (5, 5)  # type: ignore[attr-defined]
    assert usage(leases.limiter, "k") == (25, 25)
    assert leases.reserved == {} and leases.leases == {}


async def test_the_holder_stops_spending_at_the_limiters_expiry_time() -> None:
    clock = FakeClock()
    leases = book(clock)
    handle = FakeHandle(lease=leases.lease, release=leases.settle, acquire=leases.acquire)
    holder = LeaseHolder(handle, size=10, ttl_s=30.0, min_free=100, wall_clock=clock)
    specs = [LimitSpec("k", rpm=10_000)]
    await holder.acquire(specs, 0)
    clock.now += 30.0  # expired by the limiter's clock, though the local timer has not fired
    await holder.acquire(specs, 0)
    assert len(handle.lease.calls) == 2  # type: ignore[attr-defined]
    await holder.close()
    await asyncio.sleep(0)
    assert leases.leases == {} and usage(leases.limiter, "k") == (2, 0)
