"""Time to first byte of streamed chat completions, for one or more running gateways,
interleaved request by request so that machine noise hits them alike.

    .venv/bin/python -m bench.ttfb --target new=http://127.0.0.1:8000 \
        --target old=http://127.0.0.1:8001 --key sk-bench-master -n 200

Each request is `POST /v1/chat/completions` with `stream: true`; the first byte is the first
SSE `data:` line that carries a content delta (what a user sees as the first token), the
total is the time to `[DONE]`. Prints one Markdown table: p50/p90/p99 of both, per target.
"""

import argparse
import asyncio
import statistics
import time

import httpx

BODY = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "Say hello in sixteen words."}],
    "stream": True,
}


async def one(client: httpx.AsyncClient, body: dict[str, object]) -> tuple[float, float]:
    """(ms to the first content delta, ms to [DONE])."""
    started = time.perf_counter()
    first = 0.0
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not first and line.startswith("data:") and '"content"' in line:
                first = time.perf_counter() - started
            if line.strip() == "data: [DONE]":
                break
    return first * 1000, (time.perf_counter() - started) * 1000


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(targets: dict[str, str], key: str | None, n: int, model: str) -> str:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body = {**BODY, "model": model}
    clients = {
        name: httpx.AsyncClient(base_url=url, headers=headers, timeout=30)
        for name, url in targets.items()
    }
    timings: dict[str, list[tuple[float, float]]] = {name: [] for name in targets}
    try:
        for client in clients.values():  # warm-up: connections, first-call paths
            for _ in range(5):
                await one(client, body)
        for index in range(n):
            order = list(clients.items())
            for name, client in order if index % 2 == 0 else order[::-1]:
                timings[name].append(await one(client, body))
    finally:
        for client in clients.values():
            await client.aclose()
    lines = [
        f"{n} streamed requests per target, c=1, interleaved (`{model}`)",
        "",
        "| target | TTFB p50 ms | p90 | p99 | total p50 ms | p99 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, pairs in timings.items():
        first = [pair[0] for pair in pairs]
        total = [pair[1] for pair in pairs]
        lines.append(
            f"| {name} | {statistics.median(first):.2f} | {percentile(first, 0.9):.2f} | "
            f"{percentile(first, 0.99):.2f} | {statistics.median(total):.2f} | "
            f"{percentile(total, 0.99):.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", action="append", required=True, help="NAME=URL")
    parser.add_argument("--key", default=None)
    parser.add_argument("--model", default="gpt-4o-mini")
    parser.add_argument("-n", type=int, default=200)
    options = parser.parse_args(argv)
    targets = dict(item.split("=", 1) for item in options.target)
    print(asyncio.run(run(targets, options.key, options.n, options.model)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
