"""Autoscaling proof: load on a commercial model scales its proxy deployment from 1 to at
least 3 replicas and back to 1 afterwards, while a model's rpm limit stays exact."""

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.fake_provider import FakeProvider

pytestmark = pytest.mark.integration
LIMITED_RPM = 25
# `scaled-limited` is asked only in the first 45 s, so all of it falls in one 60 s window.
LIMITED_WINDOW_S = 45
FAST_AUTOSCALING = {
    "min_replicas": 1,
    "max_replicas": 4,
    "target_ongoing_requests": 2,
    "upscale_delay_s": 0.5,
    "downscale_delay_s": 2,
    "look_back_period_s": 2,
    "metrics_interval_s": 0.5,
}


def scaling_args(fake: FakeProvider, ledger: Path) -> dict[str, Any]:
    def model(model_id: str, **extra: Any) -> dict[str, Any]:
        return {
            "id": model_id,
            "provider": "openai",
            "upstream_model": "fake-gpt",
            "price": {"input_per_million_usd": 1.0, "output_per_million_usd": 1.0},
            "context_window": 1000,
            "max_output_tokens": 50,
            **extra,
        }

    return {
        "auth": {"enabled": False},
        "ingress": {"num_cpus": 0.05, "max_ongoing_requests": 512},
        "commercial": {
            "include_default_catalog": False,
            "openai": {
                "placement": "deployment",  # the proxy deployment is what autoscales here
                "base_url": fake.openai_base_url,
                "rpm": 100_000,
                "num_cpus": 0.05,
                "max_ongoing_requests": 8,
                "rate_limit_wait_s": 0,
                "autoscaling": FAST_AUTOSCALING,
            },
            "anthropic": {"enabled": False},
            "models": [model("scaled"), model("scaled-limited", rpm=LIMITED_RPM)],
        },
        "ledger": {"url": f"sqlite:///{ledger}", "flush_interval_s": 0.2},
    }


@pytest.fixture(scope="module")
def scaling_app(gateway: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from ray import serve

    from serve_app.runtime.builder import build_app

    with FakeProvider() as fake:
        fake.set_delay(0.4)  # each upstream call keeps a proxy busy
        ledger = tmp_path_factory.mktemp("scaling") / "usage.db"
        serve.run(build_app(scaling_args(fake, ledger)), name="scaling", route_prefix="/scaling")
        yield f"{gateway}/scaling"
        serve.delete("scaling")


def running_proxies() -> int:
    from ray import serve

    state = serve.status().applications["scaling"].deployments["openai"]
    return int(state.replica_states.get("RUNNING", 0))


async def _drive(base: str, seconds: float, workers: int) -> tuple[Counter[str], int]:
    """Closed-loop load on `scaled`; each worker also asks `scaled-limited` now and then."""
    statuses: Counter[str] = Counter()
    peak = 0
    stop_at = time.monotonic() + seconds

    limited_until = time.monotonic() + LIMITED_WINDOW_S

    async def worker(client: httpx.AsyncClient, index: int) -> None:
        turn = 0
        while time.monotonic() < stop_at:
            limited = (turn + index) % 4 == 0 and time.monotonic() < limited_until
            model = "scaled-limited" if limited else "scaled"
            body = {"prompt": "hi", "model_id": model, "max_tokens": 5}
            response = await client.post("/api/v1/generate", json=body)
            statuses[f"{model}:{response.status_code}"] += 1
            turn += 1

    async def watch() -> None:
        nonlocal peak, stop_at
        while time.monotonic() < stop_at:
            peak = max(peak, await asyncio.to_thread(running_proxies))
            if peak >= 3:  # seen: keep the load a little longer, then stop
                stop_at = min(stop_at, time.monotonic() + 2)
            await asyncio.sleep(0.5)

    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        await asyncio.gather(watch(), *(worker(client, i) for i in range(workers)))
    return statuses, peak


def test_proxy_scales_up_under_load_and_back_down(scaling_app: str) -> None:
    assert running_proxies() == 1
    # Up to 100 s: a new replica takes 10-50 s to start on 2 busy cores.
    statuses, peak = asyncio.run(_drive(scaling_app, seconds=100, workers=8))
    assert peak >= 3, f"the proxy deployment peaked at {peak} replicas ({statuses})"
    # The model's rpm limit held exactly while replicas came and went (one window).
    assert statuses["scaled-limited:200"] == LIMITED_RPM, statuses
    assert statuses["scaled-limited:429"] > 0
    assert set(statuses) <= {"scaled:200", "scaled-limited:200", "scaled-limited:429"}
    deadline = time.monotonic() + 60
    while running_proxies() > 1 and time.monotonic() < deadline:
        time.sleep(1)
    assert running_proxies() == 1, "the proxy deployment did not scale back down"
