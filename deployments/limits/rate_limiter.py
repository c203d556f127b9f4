"""Exact sliding-window rate limits shared by every replica of every deployment.

`SlidingWindowLimiter` is the logic (a clock is injected for tests). `RateLimiter` is the
single-replica Ray Serve deployment that owns it, so a limit holds for a whole deployment
whatever its replica count: replicas ask it, they never count locally.
"""

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from deployments.limits.leases import LeaseBook, LeaseGrant
from serve_app.contracts.limits import WINDOW_S, Decision, LimitSpec


@dataclass(slots=True)
class _Window:
    events: deque[tuple[float, int]] = field(default_factory=deque)
    tokens: int = 0

    def prune(self, cutoff: float) -> None:
        while self.events and self.events[0][0] <= cutoff:
            self.tokens -= self.events.popleft()[1]

    def wait_for_requests(self, spec: LimitSpec, window_s: float, now: float) -> float:
        if spec.rpm is None or len(self.events) < spec.rpm:
            return 0.0
        return self.events[len(self.events) - spec.rpm][0] + window_s - now

    def wait_for_tokens(self, spec: LimitSpec, tokens: int, window_s: float, now: float) -> float:
        if spec.tpm is None or self.tokens + tokens <= spec.tpm or not self.events:
            return 0.0
        freed = self.tokens
        for stamp, used in self.events:
            freed -= used
            if freed + tokens <= spec.tpm:
                return stamp + window_s - now
        return window_s


class SlidingWindowLimiter:
    """All-or-nothing acquisition across several counters (e.g. provider and model)."""

    def __init__(self, window_s: float = WINDOW_S, clock: Callable[[], float] = time.monotonic):
        self.window_s = window_s
        self.clock = clock
        self._windows: dict[str, _Window] = {}

    def acquire(self, specs: Sequence[LimitSpec], tokens: int = 0) -> Decision:
        now = self.clock()
        windows = [self._window(spec.key, now) for spec in specs]
        wait = max(
            [0.0]
            + [w.wait_for_requests(s, self.window_s, now) for s, w in zip(specs, windows)]
            + [w.wait_for_tokens(s, tokens, self.window_s, now) for s, w in zip(specs, windows)]
        )
        allowed = wait <= 0
        if allowed:
            for window in windows:
                window.events.append((now, tokens))
                window.tokens += tokens
        return self._decision(specs, windows, allowed, max(wait, 0.0), now)

    def _window(self, key: str, now: float) -> _Window:
        window = self._windows.setdefault(key, _Window())
        window.prune(now - self.window_s)
        return window

    def _decision(
        self,
        specs: Sequence[LimitSpec],
        windows: Sequence[_Window],
        allowed: bool,
        wait: float,
        now: float,
    ) -> Decision:
        remaining_requests = [s.rpm - len(w.events) for s, w in zip(specs, windows) if s.rpm]
        remaining_tokens = [s.tpm - w.tokens for s, w in zip(specs, windows) if s.tpm]
        oldest = [w.events[0][0] for w in windows if w.events]
        reset = (min(oldest) + self.window_s - now) if oldest else 0.0
        return Decision(
            allowed=allowed,
            retry_after_s=round(wait, 3),
            remaining_requests=max(0, min(remaining_requests)) if remaining_requests else None,
            remaining_tokens=max(0, min(remaining_tokens)) if remaining_tokens else None,
            reset_s=round(max(reset, 0.0), 3),
        )


class RateLimiter:
    """Ray Serve deployment (always one replica) holding the shared counters."""

    def __init__(self, window_s: float = WINDOW_S) -> None:
        self.limiter = SlidingWindowLimiter(window_s)
        self.leases = LeaseBook(self.limiter)

    async def acquire(self, specs: Sequence[LimitSpec], tokens: int = 0) -> Decision:
        # async: runs on the replica's event loop, so acquisitions never interleave.
        if self.leases.leases or self.leases.reserved:
            return self.leases.acquire(specs, tokens)  # the limits less what leases hold
        return self.limiter.acquire(specs, tokens)

    async def lease(
        self, specs: Sequence[LimitSpec], tokens: int, want: int, ttl_s: float, min_free: int
    ) -> LeaseGrant:
        """A block of permits (`deployments.limits.leases`), or one permit when too little
        of a limit is free for a lease."""
        return self.leases.lease(specs, tokens, want, ttl_s, min_free)

    async def release(self, lease_id: str, used_requests: int, used_tokens: int) -> None:
        """Settle a lease: what was used is counted from now, the rest is freed."""
        self.leases.settle(lease_id, used_requests, used_tokens)
