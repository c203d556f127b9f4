"""The soak's arithmetic, as pure functions: latency percentiles per time window and kind,
error counts, the RSS table of the Ray processes, and the ledger-versus-client reconciliation.
"""

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

NO_RESPONSE = 0  # `RequestRecord.status` when no HTTP response came back


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request as the load generator saw it."""

    t: float  # seconds from the start of the load to the request's send time
    kind: str
    status: int
    error_type: str | None  # None: a success (a stream read to its end included)
    latency_ms: float
    expected: bool  # the status is one the kind expects
    request_id: str
    model: str
    ttft_ms: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.error_type is None

    @property
    def error_key(self) -> str:
        return f"{self.status} {self.error_type}"


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of `values`; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def latency_sample(records: Iterable[RequestRecord], success_kinds: set[str]) -> list[float]:
    """Latencies that describe a kind: its successes when it can succeed, else every answered
    request (invalid requests are measured by how fast they are refused)."""
    return [
        r.latency_ms
        for r in records
        if (r.ok if r.kind in success_kinds else r.status != NO_RESPONSE)
    ]


def kind_summary(records: Sequence[RequestRecord], success_kinds: set[str]) -> dict[str, Any]:
    latencies = latency_sample(records, success_kinds)
    ttfts = [r.ttft_ms for r in records if r.ok and r.ttft_ms is not None]
    return {
        "requests": len(records),
        "ok": sum(r.ok for r in records),
        "unexpected": sum(not r.expected for r in records),
        "p50_ms": _round(percentile(latencies, 50)),
        "p99_ms": _round(percentile(latencies, 99)),
        "ttft_p50_ms": _round(percentile(ttfts, 50)),
        "errors": dict(Counter(r.error_key for r in records if not r.ok)),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def by_kind(records: Sequence[RequestRecord], success_kinds: set[str]) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[RequestRecord]] = defaultdict(list)
    for record in records:
        groups[record.kind].append(record)
    return {kind: kind_summary(group, success_kinds) for kind, group in sorted(groups.items())}


def windows(
    records: Sequence[RequestRecord], window_s: float, success_kinds: set[str]
) -> list[dict[str, Any]]:
    """Per window of `window_s` seconds (by send time): counts, per-kind latency, errors."""
    if window_s <= 0:
        raise ValueError("window_s must be positive")
    buckets: dict[int, list[RequestRecord]] = defaultdict(list)
    for record in records:
        buckets[int(record.t // window_s)].append(record)
    result = []
    for index in sorted(buckets):
        group = buckets[index]
        result.append(
            {
                "start_s": round(index * window_s, 3),
                "end_s": round((index + 1) * window_s, 3),
                "requests": len(group),
                "ok": sum(r.ok for r in group),
                "unexpected": sum(not r.expected for r in group),
                "errors": dict(Counter(r.error_key for r in group if not r.ok)),
                "kinds": by_kind(group, success_kinds),
            }
        )
    return result


def error_counts(records: Iterable[RequestRecord]) -> list[dict[str, Any]]:
    """Every failure, counted by (status, type), most frequent first."""
    counts = Counter((r.status, r.error_type or "") for r in records if not r.ok)
    return [
        {"status": status, "type": kind, "count": count}
        for (status, kind), count in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    ]


# ---- memory of the Ray processes ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProcSample:
    pid: int
    label: str
    rss: int  # bytes
    pss: int | None = None  # bytes, when readable


def rss_table(
    start: Mapping[int, ProcSample], end: Mapping[int, ProcSample]
) -> list[dict[str, Any]]:
    """One row per process (by pid) of either sample: start/end RSS and PSS in MiB and the
    RSS delta; a process in one sample only is `new` or `gone` (a restart shows as both)."""
    rows = []
    for pid in sorted(set(start) | set(end), key=lambda p: ((start.get(p) or end[p]).label, p)):
        before, after = start.get(pid), end.get(pid)
        either = before or after
        assert either is not None
        state = "kept" if before and after else ("gone" if before else "new")
        rows.append(
            {
                "pid": pid,
                "process": either.label,
                "state": state,
                "start_rss_mib": _mib(before.rss if before else None),
                "end_rss_mib": _mib(after.rss if after else None),
                "delta_rss_mib": _mib((after.rss if after else 0) - (before.rss if before else 0)),
                "start_pss_mib": _mib(before.pss if before else None),
                "end_pss_mib": _mib(after.pss if after else None),
            }
        )
    return rows


def _mib(value: int | None) -> float | None:
    return None if value is None else round(value / 2**20, 1)


def totals(sample: Mapping[int, ProcSample]) -> dict[str, float | None]:
    pss = [s.pss for s in sample.values()]
    return {
        "processes": len(sample),
        "rss_mib": _mib(sum(s.rss for s in sample.values())),
        "pss_mib": _mib(sum(p for p in pss if p is not None))
        if all(p is not None for p in pss)
        else None,
    }


def rss_verdict(
    start: Mapping[int, ProcSample], end: Mapping[int, ProcSample], tolerance_mib: float
) -> dict[str, Any]:
    """Flat enough? Growth of the kept processes' total RSS within `tolerance_mib`, and no
    process restarted (a process gone between the samples)."""
    kept = set(start) & set(end)
    growth = sum(end[p].rss - start[p].rss for p in kept) / 2**20
    gone = sorted(start[p].label for p in set(start) - kept)
    return {
        "kept_growth_mib": round(growth, 1),
        "tolerance_mib": tolerance_mib,
        "gone": gone,
        "new": sorted(end[p].label for p in set(end) - kept),
        "flat": growth <= tolerance_mib and not gone,
    }


def late_growth(points: Sequence[Mapping[str, Any]], from_t: float) -> float | None:
    """Total RSS growth (MiB) from the first sample at or after `from_t` to the last sample:
    growth that warm-up (caches, first allocations) does not explain."""
    later = [p for p in points if p["t"] >= from_t and p.get("rss_mib") is not None]
    if len(later) < 2:
        return None
    return round(float(later[-1]["rss_mib"]) - float(later[0]["rss_mib"]), 1)


# ---- ledger reconciliation ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LedgerRow:
    request_id: str
    key_id: str
    model_id: str
    status: int
    outcome: str
    input_tokens: int
    output_tokens: int


def mismatches(records: Sequence[RequestRecord], rows: Sequence[LedgerRow]) -> dict[str, list[str]]:
    """Request ids per kind of disagreement between the client and the ledger rows."""
    client = {r.request_id: r for r in records}
    ok_ids = {r.request_id for r in records if r.ok}
    ledger_ok = {row.request_id: row for row in rows if row.status == 200}
    both = ok_ids & set(ledger_ok)
    return {
        "missing_in_ledger": sorted(ok_ids - set(ledger_ok)),
        "not_a_client_success": sorted(set(ledger_ok) - ok_ids),
        "wrong_model": sorted(r for r in both if ledger_ok[r].model_id != client[r].model),
        "token_mismatch": sorted(r for r in both if _tokens_differ(client[r], ledger_ok[r])),
        "duplicate_rows": sorted(
            rid for rid, count in Counter(row.request_id for row in rows).items() if count > 1
        ),
    }


def reconcile(
    records: Sequence[RequestRecord], rows: Sequence[LedgerRow], sample_size: int = 10
) -> dict[str, Any]:
    """Compare the ledger with what the client saw, by request id and per model.

    Every client success must have exactly one ledger row with status 200 and the same model
    (and the same tokens when the client saw them); every 200 row must be a client success.
    Rows for requests the client saw fail (e.g. upstream errors) are counted, not errors.
    """
    client = {r.request_id: r for r in records}
    ok_rows = [row for row in rows if row.status == 200]
    problems = mismatches(records, rows)
    per_model = _per_model(records, ok_rows)
    matched = all(m["client_ok"] == m["ledger_200"] for m in per_model.values())
    extra = problems["not_a_client_success"]
    return {
        "client_ok": sum(r.ok for r in records),
        "ledger_rows": len(rows),
        "ledger_200": len(ok_rows),
        "per_model": per_model,
        "non_200_rows": dict(Counter(f"{r.status} {r.outcome}" for r in rows if r.status != 200)),
        "not_a_client_success_statuses": dict(
            Counter(_client_state(client.get(rid)) for rid in extra)
        ),
        **{
            name: {"count": len(ids), "sample": ids[:sample_size]} for name, ids in problems.items()
        },
        "ok": matched and not any(problems.values()),
    }


def _tokens_differ(record: RequestRecord, row: LedgerRow) -> bool:
    pairs = ((record.input_tokens, row.input_tokens), (record.output_tokens, row.output_tokens))
    return any(seen is not None and seen != stored for seen, stored in pairs)


def _client_state(record: RequestRecord | None) -> str:
    return "never sent" if record is None else record.error_key


def _per_model(
    records: Iterable[RequestRecord], ok_rows: Iterable[LedgerRow]
) -> dict[str, dict[str, int]]:
    client = Counter(r.model for r in records if r.ok)
    ledger = Counter(row.model_id for row in ok_rows)
    return {
        model: {"client_ok": client[model], "ledger_200": ledger[model]}
        for model in sorted(set(client) | set(ledger))
    }


def reconcile_usage_api(
    records: Sequence[RequestRecord], usage_models: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """Per model, client successes versus `/api/v1/usage` (requests - errors = `ok` rows)."""
    client = Counter(r.model for r in records if r.ok)
    api = {str(m["model_id"]): int(m["requests"]) - int(m["errors"]) for m in usage_models}
    per_model = {
        model: {"client_ok": client[model], "usage_api_ok": api.get(model, 0)}
        for model in sorted(set(client) | set(api))
    }
    return {
        "per_model": per_model,
        "ok": all(m["client_ok"] == m["usage_api_ok"] for m in per_model.values()),
    }


def records_as_dicts(records: Iterable[RequestRecord]) -> list[dict[str, Any]]:
    return [asdict(r) for r in records]
