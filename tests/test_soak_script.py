"""The soak script's pure parts (bench/soak*.py): traffic mix, response parsing, per-window
stats, the RSS table, the ledger reconciliation and the report. No Ray, no timed run."""

import argparse
import asyncio
import itertools
import json
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from bench import soak_stats as st
from bench.soak import Measured, Target, build_report
from bench.soak_load import LoadPlan, LoadResult, run_load, send_one
from bench.soak_procs import REPO, fallback_label, process_label, render_config
from bench.soak_report import render
from bench.soak_traffic import (
    DEFAULT_MODELS,
    DEFAULT_WEIGHTS,
    TOO_MANY_TOKENS,
    MixPlanner,
    default_kinds,
    json_outcome,
    parse_sse,
    parse_weights,
    plan_mix,
    request_body,
    stream_outcome,
)
from serve_app.runtime.config_check import check_file

KINDS = default_kinds(DEFAULT_MODELS)
MIB = 2**20


def record(
    t: float = 0.0,
    kind: str = "local_native",
    status: int = 200,
    error: str | None = None,
    latency: float = 10.0,
    rid: str = "r1",
    model: str = "demo",
    tokens: tuple[int | None, int | None] = (None, None),
) -> st.RequestRecord:
    expected = status in KINDS[kind].expect and not (status == 200 and error)
    return st.RequestRecord(t, kind, status, error, latency, expected, rid, model, None, *tokens)


def row(rid: str, model: str = "demo", status: int = 200, tokens: tuple[int, int] = (5, 3)) -> Any:
    outcome = "ok" if status == 200 else "upstream_error"
    return st.LedgerRow(rid, "key1", model, status, outcome, *tokens)


# ---- traffic mix --------------------------------------------------------------------------


def test_every_window_of_one_cycle_holds_each_kind_exactly_its_weight() -> None:
    weights = {"a": 3, "b": 1, "c": 2}
    plan = plan_mix(weights, 6 * 20)
    for start in range(len(plan) - 6):
        assert Counter(plan[start : start + 6]) == Counter(weights)
    assert plan == plan_mix(weights, 6 * 20)  # deterministic


def test_default_mix_spreads_the_limited_key_evenly() -> None:
    plan = plan_mix(DEFAULT_WEIGHTS, 2 * sum(DEFAULT_WEIGHTS.values()))
    positions = [i for i, kind in enumerate(plan) if kind == "limited_key"]
    gaps = {b - a for a, b in itertools.pairwise(positions)}
    ideal = sum(DEFAULT_WEIGHTS.values()) / DEFAULT_WEIGHTS["limited_key"]
    assert len(positions) == 4 and ideal - 2 < min(gaps) <= max(gaps) < ideal + 2
    assert set(DEFAULT_WEIGHTS) == set(KINDS)


def test_parse_weights_and_its_refusals() -> None:
    assert parse_weights("local_native=2, openai_chat=0,limited_key=1", KINDS) == {
        "local_native": 2,
        "limited_key": 1,
    }
    for bad in ("nope=1", "local_native", "local_native=0", "local_native=-1,openai_chat=2"):
        with pytest.raises(ValueError):
            parse_weights(bad, KINDS)
    with pytest.raises(ValueError):
        MixPlanner({"a": 0})


def test_request_bodies_per_api() -> None:
    native = request_body(KINDS["local_native_stream"], "Who?")
    assert native == {"prompt": "Q: Who?\nA:", "model_id": "demo", "max_tokens": 16, "stream": True}
    chat = request_body(KINDS["openai_chat_stream"], "Who?")
    assert chat["stream_options"] == {"include_usage": True} and chat["model"] == "gpt-4o-mini"
    assert request_body(KINDS["invalid_max_tokens"], "x")["max_tokens"] == TOO_MANY_TOKENS
    assert request_body(KINDS["invalid_model"], "x")["model_id"] == "soak-no-such-model"
    assert "stream" not in request_body(KINDS["anthropic_messages"], "x")


# ---- response parsing ---------------------------------------------------------------------


def test_json_outcomes_in_every_error_shape() -> None:
    native = {"text": "x", "metrics": {"input_tokens": 4, "output_tokens": 2}}
    assert json_outcome("native", 200, json.dumps(native)).input_tokens == 4
    openai = json_outcome(
        "openai", 200, json.dumps({"usage": {"prompt_tokens": 3, "completion_tokens": 1}})
    )
    assert (openai.error_type, openai.input_tokens, openai.output_tokens) == (None, 3, 1)
    anthropic_error = {"type": "error", "error": {"type": "rate_limit_error", "message": "m"}}
    assert (
        json_outcome("anthropic", 429, json.dumps(anthropic_error)).error_type == "rate_limit_error"
    )
    not_found = {"error": {"type": "not_found_error", "message": "m", "param": None, "code": None}}
    assert json_outcome("native", 404, json.dumps(not_found)).error_type == "not_found_error"
    assert json_outcome("native", 502, "<html>").error_type == "unparsed_error_body"


