"""The soak's ledger check: wait for the flush, then compare the usage ledger (row by row when
its SQLite file is at hand, and `/api/v1/usage` totals) with what the client saw.

The gateway's ledger `request_id` is the request's X-Request-ID (`RequestContext.request_id`,
from the middleware, which keeps a well-formed id the caller sent), so every request the soak
sends carries its own id and rows are matched on it.
"""

import asyncio
import contextlib
import datetime as dt
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from bench.soak_stats import LedgerRow, RequestRecord, reconcile, reconcile_usage_api

POLL_S = 1.5
ROW_SQL = (
    "SELECT request_id, key_id, model_id, status, outcome, input_tokens, output_tokens "
    "FROM usage WHERE substr(request_id, 1, ?) = ?"
)


def read_ledger(path: Path, prefix: str) -> list[LedgerRow]:
    """The rows whose request id starts with `prefix` (this run's measured requests)."""
    if not path.exists():
        return []
    with contextlib.closing(sqlite3.connect(path, timeout=10)) as connection:
        try:
            cursor = connection.execute(ROW_SQL, (len(prefix), prefix))
        except sqlite3.OperationalError:  # no usage table yet: nothing was flushed
            return []
        return [LedgerRow(*row) for row in cursor.fetchall()]


async def usage_models(
    client: httpx.AsyncClient, admin_key: str, since: float
) -> list[dict[str, Any]]:
    """`/api/v1/usage` rows per model from `since` on (the call also flushes the ledger
    buffer of the replica that answers)."""
    params = {
        "since": dt.datetime.fromtimestamp(since, dt.UTC).isoformat(),
        "until": dt.datetime.fromtimestamp(time.time() + 3600, dt.UTC).isoformat(),
    }
    response = await client.get(
        "/api/v1/usage", params=params, headers={"authorization": f"Bearer {admin_key}"}
    )
    response.raise_for_status()
    models: list[dict[str, Any]] = response.json()["models"]
    return models


async def check_ledger(
    client: httpx.AsyncClient,
    admin_key: str,
    records: Sequence[RequestRecord],
    ledger_db: Path | None,
    prefix: str,
    since: float,
    wait_s: float,
) -> dict[str, Any]:
    """Poll until two reads in a row agree (the flush is done) or `wait_s` passes, then
    reconcile the last read."""
    began = time.monotonic()
    previous: tuple[Any, ...] | None = None
    while True:
        api = await usage_models(client, admin_key, since)
        rows = await asyncio.to_thread(read_ledger, ledger_db, prefix) if ledger_db else []
        current = (sorted(map(str, api)), sorted(rows, key=lambda r: r.request_id))
        if current == previous or time.monotonic() - began > wait_s:
            break
        previous = current
        await asyncio.sleep(POLL_S)
    usage_api = reconcile_usage_api(records, api)
    result: dict[str, Any] = {
        "flush_wait_s": round(time.monotonic() - began, 1),
        "usage_api": usage_api,
    }
    if ledger_db is None:
        result["rows_skipped"] = "no --ledger-db for this gateway"
        result["ok"] = usage_api["ok"]
        return result
    result["rows"] = reconcile(records, rows)
    result["ok"] = usage_api["ok"] and result["rows"]["ok"]
    return result
