"""Commercial models end to end: real proxy deployments, real SDKs, a fake provider server."""

import asyncio
import datetime as dt
import time
from typing import Any

import httpx
import pytest

from tests.conftest import PROVIDER_KEYS
from tests.fakes.fake_provider import FakeProvider

pytestmark = pytest.mark.integration


def generate(base_url: str, **body: Any) -> httpx.Response:
    return httpx.post(f"{base_url}/api/v1/generate", json=body, timeout=60)


@pytest.fixture(autouse=True)
def clean_fake(fake_provider: FakeProvider) -> None:
    fake_provider.reset()


@pytest.mark.parametrize(
    ("model_id", "provider", "upstream", "price_in", "price_out"),
    [
        ("gpt-4o-mini", "openai", "gpt-4o-mini", 0.15, 0.6),
        ("claude-haiku-4-5", "anthropic", "claude-haiku-4-5-20251001", 1.0, 5.0),
    ],
)
def test_commercial_generate_has_the_native_shape_tokens_and_cost(
    gateway: str,
    fake_provider: FakeProvider,
    model_id: str,
    provider: str,
    upstream: str,
    price_in: float,
    price_out: float,
) -> None:
    prompt = "tell me three things about llamas"
    response = generate(
        gateway, prompt=prompt, model_id=model_id, max_tokens=50, temperature=1.7, stop=["zzz"]
    )
    assert response.status_code == 200, response.text
    body = response.json()
    expected_text = fake_provider.reply_for(provider, upstream)  # type: ignore[arg-type]
    assert body["text"] == expected_text
    input_tokens = FakeProvider.count_tokens(prompt)
    output_tokens = FakeProvider.count_tokens(expected_text)
    assert body["metrics"]["input_tokens"] == input_tokens
    assert body["metrics"]["output_tokens"] == output_tokens
    assert body["metadata"]["model_type"] == "commercial"
    assert body["metadata"]["provider"] == provider
    expected_cost = (input_tokens * price_in + output_tokens * price_out) / 1e6
    assert body["metadata"]["cost_usd"] == pytest.approx(expected_cost)
    (sent,) = fake_provider.recorded()
    assert sent["json"]["model"] == upstream
    assert sent["json"]["max_tokens"] == 50
    assert sent["headers"]["x-request-id"] == response.headers["x-request-id"]
    if provider == "anthropic":
        assert sent["json"]["temperature"] == 1.0  # clamped to Anthropic's 0..1
        assert sent["json"]["stop_sequences"] == ["zzz"]
        assert sent["json"]["messages"] == [{"role": "user", "content": prompt}]
    else:
        assert sent["json"]["temperature"] == 1.7
        assert sent["json"]["stop"] == ["zzz"]
    assert sent["api_key"] == PROVIDER_KEYS[f"{provider.upper()}_API_KEY"]


def test_upstream_429_is_retried_honouring_retry_after(
    gateway: str, fake_provider: FakeProvider
) -> None:
    fake_provider.script(429, 1, retry_after=1)
    response = generate(gateway, prompt="hi", model_id="gpt-4o-mini")
    assert response.status_code == 200
    times = [r["time"] for r in fake_provider.recorded()]
    assert len(times) == 2 and times[1] - times[0] >= 0.9


@pytest.mark.parametrize(
    ("script", "status", "error_type"),
    [
        ({"fail_status": 429, "count": 3, "retry_after": 0.1}, 429, "upstream_rate_limit_error"),
        ({"fail_status": 500, "count": 3}, 502, "upstream_error"),
        ({"fail_status": 401, "count": 1}, 502, "upstream_authentication_error"),
        (
            {
                "fail_status": 429,
                "count": 1,
                "error_type": "insufficient_quota",
                "error_code": "insufficient_quota",
            },
            502,
            "upstream_quota_exceeded",
        ),
    ],
)
def test_upstream_failures_map_to_the_error_shape(
    gateway: str,
    fake_provider: FakeProvider,
    script: dict[str, Any],
    status: int,
    error_type: str,
) -> None:
    fake_provider.script(**script)
    response = generate(gateway, prompt="hi", model_id="gpt-4o-mini")
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == error_type
    assert response.headers["x-request-id"]
    if status == 429:
        assert int(response.headers["retry-after"]) >= 1
    for key in PROVIDER_KEYS.values():
        assert key not in response.text


