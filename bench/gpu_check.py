"""GPU check: two 0.5-GPU replicas of a model share one GPU; batched load, tokens/s, memory.

For the demo model and a larger untrained GPT-2 (`--large LAYERSxWIDTH`, or `--large-dir`),
deploys ONE model deployment with `num_replicas: 2`, `num_gpus: 0.5`, `device: cuda`,
`dtype: auto`, batching 16, drives a concurrent load through the deployment handle and prints
per model req/s, output tokens/s and p50/p99 latency, and per replica its GPU id and torch's
memory figures (a `GpuProbeServer` subclass of `LocalModelServer` adds `gpu_report()`).

    .venv/bin/python bench/gpu_check.py [--large 12x768] [--requests 256] [--json out.json]

Without a CUDA GPU it prints one skip line and exits 0 before starting Ray. `--allow-cpu`
runs the same flow on CPU against a logical GPU (GPU-memory fields null).
"""

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SKIP_LINE = "gpu_check: skipped: no CUDA GPU visible"
GPU_DEFAULTS = {"requests": 256, "concurrency": 32, "max_tokens": 64, "large": (12, 768)}
CPU_DEFAULTS = {"requests": 32, "concurrency": 8, "max_tokens": 8, "large": (2, 64)}
REPLICAS = 2
MIB = 1024 * 1024


def parse_size(text: str) -> tuple[int, int]:
    """`12x768` -> (layers, width)."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"expected LAYERSxWIDTH such as 12x768, got {text!r}")
    return int(parts[0]), int(parts[1])


def head_count(width: int) -> int:
    """About one attention head per 64 channels, and a divisor of `width`."""
    heads = max(1, width // 64)
    while width % heads:
        heads -= 1
    return heads


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--demo-dir", type=Path, default=Path("models/demo"))
    large = parser.add_mutually_exclusive_group()
    large.add_argument("--large", type=parse_size, metavar="LAYERSxWIDTH")
    large.add_argument("--large-dir", type=Path, help="serve this saved model as the large one")
    parser.add_argument("--requests", type=int, help="timed requests per model")
    parser.add_argument("--concurrency", type=int, help="requests in flight")
    parser.add_argument("--max-tokens", type=int, help="max_tokens of each request")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--allow-cpu", action="store_true", help="run on CPU, logical GPU")
    return parser.parse_args(argv)


def apply_defaults(options: argparse.Namespace, gpu: bool) -> argparse.Namespace:
    """Fill unset sizes: full sizes on a GPU, tiny ones for `--allow-cpu`."""
    defaults = GPU_DEFAULTS if gpu else CPU_DEFAULTS
    for name, value in defaults.items():
        if name == "large" and options.large_dir is not None:
            continue
        if getattr(options, name) is None:
            setattr(options, name, value)
    return options


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[min(len(ordered), int(rank)) - 1]


def probe_server_class() -> type:
    """`GpuProbeServer`: `LocalModelServer` plus `gpu_report()` (imported lazily: heavy)."""
    from deployments.engine.server import LocalModelServer

    class GpuProbeServer(LocalModelServer):
        def gpu_report(self) -> dict[str, Any]:
            import ray
            import torch
            from ray import serve

            on_cuda = str(self.metadata["device"]).startswith("cuda")
            report: dict[str, Any] = {
                "replica": serve.get_replica_context().replica_id.unique_id,
                "node": ray.get_runtime_context().get_node_id()[:12],
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                "ray_gpu_ids": [str(i) for i in ray.get_gpu_ids()],
                "device": self.metadata["device"],
                "dtype": self.metadata["dtype"],
                "parameters": self.metadata["parameter_count"],
                "average_batch_size": self.describe()["average_batch_size"],
            }
            for key in ("allocated_mib", "max_allocated_mib", "reserved_mib", "gpu_used_mib"):
                report[key] = None
            if on_cuda:
                free, total = torch.cuda.mem_get_info()
                report["allocated_mib"] = round(torch.cuda.memory_allocated() / MIB, 1)
                report["max_allocated_mib"] = round(torch.cuda.max_memory_allocated() / MIB, 1)
                report["reserved_mib"] = round(torch.cuda.memory_reserved() / MIB, 1)
                report["gpu_used_mib"] = round((total - free) / MIB, 1)
            return report

    return GpuProbeServer


def model_config(model_id: str, path: Path, options: argparse.Namespace, gpu: bool) -> Any:
    from serve_app.contracts.config import LocalModelConfig

    return LocalModelConfig(
        id=model_id,
        path=str(path),
        num_replicas=REPLICAS,
        num_gpus=0.5,
        num_cpus=0.25,
        device="cuda" if gpu else "cpu",
        dtype="auto",
        max_new_tokens=max(options.max_tokens, 16),
        max_ongoing_requests=max(64, options.concurrency),
        batching={"max_batch_size": 16, "batch_wait_timeout_s": 0.005},
    )


def deploy(config: Any) -> Any:
    """Deploy `GpuProbeServer` as the model's one deployment; return its handle."""
    from ray import serve

    from serve_app.runtime.builder import as_deployment

    options = config.serve_options()
    options["ray_actor_options"].update(num_gpus=config.num_gpus)
    deployment = as_deployment(probe_server_class()).options(
        name=config.id, user_config=config.batching.model_dump(), **options
    )
    app = deployment.bind(config.model_dump(mode="json"))
    return serve.run(app, name=config.id, route_prefix=None)


