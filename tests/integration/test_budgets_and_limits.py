"""Budgets and limits that hold across ingress replicas and survive a limiter restart, on
the session's two-node cluster, with the ledger on the real PostgreSQL server."""

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from serve_app.access.key_store import KeySpec, open_key_store
from serve_app.accounting.db import create_db_engine
from tests.conftest import ADMIN_KEY
from tests.fakes.postgres_server import postgres_server

pytestmark = pytest.mark.integration
APP = "budget"
INGRESS_REPLICAS = 4
CONCURRENCY = 64
BUDGET_USD = 0.01
MAX_TOKENS = 20
PRICE = {"input_per_million_usd": 5.0, "output_per_million_usd": 70.0}  # ~$0.0014 per call
KEY_RPM = 30


@pytest.fixture(scope="module")
def ledger_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with postgres_server(tmp_path_factory.mktemp("pg-budget")) as server:
        yield server.url


@pytest.fixture(scope="module")
def budget_app(
    gateway: str, fake_provider: Any, random_model_dir: Path, ledger_url: str
) -> Iterator[str]:
    from ray import serve

    from serve_app.runtime.builder import build_app

    provider = {"rpm": 100_000, "max_retries": 0}  # in the ingress replicas
    args = {
        "auth": {"enabled": True, "cache_ttl_s": 1},
        "rate_limits": {"timeout_ms": 2000},  # a busy 2-core machine; production: 50
        "ingress": {"num_replicas": INGRESS_REPLICAS, "num_cpus": 0.05},
        "models": [
            {
                "id": "tiny",
                "path": str(random_model_dir),
                "num_cpus": 0.1,
                "max_new_tokens": 4,
                "defaults": {"temperature": 0.0, "max_tokens": 1},
            },
        ],
        "commercial": {
            "include_default_catalog": False,
            "openai": {**provider, "base_url": fake_provider.openai_base_url},
            "anthropic": {**provider, "enabled": False},
            "models": [
                {
                    "id": "gpt-paid",
                    "provider": "openai",
                    "upstream_model": "fake-gpt",
                    "price": PRICE,
                    "context_window": 1000,
                    "max_output_tokens": 100,
                }
            ],
        },
        "ledger": {"url": ledger_url, "flush_interval_s": 0.2, "auto_migrate": True},
    }
    serve.run(build_app(args), name=APP, route_prefix=f"/{APP}")
    yield f"{gateway}/{APP}"
    serve.delete(APP)


async def known_everywhere(base: str, headers: dict[str, str]) -> None:
    """Every ingress replica's key cache knows the new key (`/usage` authenticates, and
    costs no rate-limit permit)."""
    await asyncio.sleep(1.5)  # cache_ttl_s: 1
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        for _ in range(30):
            statuses = [(await client.get("/api/v1/usage", headers=headers)).status_code
                        for _ in range(4 * INGRESS_REPLICAS)]  # fmt: skip
            if all(status == 200 for status in statuses):
                return
            await asyncio.sleep(0.5)
    raise AssertionError("the new key never reached every ingress replica")