def test_timeout_is_504_and_malformed_body_is_502(
    gateway: str, fake_provider: FakeProvider
) -> None:
    fake_provider.set_delay(2.5)  # anthropic's timeout_s is 1.5 (one retry)
    response = generate(gateway, prompt="hi", model_id="claude-3-haiku")
    assert response.status_code == 504, response.text
    time.sleep(2.6)  # let the fake's delayed handlers finish before scripting anything else
    fake_provider.reset()
    fake_provider.set_malformed(3)
    response = generate(gateway, prompt="hi", model_id="claude-3-haiku")
    assert response.status_code == 502 and response.json()["error"]["code"] == "upstream_malformed"


async def _burst(base_url: str, count: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        body = {"prompt": "hi", "model_id": "gpt-limited"}
        return list(
            await asyncio.gather(
                *(client.post("/api/v1/generate", json=body) for _ in range(count))
            )
        )


def test_model_rpm_holds_across_two_proxy_replicas(gateway: str) -> None:
    responses = asyncio.run(_burst(gateway, 6))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 5 + [429]
    limited = next(r for r in responses if r.status_code == 429)
    assert limited.json()["error"]["code"] == "provider_rate_limit"
    assert int(limited.headers["retry-after"]) > 0


def test_commercial_catalog_test_and_usage_endpoints(
    gateway: str, fake_provider: FakeProvider
) -> None:
    since = dt.datetime.now(dt.UTC)
    ok_openai = generate(gateway, prompt="one two three", model_id="gpt-4o")
    ok_claude = generate(gateway, prompt="one two", model_id="claude-sonnet-4-5")
    fake_provider.script(500, 3)
    failed = generate(gateway, prompt="one", model_id="gpt-4o")
    assert (ok_openai.status_code, ok_claude.status_code, failed.status_code) == (200, 200, 502)
    usage = httpx.get(
        f"{gateway}/api/v1/commercial/usage", params={"since": since.isoformat()}
    ).json()
    by_model = {row["model_id"]: row for row in usage["models"]}
    gpt = by_model["gpt-4o"]
    assert (gpt["requests"], gpt["errors"]) == (2, 1)
    assert gpt["input_tokens"] == ok_openai.json()["metrics"]["input_tokens"]
    assert gpt["cost_usd"] == pytest.approx(ok_openai.json()["metadata"]["cost_usd"])
    assert by_model["claude-sonnet-4-5"]["requests"] == 1
    assert (
        usage["providers"]["anthropic"]["output_tokens"]
        == (ok_claude.json()["metrics"]["output_tokens"])
    )
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    empty = httpx.get(f"{gateway}/api/v1/commercial/usage", params={"since": later}).json()
    assert empty["models"] == []

    catalog = httpx.get(f"{gateway}/api/v1/commercial/models").json()["models"]
    ids = {m["id"] for m in catalog}
    assert {
        "gpt-4",
        "gpt-3.5-turbo",
        "claude-3-opus",
        "claude-3-sonnet",
        "claude-3-haiku",
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-4.1",
        "claude-sonnet-4-5",
        "claude-haiku-4-5",
    } <= ids
    mini = next(m for m in catalog if m["id"] == "gpt-4o-mini")
    assert mini["metadata"]["price"]["as_of"] and mini["status"] == "available"

    checks = httpx.get(f"{gateway}/api/v1/commercial/test").json()["providers"]
    assert {c["provider"] for c in checks} == {"openai", "anthropic"}
    assert all(c["reachable"] and c["key_accepted"] and c["latency_ms"] > 0 for c in checks)
