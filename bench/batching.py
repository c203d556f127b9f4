"""Batching benchmarks through the whole gateway (`/api/v1/generate`).

`--workload mixed` (default): continuous batching (`bench-cb`) against the static path
(`bench-static`, `batching.mode: static`), same model and `max_batch_size`, in ONE run with
interleaved rounds. Each round is the same seeded workload for both: 16 clients, Poisson
arrivals at `--load` x the rate the continuous engine sustains closed-loop (measured first),
`max_tokens` uniform in 4-64, streamed. Reports output tokens/s, TTFT p50/p99, p99 latency
of the short requests (max_tokens <= 8), the average running batch, and c=1 latency. Then
the time to first token of prompts that share a 200-token prefix, with prefix reuse
(`bench-cb`) and without (`bench-noprefix`, `prefix_cache_tokens: 0`), interleaved.

`--workload uniform`: the older comparison, batch 8 against batch 1 at concurrency 16.

    .venv/bin/python -m bench.batching --untrained 6x512           # compute-bound model
    .venv/bin/python -m bench.batching --model models/demo         # gateway-bound model
"""

import argparse
import asyncio
import json
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

from bench.batching_load import (
    closed_loop,
    describe,
    interleaved_ttft,
    poisson_schedule,
    run_mixed,
)
from deployments.demo.corpus import build_corpus

APP = "bench"


def model_entry(options: argparse.Namespace, model_id: str, batching: dict[str, Any]) -> dict:
    return {
        "id": model_id,
        "path": str(options.model),
        "max_new_tokens": 64,
        "num_cpus": 0.5,
        "torch_threads": options.torch_threads,
        "batching": {"batch_wait_timeout_s": options.batch_wait_s, **batching},
        "defaults": {"temperature": 0.0, "max_tokens": 32},
        "max_ongoing_requests": 64,
    }


def gateway_args(options: argparse.Namespace) -> dict[str, Any]:
    size = options.batch
    if options.workload == "uniform":
        models = [
            model_entry(options, "bench-b8", {"max_batch_size": 8, "mode": options.mode}),
            model_entry(options, "bench-b1", {"max_batch_size": 1, "mode": options.mode}),
        ]
    else:
        models = [
            model_entry(options, "bench-cb", {"max_batch_size": size, "mode": "continuous"}),
            model_entry(options, "bench-static", {"max_batch_size": size, "mode": "static"}),
            model_entry(
                options,
                "bench-noprefix",
                {"max_batch_size": size, "mode": "continuous", "prefix_cache_tokens": 0},
            ),
        ]
    return {
        "auth": {"enabled": False},
        "ingress": {"num_cpus": 0.1},
        "models": models,
        "ledger": {"url": f"sqlite:///{tempfile.mkdtemp()}/usage.db"},
    }


def shared_prefix_prompts(model: Path, prefix_tokens: int, count: int) -> list[str]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    text = " ".join(prompt + answer for prompt, answer in build_corpus())
    prefix = tokenizer.decode(tokenizer(text)["input_ids"][:prefix_tokens])
    return [f"{prefix}\nQ{index}: What is {index} plus {index}?\nA:" for index in range(count)]


def batch_counters(model_id: str) -> tuple[int, int]:
    info = describe(APP, model_id)
    return int(info["batches"]), int(info["batched_requests"])


def mixed(options: argparse.Namespace, base: str) -> dict[str, Any]:
    prompts = [prompt for prompt, _ in build_corpus()]
    engines = ["bench-cb", "bench-static"]
    for model_id in engines:  # warm-up
        asyncio.run(closed_loop(base, model_id, prompts, 16, 32, 16))
    saturation = asyncio.run(closed_loop(base, "bench-cb", prompts, 16, 64, 34))["rps"]
    rate = options.load * saturation
    results: dict[str, list[dict[str, float]]] = {m: [] for m in engines}
    for round_index in range(options.rounds):
        schedule = poisson_schedule(prompts, rate, options.requests, round_index, (4, 64))
        order = engines if round_index % 2 == 0 else engines[::-1]
        for model_id in order:
            before = batch_counters(model_id)
            figures = asyncio.run(run_mixed(base, model_id, schedule, 16, 8))
            after = batch_counters(model_id)
            steps = after[0] - before[0]
            figures["average_batch"] = (after[1] - before[1]) / steps if steps else 0.0
            results[model_id].append(figures)
    single: dict[str, list[float]] = {m: [] for m in engines}
    for _ in range(options.c1_requests):
        for model_id in engines:
            single[model_id].append(
                asyncio.run(closed_loop(base, model_id, prompts, 1, 1, 32))["p50_ms"]
            )
    report: dict[str, Any] = {"rate_rps": rate, "mixed": results, "c1_ms": single}
    if options.prefix_tokens:
        shared = shared_prefix_prompts(options.model, options.prefix_tokens, options.c1_requests)
        ttft = asyncio.run(interleaved_ttft(base, ["bench-cb", "bench-noprefix"], shared))
        report["prefix_ttft_ms"] = {m: values[1:] for m, values in ttft.items()}  # 1st fills
        report["prefix_cache"] = describe(APP, "bench-cb")["continuous"]["prefix_cache"]
    return report