def sse_lines(*frames: tuple[str | None, Any]) -> list[str]:
    lines: list[str] = []
    for event, data in frames:
        if event:
            lines.append(f"event: {event}")
        lines += [f"data: {data if isinstance(data, str) else json.dumps(data)}", ""]
    return lines


def test_stream_outcomes() -> None:
    usage = {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 2}}
    chat = sse_lines(
        (None, {"choices": [{"delta": {"content": "hi"}}]}), (None, usage), (None, "[DONE]")
    )
    done = stream_outcome("openai", parse_sse(chat))
    assert (done.error_type, done.input_tokens, done.output_tokens) == (None, 7, 2)
    truncated = stream_outcome("openai", parse_sse(chat[:-2]))
    assert truncated.error_type == "stream_truncated"
    error = sse_lines((None, {"error": {"type": "upstream_error"}}), (None, "[DONE]"))
    assert stream_outcome("native", parse_sse(error)).error_type == "upstream_error"
    messages = sse_lines(
        ("message_start", {"message": {"usage": {"input_tokens": 9, "output_tokens": 1}}}),
        ("content_block_delta", {"delta": {"text": "x"}}),
        ("message_delta", {"usage": {"output_tokens": 4}}),
        ("message_stop", {"type": "message_stop"}),
    )
    ok = stream_outcome("anthropic", parse_sse(messages))
    assert (ok.error_type, ok.input_tokens, ok.output_tokens) == (None, 9, 4)
    assert stream_outcome("anthropic", parse_sse(messages[:-3])).error_type == "stream_truncated"
    overloaded = sse_lines(("error", {"type": "error", "error": {"type": "overloaded_error"}}))
    assert stream_outcome("anthropic", parse_sse(overloaded)).error_type == "overloaded_error"


def test_sse_multi_line_data_is_joined() -> None:
    events = parse_sse(["event: e", "data: a", "data: b", "", "", "data: c"])
    assert [(e.event, e.data) for e in events] == [("e", "a\nb"), (None, "c")]


# ---- stats --------------------------------------------------------------------------------


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(100, 0, -1)]
    assert (st.percentile(values, 50), st.percentile(values, 99), st.percentile(values, 100)) == (
        50.0,
        99.0,
        100.0,
    )
    assert st.percentile([], 50) is None and st.percentile([3.0], 99) == 3.0


def test_windows_split_by_send_time_with_latency_per_kind_and_errors() -> None:
    records = [
        *(record(t=float(i), latency=float(i + 1)) for i in range(10)),
        record(t=5, kind="invalid_model", status=404, error="not_found_error", latency=2),
        record(t=61, status=502, error="upstream_error", latency=999),
        record(t=62, latency=40),
        record(t=63, kind="limited_key", status=429, error="rate_limit_error"),
    ]
    success = {name for name, spec in KINDS.items() if spec.expects_success}
    first, second = st.windows(records, 60, success)
    assert (first["requests"], first["ok"], first["unexpected"]) == (11, 10, 0)
    assert first["kinds"]["local_native"]["p50_ms"] == 5.0
    assert first["kinds"]["local_native"]["p99_ms"] == 10.0
    assert first["kinds"]["invalid_model"]["p50_ms"] == 2.0  # errors measured for invalid kinds
    assert first["errors"] == {"404 not_found_error": 1}
    assert (second["start_s"], second["requests"], second["unexpected"]) == (60, 3, 1)
    assert second["kinds"]["local_native"]["p99_ms"] == 40.0  # the 502 is not a success
    assert second["kinds"]["limited_key"]["p50_ms"] is None
    assert second["errors"] == {"502 upstream_error": 1, "429 rate_limit_error": 1}
    assert st.error_counts(records)[0] == {"status": 404, "type": "not_found_error", "count": 1}


