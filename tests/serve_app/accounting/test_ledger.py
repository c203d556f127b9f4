"""The usage ledger: batched off the request path, kept while the store fails, flushed on stop."""

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

from serve_app.accounting.ledger import Ledger, UsageRecord, as_row
from serve_app.accounting.usage_store import UsageStore, open_engine
from serve_app.contracts.config import LedgerConfig


def record(index: int, provider: str = "openai", cost: float = 0.5) -> UsageRecord:
    return UsageRecord(
        time.time(), f"r{index}", "key_1", "m", provider, "m", 3, 2, cost, 1.0, "ok", 200
    )


def rows(path: Path) -> int:
    with sqlite3.connect(path) as connection:
        return int(connection.execute("SELECT COUNT(*) FROM usage").fetchone()[0])


def test_record_only_buffers_and_close_flushes_everything(tmp_path: Path) -> None:
    path = tmp_path / "usage.db"

    async def scenario() -> tuple[int, int]:
        ledger = Ledger(LedgerConfig(url=f"sqlite:///{path}", flush_interval_s=60))
        for index in range(1200):
            ledger.record(record(index))
        written_before_close = rows(path) if path.exists() else 0
        await ledger.close()
        return written_before_close, ledger.pending

    before, pending = asyncio.run(scenario())
    assert before == 0  # nothing was written on the request path
    assert pending == 0 and rows(path) == 1200


class FlakyStore(UsageStore):
    """A real SQLite store that fails while `down` is set."""

    def __init__(self, path: str) -> None:
        super().__init__(open_engine(f"sqlite:///{path}"))
        self.down = True

    def write(self, batch: Any) -> None:
        if self.down:
            raise sqlite3.OperationalError("attempt to write a readonly database")
        super().write(batch)


def test_store_failure_keeps_records_reports_degraded_and_recovers(tmp_path: Path) -> None:
    store = FlakyStore(str(tmp_path / "usage.db"))

    async def scenario() -> dict[str, Any]:
        ledger = Ledger(LedgerConfig(url="sqlite://:memory:", flush_interval_s=0.05), store)
        for index in range(10):
            ledger.record(record(index, cost=0.1))
        await asyncio.sleep(0.2)
        degraded = ledger.health()
        store.down = False
        await asyncio.sleep(0.2)
        summary = await ledger.summarize(None, None)
        await ledger.close()
        return {"degraded": degraded, "after": ledger.health(), "summary": summary}

    result = asyncio.run(scenario())
    assert result["degraded"]["degraded"] is True
    assert result["degraded"]["pending_records"] == 10
    assert result["degraded"]["last_error"] == "OperationalError"  # no details in /status
    assert result["after"]["degraded"] is False and result["after"]["pending_records"] == 0
    (row,) = result["summary"]
    assert row["requests"] == 10 and abs(row["cost_usd"] - 1.0) < 1e-9


def test_summary_filters_by_time_and_key(tmp_path: Path) -> None:
    store = UsageStore(open_engine(f"sqlite:///{tmp_path / 'usage.db'}"))
    now = time.time()
    old = UsageRecord(
        now - 3600, "old", "key_2", "m", "anthropic", "m", 1, 1, 1.0, 1.0, "upstream_error", 502
    )
    store.write([as_row(record(1)), as_row(old)])
    assert [r["provider"] for r in store.summarize(now - 60, None)] == ["openai"]
    (mine,) = store.summarize(None, None, key_id="key_2")
    assert (mine["requests"], mine["errors"]) == (1, 1)


class SlowFailingStore(FlakyStore):
    """Fails like a store whose server is gone: each write first hangs (a connect timeout)."""

    def write(self, batch: Any) -> None:
        time.sleep(0.3)
        super().write(batch)


def test_records_in_a_hanging_write_still_count_as_pending(tmp_path: Path) -> None:
    store = SlowFailingStore(str(tmp_path / "usage.db"))

    async def scenario() -> list[int]:
        ledger = Ledger(LedgerConfig(url="sqlite://:memory:", flush_interval_s=0.05), store)
        for index in range(5):
            ledger.record(record(index))
        seen = []
        for _ in range(12):  # through failed writes and the retries in progress
            await asyncio.sleep(0.05)
            seen.append(ledger.health()["pending_records"])
        store.down = False
        await ledger.close()
        return seen

    assert set(asyncio.run(scenario())) == {5}


def test_written_costs_are_reported_per_key(tmp_path: Path) -> None:
    async def scenario() -> list[dict[str, float]]:
        ledger = Ledger(LedgerConfig(url=f"sqlite:///{tmp_path}/w.db", flush_interval_s=60))
        told: list[dict[str, float]] = []
        ledger.on_written = told.append
        for index in range(3):
            ledger.record(record(index, cost=0.25))
        await ledger.flush()
        await ledger.close()
        return told

    assert asyncio.run(scenario()) == [{"key_1": 0.75}]
