"""Probe throughput and latency of a running gateway: `/api/v1/health` with wrk at
concurrency 1 and 32, and `/api/v1/models` (which asks every deployment) with httpx.

    .venv/bin/python bench/probes.py --url http://127.0.0.1:8000 [--seconds 10] [--key KEY]

Prints one Markdown table. Needs Debian's `wrk` (`apt-get install wrk`).
"""

import argparse
import re
import shutil
import statistics
import subprocess
import time

import httpx

WRK_LATENCY = re.compile(r"^\s+50%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
WRK_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def parse_wrk(output: str) -> tuple[float, float]:
    """(req/s, p50 ms) from `wrk --latency` output."""
    rps = WRK_RPS.search(output)
    p50 = WRK_LATENCY.search(output)
    if rps is None or p50 is None:
        raise ValueError(f"unexpected wrk output:\n{output}")
    return float(rps.group(1)), float(p50.group(1)) * UNIT_MS[p50.group(2)]


def wrk(url: str, connections: int, seconds: int) -> tuple[float, float]:
    command = ["wrk", "--latency", "-t1", f"-c{connections}", f"-d{seconds}s", url]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return parse_wrk(done.stdout)


def listing_p50_ms(base: str, key: str | None, calls: int = 30) -> float:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    timings = []
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        client.get("/api/v1/models").raise_for_status()
        for _ in range(calls):
            started = time.perf_counter()
            client.get("/api/v1/models").raise_for_status()
            timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--key", default=None, help="API key for /api/v1/models")
    options = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("probes: wrk is not installed (apt-get install wrk)")
        return 2
    health = f"{options.url}/api/v1/health"
    rows = []
    for connections in (1, 32):
        rps, p50 = wrk(health, connections, options.seconds)
        rows.append(f"| GET /api/v1/health | {connections} | {rps:,.0f} | {p50:.2f} |")
    listing = listing_p50_ms(options.url, options.key)
    rows.append(f"| GET /api/v1/models | 1 | - | {listing:.2f} |")
    print("| probe | concurrency | req/s | p50 ms |\n|---|---:|---:|---:|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
