"""Exact sliding-window rate limits shared by every replica of every deployment.

`SlidingWindowLimiter` is the logic (a clock is injected for tests). `RateLimiter` is the
single-replica Ray Serve deployment that owns it, so a limit holds for a whole deployment
whatever its replica count: replicas ask it, they never count locally. It also holds the
budget reservations (`deployments.limits.budgets`).

Windows with no events are pruned (at most every `window_s / 4`), so a client rotating its
address costs memory only for one window. A restarted replica has lost its counters: it
refuses every acquisition (429 with Retry-After) until the windows its predecessor was
counting have passed, so no window's permits are handed out twice. It knows it is a restart
from a mark in Ray's GCS key-value store, written at most once a second while it serves.
"""

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from deployments.limits.budgets import BudgetCounter
from deployments.limits.leases import LeaseBook, LeaseGrant
from serve_app.contracts.budgets import BudgetDecision, BudgetHold
from serve_app.contracts.limits import WINDOW_S, Decision, LimitSpec

logger = logging.getLogger("ray.serve")
MARK_EVERY_S = 1.0


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
        self._pruned_at = clock()

    def __len__(self) -> int:
        return len(self._windows)

    def prune_idle(self, now: float) -> None:
        """Forget the windows with no event left (amortised: a full pass every window/4)."""
        if now - self._pruned_at < self.window_s / 4:
            return
        self._pruned_at = now
        cutoff = now - self.window_s
        for key in list(self._windows):
            window = self._windows[key]
            window.prune(cutoff)
            if not window.events:
                del self._windows[key]

    def acquire(self, specs: Sequence[LimitSpec], tokens: int = 0) -> Decision:
        now = self.clock()
        self.prune_idle(now)
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


class RestartMark:
    """When the previous limiter replica last served, kept in Ray's GCS key-value store."""

    def __init__(self, name: str) -> None:
        self.key = f"llm-gateway:limiter-active:{name}".encode()
        self.written_at = 0.0

    def read(self) -> float | None:
        import ray
        from ray.experimental import internal_kv

        if not ray.is_initialized():  # outside Ray (tests, a plain process): no predecessor
            return None
        value = internal_kv._internal_kv_get(self.key)
        return float(value) if value else None

    def touch(self, now: float) -> None:
        import ray

        if now - self.written_at >= MARK_EVERY_S and ray.is_initialized():
            from ray.experimental import internal_kv

            internal_kv._internal_kv_put(self.key, str(now).encode(), overwrite=True)
            self.written_at = now


class NoMark:
    """Outside a Serve replica (tests, tools) a limiter has no predecessor to wait out."""

    def read(self) -> float | None:
        return None

    def touch(self, now: float) -> None:
        return None


def restart_mark() -> RestartMark | NoMark:
    """This replica's mark, keyed by application and deployment; none outside a replica (a
    limiter built in a process that merely has Ray initialised must not share one)."""
    from ray.serve.context import _get_internal_replica_context

    context = _get_internal_replica_context()
    if context is None:
        return NoMark()
    return RestartMark(f"{context.app_name}/{context.deployment}")


class RateLimiter:
    """Ray Serve deployment (always one replica) holding the shared counters."""

    def __init__(self, window_s: float = WINDOW_S, mark: Any = None) -> None:
        self.limiter = SlidingWindowLimiter(window_s, clock=time.time)
        self.leases = LeaseBook(self.limiter)
        self.budgets = BudgetCounter()
        self.mark = mark if mark is not None else restart_mark()
        last_active = self.mark.read()
        # A predecessor served until `last_active` (+ up to MARK_EVERY_S unwritten): its
        # windows end a window later. Until then every acquisition is refused.
        self.refuse_until = last_active + MARK_EVERY_S + window_s if last_active else 0.0
        if self.refuse_until > time.time():
            logger.warning(
                "rate limiter restarted: refusing for %.1f s, until its predecessor's windows "
                "have passed",
                self.refuse_until - time.time(),
            )

    def _refusal(self, specs: Sequence[LimitSpec]) -> Decision | None:
        """While a restarted limiter waits out its predecessor's windows: a refusal."""
        now = time.time()
        self.mark.touch(now)
        if now >= self.refuse_until:
            return None
        wait = round(self.refuse_until - now, 3)
        return Decision(False, wait, 0, 0 if any(s.tpm for s in specs) else None, wait)

    async def acquire(self, specs: Sequence[LimitSpec], tokens: int = 0) -> Decision:
        # async: runs on the replica's event loop, so acquisitions never interleave.
        refused = self._refusal(specs)
        if refused is not None:
            return refused
        if self.leases.leases or self.leases.reserved:
            return self.leases.acquire(specs, tokens)  # the limits less what leases hold
        return self.limiter.acquire(specs, tokens)

    async def lease(
        self, specs: Sequence[LimitSpec], tokens: int, want: int, ttl_s: float, min_free: int
    ) -> LeaseGrant:
        """A block of permits (`deployments.limits.leases`), or one permit when too little
        of a limit is free for a lease."""
        refused = self._refusal(specs)
        if refused is not None:
            return LeaseGrant(refused)
        return self.leases.lease(specs, tokens, want, ttl_s, min_free)

    async def release(self, lease_id: str, used_requests: int, used_tokens: int) -> None:
        """Settle a lease: what was used is counted from now, the rest is freed."""
        self.leases.settle(lease_id, used_requests, used_tokens)

    async def reserve(self, hold: BudgetHold) -> BudgetDecision:
        self.budgets.prune()
        return self.budgets.reserve(hold)

    async def settle(
        self, key_id: str, period_start: float, reservation_id: str | None, cost_usd: float
    ) -> None:
        self.budgets.settle(key_id, period_start, reservation_id, cost_usd)

    async def memory(self) -> dict[str, int]:
        """Counters held, and this process's resident memory (bytes)."""
        import psutil

        return {
            "windows": len(self.limiter),
            "budget_accounts": len(self.budgets),
            "rss_bytes": psutil.Process().memory_info().rss,
        }
