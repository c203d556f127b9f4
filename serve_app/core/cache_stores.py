"""Where cached answers live: in the ingress replica's memory (LRU with a TTL and an entry
and byte budget), or in Redis, shared by every replica on every node."""

import time
from collections import OrderedDict

from redis.asyncio import BlockingConnectionPool, Redis

MAX_CONNECTIONS = 32
POOL_TIMEOUT_S = 2.0
SOCKET_TIMEOUT_S = 1.0


class MemoryCacheStore:
    """Least recently used first out, beyond `max_entries` or `max_bytes`; entries older
    than `ttl_s` are dropped when met. Not shared between ingress replicas."""

    backend = "memory"

    def __init__(self, ttl_s: float, max_entries: int, max_bytes: int) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._bytes = 0
        self.evictions = 0

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires_at, value = entry
        if expires_at <= time.monotonic():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return value

    async def put(self, key: str, value: bytes) -> None:
        if key in self._entries:
            self._drop(key)
        self._entries[key] = (time.monotonic() + self.ttl_s, value)
        self._bytes += len(value)
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))
            self.evictions += 1

    def _drop(self, key: str) -> None:
        _, value = self._entries.pop(key)
        self._bytes -= len(value)

    def size(self) -> dict[str, int]:
        return {"entries": len(self._entries), "bytes": self._bytes, "evictions": self.evictions}

    async def close(self) -> None:
        self._entries.clear()
        self._bytes = 0


# KEYS[1]: the entry, KEYS[2]: the index (sorted set of entry keys by store time, ms).
# ARGV: value, ttl_ms, max_entries. Stores the entry with its TTL, forgets expired index
# members, and deletes the oldest entries beyond max_entries, atomically.
PUT_LUA = """
if redis.replicate_commands then redis.replicate_commands() end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
redis.call('ZADD', KEYS[2], now, KEYS[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - ttl)
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[3])
if over > 0 then
  local old = redis.call('ZRANGE', KEYS[2], 0, over - 1)
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, over - 1)
  redis.call('DEL', unpack(old))
end
redis.call('PEXPIRE', KEYS[2], ttl)
return over
"""


class RedisCacheStore:
    """Entries are `<namespace><sha256>` strings with a TTL; the `<namespace>index` sorted
    set bounds their number to `max_entries` (oldest stored first out). Bytes are bounded by
    the server's own `maxmemory` policy. All keys live on one Redis node."""

    backend = "redis"

    def __init__(self, url: str, namespace: str, ttl_s: float, max_entries: int) -> None:
        self.namespace = namespace
        self.ttl_ms = max(1, round(ttl_s * 1000))
        self.max_entries = max_entries
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=MAX_CONNECTIONS,
            timeout=POOL_TIMEOUT_S,
            socket_timeout=SOCKET_TIMEOUT_S,
            socket_connect_timeout=SOCKET_TIMEOUT_S,
        )
        self._redis: Redis = Redis.from_pool(pool)
        self._put = self._redis.register_script(PUT_LUA)

    async def get(self, key: str) -> bytes | None:
        value = await self._redis.get(self.namespace + key)
        return value if isinstance(value, bytes) else None

    async def put(self, key: str, value: bytes) -> None:
        await self._put(
            keys=[self.namespace + key, self.namespace + "index"],
            args=[value, self.ttl_ms, self.max_entries],
        )

    def size(self) -> dict[str, int]:
        return {}  # shared: ask Redis (`ZCARD <namespace>index`), not a replica

    async def close(self) -> None:
        await self._redis.aclose()
