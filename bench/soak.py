"""Load-and-soak benchmark: mixed traffic at a steady rate for a long time, then the error
counts, latency over time, memory of every Ray process and the ledger-versus-client check.

    .venv/bin/python -m bench.soak                          # 10 min at 8 req/s (~13 min)
    .venv/bin/python -m bench.soak --duration 60 --rate 4   # short run (~3-4 min)

Run from the repository root (after `make demo-model`). By default it starts the fake
provider (`bench/soak_upstream.py`, 20 ms delay) and `serve run configs/soak.yaml` with that
provider's URL, a fresh SQLite ledger and a random admin key, all under `--workdir`
(default /tmp/soak/<run id>); both are stopped at the end (SIGTERM to their process groups).

With `--url` it drives an already running gateway instead (auth on, `--admin-key` or
GATEWAY_ADMIN_KEY): it cannot start or slow the upstream then, checks the ledger row by row
only with `--ledger-db PATH` (a SQLite ledger; else `/api/v1/usage` totals alone, which count
any other traffic too), and measures the process tree of `--ray-pid` (else every Ray-looking
process of this user on the host, other clusters included).

Traffic: see `bench/soak_traffic.py` (`--mix name=weight,...` to change it). Two keys are
created through the admin API: a normal one and a "limited" one with `--limited-rpm`.
The Markdown report goes to stdout, the JSON report to `--out`; exit status 1 when a check
fails (unexpected responses, ledger mismatch, RSS growth over `--rss-tolerance-mib`, ...).
"""

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml

from bench import soak_stats as stats
from bench.soak_ledger import check_ledger
from bench.soak_load import LoadPlan, LoadResult, new_client, run_load, warm_up
from bench.soak_procs import (
    REPO,
    Managed,
    free_port,
    render_config,
    sample_ray_processes,
    start_gateway,
    start_upstream,
)
from bench.soak_report import render
from bench.soak_traffic import (
    DEFAULT_MODELS,
    DEFAULT_WEIGHTS,
    KeyRole,
    KindSpec,
    Models,
    default_kinds,
    parse_weights,
)
from deployments.demo.corpus import build_facts
from serve_app.runtime.config_check import ConfigError, check_file


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rate", type=float, default=8.0, help="requests per second (open loop)")
    p.add_argument("--duration", type=float, default=600.0, help="seconds of load")
    p.add_argument("--window", type=float, default=60.0, help="seconds per report window")
    p.add_argument("--max-in-flight", type=int, default=64)
    p.add_argument("--timeout", type=float, default=60.0, help="client timeout per request (s)")
    default_mix = ",".join(f"{name}={weight}" for name, weight in DEFAULT_WEIGHTS.items())
    p.add_argument("--mix", default=None, help=f"name=weight,... (default: {default_mix})")
    p.add_argument("--limited-rpm", type=int, default=20, help="rpm of the limited key")
    p.add_argument("--rss-interval", type=float, default=60.0, help="seconds between samples")
    p.add_argument("--rss-tolerance-mib", type=float, default=64.0)
    p.add_argument("--out", type=Path, default=Path("/tmp/soak/report.json"))
    p.add_argument("--records", type=Path, default=None, help="also write every request (JSONL)")
    p.add_argument("--workdir", type=Path, default=None, help="default /tmp/soak/<run id>")
    p.add_argument("--config", type=Path, default=REPO / "configs/soak.yaml")
    p.add_argument("--upstream-delay-ms", type=float, default=20.0)
    p.add_argument("--cpus", type=float, default=4.0, help="logical CPUs Ray may hand out")
    p.add_argument("--startup-timeout", type=float, default=300.0)
    p.add_argument("--ledger-wait", type=float, default=30.0, help="most seconds to await flush")
    p.add_argument("--url", default=None, help="drive this running gateway instead")
    p.add_argument("--admin-key", default=None, help="default: GATEWAY_ADMIN_KEY (with --url)")
    p.add_argument("--ledger-db", type=Path, default=None, help="its SQLite ledger (with --url)")
    p.add_argument("--ray-pid", type=int, default=None, help="root of its Ray tree (with --url)")
    p.add_argument("--local-model", default=DEFAULT_MODELS.local)
    p.add_argument("--openai-model", default=DEFAULT_MODELS.openai)
    p.add_argument("--anthropic-model", default=DEFAULT_MODELS.anthropic)
    options = p.parse_args(argv)
    if options.rate <= 0 or options.duration <= 0 or options.max_in_flight < 1:
        p.error("--rate and --duration must be positive, --max-in-flight at least 1")
    for path in (options.out, options.workdir, options.records):
        if path is not None and path.resolve().is_relative_to(REPO):
            p.error(f"{path}: the soak writes nothing into the repository")
    return options


@dataclass
class Target:
    """The gateway under test, and what this script started for it."""

    base_url: str
    admin_key: str
    mode: str
    root_pid: int | None = None
    ledger_db: Path | None = None
    started: list[Managed] = field(default_factory=list)
    startup_s: float | None = None

    def stop(self) -> float:
        began = time.monotonic()
        for process in reversed(self.started):
            process.stop(timeout_s=90)
        self.started.clear()
        return round(time.monotonic() - began, 1)


