"""The soak's Markdown report, rendered from the JSON report `bench.soak` builds."""

from collections.abc import Mapping, Sequence
from typing import Any

PROBLEMS = (
    "missing_in_ledger",
    "not_a_client_success",
    "wrong_model",
    "token_mismatch",
    "duplicate_rows",
)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], right_from: int = 1) -> list[str]:
    align = ["---" if i < right_from else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines


def _errors(errors: Mapping[str, int]) -> str:
    return ", ".join(f"{key} x{count}" for key, count in sorted(errors.items())) or "-"


def _header(report: Mapping[str, Any]) -> list[str]:
    run, load, verdict = report["run"], report["load"], report["verdict"]
    checks = " · ".join(
        f"{name}: {'yes' if ok else 'NO'}" for name, ok in verdict["checks"].items()
    )
    return [
        f"# Soak report — {run['run_id']}",
        "",
        f"gateway {run['gateway_url']} ({run['mode']}) · rate {run['rate']} req/s · "
        f"duration {run['duration_s']} s · max in flight {run['max_in_flight']} · startup "
        f"{_cell(run.get('startup_s'))} s · stop {_cell(run.get('stop_s'))} s",
        f"sent {load['requests']} in {load['elapsed_s']} s ({load['achieved_rate']} req/s) · "
        f"ok {load['ok']} · unexpected {load['unexpected']} · warm-up requests "
        f"{load['warmup_requests']} · X-Request-ID not echoed {load['id_mismatches']}",
        "",
        f"**verdict: {'PASS' if verdict['pass'] else 'FAIL'}** — {checks}",
    ]


def _kinds(report: Mapping[str, Any]) -> list[str]:
    rows = [
        [
            kind,
            s["requests"],
            s["ok"],
            s["unexpected"],
            s["p50_ms"],
            s["p99_ms"],
            s["ttft_p50_ms"],
            _errors(s["errors"]),
        ]
        for kind, s in report["kinds"].items()
    ]
    header = ["kind", "requests", "ok", "unexpected", "p50 ms", "p99 ms", "TTFT p50", "errors"]
    note = (
        "Latency: of successes for kinds that can succeed, of every answer for the invalid "
        "kinds; from the request's send to the end of its body (a stream read to the end)."
    )
    return ["", "## Per kind (whole run)", "", note, "", *_table(header, rows)]


def _error_table(report: Mapping[str, Any]) -> list[str]:
    rows = [[e["status"], e["type"], e["count"]] for e in report["errors"]]
    return ["", "## Errors by (status, type)", "", *_table(["status", "type", "count"], rows, 2)]


def _windows(report: Mapping[str, Any]) -> list[str]:
    kinds = list(report["kinds"])
    rows = []
    for w in report["windows"]:
        cells = []
        for kind in kinds:
            s = w["kinds"].get(kind)
            cells.append(f"{_cell(s['p50_ms'])} / {_cell(s['p99_ms'])}" if s else "-")
        span = f"{w['start_s']:.0f}-{w['end_s']:.0f} s"
        rows.append([span, w["requests"], w["ok"], w["unexpected"], *cells, _errors(w["errors"])])
    header = ["window", "requests", "ok", "unexpected", *kinds, "errors"]
    title = f"## Per window ({report['run']['window_s']} s): p50 / p99 ms per kind"
    return ["", title, "", *_table(header, rows)]


def _memory_rows(memory: Mapping[str, Any]) -> list[list[Any]]:
    rows = [
        [
            r["process"],
            r["pid"],
            r["state"],
            r["start_rss_mib"],
            r["end_rss_mib"],
            r["delta_rss_mib"],
            r["start_pss_mib"],
            r["end_pss_mib"],
        ]
        for r in memory["table"]
    ]
    start, end = memory["start_total"], memory["end_total"]
    rows.append(
        [
            "**total**",
            f"{start['processes']} → {end['processes']}",
            "",
            start["rss_mib"],
            end["rss_mib"],
            _delta(start["rss_mib"], end["rss_mib"]),
            start["pss_mib"],
            end["pss_mib"],
        ]
    )
    return rows


def _memory(report: Mapping[str, Any]) -> list[str]:
    memory = report["memory"]
    header = ["process", "pid", "state", "start RSS", "end RSS", "Δ RSS", "start PSS", "end PSS"]
    over_time = " · ".join(f"{s['t']:.0f} s: {_cell(s['rss_mib'])}" for s in memory["over_time"])
    verdict = memory["verdict"]
    return [
        "",
        f"## Ray processes: memory (MiB), {memory['scope']}",
        "",
        *_table(header, _memory_rows(memory), 3),
        "",
        f"total RSS over time: {over_time} (second half: "
        f"{_cell(memory.get('second_half_growth_mib'))} MiB)",
        "",
        f"kept processes' RSS growth {verdict['kept_growth_mib']} MiB (tolerance "
        f"{verdict['tolerance_mib']}); gone {verdict['gone'] or 'none'}; "
        f"new {verdict['new'] or 'none'} → {'flat' if verdict['flat'] else 'NOT flat'}",
    ]


def _delta(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else round(end - start, 1)


def _match(ok: bool) -> str:
    return "match" if ok else "MISMATCH"


def _ledger(report: Mapping[str, Any]) -> list[str]:
    ledger = report["ledger"]
    lines = ["", "## Ledger versus client", ""]
    rec = ledger.get("rows")
    if rec is None:
        lines.append(f"no row-level check ({ledger.get('rows_skipped', 'no ledger file')})")
    else:
        lines.append(
            f"client successes {rec['client_ok']} · ledger rows {rec['ledger_rows']} "
            f"(status 200: {rec['ledger_200']}) · non-200 rows {_errors(rec['non_200_rows'])} "
            f"· flush waited {ledger['flush_wait_s']} s → **{_match(rec['ok'])}**"
        )
        problems = [[name, rec[name]["count"], ", ".join(rec[name]["sample"])] for name in PROBLEMS]
        lines += ["", *_table(["check", "count", "sample ids"], problems, 1)]
        per_model = [[m, c["client_ok"], c["ledger_200"]] for m, c in rec["per_model"].items()]
        lines += ["", *_table(["model", "client ok", "ledger 200"], per_model)]
    api = ledger.get("usage_api")
    if api is not None:
        per_model = [[m, c["client_ok"], c["usage_api_ok"]] for m, c in api["per_model"].items()]
        lines += [
            "",
            f"`/api/v1/usage` over the load's time span → **{_match(api['ok'])}**",
            "",
            *_table(["model", "client ok", "usage API ok"], per_model),
        ]
    return lines


def render(report: Mapping[str, Any]) -> str:
    sections = [_header, _kinds, _error_table, _windows, _memory, _ledger]
    return "\n".join(line for section in sections for line in section(report)) + "\n"
