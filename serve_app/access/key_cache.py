"""`KeyCache`: the ingress's in-memory view of the key table (no database on the hot path)."""

import asyncio
import builtins
import logging
import time
from collections.abc import Callable
from typing import Any

from serve_app.access.key_store import (
    KEY_LENGTH,
    KEY_PREFIX,
    ApiKey,
    KeySpec,
    KeyStore,
    hash_key,
)
from serve_app.contracts.errors import (
    AuthenticationError,
    BudgetExceededError,
    ServiceUnavailableError,
)

logger = logging.getLogger("ray.serve")


class KeyCache:
    """The ingress's view of the keys: answered from memory, refreshed from the store.

    Keys are reloaded at most every `ttl_s`; an unknown key triggers at most one early reload
    per `ttl_s / 4` (to see keys other replicas created without letting a flood of bad keys
    reach the database). Spend per key is reloaded at most every `ttl_s`, plus the costs this
    replica added with `add_spend` that the reloaded totals cannot include yet: those still
    in the ledger's buffer, and those written (`written`) after the last reload began. Only
    one reload of each runs at a time.
    """

    def __init__(
        self, store: KeyStore, ttl_s: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self._clock = clock
        self._by_hash: dict[str, ApiKey] | None = None  # None until the first load succeeds
        self._keys_tried_at: float | None = None
        self._keys_lock = asyncio.Lock()
        self._spend: dict[str, float] | None = None  # None until the first load succeeds
        self._unwritten: dict[str, float] = {}  # added here, not yet in the database
        self._unseen: dict[str, float] = {}  # in the database since the last reload began
        self._spend_tried_at: float | None = None
        self._spend_lock = asyncio.Lock()

    def _fresh(self, tried_at: float | None, max_age: float) -> bool:
        return tried_at is not None and self._clock() - tried_at < max_age

    async def _refresh_keys(self, max_age: float, wait: bool = False) -> None:
        """Reload the keys unless the last read began less than `max_age` ago. While a
        reload is in flight a caller answers from the keys already known, unless it `wait`s
        for that reload (a key not found must not be refused from an older read)."""
        if self._fresh(self._keys_tried_at, max_age):
            return
        if not wait and self._by_hash is not None and self._keys_lock.locked():
            return  # a reload (or a write) is in flight: answer from the keys already known
        async with self._keys_lock:
            if self._fresh(self._keys_tried_at, max_age):
                return
            started = self._clock()  # what the read sees is as old as its start
            try:
                keys = await asyncio.to_thread(self.store.list)
            except Exception as exc:  # keep serving the last known keys
                logger.warning("API key store unavailable: %s: %s", type(exc).__name__, exc)
            else:
                self._by_hash = {key.key_hash: key for key in keys}
            finally:
                self._keys_tried_at = started

    async def _lookup(self, key_hash: str) -> ApiKey | None:
        await self._refresh_keys(self.ttl_s if self._by_hash is not None else self.ttl_s / 4)
        if self._by_hash is not None and key_hash not in self._by_hash:
            await self._refresh_keys(self.ttl_s / 4, wait=True)
        if self._by_hash is None:
            raise ServiceUnavailableError(
                "The API key store is unavailable.",
                code="key_store_unavailable",
                retry_after_s=max(1.0, self.ttl_s / 4),
            )
        return self._by_hash.get(key_hash)

    async def authenticate(self, presented_key: str) -> ApiKey:
        key = None
        if presented_key.startswith(KEY_PREFIX) and len(presented_key) == KEY_LENGTH:
            key = await self._lookup(hash_key(presented_key))
        if key is None:
            raise AuthenticationError("Invalid API key.", code="invalid_api_key")
        if not key.enabled:
            raise AuthenticationError("This API key is disabled.", code="key_disabled")
        return key

    def _remember(self, key: ApiKey) -> None:
        if self._by_hash is not None:
            self._by_hash[key.key_hash] = key

    async def create(self, spec: KeySpec) -> tuple[ApiKey, str]:
        async with self._keys_lock:  # a reload in flight must not drop the new key
            record, plain = await asyncio.to_thread(self.store.create, spec)
            self._remember(record)
        return record, plain

    async def list(self) -> builtins.list[ApiKey]:
        async with self._keys_lock:
            keys = await asyncio.to_thread(self.store.list)
            self._by_hash = {key.key_hash: key for key in keys}
            self._keys_tried_at = self._clock()
        return keys

    async def set_enabled(self, key_id: str, enabled: bool) -> ApiKey:
        async with self._keys_lock:
            key = await asyncio.to_thread(self.store.set_enabled, key_id, enabled)
            self._remember(key)
        return key

    async def set_budget(self, key_id: str, budget_usd: float | None, budget_period: str) -> ApiKey:
        async with self._keys_lock:
            key = await asyncio.to_thread(self.store.set_budget, key_id, budget_usd, budget_period)
            self._remember(key)
        self._spend_tried_at = None  # the period may have changed: re-read the spend
        return key

    async def update(self, key_id: str, changes: dict[str, Any]) -> ApiKey:
        async with self._keys_lock:
            key = await asyncio.to_thread(self.store.update, key_id, changes)
            self._remember(key)
        if "budget_period" in changes:
            self._spend_tried_at = None  # another period: re-read the spend
        return key

    async def usage_by_key(self) -> dict[str, dict[str, Any]]:
        return await asyncio.to_thread(self.store.usage_by_key)

    async def disable(self, key_id: str) -> ApiKey:
        return await self.set_enabled(key_id, False)

    async def enable(self, key_id: str) -> ApiKey:
        return await self.set_enabled(key_id, True)

    async def _refresh_spend(self) -> None:
        if self._fresh(self._spend_tried_at, self.ttl_s):
            return
        if self._spend is not None and self._spend_lock.locked():
            return  # a reload is in flight: answer from the last totals
        async with self._spend_lock:
            if self._fresh(self._spend_tried_at, self.ttl_s):
                return
            counted = dict(self._unseen)  # written before this read: the totals include it
            try:
                totals = await asyncio.to_thread(self.store.spend_by_key)
            except Exception as exc:  # budgets use the last known totals meanwhile
                logger.warning("key spend unavailable: %s: %s", type(exc).__name__, exc)
                return
            finally:
                self._spend_tried_at = self._clock()
            self._spend = totals
            _subtract(self._unseen, counted)

    def add_spend(self, key_id: str, usd: float) -> None:
        """Count a cost now (it is in the ledger's buffer, not yet in the database)."""
        self._unwritten[key_id] = self._unwritten.get(key_id, 0.0) + usd

    def written(self, costs: dict[str, float]) -> None:
        """The ledger wrote these costs: the next reload's totals include them."""
        _subtract(self._unwritten, costs)
        for key_id, usd in costs.items():
            self._unseen[key_id] = self._unseen.get(key_id, 0.0) + usd

    async def spent(self, key_id: str) -> float:
        await self._refresh_spend()
        local = self._unwritten.get(key_id, 0.0) + self._unseen.get(key_id, 0.0)
        return (self._spend or {}).get(key_id, 0.0) + local

    async def check_budget(self, key: ApiKey) -> None:
        if key.budget_usd is None:
            return
        spent = await self.spent(key.id)
        if spent >= key.budget_usd:
            raise BudgetExceededError(
                f"API key {key.id} has spent ${spent:.4f} of its ${key.budget_usd:.2f} budget.",
                code="budget_exceeded",
            )


def _subtract(totals: dict[str, float], costs: dict[str, float]) -> None:
    for key_id, usd in costs.items():
        left = totals.get(key_id, 0.0) - usd
        if abs(left) > 1e-12:
            totals[key_id] = left
        else:
            totals.pop(key_id, None)
