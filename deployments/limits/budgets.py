"""Budget reservations kept beside the rate-limit counters (the `RateLimiter` deployment).

Before a call the ingress reserves its maximum cost; the reservation is allowed only when the
key's settled spend, plus every reservation still held, plus this one, stays within the
budget. After the call the ingress settles it to the real cost. So a key never spends more
than its budget plus what calls in flight were allowed to reserve, whatever the number of
ingress replicas. A reservation whose ingress died is dropped after its `ttl_s`.
"""

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from serve_app.contracts.budgets import BudgetDecision, BudgetHold

RESERVATION_TTL_S = 600.0  # a reservation never settled (its ingress died) is dropped after


@dataclass(slots=True)
class _Account:
    spent: float = 0.0
    reservations: dict[str, tuple[float, float]] = field(default_factory=dict)  # id -> (usd, exp)
    expires_at: float = 0.0

    def reserved(self, now: float) -> float:
        for rid in [rid for rid, (_, exp) in self.reservations.items() if exp <= now]:
            del self.reservations[rid]
        return sum(usd for usd, _ in self.reservations.values())


class BudgetCounter:
    """Spend and reservations per (key, period start); counters of past periods are pruned."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._accounts: dict[tuple[str, float], _Account] = {}
        self._ids = itertools.count(1)
        self._pruned_at = clock()

    def _account(self, key_id: str, period_start: float, ttl_s: float, now: float) -> _Account:
        account = self._accounts.setdefault((key_id, period_start), _Account())
        account.expires_at = max(account.expires_at, now + ttl_s)
        return account

    def reserve(
        self, hold: BudgetHold, reservation_ttl_s: float = RESERVATION_TTL_S
    ) -> BudgetDecision:
        now = self.clock()
        account = self._account(hold.key_id, hold.period_start, hold.ttl_s, now)
        account.spent = max(account.spent, hold.floor_usd)
        reserved = account.reserved(now)
        total = account.spent + reserved + hold.amount_usd
        if account.spent >= hold.budget_usd or total > hold.budget_usd + 1e-12:
            return BudgetDecision(False, account.spent, reserved)
        rid = f"r{next(self._ids)}"
        account.reservations[rid] = (hold.amount_usd, now + reservation_ttl_s)
        return BudgetDecision(True, account.spent, reserved + hold.amount_usd, rid)

    def settle(
        self, key_id: str, period_start: float, reservation_id: str | None, cost_usd: float
    ) -> None:
        """Replace a reservation by the real cost (or add a cost that had none)."""
        now = self.clock()
        account = self._account(key_id, period_start, 0.0, now)
        if reservation_id is not None:
            account.reservations.pop(reservation_id, None)
        account.spent += max(cost_usd, 0.0)

    def prune(self, every_s: float = 10.0) -> int:
        """Drop the accounts of periods that are over (and idle); how many were dropped.
        A full pass runs at most every `every_s`."""
        now = self.clock()
        if now - self._pruned_at < every_s:
            return 0
        self._pruned_at = now
        stale = [
            key
            for key, account in self._accounts.items()
            if account.expires_at <= now and not account.reserved(now)
        ]
        for key in stale:
            del self._accounts[key]
        return len(stale)

    def __len__(self) -> int:
        return len(self._accounts)
