"""Load shapes for `bench/batching.py`: closed-loop uniform, Poisson mixed, shared prefix."""

import asyncio
import json
import random
import statistics
import time
from dataclasses import dataclass
from typing import Any

import httpx


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


@dataclass(frozen=True, slots=True)
class Arrival:
    at_s: float  # offset from the start of the run
    max_tokens: int
    prompt: str


def poisson_schedule(
    prompts: list[str], rate: float, total: int, seed: int, tokens: tuple[int, int]
) -> list[Arrival]:
    """`total` arrivals at `rate` per second (exponential gaps), max_tokens uniform in
    `tokens`; the same seed gives both engines the same workload."""
    rng = random.Random(seed)
    now, schedule = 0.0, []
    for _ in range(total):
        now += rng.expovariate(rate)
        schedule.append(Arrival(now, rng.randint(*tokens), rng.choice(prompts)))
    return schedule


async def stream_one(
    client: httpx.AsyncClient, model_id: str, prompt: str, max_tokens: int
) -> tuple[float, float, int]:
    """(time to first text ms, latency ms, output tokens) of one streamed /generate."""
    body = {"prompt": prompt, "model_id": model_id, "max_tokens": max_tokens, "stream": True}
    started = time.perf_counter()
    first: float | None = None
    tokens = 0
    async with client.stream("POST", "/api/v1/generate", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            payload = json.loads(line[6:])
            if "error" in payload:
                raise RuntimeError(payload["error"])
            if "metrics" in payload:
                tokens = payload["metrics"]["output_tokens"]
            elif first is None and payload.get("text"):
                first = time.perf_counter()
    done = time.perf_counter()
    return ((first or done) - started) * 1000, (done - started) * 1000, tokens


async def run_mixed(
    base_url: str, model_id: str, schedule: list[Arrival], clients: int, short_max: int
) -> dict[str, float]:
    """Open-loop Poisson arrivals served by at most `clients` concurrent connections;
    latency counts from the moment a client sends (a backlog waits for a free client)."""
    free = asyncio.Semaphore(clients)
    ttfts: list[float] = []
    short: list[float] = []
    latencies: list[float] = []
    tokens = 0
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=base_url, timeout=300, limits=limits) as client:
        started = time.perf_counter()

        async def one(arrival: Arrival) -> None:
            nonlocal tokens
            await asyncio.sleep(max(0.0, started + arrival.at_s - time.perf_counter()))
            async with free:
                ttft, latency, produced = await stream_one(
                    client, model_id, arrival.prompt, arrival.max_tokens
                )
            ttfts.append(ttft)
            latencies.append(latency)
            tokens += produced
            if arrival.max_tokens <= short_max:
                short.append(latency)

        await asyncio.gather(*(one(a) for a in schedule))
        elapsed = time.perf_counter() - started
    return {
        "tokens_per_s": tokens / elapsed,
        "rps": len(schedule) / elapsed,
        "ttft_p50_ms": statistics.median(ttfts),
        "ttft_p99_ms": percentile(ttfts, 0.99),
        "p99_ms": percentile(latencies, 0.99),
        "short_p99_ms": percentile(short, 0.99),
        "short_requests": float(len(short)),
    }


async def closed_loop(
    base_url: str, model_id: str, prompts: list[str], clients: int, total: int, tokens: int
) -> dict[str, float]:
    """`clients` workers each sending the next request when the last one answered."""
    latencies: list[float] = []
    produced = 0
    queue = iter(range(total))

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal produced
        for index in queue:
            body = {
                "prompt": prompts[index % len(prompts)],
                "model_id": model_id,
                "max_tokens": tokens,
            }
            started = time.perf_counter()
            response = await client.post("/api/v1/generate", json=body)
            latencies.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
            produced += response.json()["metrics"]["output_tokens"]

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=base_url, timeout=300, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return {
        "rps": total / elapsed,
        "tokens_per_s": produced / elapsed,
        "p50_ms": statistics.median(latencies),
        "p99_ms": percentile(latencies, 0.99),
    }


async def interleaved_ttft(
    base_url: str, model_ids: list[str], prompts: list[str]
) -> dict[str, list[float]]:
    """One request at a time, alternating between the models: TTFT of each (max_tokens 1)."""
    ttfts: dict[str, list[float]] = {model_id: [] for model_id in model_ids}
    async with httpx.AsyncClient(base_url=base_url, timeout=300) as client:
        for prompt in prompts:
            for model_id in model_ids:
                ttft, _, _ = await stream_one(client, model_id, prompt, 1)
                ttfts[model_id].append(ttft)
    return ttfts


def describe(app: str, model_id: str) -> dict[str, Any]:
    from ray import serve

    handle = serve.get_deployment_handle(model_id, app_name=app)
    result: dict[str, Any] = handle.describe.remote().result()
    return result