def test_rss_table_kept_new_gone_and_verdict() -> None:
    start = {
        1: st.ProcSample(1, "raylet", 100 * MIB, 80 * MIB),
        2: st.ProcSample(2, "ray::A", 50 * MIB),
    }
    end = {
        1: st.ProcSample(1, "raylet", 110 * MIB, 85 * MIB),
        3: st.ProcSample(3, "ray::A", 60 * MIB),
    }
    table = {r["pid"]: r for r in st.rss_table(start, end)}
    assert (table[1]["state"], table[1]["delta_rss_mib"], table[1]["end_pss_mib"]) == (
        "kept",
        10.0,
        85.0,
    )
    assert (table[2]["state"], table[2]["end_rss_mib"], table[2]["delta_rss_mib"]) == (
        "gone",
        None,
        -50.0,
    )
    assert (table[3]["state"], table[3]["start_rss_mib"]) == ("new", None)
    assert st.totals(start) == {"processes": 2, "rss_mib": 150.0, "pss_mib": None}
    verdict = st.rss_verdict(start, end, tolerance_mib=64)
    assert verdict["kept_growth_mib"] == 10.0 and verdict["gone"] == ["ray::A"]
    assert not verdict["flat"]  # a process was replaced
    assert st.rss_verdict(start, {**end, 2: start[2]}, 64)["flat"]
    assert not st.rss_verdict(start, {**end, 2: start[2]}, 5)["flat"]


def test_reconcile_matches_by_request_id_and_model() -> None:
    records = [
        record(rid="a", tokens=(5, 3)),
        record(rid="b", kind="openai_chat", model="gpt-4o-mini", tokens=(5, 3)),
        record(rid="c", status=502, error="upstream_error"),
        record(rid="d", kind="limited_key", status=429, error="rate_limit_error"),
    ]
    rows = [row("a"), row("b", "gpt-4o-mini"), row("c", status=502)]
    result = st.reconcile(records, rows)
    assert result["ok"] and result["non_200_rows"] == {"502 upstream_error": 1}
    assert result["per_model"] == {
        "demo": {"client_ok": 1, "ledger_200": 1},
        "gpt-4o-mini": {"client_ok": 1, "ledger_200": 1},
    }


def test_reconcile_reports_each_kind_of_mismatch() -> None:
    records = [
        record(rid="a", tokens=(5, 3)),
        record(rid="b", tokens=(5, 4)),
        record(rid="c"),
        record(rid="t", status=0, error="client_timeout"),
        record(rid="m"),
    ]
    rows = [row("a"), row("a"), row("b"), row("t"), row("m", "other"), row("zz")]
    result = st.reconcile(records, rows)
    assert not result["ok"]
    assert result["missing_in_ledger"] == {"count": 1, "sample": ["c"]}
    assert result["not_a_client_success"]["sample"] == ["t", "zz"]
    assert result["not_a_client_success_statuses"] == {"0 client_timeout": 1, "never sent": 1}
    assert result["token_mismatch"]["sample"] == ["b"]
    assert result["duplicate_rows"]["sample"] == ["a"]
    assert result["wrong_model"]["sample"] == ["m"]


def test_reconcile_usage_api_counts_ok_rows_per_model() -> None:
    records = [record(rid="a"), record(rid="b"), record(rid="c", status=429, error="x")]
    api = [{"model_id": "demo", "requests": 3, "errors": 1}]
    assert st.reconcile_usage_api(records, api)["ok"]
    assert not st.reconcile_usage_api(records, [{"model_id": "demo", "requests": 3, "errors": 0}])[
        "ok"
    ]


# ---- processes and config -----------------------------------------------------------------


def test_process_labels() -> None:
    assert process_label("ray::ServeRepli", ["ray::ServeReplica:gateway:demo", ""]) == (
        "ray::ServeReplica:gateway:demo"
    )
    assert process_label("raylet", ["/x/ray/core/src/ray/raylet/raylet", "--a"]) == "raylet"
    assert process_label("python", ["/v/bin/python3", "/v/bin/serve", "run", "c.yaml"]) == (
        "serve run (driver)"
    )
    dashboard = ["/v/bin/python", "/v/site-packages/ray/dashboard/dashboard.py", "--x"]
    assert process_label("python", dashboard) == "dashboard"
    log_monitor = ["/v/bin/python", "-u", "/v/site-packages/ray/_private/log_monitor.py"]
    assert process_label("python", log_monitor) == "log_monitor"
    assert process_label("ray-dashboard-NodeHead-0", ["ray-dashboard-NodeHead-0"]) == (
        "dashboard:NodeHead-0"
    )
    assert process_label("python", ["/usr/bin/python", "app.py"]) is None
    forkserver = ["python3", "-c", "from multiprocessing.forkserver import main; main(5)"]
    assert fallback_label("python3", forkserver) == "multiprocessing forkserver"
    assert fallback_label("sleep", ["sleep", "1"]) == "other:sleep"
    assert process_label("bash", []) is None


