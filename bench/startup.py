"""Start-up time, probes and memory of `make run`'s gateway (`configs/local.yaml` by default).

    .venv/bin/python -m bench.startup [--config configs/local.yaml] [--port 8000]

Runs `python -m serve_app.runtime.launch CONFIG` (what `make run` runs once installed and the demo
models exist) in its own process group, times it to the first `/api/v1/ready` 200, runs
`bench/probes.py` against it, sums the PSS/RSS of its whole process tree (Ray included),
then stops it. Prints one Markdown report.
"""

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from bench import probes
from bench.soak_procs import sample_ray_processes

REPO = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024


def wait_ready(base: str, process: subprocess.Popen[bytes], timeout_s: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if process.poll() is not None:
            raise RuntimeError(f"the gateway exited with {process.returncode}")
        try:
            if httpx.get(f"{base}/api/v1/ready", timeout=2).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass  # not listening yet
        time.sleep(0.2)
    raise TimeoutError(f"not ready within {timeout_s:g} s")


def memory_lines(root_pid: int) -> list[str]:
    samples = sorted(sample_ray_processes(root_pid).values(), key=lambda s: -(s.pss or s.rss))
    lines = ["| process | RSS MiB | PSS MiB |", "|---|---:|---:|"]
    lines += [f"| {s.label} | {s.rss / MIB:.0f} | {(s.pss or 0) / MIB:.0f} |" for s in samples]
    rss, pss = sum(s.rss for s in samples), sum(s.pss or 0 for s in samples)
    lines.append(f"| **total ({len(samples)} processes)** | {rss / MIB:.0f} | {pss / MIB:.0f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="configs/local.yaml")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--seconds", type=int, default=10, help="per wrk probe run")
    options = parser.parse_args(argv)
    env = {**os.environ, "PORT": str(options.port), "RAY_AUTH_MODE": "disabled"}
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    command = [sys.executable, "-m", "serve_app.runtime.launch", options.config]
    process = subprocess.Popen(
        command, cwd=REPO, env=env, start_new_session=True, stdout=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{options.port}"
    try:
        ready_s = wait_ready(base, process, 300)
        print(
            f"ready after {ready_s:.1f} s (`python -m serve_app.runtime.launch {options.config}`)\n"
        )
        key = ["--key", env["GATEWAY_ADMIN_KEY"]] if env.get("GATEWAY_ADMIN_KEY") else []
        probes.main(["--url", base, "--seconds", str(options.seconds), *key])
        print()
        print("\n".join(memory_lines(process.pid)))
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
