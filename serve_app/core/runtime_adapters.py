"""The ingress's view of the adapters registered at run time: read from the store at most
every `auth.cache_ttl_s` (never on the request path: a stale view is served meanwhile),
written through at once on this replica."""

import asyncio
import logging
import time
from collections.abc import Callable

from serve_app.access.adapter_store import AdapterStore, RuntimeAdapter

logger = logging.getLogger("ray.serve")


class RuntimeAdapters:
    def __init__(
        self, store: AdapterStore, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self._clock = clock
        self.records: dict[str, RuntimeAdapter] = {}
        self._tried_at: float | None = None
        self._lock = asyncio.Lock()
        self.version = 0  # bumped whenever `records` changes

    def stale(self) -> bool:
        return self._tried_at is None or self._clock() - self._tried_at >= self.ttl_s

    async def refresh(self, force: bool = False) -> None:
        if not force and (not self.stale() or self._lock.locked()):
            return
        async with self._lock:
            if not force and not self.stale():
                return
            try:
                records = await asyncio.to_thread(self.store.list)
            except Exception as exc:  # keep serving the adapters already known
                logger.warning("adapter store unavailable: %s: %s", type(exc).__name__, exc)
            else:
                self._replace({record.id: record for record in records})
            finally:
                self._tried_at = self._clock()

    def _replace(self, records: dict[str, RuntimeAdapter]) -> None:
        if records != self.records:
            self.records = records
            self.version += 1

    async def create(self, adapter: RuntimeAdapter) -> RuntimeAdapter:
        async with self._lock:
            record = await asyncio.to_thread(self.store.create, adapter)
            self._replace({**self.records, record.id: record})
        return record

    async def delete(self, adapter_id: str) -> None:
        async with self._lock:
            await asyncio.to_thread(self.store.delete, adapter_id)
            self._replace({k: v for k, v in self.records.items() if k != adapter_id})
