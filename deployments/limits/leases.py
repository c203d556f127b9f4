"""Leases: a replica takes a block of permits from the shared limiter and spends it locally.

Without leases every provider call asks the single `RateLimiter` replica first: one actor
hop per call. With a lease, a provider-proxy replica takes up to `lease_size` permits in one
hop, spends them locally until the lease expires (`lease_ttl_s`), and then settles it: the
permits it used are counted, the rest go back. Limits stay exact:

* a leased permit is reserved in the limiter (every other acquisition sees the limit less
  the reservations), so no permit is ever granted twice;
* the used permits are counted in the sliding window from the moment the lease is settled,
  which is never earlier than their use, so a window never holds more than the limit;
* a lease whose holder does not settle it in time (a replica died, a late message) counts
  as fully used: a lease can only under-spend.

Leases are granted only while at least `lease_min_free` requests of every counter are free,
and a lease takes at most a quarter of what is free. Near the limit (and for small limits
such as the default 60 rpm) every call asks the limiter, exactly as without leases.
"""

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from serve_app.contracts.limits import Decision, LimitSpec

LEASE_SHARE = 4  # a lease takes at most this fraction (1/4) of what is free
SETTLE_GRACE_S = 2.0  # a lease not settled this long after it expired counts as fully used
ALLOWED = Decision(True, 0.0, None, None, 0.0)


@dataclass(frozen=True, slots=True)
class LeaseGrant:
    """The limiter's answer to `lease`. `lease_id` None: no lease, `decision` is the answer
    of a plain acquisition of one permit. Otherwise the holder may spend `requests` permits
    and `tokens` tokens (the asking call's included) until the wall-clock `expires_at`."""

    decision: Decision
    lease_id: str | None = None
    requests: int = 0
    tokens: int = 0
    expires_at: float = 0.0


@dataclass(slots=True)
class _Outstanding:
    specs: tuple[LimitSpec, ...]
    requests: int
    tokens: int
    settle_by: float  # the limiter's clock


class LeaseBook:
    """The limiter's side: reservations per counter and the outstanding leases. `limiter`
    is a `SlidingWindowLimiter` (its windows, clock and acquisition)."""

    def __init__(self, limiter: Any, wall_clock: Callable[[], float] = time.time) -> None:
        self.limiter = limiter
        self.wall_clock = wall_clock
        self.leases: dict[str, _Outstanding] = {}
        self.reserved: dict[str, list[int]] = {}
        self._ids = itertools.count(1)

    def acquire(self, specs: Sequence[LimitSpec], tokens: int = 0) -> Decision:
        """One permit, against the limits less what leases hold."""
        self.expire()
        adjusted = self._adjusted(specs)
        if adjusted is None:
            wait = min(o.settle_by for o in self.leases.values()) - self.limiter.clock()
            return Decision(False, round(max(wait, 0.0), 3), 0, None, round(max(wait, 0.0), 3))
        decision: Decision = self.limiter.acquire(adjusted, tokens)
        return decision

    def lease(
        self,
        specs: Sequence[LimitSpec],
        tokens: int,
        want: int,
        ttl_s: float,
        min_free: int,
    ) -> LeaseGrant:
        self.expire()
        count = self._leasable(specs, tokens, want, min_free)
        if count < 2:
            return LeaseGrant(self.acquire(specs, tokens))
        for spec in specs:
            reserved = self.reserved.setdefault(spec.key, [0, 0])
            reserved[0] += count
            reserved[1] += count * tokens
        lease_id = f"lease-{next(self._ids)}"
        settle_by = self.limiter.clock() + ttl_s + SETTLE_GRACE_S
        self.leases[lease_id] = _Outstanding(tuple(specs), count, count * tokens, settle_by)
        expires_at = self.wall_clock() + ttl_s
        return LeaseGrant(ALLOWED, lease_id, count, count * tokens, expires_at)

    def settle(self, lease_id: str, used_requests: int, used_tokens: int) -> None:
        """The holder is done: its used permits are counted from now, the rest freed. A
        lease already settled (expired) is ignored: it was counted as fully used."""
        outstanding = self.leases.pop(lease_id, None)
        if outstanding is None:
            return
        for spec in outstanding.specs:
            reserved = self.reserved[spec.key]
            reserved[0] -= outstanding.requests
            reserved[1] -= outstanding.tokens
            if reserved == [0, 0]:
                del self.reserved[spec.key]
        requests = min(max(used_requests, 0), outstanding.requests)
        tokens = min(max(used_tokens, 0), outstanding.tokens)
        record(self.limiter, outstanding.specs, requests, tokens)

    def expire(self) -> None:
        """Leases past their settle-by time count as fully used."""
        if not self.leases:
            return
        now = self.limiter.clock()
        for lease_id, outstanding in list(self.leases.items()):
            if outstanding.settle_by <= now:
                self.settle(lease_id, outstanding.requests, outstanding.tokens)

    def _adjusted(self, specs: Sequence[LimitSpec]) -> list[LimitSpec] | None:
        """The specs less the reservations; None when a counter is wholly leased out."""
        adjusted = []
        for spec in specs:
            reserved = self.reserved.get(spec.key)
            if reserved is None:
                adjusted.append(spec)
                continue
            rpm = None if spec.rpm is None else spec.rpm - reserved[0]
            tpm = None if spec.tpm is None else spec.tpm - reserved[1]
            if (rpm is not None and rpm < 1) or (tpm is not None and tpm < 1):
                return None
            adjusted.append(LimitSpec(spec.key, rpm, tpm))
        return adjusted

    def _leasable(self, specs: Sequence[LimitSpec], tokens: int, want: int, min_free: int) -> int:
        count = want
        for spec in specs:
            used_requests, used_tokens = usage(self.limiter, spec.key)
            reserved = self.reserved.get(spec.key, [0, 0])
            if spec.rpm is not None:
                free = spec.rpm - used_requests - reserved[0]
                if free < min_free:
                    return 0
                count = min(count, free // LEASE_SHARE)
            if spec.tpm is not None:
                free_tokens = spec.tpm - used_tokens - reserved[1]
                if free_tokens < min_free:
                    return 0
                count = min(count, free_tokens // LEASE_SHARE // max(tokens, 1))
        return count


def usage(limiter: Any, key: str) -> tuple[int, int]:
    """(requests, tokens) counted in `key`'s sliding window now."""
    window = limiter._window(key, limiter.clock())
    return len(window.events), int(window.tokens)


def record(limiter: Any, specs: Sequence[LimitSpec], requests: int, tokens: int) -> None:
    """`requests` calls holding `tokens` in all, counted now on every counter of `specs`."""
    if requests <= 0:
        return
    now = limiter.clock()
    for spec in specs:
        window = limiter._window(spec.key, now)
        window.events.append((now, tokens))
        window.events.extend((now, 0) for _ in range(requests - 1))
        window.tokens += tokens
