"""Budgets that can't be overrun: each call reserves its maximum cost before it runs.

The reservation goes to the same store as the rate limits (the `RateLimiter` deployment or
Redis), atomically for the whole cluster, and is settled to the real cost when the call is
accounted. The store never counts less than the ledger's running spend for the key's period
(`floor_usd`), so a restarted store starts from what the database knows.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from serve_app.access.auth import RequestContext
from serve_app.access.key_cache import KeyCache
from serve_app.contracts.budgets import BudgetHold, period_bounds, period_start
from serve_app.contracts.config import GatewayConfig
from serve_app.contracts.errors import BudgetExceededError

logger = logging.getLogger("llm_gateway")
TOTAL_TTL_S = 86_400.0  # an idle `total` counter is rebuilt from the ledger after a day
TTL_MARGIN_S = 60.0
Guarded = Callable[[Awaitable[Any], str], Awaitable[Any]]


class BudgetGuard:
    def __init__(
        self, config: GatewayConfig, keys: KeyCache | None, limiter: Any, guarded: Guarded
    ) -> None:
        self.config = config
        self.keys = keys
        self.limiter = limiter
        self.guarded = guarded
        self._settling: set[asyncio.Task[None]] = set()

    async def reserve(self, ctx: RequestContext, request_id: str, amount_usd: float) -> None:
        """Hold `amount_usd` against the key's budget (402 budget_exceeded when it does not
        fit). Without a limiter store (or with it down and on_failure: open) the budget is
        checked against the ledger's spend instead."""
        key = ctx.key
        if key is None or key.budget_usd is None or self.keys is None:
            return
        if self.limiter is None:
            await self.keys.check_budget(key)
            return
        now = time.time()
        start, end = period_bounds(key.budget_period, now)
        ttl = (end - now if end is not None else TOTAL_TTL_S) + TTL_MARGIN_S
        floor = await self.keys.spent(key.id)
        hold = BudgetHold(key.id, start, key.budget_usd, max(amount_usd, 0.0), floor, ttl)
        decision = await self.guarded(self.limiter.reserve(hold), "reserve")
        if decision is None:  # the store is down and on_failure is open
            await self.keys.check_budget(key)
            return
        if not decision.allowed:
            raise BudgetExceededError(
                f"API key {key.id} has spent ${decision.spent_usd:.4f} of its "
                f"${key.budget_usd:.2f} {key.budget_period} budget "
                f"(${decision.reserved_usd:.4f} held by calls in flight; this call may cost "
                f"up to ${amount_usd:.4f}).",
                code="budget_exceeded",
            )
        ctx.reservations[request_id] = (start, decision.reservation_id)

    def settle_soon(self, ctx: RequestContext, request_id: str, cost_usd: float) -> None:
        """`settle` from synchronous code (the gateway's accounting), in the background."""
        if ctx.key is None or ctx.key.budget_usd is None or self.limiter is None:
            return
        task = asyncio.get_running_loop().create_task(self.settle(ctx, request_id, cost_usd))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def settle(self, ctx: RequestContext, request_id: str, cost_usd: float) -> None:
        """The real cost replaces the reservation; a call with none (a fallback after the
        first attempt) adds its cost. A store failure is logged: the ledger has the cost,
        and the store's floor catches up from it."""
        key = ctx.key
        if key is None or key.budget_usd is None or self.limiter is None:
            return
        start, reservation = ctx.reservations.pop(
            request_id, (period_start(key.budget_period, time.time()), None)
        )
        if reservation is None and cost_usd <= 0:
            return
        timeout_s = self.config.rate_limits.timeout_ms / 1000 * 4
        try:
            await asyncio.wait_for(
                self.limiter.settle(key.id, start, reservation, cost_usd), timeout_s
            )
        except Exception as exc:  # the reservation expires in the store; the ledger counts
            logger.warning("budget settlement for %s failed: %r", key.id, exc)

    async def release(self, ctx: RequestContext, request_id: str) -> None:
        """Give a reservation back unused (the call was refused before it ran)."""
        if request_id in ctx.reservations:
            await self.settle(ctx, request_id, 0.0)
