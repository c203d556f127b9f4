"""Exact sliding-window rate limits kept in Redis, shared by every replica on every node.

`RedisSlidingWindowLimiter` has the semantics of `SlidingWindowLimiter` (exact sliding
window, all-or-nothing across counters, same retry-after) but its state lives in Redis, so
any number of ingress replicas share it without a single-replica limiter deployment.

One Lua script does the whole acquisition atomically, with the Redis server's clock (`TIME`)
so replicas on hosts with skewed clocks agree. Per counter it keeps two keys:

* `<prefix>ev:<key>`: a sorted set of events, score = server time in integer microseconds,
  member = `<tokens>:<event id>:<counter index>` (unique per event and counter);
* `<prefix>tok:<key>`: the exact token sum of those events (INCRBY on add, DECRBY on prune).

Both expire a little after the window, so idle counters cost nothing. All keys of one call
must live on one Redis node (plain Redis or Sentinel; not Redis Cluster across slots).
"""

import math
import uuid
from collections.abc import Sequence
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis

from deployments.limits.redis_budgets import RedisBudgets
from serve_app.contracts.budgets import BudgetDecision, BudgetHold
from serve_app.contracts.limits import WINDOW_S, Decision, LimitSpec

EXPIRY_MARGIN_MS = 1000
MAX_CONNECTIONS = 50
POOL_TIMEOUT_S = 10.0
NO_LIMIT = -1

# KEYS: for counter i, KEYS[2i-1] = events zset, KEYS[2i] = token sum.
# ARGV: window_us, tokens, event id, ttl_ms, then per counter i: rpm, tpm (-1 = no cap).
# Returns integers: allowed (0|1), wait_us, remaining requests, remaining tokens (-1 = none),
# reset_us. All times are integer microseconds, formatted with %.0f so none loses precision.
ACQUIRE_LUA = """
if redis.replicate_commands then redis.replicate_commands() end  -- TIME before writes (< 5.0)
local window_us = tonumber(ARGV[1])
local tokens = tonumber(ARGV[2])
local event = ARGV[3]
local ttl_ms = tonumber(ARGV[4])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local n = #KEYS / 2

local function fmt(x) return string.format('%.0f', x) end
local function used(member) return tonumber(string.match(member, '^(-?%d+):')) end

local function prune(z, t)
  local cutoff = fmt(now - window_us)
  local old = redis.call('ZRANGEBYSCORE', z, '-inf', cutoff)
  if #old > 0 then
    local freed = 0
    for _, member in ipairs(old) do freed = freed + used(member) end
    redis.call('ZREMRANGEBYSCORE', z, '-inf', cutoff)
    redis.call('DECRBY', t, fmt(freed))
  end
  local count = redis.call('ZCARD', z)
  if count == 0 then
    redis.call('DEL', t)
    return 0, 0
  end
  return count, tonumber(redis.call('GET', t) or '0')
end

local function wait_requests(z, count, rpm)
  if rpm < 0 or count < rpm then return 0 end
  local hit = redis.call('ZRANGE', z, count - rpm, count - rpm, 'WITHSCORES')
  if #hit == 0 then return window_us end
  return tonumber(hit[2]) + window_us - now
end

local function wait_tokens(z, count, total, tpm)
  if tpm < 0 or total + tokens <= tpm or count == 0 then return 0 end
  local freed = total
  local events = redis.call('ZRANGE', z, 0, -1, 'WITHSCORES')
  for k = 1, #events, 2 do
    freed = freed - used(events[k])
    if freed + tokens <= tpm then return tonumber(events[k + 1]) + window_us - now end
  end
  return window_us
end

local wait = 0
for i = 1, n do
  local z, t = KEYS[2 * i - 1], KEYS[2 * i]
  local rpm, tpm = tonumber(ARGV[3 + 2 * i]), tonumber(ARGV[4 + 2 * i])
  local count, total = prune(z, t)
  wait = math.max(wait, wait_requests(z, count, rpm), wait_tokens(z, count, total, tpm))
end

local allowed = wait <= 0
if allowed then
  for i = 1, n do
    local z, t = KEYS[2 * i - 1], KEYS[2 * i]
    redis.call('ZADD', z, fmt(now), fmt(tokens) .. ':' .. event .. ':' .. i)
    redis.call('INCRBY', t, fmt(tokens))
    redis.call('PEXPIRE', z, ttl_ms)
    redis.call('PEXPIRE', t, ttl_ms)
  end
end

local rem_req, rem_tok, oldest = -1, -1, -1
for i = 1, n do
  local z, t = KEYS[2 * i - 1], KEYS[2 * i]
  local rpm, tpm = tonumber(ARGV[3 + 2 * i]), tonumber(ARGV[4 + 2 * i])
  local count = redis.call('ZCARD', z)
  local total = tonumber(redis.call('GET', t) or '0')
  if rpm > 0 and (rem_req < 0 or rpm - count < rem_req) then
    rem_req = math.max(0, rpm - count)
  end
  if tpm > 0 and (rem_tok < 0 or tpm - total < rem_tok) then
    rem_tok = math.max(0, tpm - total)
  end
  local first = redis.call('ZRANGE', z, 0, 0, 'WITHSCORES')
  if #first > 0 and (oldest < 0 or tonumber(first[2]) < oldest) then
    oldest = tonumber(first[2])
  end
end
local reset = 0
if oldest >= 0 then reset = math.max(0, oldest + window_us - now) end
return {allowed and 1 or 0, math.max(wait, 0), rem_req, rem_tok, reset}
"""


