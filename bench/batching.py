"""Dynamic batching benchmark: `/api/v1/generate` at concurrency 16, batch 8 vs batch 1.

Deploys one gateway with the same model twice (`bench-b8`: max_batch_size 8, `bench-b1`:
max_batch_size 1), then drives both in interleaved rounds, so machine noise hits them alike.

    .venv/bin/python bench/batching.py --model models/demo [--rounds 3 --requests 96]

Prints a Markdown table (req/s, output tokens/s, p50/p99 ms) and the c=1 p50.
"""

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from deployments.demo.corpus import build_corpus


def gateway_args(model: Path, torch_threads: int, batch_wait_s: float) -> dict[str, Any]:
    def entry(model_id: str, batch: int) -> dict[str, Any]:
        return {
            "id": model_id,
            "path": str(model),
            "max_new_tokens": 64,
            "num_cpus": 0.5,
            "torch_threads": torch_threads,
            "batching": {"max_batch_size": batch, "batch_wait_timeout_s": batch_wait_s},
            "defaults": {"temperature": 0.0, "max_tokens": 32},
            "max_ongoing_requests": 64,
        }

    return {
        "auth": {"enabled": False},
        "ingress": {"num_cpus": 0.1},
        "models": [entry("bench-b8", 8), entry("bench-b1", 1)],
        "ledger": {"url": f"sqlite:///{tempfile.mkdtemp()}/usage.db"},
    }


async def drive(
    base_url: str, model_id: str, prompts: list[str], concurrency: int, total: int, max_tokens: int
) -> dict[str, float]:
    latencies: list[float] = []
    tokens = 0
    queue = iter(range(total))

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal tokens
        for index in queue:
            body = {
                "prompt": prompts[index % len(prompts)],
                "model_id": model_id,
                "max_tokens": max_tokens,
            }
            started = time.perf_counter()
            response = await client.post("/api/v1/generate", json=body)
            latencies.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
            tokens += response.json()["metrics"]["output_tokens"]

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=120, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "rps": total / elapsed,
        "tokens_per_s": tokens / elapsed,
        "p50_ms": statistics.median(latencies),
        "p99_ms": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
    }


def run(options: argparse.Namespace) -> dict[str, Any]:
    import ray
    from ray import serve

    from serve_app.runtime.builder import build_app

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(
        num_cpus=4, include_dashboard=False, object_store_memory=100 * 1024**2, log_to_driver=False
    )
    serve.start(http_options={"host": "127.0.0.1", "port": options.port})
    try:
        serve.run(
            build_app(gateway_args(options.model, options.torch_threads, options.batch_wait_s)),
            name="bench",
            route_prefix="/",
        )
        base = f"http://127.0.0.1:{options.port}"
        prompts = [prompt for prompt, _ in build_corpus()]
        results: dict[str, list[dict[str, float]]] = {"bench-b8": [], "bench-b1": []}
        for model_id in results:  # warm-up
            asyncio.run(drive(base, model_id, prompts, 16, 32, options.max_tokens))
        for _ in range(options.rounds):
            for model_id in results:
                results[model_id].append(
                    asyncio.run(
                        drive(base, model_id, prompts, 16, options.requests, options.max_tokens)
                    )
                )
        single = asyncio.run(drive(base, "bench-b8", prompts, 1, 30, options.max_tokens))
        status = httpx.get(f"{base}/api/v1/status").json()["models"]
        batch = {m["id"]: m["average_batch_size"] for m in status}
        return {"c16": results, "c1": single, "average_batch_size": batch}
    finally:
        serve.shutdown()
        ray.shutdown()


def summarize(report: dict[str, Any]) -> str:
    lines = ["| deployment | req/s | output tok/s | p50 ms | p99 ms |", "|---|---:|---:|---:|---:|"]
    medians = {}
    for model_id, rounds in report["c16"].items():
        med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
        medians[model_id] = med
        lines.append(
            f"| {model_id} (c=16) | {med['rps']:.1f} | {med['tokens_per_s']:.1f} | "
            f"{med['p50_ms']:.1f} | {med['p99_ms']:.1f} |"
        )
    ratio = medians["bench-b8"]["rps"] / medians["bench-b1"]["rps"]
    lines.append(f"\nthroughput ratio batch 8 / batch 1 at c=16: **{ratio:.2f}x**")
    lines.append(f"c=1 p50 (batch 8 deployment): {report['c1']['p50_ms']:.1f} ms")
    lines.append(f"average batch size over the run: {report['average_batch_size']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=Path("models/demo"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=96)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--batch-wait-s", type=float, default=0.005, help="batch_wait_timeout_s of both deployments"
    )
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    parser.add_argument(
        "--untrained",
        metavar="LAYERSxWIDTH",
        help="serve a random model of this size (e.g. 6x512) over the demo tokenizer that never "
        "stops early, so every request decodes --max-tokens tokens (compute-bound case)",
    )
    options = parser.parse_args()
    options.model = options.model.resolve()
    if options.untrained:
        from deployments.demo.model import save_untrained_model

        layers, width = (int(part) for part in options.untrained.lower().split("x"))
        options.model = save_untrained_model(
            options.model,
            Path(tempfile.mkdtemp()) / "untrained",
            n_layer=layers,
            n_embd=width,
            n_head=max(1, width // 64),
        )
    report = run(options)
    if options.json:
        options.json.write_text(json.dumps(report, indent=2))
    print(summarize(report))


if __name__ == "__main__":
    main()
