"""The response cache: exact-match answers for deterministic requests.

A request is cacheable when its result is meant to be reproducible: temperature 0 (greedy) or
a fixed `seed`. Its key is a SHA-256 of the normalised `GenerationParams` (the resolved model,
adapter, messages, sampling, tools, output format...), without what does not change the
answer (request id, deadline, trace context, end-user id, metadata). Answers are stored as
JSON of the `GenerationOutput` (format-neutral: a chat answer can be replayed as a stream,
a stream's answer returned as JSON) with the id of the model that produced it.

Lookups happen after admission, so a cached answer only reaches a key allowed to use the
model. A cache that fails (Redis down) never fails a request: it counts as a miss and is
reported in `/api/v1/status`.
"""

import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

from redis.exceptions import RedisError

from serve_app.contracts.config import CacheConfig
from serve_app.contracts.wire import GenerationOutput, GenerationParams
from serve_app.core.cache_codec import decode_entry, encode_entry
from serve_app.core.cache_stores import MemoryCacheStore, RedisCacheStore

logger = logging.getLogger("llm_gateway.cache")
CACHE_HEADER = b"x-cache"
# What a cache store may raise; each is a miss (or a skipped write), never a failed request.
CACHE_FAILURES = (RedisError, OSError, TimeoutError)


class CacheStore(Protocol):
    backend: str

    async def get(self, key: str) -> bytes | None: ...

    async def put(self, key: str, value: bytes) -> None: ...

    def size(self) -> dict[str, int]: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    output: GenerationOutput
    served_model: str  # the gateway id of the model that produced it (a fallback's, maybe)


def is_deterministic(params: GenerationParams) -> bool:
    return params.temperature == 0 or params.seed is not None


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# What decides an answer: every field but the request id, deadline, trace context, end-user
# id and metadata (an immutable tuple of names, in the dataclass's order).
KEY_FIELDS = tuple(
    f.name
    for f in dataclasses.fields(GenerationParams)
    if f.name not in {"request_id", "deadline", "traceparent", "user", "metadata"}
)


def _canonical(name: str, value: Any) -> Any:
    """JSON-schema dicts (tools, output format) in sorted key order."""
    if name == "tools" and value:
        return tuple(
            (t.name, t.description, t.strict, _canonical_json(t.parameters)) for t in value
        )
    if name == "output_format" and value is not None:
        return (value.type, value.name, value.strict, _canonical_json(value.schema))
    return value


def cache_key(params: GenerationParams) -> str:
    """The hash of everything that decides the answer."""
    material = tuple(_canonical(name, getattr(params, name)) for name in KEY_FIELDS)
    return hashlib.sha256(repr(material).encode()).hexdigest()


class ResponseCache:
    """One per ingress replica; `stats()` is what `/api/v1/status` shows."""

    def __init__(self, config: CacheConfig, store: CacheStore | None = None) -> None:
        self.config = config
        self._models = frozenset(config.models)
        self.store: CacheStore | None = store
        if store is None and config.enabled:
            self.store = make_store(config)
        self.hits = 0
        self.misses = 0
        self.stores = 0
        self.errors = 0
        self.skipped_large = 0

    @property
    def enabled(self) -> bool:
        return self.store is not None

    def key_for(self, params: GenerationParams) -> str | None:
        """The key of a cacheable request; None when the cache is off or it is not
        deterministic."""
        if self.store is None or not is_deterministic(params):
            return None
        if self._models and params.model_id not in self._models:
            return None
        return cache_key(params)

    async def lookup(self, key: str) -> CachedAnswer | None:
        assert self.store is not None
        try:
            raw = await self.store.get(key)
        except CACHE_FAILURES as exc:
            self._failed("read", exc)
            raw = None
        answer = decode_entry(raw) if raw is not None else None
        if answer is None:
            self.misses += 1
            return None
        self.hits += 1
        output, served = answer
        return CachedAnswer(output, served)

    async def save(self, key: str, output: GenerationOutput, served_model: str) -> None:
        """Store a finished answer (cancelled or failed ones never get here)."""
        assert self.store is not None
        value = encode_entry(output, served_model, time.time())
        if len(value) > self.config.max_entry_bytes:
            self.skipped_large += 1
            return
        try:
            await self.store.put(key, value)
        except CACHE_FAILURES as exc:
            self._failed("write", exc)
            return
        self.stores += 1

    def _failed(self, what: str, exc: BaseException) -> None:
        self.errors += 1
        if self.errors == 1 or self.errors % 100 == 0:
            logger.warning("response cache %s failed (%d so far): %s", what, self.errors, exc)

    def stats(self) -> dict[str, Any]:
        looked_up = self.hits + self.misses
        stats: dict[str, Any] = {
            "enabled": self.enabled,
            "backend": self.store.backend if self.store is not None else None,
            "hits": self.hits,
            "misses": self.misses,
            "hit_rate": round(self.hits / looked_up, 4) if looked_up else None,
            "stores": self.stores,
            "errors": self.errors,
        }
        if self.store is not None:
            stats.update(self.store.size())
        return stats

    async def close(self) -> None:
        if self.store is not None:
            await self.store.close()


def make_store(config: CacheConfig) -> CacheStore:
    if config.backend == "redis":
        assert config.redis_url is not None
        return RedisCacheStore(config.redis_url, config.namespace, config.ttl_s, config.max_entries)
    return MemoryCacheStore(config.ttl_s, config.max_entries, config.max_bytes)