def uniform(options: argparse.Namespace, base: str) -> dict[str, Any]:
    prompts = [prompt for prompt, _ in build_corpus()]
    results: dict[str, list[dict[str, float]]] = {"bench-b8": [], "bench-b1": []}
    for model_id in results:  # warm-up
        asyncio.run(closed_loop(base, model_id, prompts, 16, 32, options.max_tokens))
    for _ in range(options.rounds):
        for model_id in results:
            results[model_id].append(
                asyncio.run(
                    closed_loop(base, model_id, prompts, 16, options.requests, options.max_tokens)
                )
            )
    single = asyncio.run(closed_loop(base, "bench-b8", prompts, 1, 30, options.max_tokens))
    return {"c16": results, "c1": single}


def run(options: argparse.Namespace) -> dict[str, Any]:
    import ray
    from ray import serve

    from serve_app.runtime.builder import build_app

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(  # "local": a Ray of its own, never a cluster another process started
        address="local",
        num_cpus=4,
        include_dashboard=False,
        object_store_memory=100 * 1024**2,
        log_to_driver=False,
    )
    serve.start(http_options={"host": "127.0.0.1", "port": options.port})
    try:
        serve.run(build_app(gateway_args(options)), name=APP, route_prefix="/")
        base = f"http://127.0.0.1:{options.port}"
        return mixed(options, base) if options.workload == "mixed" else uniform(options, base)
    finally:
        serve.shutdown()
        ray.shutdown()


def _median(rounds: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rounds)


def summarize_mixed(report: dict[str, Any]) -> str:
    keys = ["tokens_per_s", "ttft_p50_ms", "ttft_p99_ms", "short_p99_ms", "p99_ms", "average_batch"]
    lines = [
        f"Poisson arrivals at {report['rate_rps']:.2f} req/s, 16 clients, max_tokens 4-64 "
        "(medians over rounds)\n",
        "| engine | " + " | ".join(keys) + " | c=1 p50 ms |",
        "|---|" + "---:|" * (len(keys) + 1),
    ]
    med = {m: {k: _median(r, k) for k in keys} for m, r in report["mixed"].items()}
    c1 = {m: statistics.median(v) for m, v in report["c1_ms"].items()}
    for model_id, figures in med.items():
        cells = " | ".join(f"{figures[k]:.1f}" for k in keys)
        lines.append(f"| {model_id} | {cells} | {c1[model_id]:.1f} |")
    cb, st = med["bench-cb"], med["bench-static"]
    lines.append(
        f"\ncontinuous / static: tokens/s **{cb['tokens_per_s'] / st['tokens_per_s']:.2f}x**, "
        f"short p99 **{cb['short_p99_ms'] / st['short_p99_ms']:.2f}x**, "
        f"TTFT p99 {cb['ttft_p99_ms'] / st['ttft_p99_ms']:.2f}x, "
        f"c=1 p50 **{c1['bench-cb'] / c1['bench-static']:.2f}x**"
    )
    if "prefix_ttft_ms" in report:
        ttft = {m: statistics.median(v) for m, v in report["prefix_ttft_ms"].items()}
        lines.append(
            f"shared-prefix TTFT p50: with reuse {ttft['bench-cb']:.1f} ms, without "
            f"{ttft['bench-noprefix']:.1f} ms ({ttft['bench-cb'] / ttft['bench-noprefix']:.2f}x); "
            f"prefix cache {report['prefix_cache']}"
        )
    return "\n".join(lines)


def summarize_uniform(report: dict[str, Any]) -> str:
    lines = ["| deployment | req/s | output tok/s | p50 ms | p99 ms |", "|---|---:|---:|---:|---:|"]
    medians = {}
    for model_id, rounds in report["c16"].items():
        med = {k: _median(rounds, k) for k in rounds[0]}
        medians[model_id] = med
        lines.append(
            f"| {model_id} (c=16) | {med['rps']:.1f} | {med['tokens_per_s']:.1f} | "
            f"{med['p50_ms']:.1f} | {med['p99_ms']:.1f} |"
        )
    ratio = medians["bench-b8"]["rps"] / medians["bench-b1"]["rps"]
    lines.append(f"\nthroughput ratio batch 8 / batch 1 at c=16: **{ratio:.2f}x**")
    lines.append(f"c=1 p50 (batch 8 deployment): {report['c1']['p50_ms']:.1f} ms")
    return "\n".join(lines)


def parse_options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=Path("models/demo"))
    parser.add_argument("--workload", choices=["mixed", "uniform"], default="mixed")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=96, help="requests per engine per round")
    parser.add_argument("--load", type=float, default=0.9, help="arrival rate / saturation")
    parser.add_argument("--batch", type=int, default=16, help="max_batch_size of both engines")
    parser.add_argument("--c1-requests", type=int, default=21)
    parser.add_argument("--prefix-tokens", type=int, default=200, help="0: skip prefix TTFT")
    parser.add_argument("--max-tokens", type=int, default=32, help="uniform workload")
    parser.add_argument("--mode", default="continuous", help="uniform workload's batching.mode")
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--batch-wait-s", type=float, default=0.005, help="static batch wait")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    parser.add_argument(
        "--untrained",
        metavar="LAYERSxWIDTH",
        help="serve a random model of this size (e.g. 6x512) over the demo tokenizer that never "
        "stops early, so every request decodes its max_tokens (compute-bound case)",
    )
    return parser.parse_args()


def main() -> None:
    options = parse_options()
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
    summary = summarize_mixed if options.workload == "mixed" else summarize_uniform
    print(summary(report))


if __name__ == "__main__":
    main()
