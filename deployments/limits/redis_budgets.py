"""Budget reservations in Redis, beside the rate-limit counters (same semantics as
`deployments.limits.budgets.BudgetCounter`).

One hash per key and budget period, `<prefix>budget:<key id>:<period start>`, with the
settled spend, the sum reserved and one field per reservation (`r:<id>`), in integer
nano-dollars. Each operation is one Lua script, so reservations are atomic across every
ingress replica. The hash expires a little after the period ends. A reservation whose
ingress died stays held until the hash expires (for `total` budgets, a day after the key's
last call): it errs on refusing, never on overspending.
"""

import uuid
from typing import Any

from serve_app.contracts.budgets import BudgetDecision, BudgetHold

NANO = 1_000_000_000

# KEYS[1]: the hash. ARGV: budget, amount, floor (nano-USD), ttl_ms, reservation id.
RESERVE_LUA = """
local h = KEYS[1]
local budget, amount, floor = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local spent = tonumber(redis.call('HGET', h, 'spent') or '0')
if floor > spent then
  spent = floor
  redis.call('HSET', h, 'spent', string.format('%.0f', spent))
end
local reserved = tonumber(redis.call('HGET', h, 'reserved') or '0')
redis.call('PEXPIRE', h, ARGV[4])
if spent >= budget or spent + reserved + amount > budget then
  return {0, string.format('%.0f', spent), string.format('%.0f', reserved)}
end
redis.call('HINCRBY', h, 'reserved', string.format('%.0f', amount))
redis.call('HSET', h, 'r:' .. ARGV[5], string.format('%.0f', amount))
return {1, string.format('%.0f', spent), string.format('%.0f', reserved + amount)}
"""

# KEYS[1]: the hash. ARGV: reservation id ('' for none), cost (nano-USD).
SETTLE_LUA = """
local h = KEYS[1]
if ARGV[1] ~= '' then
  local held = redis.call('HGET', h, 'r:' .. ARGV[1])
  if held then
    redis.call('HDEL', h, 'r:' .. ARGV[1])
    redis.call('HINCRBY', h, 'reserved', '-' .. held)
  end
end
redis.call('HINCRBY', h, 'spent', ARGV[2])
return 1
"""


class RedisBudgets:
    def __init__(self, redis: Any, prefix: str) -> None:
        self.prefix = prefix
        self._reserve = redis.register_script(RESERVE_LUA)
        self._settle = redis.register_script(SETTLE_LUA)

    def key(self, key_id: str, period_start: float) -> str:
        return f"{self.prefix}budget:{key_id}:{period_start:.0f}"

    async def reserve(self, hold: BudgetHold) -> BudgetDecision:
        rid = uuid.uuid4().hex
        args = [
            round(hold.budget_usd * NANO),
            round(hold.amount_usd * NANO),
            round(hold.floor_usd * NANO),
            max(1, round(hold.ttl_s * 1000)),
            rid,
        ]
        allowed, spent, reserved = await self._reserve(
            keys=[self.key(hold.key_id, hold.period_start)], args=args
        )
        return BudgetDecision(
            bool(int(allowed)),
            int(spent) / NANO,
            int(reserved) / NANO,
            rid if int(allowed) else None,
        )

    async def settle(
        self, key_id: str, period_start: float, reservation_id: str | None, cost_usd: float
    ) -> None:
        args = [reservation_id or "", max(0, round(cost_usd * NANO))]
        await self._settle(keys=[self.key(key_id, period_start)], args=args)