def wait_ready(base_url: str, gateway: Managed, timeout_s: float) -> float:
    began = time.monotonic()
    while time.monotonic() - began < timeout_s:
        if not gateway.alive():
            raise RuntimeError(f"serve run exited:\n{gateway.tail()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base_url}/api/v1/ready", timeout=5).status_code == 200:
                return round(time.monotonic() - began, 1)
        time.sleep(1.0)
    raise RuntimeError(f"gateway not ready after {timeout_s} s:\n{gateway.tail()}")


def start_managed(options: argparse.Namespace, workdir: Path, target: Target) -> None:
    """Fake provider + `serve run` of the rendered config; fills in `target`."""
    upstream, upstream_url = start_upstream(workdir, options.upstream_delay_ms)
    target.started.append(upstream)
    port = free_port()
    ledger = workdir / "usage.db"
    document = yaml.safe_load(options.config.read_text())
    config = workdir / "soak.yaml"
    config.write_text(
        yaml.safe_dump(render_config(document, port, upstream_url, f"sqlite:///{ledger}"))
    )
    check_file(config, {"GATEWAY_ADMIN_KEY": target.admin_key})
    gateway = start_gateway(config, workdir, target.admin_key, options.cpus)
    target.started.append(gateway)
    target.base_url, target.root_pid, target.ledger_db = (
        f"http://127.0.0.1:{port}",
        gateway.pid,
        ledger,
    )
    target.mode = (
        f"managed: serve run {options.config.name}, upstream delay {options.upstream_delay_ms} ms"
    )
    target.startup_s = wait_ready(target.base_url, gateway, options.startup_timeout)


async def create_keys(
    client: httpx.AsyncClient, admin_key: str, run_id: str, limited_rpm: int
) -> dict[KeyRole, str]:
    keys: dict[KeyRole, str] = {}
    roles: tuple[tuple[KeyRole, int | None], ...] = (("normal", None), ("limited", limited_rpm))
    for role, rpm in roles:
        response = await client.post(
            "/api/v1/admin/keys",
            json={"name": f"{run_id}-{role}", "rpm": rpm},
            headers={"authorization": f"Bearer {admin_key}"},
        )
        if response.status_code != 201:
            raise RuntimeError(f"creating the {role} key: {response.status_code} {response.text}")
        keys[role] = response.json()["key"]
    return keys


def memory_point(t: float, sample: dict[int, stats.ProcSample]) -> dict[str, Any]:
    by_process = {f"{s.label} ({s.pid})": round(s.rss / 2**20, 1) for s in sample.values()}
    return {"t": round(t, 1), **stats.totals(sample), "by_process": by_process}


async def sample_every(
    interval_s: float,
    root_pid: int | None,
    began: float,
    points: list[dict[str, Any]],
    progress: LoadResult,
) -> None:
    """Memory every `interval_s`, and a progress line on stderr."""
    while True:
        await asyncio.sleep(interval_s)
        sample = await asyncio.to_thread(sample_ray_processes, root_pid)
        point = memory_point(time.monotonic() - began, sample)
        points.append(point)
        done = progress.records
        print(
            f"t={point['t']:.0f} s: {len(done)} done, {sum(r.ok for r in done)} ok, "
            f"{sum(not r.expected for r in done)} unexpected; Ray RSS {point['rss_mib']} MiB",
            file=sys.stderr,
            flush=True,
        )


async def measured_load(
    options: argparse.Namespace, target: Target, client: httpx.AsyncClient, plan: LoadPlan
) -> tuple[LoadResult, dict[str, Any], tuple[float, float]]:
    """The load, with memory sampled at its start, every interval and its end."""
    start = await asyncio.to_thread(sample_ray_processes, target.root_pid)
    began, wall_start = time.monotonic(), time.time()
    points = [memory_point(0.0, start)]
    result = LoadResult()
    sampler = asyncio.create_task(
        sample_every(options.rss_interval, target.root_pid, began, points, result)
    )
    try:
        await run_load(client, plan, result)
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    end = await asyncio.to_thread(sample_ray_processes, target.root_pid)
    points.append(memory_point(time.monotonic() - began, end))
    memory = {
        "scope": _scope(target),
        "table": stats.rss_table(start, end),
        "start_total": stats.totals(start),
        "end_total": stats.totals(end),
        "over_time": points,
        "second_half_growth_mib": stats.late_growth(points, options.duration / 2),
        "verdict": stats.rss_verdict(start, end, options.rss_tolerance_mib),
    }
    return result, memory, (wall_start, time.time())


def _scope(target: Target) -> str:
    if target.root_pid is None:
        return f"every Ray-looking process of {psutil.Process().username()} on this host"
    return f"process tree of pid {target.root_pid}"


@dataclass
class Measured:
    """Everything one soak measured, before it is summarized."""

    kinds: dict[str, KindSpec]
    weights: dict[str, int]
    result: LoadResult
    warmup_requests: int
    memory: dict[str, Any]
    ledger: dict[str, Any]
    status: dict[str, Any]