def _limit(value: int | None) -> int:
    return NO_LIMIT if value is None else int(value)


def _to_decision(raw: Sequence[Any]) -> Decision:
    allowed, wait_us, remaining_requests, remaining_tokens, reset_us = (int(v) for v in raw)
    return Decision(
        allowed=bool(allowed),
        retry_after_s=round(wait_us / 1e6, 3),
        remaining_requests=None if remaining_requests < 0 else remaining_requests,
        remaining_tokens=None if remaining_tokens < 0 else remaining_tokens,
        reset_s=round(reset_us / 1e6, 3),
    )


class RedisSlidingWindowLimiter:
    """All-or-nothing acquisition across several counters, shared through one Redis."""

    def __init__(
        self,
        url: str,
        window_s: float = WINDOW_S,
        prefix: str = "llmgw:rl:",
        *,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        """`max_connections` bounds this limiter's pool; callers beyond it wait for a free
        connection (up to POOL_TIMEOUT_S) instead of failing."""
        if window_s <= 0:
            raise ValueError("window_s must be positive")
        self.window_s = window_s
        self.prefix = prefix
        self._window_us = round(window_s * 1_000_000)
        self._ttl_ms = math.ceil(window_s * 1000) + EXPIRY_MARGIN_MS
        pool = BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=POOL_TIMEOUT_S, decode_responses=True
        )
        self._redis: Redis = Redis.from_pool(pool)  # owns the pool: aclose() disconnects it
        # EVALSHA, falling back to loading the script when the server answers NOSCRIPT.
        self._script = self._redis.register_script(ACQUIRE_LUA)
        self.budgets = RedisBudgets(self._redis, prefix)

    def keys(self, key: str) -> tuple[str, str]:
        """The Redis keys of one counter: its events sorted set and its token sum."""
        return f"{self.prefix}ev:{key}", f"{self.prefix}tok:{key}"

    async def acquire(self, specs: Sequence[LimitSpec], tokens: int = 0) -> Decision:
        if not specs:
            return Decision(True, 0.0, None, None, 0.0)
        keys = [name for spec in specs for name in self.keys(spec.key)]
        args: list[str | int] = [self._window_us, int(tokens), uuid.uuid4().hex, self._ttl_ms]
        for spec in specs:
            args += [_limit(spec.rpm), _limit(spec.tpm)]
        raw = await self._script(keys=keys, args=args)
        return _to_decision(raw)

    async def reserve(self, hold: BudgetHold) -> BudgetDecision:
        return await self.budgets.reserve(hold)

    async def settle(
        self, key_id: str, period_start: float, reservation_id: str | None, cost_usd: float
    ) -> None:
        await self.budgets.settle(key_id, period_start, reservation_id, cost_usd)

    async def close(self) -> None:
        await self._redis.aclose()