def max_cost_usd(prompt: str) -> float:
    prompt_tokens = max(1, len(prompt) // 4)
    return (prompt_tokens * PRICE["input_per_million_usd"] + MAX_TOKENS * 70.0) / 1e6


async def test_64_concurrent_calls_on_4_ingress_replicas_stay_within_the_budget(
    budget_app: str, ledger_url: str
) -> None:
    keys = open_key_store(ledger_url, auto_migrate=False)
    key, plain = keys.create(KeySpec("tight", budget_usd=BUDGET_USD))
    keys.close()
    await known_everywhere(budget_app, {"Authorization": f"Bearer {plain}"})
    prompt = "Tell me a long story about budgets please"
    body = {"prompt": prompt, "model_id": "gpt-paid", "max_tokens": MAX_TOKENS}
    headers = {"Authorization": f"Bearer {plain}"}
    responses: list[httpx.Response] = []
    async with httpx.AsyncClient(base_url=budget_app, timeout=60) as client:
        for _ in range(20):  # waves of 64 until the budget refuses every call of one
            wave = await asyncio.gather(
                *(client.post("/api/v1/generate", json=body, headers=headers) for _ in range(64))
            )
            responses += wave
            if all(r.status_code != 200 for r in wave):
                break
            await asyncio.sleep(0.3)  # settlements land; the next wave sees them
    statuses = Counter(r.status_code for r in responses)
    refused = [r for r in responses if r.status_code != 200]
    assert all(r.status_code == 402 for r in refused), statuses
    assert all(r.json()["error"]["type"] == "budget_exceeded" for r in refused)
    await asyncio.sleep(1.5)  # the ledgers flush every 0.2 s
    engine = create_db_engine(ledger_url)
    with engine.connect() as connection:
        total, rows = connection.execute(
            text("SELECT COALESCE(SUM(cost_usd), 0), COUNT(*) FROM usage WHERE key_id = :k"),
            {"k": key.id},
        ).one()
        spend = connection.execute(
            text("SELECT spent_usd FROM key_spend WHERE key_id = :k AND period = 'total'"),
            {"k": key.id},
        ).scalar()
    engine.dispose()
    overshoot = float(total) - BUDGET_USD
    print(
        f"\nbudget ${BUDGET_USD}: {len(responses) // 64} waves of 64: "
        f"{statuses[200]} served, {statuses[402]} refused (402), "
        f"ledger total ${float(total):.6f} in {rows} rows, overshoot ${overshoot:.6f}, "
        f"one call's max ${max_cost_usd(prompt):.6f}"
    )
    assert statuses[200] >= 1 and rows == statuses[200]
    assert float(total) <= BUDGET_USD + max_cost_usd(prompt)
    assert spend == pytest.approx(float(total))  # the running spend, same transaction


def kill_limiter() -> str:
    import ray

    names = [
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith(f"SERVE_REPLICA::{APP}#RateLimiter#")
    ]
    assert len(names) == 1, names
    ray.kill(ray.get_actor(names[0], namespace="serve"), no_restart=True)
    return names[0]


async def test_a_killed_limiter_never_hands_out_a_window_twice(
    budget_app: str, ledger_url: str
) -> None:
    keys = open_key_store(ledger_url, auto_migrate=False)
    _, plain = keys.create(KeySpec("limited", rpm=KEY_RPM))
    keys.close()
    headers = {"Authorization": f"Bearer {plain}"}
    await known_everywhere(budget_app, headers)
    body = {"prompt": "Q: hi\nA:", "model_id": "tiny", "max_tokens": 1}
    timeline: list[tuple[float, int]] = []
    started = time.monotonic()

    async def load(client: httpx.AsyncClient) -> None:
        while time.monotonic() - started < 20:
            response = await client.post("/api/v1/generate", json=body, headers=headers)
            timeline.append((time.monotonic() - started, response.status_code))
            await asyncio.sleep(0.2)

    async with httpx.AsyncClient(base_url=budget_app, timeout=60) as client:
        workers = [asyncio.create_task(load(client)) for _ in range(4)]
        await asyncio.sleep(3)
        killed_at = time.monotonic() - started
        await asyncio.to_thread(kill_limiter)
        await asyncio.gather(*workers)
    statuses = Counter(status for _, status in timeline)
    after = [(t, s) for t, s in timeline if t > killed_at]
    unavailable = [t for t, s in after if s == 503]
    answered_again = [t for t, s in after if s == 429 and (not unavailable or t > unavailable[-1])]
    print(
        f"\nlimiter killed at {killed_at:.1f}s: {dict(statuses)}; 503 from "
        f"{(unavailable or [0])[0]:.1f}s to {(unavailable or [0])[-1]:.1f}s; refusing with 429 "
        f"(restarted) from {(answered_again or [0])[0]:.1f}s"
    )
    assert statuses[500] == 0 and set(statuses) <= {200, 429, 503}
    assert statuses[200] <= KEY_RPM  # one window (the test lasts 20 s): never more
    assert answered_again, "the restarted limiter never answered"


async def test_a_flood_of_probes_leaves_generations_alone(budget_app: str) -> None:
    """500 concurrent /ready (no key) while one client generates: every probe answers from
    the snapshot. The figures are printed (timings are measured, never asserted)."""
    body = {"prompt": "Q: hi\nA:", "model_id": "tiny", "max_tokens": 1}
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}

    async def generations(client: httpx.AsyncClient, count: int) -> list[float]:
        latencies = []
        for _ in range(count):
            began = time.perf_counter()
            response = await client.post("/api/v1/generate", json=body, headers=headers)
            assert response.status_code == 200, response.text
            latencies.append((time.perf_counter() - began) * 1000)
        return sorted(latencies)

    limits = httpx.Limits(max_connections=600)
    async with httpx.AsyncClient(base_url=budget_app, timeout=60, limits=limits) as client:
        quiet = await generations(client, 20)
        flood = asyncio.gather(*(client.get("/api/v1/ready") for _ in range(500)))
        loaded, probes = await asyncio.gather(generations(client, 20), flood)
        status = await client.get("/api/v1/status")
    assert all(r.status_code == 200 for r in probes)
    assert status.status_code == 401  # auth on, security.public_status off
    print(
        f"\nprobe flood: generation p50 {quiet[10]:.0f} ms quiet, {loaded[10]:.0f} ms during "
        f"500 concurrent /ready (max {loaded[-1]:.0f} ms)"
    )
