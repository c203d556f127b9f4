"""CPU per upstream call of the provider proxy's SDK path, for each `http_client` transport.

    .venv/bin/python -m bench.sdk_transport [--url http://127.0.0.1:18000] [-n 3000] [-c 16]

Calls the shared harness's fake upstream (start it first:
`python ../shared/bench/fake_upstream.py --port 18000`) through `make_client` and
`sdk_calls` (what `ProviderProxy` does per call, without the limiter and retries), with
`c` calls in flight on one uvloop, in interleaved rounds, and prints CPU ms per call and
calls per second for each (provider, transport). Pin it to one core (`taskset -c 1`).
"""

import argparse
import asyncio
import resource
import time
from typing import Any

from deployments.providers.sdk_calls import anthropic_messages_create, openai_chat_create
from deployments.providers.translations import make_client
from serve_app.contracts.config import ProviderConfig

BODIES = {
    "openai": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
    "anthropic": {"model": "claude-3-haiku", "messages": [{"role": "user", "content": "hi"}]},
}
CREATE = {"openai": openai_chat_create, "anthropic": anthropic_messages_create}


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def one_run(provider: str, transport: str, url: str, n: int, c: int) -> tuple[float, float]:
    base = url + ("/v1" if provider == "openai" else "")
    config = ProviderConfig(api_key_env="UNUSED", rpm=1, base_url=base, http_client=transport)
    client = make_client(provider, config, "sk-bench")
    body: dict[str, Any] = {**BODIES[provider], "max_tokens": 32}
    gate = asyncio.Semaphore(c)

    async def call() -> None:
        async with gate:
            await CREATE[provider](client, dict(body))

    await asyncio.gather(*(call() for _ in range(min(200, n))))  # warm the pool
    cpu, wall = cpu_s(), time.perf_counter()
    await asyncio.gather(*(call() for _ in range(n)))
    cpu, wall = cpu_s() - cpu, time.perf_counter() - wall
    await client.close()
    return cpu / n * 1000, n / wall


async def main_async(options: argparse.Namespace) -> None:
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for _ in range(options.rounds):
        for provider in BODIES:
            for transport in ("httpx", "aiohttp"):
                run = await one_run(provider, transport, options.url, options.n, options.c)
                results.setdefault((provider, transport), []).append(run)
    print(f"| provider | transport | CPU ms/call (median of {options.rounds}) | calls/s |")
    print("|---|---|---:|---:|")
    for (provider, transport), runs in results.items():
        cpu = sorted(r[0] for r in runs)[len(runs) // 2]
        rate = sorted(r[1] for r in runs)[len(runs) // 2]
        print(f"| {provider} | {transport} | {cpu:.3f} | {rate:,.0f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:18000")
    parser.add_argument("-n", type=int, default=3000)
    parser.add_argument("-c", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args(argv)
    import uvloop

    uvloop.run(main_async(options))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
