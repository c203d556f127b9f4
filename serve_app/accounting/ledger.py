"""The usage ledger: every finished generation, buffered in memory and written in batches.

`Ledger.record()` only appends to a deque (no I/O on the request path). A background task
flushes every `flush_interval_s` through a thread; when the store fails, records stay
buffered (up to `max_buffer`) and are written once it is back. `close()` waits for a write
in flight (never cancels it halfway) and flushes the rest, even when it is itself cancelled.
"""

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import astuple, dataclass
from typing import Any

from serve_app.accounting import timeseries
from serve_app.accounting.usage_store import UsageStore, open_store
from serve_app.contracts.config import LedgerConfig

logger = logging.getLogger("ray.serve")


@dataclass(frozen=True, slots=True)
class UsageRecord:
    ts: float
    request_id: str
    key_id: str
    model_id: str
    provider: str
    served_model: str
    input_tokens: int
    output_tokens: int
    cost_usd: float
    latency_ms: float
    outcome: str  # "ok" or the error type
    status: int
    cache_hit: bool = False  # answered from the response cache: cost_usd is 0
    saved_usd: float = 0.0  # what the cached answer would have cost from the provider


def as_row(record: UsageRecord) -> tuple[Any, ...]:
    """The record in the column order of `usage_store.COLUMNS` (flags as 0/1 integers)."""
    *head, cache_hit, saved_usd = astuple(record)
    return (*head, int(cache_hit), saved_usd)


def costs_by_key(records: list[UsageRecord]) -> dict[str, float]:
    costs: dict[str, float] = {}
    for record in records:
        if record.cost_usd:
            costs[record.key_id] = costs.get(record.key_id, 0.0) + record.cost_usd
    return costs


class Ledger:
    def __init__(self, config: LedgerConfig, store: UsageStore | None = None) -> None:
        self.config = config
        self.store = store or open_store(config.url, auto_migrate=config.auto_migrate is not False)
        self._buffer: deque[UsageRecord] = deque()
        self._task: asyncio.Task[None] | None = None
        self._flush_lock = asyncio.Lock()
        self.dropped = 0
        self.writing = 0  # records taken out of the buffer by a write still in progress
        self.last_error: str | None = None
        self.last_flush_ok_at: float | None = None
        # told each written batch's cost per key (the key cache stops counting it locally)
        self.on_written: Callable[[dict[str, float]], None] | None = None

    def record(self, record: UsageRecord) -> None:
        if len(self._buffer) >= self.config.max_buffer:
            self._buffer.popleft()
            self.dropped += 1
        self._buffer.append(record)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._flush_forever())

    def _trim_overflow(self) -> None:
        """Drop the newest records beyond `max_buffer` (counted in `dropped`)."""
        while len(self._buffer) > self.config.max_buffer:
            self._buffer.pop()
            self.dropped += 1

    @property
    def pending(self) -> int:
        return len(self._buffer)

    @property
    def degraded(self) -> bool:
        return self.last_error is not None

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.flush_interval_s)
            await self.flush()

    async def flush(self) -> bool:
        """Write everything buffered; False (records kept) when the store is unavailable."""
        async with self._flush_lock:
            return await self._flush_locked()

    async def _flush_locked(self) -> bool:
        while self._buffer:
            # Take the batch out first: `record()` may evict from the buffer meanwhile.
            size = min(self.config.batch_size, self.pending)
            batch = [self._buffer.popleft() for _ in range(size)]
            self.writing = len(batch)
            try:
                await asyncio.to_thread(self.store.write, [as_row(r) for r in batch])
            except Exception as exc:  # any store failure: keep the records, report it
                self.writing = 0
                self._buffer.extendleft(reversed(batch))
                self._trim_overflow()
                self.last_error = type(exc).__name__  # details go to the log, not /status
                logger.warning("usage ledger write failed, %d buffered: %s", self.pending, exc)
                return False
            self.writing = 0
            if self.on_written is not None:
                self.on_written(costs_by_key(batch))
        self.last_error = None
        self.last_flush_ok_at = time.time()
        return True

    async def summarize(
        self, since: float | None, until: float | None, key_id: str | None = None
    ) -> list[dict[str, Any]]:
        await self.flush()
        return await asyncio.to_thread(self.store.summarize, since, until, key_id)

    async def timeseries(self, query: timeseries.TimeseriesQuery) -> dict[str, Any]:
        """Usage per time bucket and group (see `serve_app.accounting.timeseries`)."""
        await self.flush()
        return await asyncio.to_thread(timeseries.run, self.store, query)

    async def close(self) -> None:
        """Flush everything and close the store. Shielded: cancelling `close()` (a replica
        stopping with a deadline) does not cancel a write halfway or drop the buffer."""
        await asyncio.shield(self._close())

    async def _close(self) -> None:
        async with self._flush_lock:  # a write in flight finishes first
            if self._task is not None:
                self._task.cancel()  # it is sleeping or waiting for the lock: nothing taken
                self._task = None
            await self._flush_locked()
        await asyncio.to_thread(self.store.close)

    def health(self) -> dict[str, Any]:
        return {
            "backend": self.store.backend,
            "degraded": self.degraded,
            "pending_records": self.pending + self.writing,  # not yet in the store
            "dropped_records": self.dropped,
            "last_error": self.last_error,
        }
