"""CPU per request of each Ray process of the gateway, this checkout against another one.

    .venv/bin/python -m bench.replica_cpu --baseline /path/to/other/checkout [-n 300]

Starts the shared harness's fake upstream (127.0.0.1:18000), this checkout's gateway
(`configs/bench.yaml`, port 8000) and the baseline's (port 8001, this venv, PYTHONPATH),
then, in interleaved rounds, sends the same requests to each (wrk through the harness's
`load.py`) and charges every process of each gateway's tree its CPU time over the run.
Per-process figures separate what a change touches (the ingress, the provider proxies,
the limiter) from Ray's own daemons, whose idle CPU otherwise dominates `CPU ms/req` on a
busy machine. Prints one Markdown table per target: CPU ms per request by process.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.soak_procs import fallback_label, process_label

REPO = Path(__file__).resolve().parent.parent
HARNESS = REPO.parent / "shared" / "bench"
HARNESS_PY = "/tmp/peerbench/venv-harness/bin/python"
KEY = "sk-bench-master"
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 32}
TARGETS = {"openai chat": CHAT, "openai chat, streamed": {**CHAT, "stream": True}}


def start(name: str, checkout: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PORT": str(port),
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        "OPENAI_API_KEY": "sk-fake",
        "ANTHROPIC_API_KEY": "sk-fake",
        "GATEWAY_ADMIN_KEY": KEY,
        "RAY_TMPDIR": f"/tmp/peerbench/ray-{name}",
        "LEDGER_URL": f"sqlite:////tmp/peerbench/replica-cpu-{name}.db",
    }
    if checkout != REPO:
        env.update(PYTHONPATH=str(checkout), RAY_SERVE_HAPROXY_STATS_PORT="18404")
        env["RAY_SERVE_HAPROXY_METRICS_PORT"] = "19101"
    Path(env["RAY_TMPDIR"]).mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "serve_app.runtime.launch", "configs/bench.yaml"]
    return subprocess.Popen(
        command, cwd=checkout, env=env, start_new_session=True, stdout=subprocess.DEVNULL
    )


def wait_ready(url: str, timeout_s: float = 400) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass  # not up yet
        time.sleep(1)
    raise TimeoutError(url)


def cpu_by_process(root: int) -> dict[int, tuple[str, float]]:
    """pid -> (label, CPU seconds) over the tree; a Ray worker's title changes with the
    task it runs, so figures are kept by pid and labelled with the latest title."""
    found: dict[int, tuple[str, float]] = {}
    parent = psutil.Process(root)
    for process in [parent, *parent.children(recursive=True)]:
        try:
            name, cmdline = process.name(), process.cmdline()
            label = process_label(name, cmdline) or fallback_label(name, cmdline)
            times = process.cpu_times()
            found[process.pid] = (label.split(".")[0], times.user + times.system)
        except psutil.Error:
            continue
    return found


def charge(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]], n: int
) -> dict[str, float]:
    """CPU ms per request by label between two snapshots."""
    totals: dict[str, float] = defaultdict(float)
    for pid, (label, seconds) in after.items():
        totals[label] += 1000 * (seconds - before.get(pid, (label, 0.0))[1]) / n
    return totals


def run_load(port: int, body: dict[str, Any], n: int, c: int) -> dict[str, Any]:
    command = [
        HARNESS_PY, str(HARNESS / "load.py"), "--url",
        f"http://127.0.0.1:{port}/v1/chat/completions", "-n", str(n), "-c", str(c),
        "--warmup", str(2 * c), "--body", json.dumps(body), "-H", f"Authorization: Bearer {KEY}",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--baseline", type=Path, required=True)
    parser.add_argument("-n", type=int, default=300)
    parser.add_argument("-c", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--settle-s", type=float, default=30.0)
    options = parser.parse_args(argv)
    upstream = subprocess.Popen(
        [HARNESS_PY, str(HARNESS / "fake_upstream.py"), "--port", "18000"],
        start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    gateways = {"this": (start("this", REPO, 8000), 8000)}
    gateways["baseline"] = (start("baseline", options.baseline.resolve(), 8001), 8001)
    cost: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    try:
        for _, port in gateways.values():
            wait_ready(f"http://127.0.0.1:{port}/api/v1/health")
        time.sleep(options.settle_s)  # every replica started, nothing initialising
        for body in TARGETS.values():
            for _, port in gateways.values():
                run_load(port, body, options.c * 4, options.c)
        for _ in range(options.rounds):
            for target, body in TARGETS.items():
                for name, (process, port) in gateways.items():
                    before = cpu_by_process(process.pid)
                    result = run_load(port, body, options.n, options.c)
                    after = cpu_by_process(process.pid)
                    requests = result["ok_2xx"] + result["non_2xx"] or 1
                    for label, ms in charge(before, after, requests).items():
                        cost[(target, name)][label].append(ms)
        print_tables(cost)
    finally:
        for process, _ in gateways.values():
            os.killpg(process.pid, signal.SIGTERM)
        upstream.terminate()
        for process, _ in gateways.values():
            process.wait(timeout=120)
    return 0


def print_tables(cost: dict[tuple[str, str], dict[str, list[float]]]) -> None:
    for target in TARGETS:
        this, base = cost[(target, "this")], cost[(target, "baseline")]
        labels = sorted(set(this) | set(base), key=lambda label: -sum(base.get(label, [0])))
        print(f"\n### {target}: CPU ms per request (median of rounds)\n")
        print("| process | this checkout | baseline |\n|---|---:|---:|")
        for label in labels:
            print(f"| {label} | {_median(this.get(label))} | {_median(base.get(label))} |")
        total_this = sum(float(_median(v)) for v in this.values())
        total_base = sum(float(_median(v)) for v in base.values())
        print(f"| **whole tree** | {total_this:.2f} | {total_base:.2f} |")


def _median(values: list[float] | None) -> str:
    if not values:
        return "0.00"
    ordered = sorted(values)
    return f"{ordered[len(ordered) // 2]:.2f}"


if __name__ == "__main__":
    raise SystemExit(main())