async def soak(options: argparse.Namespace, target: Target, run_id: str) -> Measured:
    models = Models(options.local_model, options.openai_model, options.anthropic_model)
    kinds = default_kinds(models)
    weights = parse_weights(options.mix, kinds) if options.mix else dict(DEFAULT_WEIGHTS)
    questions = [fact.question for fact in build_facts()]
    async with new_client(target.base_url, options.max_in_flight, options.timeout) as client:
        keys = await create_keys(client, target.admin_key, run_id, options.limited_rpm)
        warm = await warm_up(
            client, kinds, keys, f"{run_id}-w", questions[0], options.startup_timeout
        )
        plan = LoadPlan(
            options.rate,
            options.duration,
            options.max_in_flight,
            kinds,
            weights,
            keys,
            f"{run_id}-m",
            questions,
        )
        result, memory, (load_began, _) = await measured_load(options, target, client, plan)
        ledger = await check_ledger(
            client,
            target.admin_key,
            result.records,
            target.ledger_db,
            plan.id_prefix,
            load_began,
            options.ledger_wait,
        )
        status = (await client.get("/api/v1/status")).json()
    return Measured(kinds, weights, result, len(warm), memory, ledger, status)


def load_summary(result: LoadResult, warmup_requests: int) -> dict[str, Any]:
    records = result.records
    return {
        "requests": len(records),
        "ok": sum(r.ok for r in records),
        "unexpected": sum(not r.expected for r in records),
        "elapsed_s": result.elapsed_s,
        "achieved_rate": round(len(records) / max(result.elapsed_s, 1e-9), 2),
        "warmup_requests": warmup_requests,
        "id_mismatches": result.id_mismatches,
    }


def checks(measured: Measured) -> dict[str, bool]:
    records = measured.result.records
    limited_429 = sum(r.kind == "limited_key" and r.status == 429 for r in records)
    return {
        "no unexpected responses": all(r.expected for r in records),
        "ledger matches client": bool(measured.ledger["ok"]),
        "Ray RSS flat": bool(measured.memory["verdict"]["flat"]),
        "request ids echoed": measured.result.id_mismatches == 0,
        "rate limit exercised": "limited_key" not in measured.weights or limited_429 > 0,
    }


def build_report(
    options: argparse.Namespace, target: Target, run_id: str, measured: Measured
) -> dict[str, Any]:
    records = measured.result.records
    success_kinds = {name for name, spec in measured.kinds.items() if spec.expects_success}
    passed = checks(measured)
    run = {
        "run_id": run_id,
        "mode": target.mode,
        "gateway_url": target.base_url,
        "rate": options.rate,
        "duration_s": options.duration,
        "window_s": options.window,
        "max_in_flight": options.max_in_flight,
        "mix": measured.weights,
        "limited_rpm": options.limited_rpm,
        "startup_s": target.startup_s,
    }
    return {
        "run": run,
        "verdict": {"pass": all(passed.values()), "checks": passed},
        "load": load_summary(measured.result, measured.warmup_requests),
        "kinds": stats.by_kind(records, success_kinds),
        "errors": stats.error_counts(records),
        "windows": stats.windows(records, options.window, success_kinds),
        "memory": measured.memory,
        "ledger": measured.ledger,
        "gateway_status": measured.status,
    }


def make_target(options: argparse.Namespace, workdir: Path) -> Target:
    if options.url:
        admin_key = options.admin_key or os.environ.get("GATEWAY_ADMIN_KEY")
        if not admin_key:
            raise SystemExit("--url needs --admin-key or GATEWAY_ADMIN_KEY")
        url = options.url.rstrip("/")
        return Target(url, admin_key, "external", options.ray_pid, options.ledger_db)
    target = Target("", options.admin_key or f"sk-soak-admin-{secrets.token_hex(16)}", "")
    try:
        start_managed(options, workdir, target)
    except BaseException:
        target.stop()
        raise
    return target


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    run_id = f"soak-{secrets.token_hex(3)}"
    workdir = (options.workdir or Path("/tmp/soak") / run_id).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"{run_id}: working in {workdir}", file=sys.stderr, flush=True)
    try:
        target = make_target(options, workdir)
    except (RuntimeError, ConfigError) as exc:
        print(f"could not start: {exc}", file=sys.stderr)
        return 2
    try:
        measured = asyncio.run(soak(options, target, run_id))
    except (RuntimeError, httpx.HTTPError) as exc:
        print(f"soak failed: {exc!r}", file=sys.stderr)
        return 2
    finally:
        stop_s = target.stop()
    report = build_report(options, target, run_id, measured)
    report["run"]["stop_s"] = stop_s
    report["run"]["workdir"] = str(workdir)
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(json.dumps(report, indent=2))
    if options.records:
        lines = (json.dumps(r) for r in stats.records_as_dicts(measured.result.records))
        options.records.write_text("\n".join(lines) + "\n")
    print(render(report))
    print(f"JSON report: {options.out}", file=sys.stderr)
    return 0 if report["verdict"]["pass"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