async def drive(
    handle: Any, model_id: str, prompts: list[str], total: int, concurrency: int, max_tokens: int
) -> dict[str, float]:
    """`total` generations, at most `concurrency` in flight; req/s, tokens/s, latency."""
    from serve_app.contracts.wire import GenerationParams

    semaphore = asyncio.Semaphore(concurrency)

    async def one(index: int) -> tuple[float, int]:
        params = GenerationParams(
            request_id=f"gpu-check-{index}",
            model_id=model_id,
            prompt=prompts[index % len(prompts)],
            max_tokens=max_tokens,
            temperature=0.0,
        )
        async with semaphore:
            started = time.perf_counter()
            output = await handle.generate.remote(params)
            return time.perf_counter() - started, output.output_tokens

    started = time.perf_counter()
    results = await asyncio.gather(*(one(i) for i in range(total)))
    elapsed = time.perf_counter() - started
    latencies = [seconds * 1000 for seconds, _ in results]
    return {
        "requests": total,
        "seconds": round(elapsed, 3),
        "rps": round(total / elapsed, 2),
        "output_tokens_per_s": round(sum(t for _, t in results) / elapsed, 1),
        "p50_ms": round(percentile(latencies, 50), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
    }


async def replica_reports(handle: Any, attempts: int = 20) -> list[dict[str, Any]]:
    """Ask `gpu_report` in concurrent waves until every replica answered (Serve routes)."""
    seen: dict[str, dict[str, Any]] = {}
    for _ in range(attempts):
        wave = await asyncio.gather(*(handle.gpu_report.remote() for _ in range(4 * REPLICAS)))
        seen.update((report["replica"], report) for report in wave)
        if len(seen) >= REPLICAS:
            break
    return sorted(seen.values(), key=lambda report: str(report["replica"]))


def prepare_models(options: argparse.Namespace, workdir: Path) -> list[tuple[str, Path]]:
    from deployments.demo.model import model_exists, save_untrained_model, train_demo_model

    demo = options.demo_dir.resolve()
    if not model_exists(demo):
        train_demo_model(demo)
    if options.large_dir is not None:
        return [("gpu-demo", demo), ("gpu-large", options.large_dir.resolve())]
    layers, width = options.large
    large = save_untrained_model(
        demo, workdir / "large", n_layer=layers, n_embd=width, n_head=head_count(width)
    )
    return [("gpu-demo", demo), (f"gpu-large-{layers}x{width}", large)]


def check_model(
    model_id: str, path: Path, options: argparse.Namespace, gpu: bool
) -> dict[str, Any]:
    from ray import serve

    from deployments.demo.corpus import build_corpus

    prompts = [prompt for prompt, _ in build_corpus()]
    handle = deploy(model_config(model_id, path, options, gpu))
    try:
        args = (handle, model_id, prompts)
        asyncio.run(drive(*args, options.concurrency, options.concurrency, options.max_tokens))
        load = asyncio.run(drive(*args, options.requests, options.concurrency, options.max_tokens))
        replicas = asyncio.run(replica_reports(handle))
    finally:
        serve.delete(model_id)
    return {"model": model_id, "path": str(path), "load": load, "replicas": replicas}


def run(options: argparse.Namespace, gpu: bool) -> dict[str, Any]:
    import ray
    import torch
    from ray import serve

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(
        address="local",
        num_cpus=2,
        num_gpus=torch.cuda.device_count() if gpu else 1,
        object_store_memory=100 * MIB,
        include_dashboard=False,
        log_to_driver=False,
    )
    try:
        serve.start(proxy_location="Disabled")
        with tempfile.TemporaryDirectory(prefix="gpu-check-") as workdir:
            models = prepare_models(options, Path(workdir))
            results = [check_model(mid, path, options, gpu) for mid, path in models]
    finally:
        serve.shutdown()
        ray.shutdown()
    return {
        "gpu": torch.cuda.get_device_name(0) if gpu else None,
        "settings": {k: options.__dict__[k] for k in ("requests", "concurrency", "max_tokens")},
        "models": results,
    }


def _cell(value: Any) -> str:
    return "—" if value is None else str(value)


def format_tables(report: dict[str, Any]) -> str:
    """Markdown: one row per model (load), one row per replica (placement and memory)."""
    lines = [
        f"GPU: {_cell(report['gpu'])}; settings: {report['settings']}",
        "",
        "| model | requests | req/s | output tok/s | p50 ms | p99 ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for model in report["models"]:
        load = model["load"]
        lines.append(
            f"| {model['model']} | {load['requests']} | {load['rps']} | "
            f"{load['output_tokens_per_s']} | {load['p50_ms']} | {load['p99_ms']} |"
        )
    keys = ("replica", "node", "cuda_visible_devices", "device", "dtype", "parameters")
    mem = ("average_batch_size", "allocated_mib", "max_allocated_mib", "reserved_mib")
    lines += ["", "| model | " + " | ".join(keys + mem) + " | gpu_used_mib |"]
    lines.append("|---" * (len(keys) + len(mem) + 2) + "|")
    for model in report["models"]:
        for replica in model["replicas"]:
            cells = [_cell(replica.get(key)) for key in (*keys, *mem, "gpu_used_mib")]
            lines.append(f"| {model['model']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    import torch  # the one heavy import before the skip decision

    gpu = torch.cuda.is_available()
    if not gpu and not options.allow_cpu:
        print(SKIP_LINE)
        return 0
    report = run(apply_defaults(options, gpu), gpu)
    if options.json:
        options.json.write_text(json.dumps(report, indent=2) + "\n")
    print(format_tables(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
