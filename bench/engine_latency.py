"""c=1 latency of the two engines in-process (no Ray, no HTTP): the static decode loop
(`BatchGenerator.generate`, one request) against the continuous engine (one request at a
time), interleaved request by request on the same model object.

    .venv/bin/python -m bench.engine_latency --model models/demo --untrained 6x512
"""

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import torch

from deployments.demo.corpus import build_corpus
from deployments.engine.continuous import ContinuousEngine, Sequence
from deployments.engine.decoding import BatchGenerator, SamplingParams
from deployments.engine.loading import load_hf_model
from serve_app.contracts.config import BatchingConfig, LocalModelConfig


def continuous_once(engine: ContinuousEngine, ids: list[int], params: SamplingParams) -> float:
    done = threading.Event()
    started = time.perf_counter()
    engine.submit(
        Sequence(
            prepare=lambda: list(ids),
            sampling=params,
            deliver=lambda _item: done.set(),
        )
    )
    done.wait()
    return (time.perf_counter() - started) * 1000


def static_once(generator: BatchGenerator, ids: list[int], params: SamplingParams) -> float:
    started = time.perf_counter()
    generator.generate([ids], [params])
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=Path("models/demo"))
    parser.add_argument("--untrained", metavar="LAYERSxWIDTH")
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--max-tokens", type=int, default=32)
    options = parser.parse_args()
    path = options.model
    if options.untrained:
        from deployments.demo.model import save_untrained_model

        layers, width = (int(p) for p in options.untrained.lower().split("x"))
        path = save_untrained_model(
            path,
            Path(tempfile.mkdtemp()) / "m",
            n_layer=layers,
            n_embd=width,
            n_head=max(1, width // 64),
        )
    torch.set_num_threads(1)
    loaded = load_hf_model(LocalModelConfig(id="m", path=str(path)))
    generator = BatchGenerator(loaded.model, loaded.tokenizer, loaded.device, loaded.max_context)
    generator.eos_token_id = None  # every request decodes max_tokens tokens
    engine = ContinuousEngine(generator, BatchingConfig(prefix_cache_tokens=0))
    params = SamplingParams(max_tokens=options.max_tokens, temperature=0.0)
    prompts = [generator.encode(p) for p, _ in build_corpus()[: options.requests]]
    timings: dict[str, list[float]] = {"static": [], "continuous": []}
    for ids in prompts[:2]:  # warm-up
        static_once(generator, ids, params)
        continuous_once(engine, ids, params)
    for index, ids in enumerate(prompts):
        order = ["static", "continuous"] if index % 2 == 0 else ["continuous", "static"]
        for name in order:
            run = static_once if name == "static" else continuous_once
            timings[name].append(run(generator if name == "static" else engine, ids, params))  # type: ignore[arg-type]
    engine.stop()
    med = {name: statistics.median(values) for name, values in timings.items()}
    print(f"c=1, {options.max_tokens} tokens, {len(prompts)} requests each, interleaved:")
    for name, value in med.items():
        print(f"  {name}: p50 {value:.1f} ms")
    print(f"  continuous / static: {med['continuous'] / med['static']:.3f}x")


if __name__ == "__main__":
    main()
