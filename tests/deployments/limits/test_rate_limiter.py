"""Sliding-window limits: exact counts, all-or-nothing across counters, retry-after."""

from deployments.limits.rate_limiter import SlidingWindowLimiter
from serve_app.contracts.limits import LimitSpec


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_exactly_n_requests_pass_in_a_window_then_slots_free_up() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(60.0, clock)
    spec = [LimitSpec("k", rpm=3)]
    decisions = []
    for _ in range(4):
        decisions.append(limiter.acquire(spec))
        clock.now += 1
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert decisions[2].remaining_requests == 0
    assert decisions[3].retry_after_s == 57.0  # first slot frees 60 s after t=1000
    clock.now = 1060.0
    assert limiter.acquire(spec).allowed


def test_acquisition_is_all_or_nothing_across_counters() -> None:
    limiter = SlidingWindowLimiter(60.0, FakeClock())
    provider, model = LimitSpec("p", rpm=10), LimitSpec("m", rpm=1)
    assert limiter.acquire([provider, model]).allowed
    assert not limiter.acquire([provider, model]).allowed
    # the refused call did not consume a provider slot
    assert limiter.acquire([provider]).remaining_requests == 8


def test_tokens_per_minute() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(60.0, clock)
    spec = [LimitSpec("k", tpm=100)]
    assert limiter.acquire(spec, 60).allowed
    clock.now += 10
    refused = limiter.acquire(spec, 50)
    assert not refused.allowed and refused.retry_after_s == 50.0
    assert refused.remaining_tokens == 40
    assert limiter.acquire(spec, 40).allowed


def test_no_limits_always_pass() -> None:
    limiter = SlidingWindowLimiter()
    decision = limiter.acquire([LimitSpec("k")], 10**6)
    assert decision.allowed and decision.remaining_requests is None
