"""Security end to end: keys, exact per-key limits across two ingress replicas (Ray and
Redis backends), metrics on Ray's Prometheus port, and no key in any log."""

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_KEY, PROVIDER_KEYS
from tests.fakes.fake_provider import FakeProvider
from tests.fakes.redis_server import redis_server

pytestmark = pytest.mark.integration
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def secure_args(fake: FakeProvider, db: Path, redis_url: str | None) -> dict[str, Any]:
    limits: dict[str, Any] = {"backend": "redis", "redis_url": redis_url} if redis_url else {}
    limits["timeout_ms"] = 2000  # 2 busy cores shared with other test runs; production: 50
    return {
        "environment": "testing",
        "auth": {"enabled": True, "cache_ttl_s": 1},
        "rate_limits": limits,
        "ingress": {"num_replicas": 2, "num_cpus": 0.1},
        "commercial": {
            "openai": {
                "base_url": fake.openai_base_url,
                "rpm": 10_000,
                "rate_limit_wait_s": 0,
            },
            "anthropic": {"enabled": False},
        },
        "ledger": {"url": f"sqlite:///{db}", "flush_interval_s": 0.2, "auto_migrate": True},
    }


@pytest.fixture(scope="module", params=["ray", "redis"])
def secure_gateway(
    request: pytest.FixtureRequest,
    gateway: str,
    fake_provider: FakeProvider,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """A second app with auth on and two ingress replicas, under its own route prefix."""
    from ray import serve

    from serve_app.runtime.builder import build_app

    workdir = tmp_path_factory.mktemp(f"secure-{request.param}")
    name = f"secure-{request.param}"
    with redis_server(workdir) if request.param == "redis" else _no_redis() as redis_url:
        args = secure_args(fake_provider, workdir / "gw.db", redis_url)
        serve.run(build_app(args), name=name, route_prefix=f"/{name}")
        yield f"{gateway}/{name}"
        serve.delete(name)


class _no_redis:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *_: Any) -> None:
        return None


def create_key(base: str, **body: Any) -> dict[str, Any]:
    response = httpx.post(f"{base}/api/v1/admin/keys", json={"name": "it", **body}, headers=ADMIN)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def _burst(base: str, key: str, count: int) -> list[httpx.Response]:
    headers = {"Authorization": f"Bearer {key}"}
    body = {"prompt": "hi", "model_id": "gpt-4o-mini"}
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        calls = [client.post("/api/v1/generate", json=body, headers=headers) for _ in range(count)]
        return list(await asyncio.gather(*calls))


def test_key_limit_is_exact_across_two_ingress_replicas(secure_gateway: str) -> None:
    key = create_key(secure_gateway, rpm=8)["key"]
    time.sleep(1.2)  # both replicas' key caches refresh (cache_ttl_s = 1)
    responses = asyncio.run(_burst(secure_gateway, key, 9))
    assert sorted(r.status_code for r in responses) == [200] * 8 + [429]
    limited = next(r for r in responses if r.status_code == 429)
    assert int(limited.headers["retry-after"]) > 0
    ok = next(r for r in responses if r.status_code == 200)
    assert ok.headers["x-ratelimit-limit-requests"] == "8"


def test_auth_errors_and_key_lifecycle(secure_gateway: str) -> None:
    url = f"{secure_gateway}/api/v1/generate"
    body = {"prompt": "hi", "model_id": "gpt-4o-mini"}
    assert httpx.post(url, json=body).status_code == 401
    assert httpx.post(url, json=body, headers={"x-api-key": "gw-" + "x" * 40}).status_code == 401
    scoped = create_key(secure_gateway, allowed_models=["gpt-4o"])
    time.sleep(1.2)  # the other ingress replica learns new keys within cache_ttl_s
    denied = httpx.post(url, json=body, headers={"Authorization": f"Bearer {scoped['key']}"})
    assert denied.status_code == 403
    httpx.post(f"{secure_gateway}/api/v1/admin/keys/{scoped['id']}/disable", headers=ADMIN)
    time.sleep(1.2)
    gone = httpx.post(
        url,
        json={**body, "model_id": "gpt-4o"},
        headers={"Authorization": f"Bearer {scoped['key']}"},
    )
    assert gone.status_code == 401 and gone.json()["error"]["code"] == "key_disabled"


def test_metrics_reach_rays_prometheus_port(
    secure_gateway: str, ray_cluster: dict[str, Any]
) -> None:
    key = create_key(secure_gateway)["key"]
    time.sleep(1.2)
    for _ in range(3):
        response = httpx.post(
            f"{secure_gateway}/api/v1/generate",
            json={"prompt": "hi", "model_id": "gpt-4o-mini"},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert response.status_code == 200
    deadline = time.monotonic() + 30
    text = ""
    while time.monotonic() < deadline and "ray_llm_gateway_requests_total" not in text:
        time.sleep(1)
        text = httpx.get(ray_cluster["metrics_url"], timeout=10).text
    assert "ray_llm_gateway_requests_total" in text
    assert "ray_llm_gateway_tokens_total" in text
    assert "ray_serve_" in text


def test_no_key_ever_reaches_a_log(secure_gateway: str, ray_cluster: dict[str, Any]) -> None:
    created = create_key(secure_gateway)
    time.sleep(1.2)
    httpx.post(
        f"{secure_gateway}/api/v1/generate",
        json={"prompt": "a", "model_id": "gpt-4o"},
        headers={"Authorization": f"Bearer {created['key']}"},
    )
    httpx.post(
        f"{secure_gateway}/api/v1/generate",
        json={"prompt": "a", "model_id": "gpt-4o"},
        headers={"Authorization": "Bearer gw-not-a-real-key-but-secret"},
    )
    time.sleep(1)
    secrets = [created["key"], ADMIN_KEY, "gw-not-a-real-key-but-secret", *PROVIDER_KEYS.values()]
    logs = Path(ray_cluster["temp_dir"])
    checked = 0
    for path in logs.rglob("*"):
        if path.is_file() and path.suffix in (".log", ".out", ".err"):
            content = path.read_text(errors="ignore")
            checked += 1
            for secret in secrets:
                assert secret not in content, f"{path.name} contains a key"
    assert checked > 10
