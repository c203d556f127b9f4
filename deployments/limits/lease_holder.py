"""The replica's side of a lease (see `deployments.limits.leases`): spend permits locally,
renew in one hop when they run out or expire, settle what was used at expiry."""

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from deployments.limits.leases import ALLOWED, LeaseGrant
from serve_app.contracts.limits import Decision, LimitSpec

logger = logging.getLogger("ray.serve")


@dataclass(slots=True)
class _Held:
    lease_id: str
    requests_left: int
    tokens_left: int
    expires_at: float  # wall clock, as the limiter set it
    used_requests: int = 0
    used_tokens: int = 0

    def spend(self, tokens: int, now: float) -> bool:
        if now >= self.expires_at or self.requests_left < 1 or self.tokens_left < tokens:
            return False
        self.requests_left -= 1
        self.tokens_left -= tokens
        self.used_requests += 1
        self.used_tokens += tokens
        return True


class LeaseHolder:
    """Leases per set of counters, taken from `limiter` (a `RateLimiter` handle)."""

    def __init__(
        self,
        limiter: Any,
        size: int,
        ttl_s: float,
        min_free: int,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.limiter = limiter
        self.size = size
        self.ttl_s = ttl_s
        self.min_free = min_free
        self.wall_clock = wall_clock
        self.held: dict[tuple[str, ...], _Held] = {}
        self.locks: dict[tuple[str, ...], asyncio.Lock] = {}
        self.settling: set[asyncio.Task[None]] = set()

    def leasable(self, specs: Sequence[LimitSpec]) -> bool:
        """Worth leasing at all: only limits far larger than a lease are leased."""
        return self.size > 1 and all(
            (spec.rpm is None or spec.rpm >= self.min_free)
            and (spec.tpm is None or spec.tpm >= self.min_free)
            for spec in specs
        )

    async def acquire(self, specs: Sequence[LimitSpec], tokens: int) -> Decision:
        key = tuple(spec.key for spec in specs)
        held = self.held.get(key)
        if held is not None and held.spend(tokens, self.wall_clock()):
            return ALLOWED
        lock = self.locks.setdefault(key, asyncio.Lock())
        async with lock:  # one renewal per counter set; the others wait and spend from it
            held = self.held.get(key)
            if held is not None and held.spend(tokens, self.wall_clock()):
                return ALLOWED
            settle = self.held.pop(key, None)
            if settle is not None:
                self._settle(settle)
            grant: LeaseGrant = await self.limiter.lease.remote(
                list(specs), tokens, self.size, self.ttl_s, self.min_free
            )
            if grant.lease_id is None:
                return grant.decision
            self.held[key] = _Held(
                grant.lease_id,
                grant.requests - 1,
                grant.tokens - tokens,
                grant.expires_at,
                used_requests=1,
                used_tokens=tokens,
            )
            asyncio.get_running_loop().call_later(self.ttl_s, self._expire, key, grant.lease_id)
            return grant.decision

    def _expire(self, key: tuple[str, ...], lease_id: str) -> None:
        held = self.held.get(key)
        if held is not None and held.lease_id == lease_id:
            del self.held[key]
            self._settle(held)

    def _settle(self, held: _Held) -> None:
        """Tell the limiter what was used (in the background: nobody waits on it)."""
        task = asyncio.get_running_loop().create_task(self._send_settlement(held))
        self.settling.add(task)
        task.add_done_callback(self.settling.discard)

    async def _send_settlement(self, held: _Held) -> None:
        try:
            await self.limiter.release.remote(held.lease_id, held.used_requests, held.used_tokens)
        except Exception as exc:  # the limiter counts an unsettled lease as fully used
            logger.warning("lease %s not settled: %r", held.lease_id, exc)

    async def close(self) -> None:
        """Settle every lease held (a clean stop): unused permits go back at once."""
        for key in list(self.held):
            self._settle(self.held.pop(key))
        with contextlib.suppress(Exception):
            await asyncio.gather(*self.settling)