def test_rendered_soak_config_validates(tmp_path: Path) -> None:
    document = yaml.safe_load((REPO / "configs/soak.yaml").read_text())
    rendered = render_config(document, 18123, "http://127.0.0.1:19999", "sqlite:////tmp/x/u.db")
    args = rendered["applications"][0]["args"]
    assert rendered["http_options"]["port"] == 18123
    assert args["commercial"]["openai"]["base_url"] == "http://127.0.0.1:19999/v1"
    assert args["commercial"]["anthropic"]["base_url"] == "http://127.0.0.1:19999"
    assert args["ledger"]["url"] == "sqlite:////tmp/x/u.db"
    assert args["models"][0]["path"] == str(REPO / "models/demo")
    assert document["http_options"]["port"] == 8010  # the source is left alone
    path = tmp_path / "soak.yaml"
    path.write_text(yaml.safe_dump(rendered))
    (config,) = check_file(path, {"GATEWAY_ADMIN_KEY": "k"})
    assert config.auth.enabled and config.rate_limits.key_rpm


# ---- load generator (in-process transport) and the report ---------------------------------


async def test_send_one_reads_streams_and_checks_the_echoed_id() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        rid = request.headers["x-request-id"]
        if request.url.path == "/v1/messages":
            body = {"type": "error", "error": {"type": "rate_limit_error", "message": "m"}}
            return httpx.Response(429, json=body, headers={"x-request-id": "other"})
        usage = {"choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 1}}
        text = "\n".join(
            sse_lines(
                (None, {"choices": [{"delta": {"content": "x"}}]}), (None, usage), (None, "[DONE]")
            )
        )
        return httpx.Response(200, text=text, headers={"x-request-id": rid})

    async with httpx.AsyncClient(
        transport=httpx.MockTransport(handler), base_url="http://t"
    ) as client:
        ok, echoed = await send_one(client, KINDS["openai_chat_stream"], "k", "id-1", "q", 1.5)
        limited, echoed_429 = await send_one(
            client, KINDS["anthropic_messages"], "k", "id-2", "q", 2
        )
    assert (
        ok.ok
        and echoed
        and (ok.input_tokens, ok.output_tokens) == (2, 1)
        and ok.ttft_ms is not None
    )
    assert (limited.status, limited.error_type, limited.expected, echoed_429) == (
        429,
        "rate_limit_error",
        False,
        False,
    )


async def test_open_loop_sends_every_slot_and_records_backpressure() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.05)
        body = {"metrics": {"input_tokens": 1, "output_tokens": 1}}
        return httpx.Response(
            200, json=body, headers={"x-request-id": request.headers["x-request-id"]}
        )

    plan = LoadPlan(
        200, 0.1, 2, KINDS, {"local_native": 1}, {"normal": "k", "limited": "l"}, "p-", ["q"]
    )
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(handler), base_url="http://t"
    ) as client:
        result = await asyncio.wait_for(run_load(client, plan), timeout=10)
    assert len(result.records) == 20  # slots 0..19 at 5 ms apart, in 0.1 s
    skipped = [r for r in result.records if r.error_type == "client_backpressure"]
    assert 0 < len(skipped) < 20 and all(not r.expected for r in skipped)
    assert [r.t for r in result.records] == sorted(r.t for r in result.records)
    assert len({r.request_id for r in result.records}) == 20


def test_report_verdict_and_markdown() -> None:
    options = argparse.Namespace(
        rate=4.0, duration=60.0, window=60.0, max_in_flight=8, limited_rpm=20, rss_tolerance_mib=64
    )
    target = Target("http://x", "admin", "external")
    sample = {1: st.ProcSample(1, "raylet", 100 * MIB)}
    memory = {
        "scope": "test",
        "table": st.rss_table(sample, sample),
        "start_total": st.totals(sample),
        "end_total": st.totals(sample),
        "over_time": [{"t": 0.0, "rss_mib": 100.0}],
        "verdict": st.rss_verdict(sample, sample, 64),
    }
    ledger = {"ok": True, "flush_wait_s": 1.5, "rows_skipped": "none"}
    records = [record(rid="a"), record(kind="limited_key", status=429, error="rate_limit_error")]
    weights = {"local_native": 1, "limited_key": 1}

    def report(result_records: list[st.RequestRecord]) -> dict[str, Any]:
        result = LoadResult(result_records, 0, 60.0)
        measured = Measured(KINDS, weights, result, 3, memory, ledger, {})
        return build_report(options, target, "soak-t", measured)

    good = report(records)
    assert good["verdict"]["pass"], good["verdict"]
    bad = report([*records, record(rid="x", status=500, error="internal_error")])
    assert not bad["verdict"]["pass"] and not bad["verdict"]["checks"]["no unexpected responses"]
    text = render(bad)
    assert "**verdict: FAIL**" in text and "| local_native | 2 | 1 | 1 |" in text
    assert "500 internal_error x1" in text
