"""What the response cache costs on a miss, and what a hit takes: in-process, through the
real ingress app (FastAPI, middleware, gateway, ledger buffer) over fake deployment handles.

    .venv/bin/python -m bench.cache_overhead [--requests 2000] [--rounds 5]

Rounds interleave three arms on one thread, so machine noise hits them alike:
`off` (no cache), `miss` (cache on, every request new: the key, a lookup that misses and a
store), `hit` (cache on, the same request again). CPU is `time.process_time()` per request,
latency is wall time per request (in-process: no network, no Ray). The ingress's CPU here is
a lower bound of a real request's (Serve's proxy, handles and the deployment add more), so
the miss overhead in percent is an upper bound. Prints one Markdown table (medians).
"""

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient

from tests.serve_app.app_factory import COMMERCIAL_MODEL_ID, build_gateway_app

URL = "/v1/chat/completions"


def body(index: int) -> dict[str, object]:
    text = f"request {index}: summarise the quarterly figures in one sentence please"
    return {
        "model": COMMERCIAL_MODEL_ID,
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}],
        "temperature": 0,
        "max_tokens": 32,
    }


def run(client: TestClient, requests: int, start: int, same: bool) -> tuple[float, float]:
    """(CPU ms per request, wall ms per request)."""
    cpu, wall = time.process_time(), time.perf_counter()
    for index in range(requests):
        response = client.post(URL, json=body(0 if same else start + index))
        assert response.status_code == 200, response.text
    done = time.process_time() - cpu, time.perf_counter() - wall
    return done[0] * 1000 / requests, done[1] * 1000 / requests


def cache_work_us(iterations: int = 20_000) -> float:
    """CPU microseconds of the cache's own work on one miss: the key of a chat request
    (SHA-256 of the normalised params), a lookup that misses, encoding and storing the
    answer. Deterministic where the end-to-end arms are noisy on a busy machine."""
    import asyncio
    import dataclasses

    from serve_app.contracts.config import CacheConfig
    from serve_app.contracts.wire import ChatMessage, GenerationOutput, GenerationParams
    from serve_app.core.cache import ResponseCache

    cache = ResponseCache(CacheConfig(enabled=True, max_entries=1000))
    messages = (ChatMessage("system", "be brief"), ChatMessage("user", str(body(0))))
    template = GenerationParams("r", COMMERCIAL_MODEL_ID, "", 32, 0.0, messages=messages)
    output = GenerationOutput("The figures rose by four percent.", 20, 8, "stop", "gpt")

    async def loop() -> float:
        started = time.process_time()
        for index in range(iterations):
            params = dataclasses.replace(template, request_id=str(index), max_tokens=index)
            key = cache.key_for(params)
            assert key is not None and await cache.lookup(key) is None
            await cache.save(key, output, COMMERCIAL_MODEL_ID)
        return (time.process_time() - started) * 1e6 / iterations

    return asyncio.run(loop())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    results: dict[str, list[tuple[float, float]]] = {"off": [], "miss": [], "hit": []}
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "off").mkdir()
        (Path(tmp) / "on").mkdir()
        off = build_gateway_app(Path(tmp) / "off", auth=False)
        on = build_gateway_app(Path(tmp) / "on", auth=False, cache={"enabled": True})
        with TestClient(off.app) as plain, TestClient(on.app) as cached:
            run(plain, 200, 10**8, same=False)  # warm up both
            run(cached, 200, 10**8, same=False)
            for round_index in range(args.rounds):
                start = round_index * args.requests
                results["off"].append(run(plain, args.requests, start, same=False))
                results["miss"].append(run(cached, args.requests, start, same=False))
                results["hit"].append(run(cached, args.requests, start, same=True))
    medians = {
        arm: (statistics.median(c for c, _ in rows), statistics.median(w for _, w in rows))
        for arm, rows in results.items()
    }
    base = medians["off"][0]
    print("| arm | CPU ms/req | vs off | wall ms/req |")
    print("|---|---|---|---|")
    for arm, (cpu, wall) in medians.items():
        print(f"| {arm} | {cpu:.3f} | {100 * (cpu - base) / base:+.1f} % | {wall:.3f} |")
    work = cache_work_us()
    print(
        f"\ncache work per miss: {work:.1f} us CPU = {100 * work / 1000 / base:.2f} % of the "
        f"ingress's {base:.3f} ms per request"
    )


if __name__ == "__main__":
    main()
