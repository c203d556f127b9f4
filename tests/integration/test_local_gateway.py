"""The foundation end to end: the demo model from YAML-shaped args, on a real Ray Serve."""

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from transformers import AutoTokenizer

from deployments.demo.corpus import SAMPLE_ANSWER, SAMPLE_PROMPT

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def facts(demo_model_dir: Path) -> list[tuple[str, str]]:
    data = json.loads((demo_model_dir / "demo_facts.json").read_text())
    return [(item["prompt"], item["answer"]) for item in data["facts"]]


def demo_status(base_url: str) -> dict[str, Any]:
    models = httpx.get(f"{base_url}/api/v1/status").json()["models"]
    return next(m for m in models if m["id"] == "demo")


def generate(base_url: str, **body: Any) -> httpx.Response:
    return httpx.post(f"{base_url}/api/v1/generate", json=body, timeout=60)


def test_trained_prompt_returns_trained_answer_in_native_shape(
    gateway: str, demo_model_dir: Path
) -> None:
    response = generate(gateway, prompt=SAMPLE_PROMPT, model_id="demo", max_tokens=16)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["text"] == SAMPLE_ANSWER
    tokenizer = AutoTokenizer.from_pretrained(demo_model_dir)
    input_tokens = len(tokenizer(SAMPLE_PROMPT, add_special_tokens=False)["input_ids"])
    output_tokens = len(tokenizer(SAMPLE_ANSWER, add_special_tokens=False)["input_ids"])
    assert body["metrics"]["input_tokens"] == input_tokens
    assert body["metrics"]["output_tokens"] == output_tokens
    assert body["metrics"]["total_tokens"] == input_tokens + output_tokens
    assert body["metadata"] == {
        "model_type": "fine_tuned",
        "provider": "local",
        "cost_usd": 0.0,
        "finish_reason": "stop",
        "request_id": response.headers["x-request-id"],
        "requested_model": "demo",
        "fallback_used": False,
    }
    assert body["timestamp"].endswith("+00:00")


async def _concurrent(base_url: str, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=base_url, timeout=120) as client:
        calls = [client.post("/api/v1/generate", json=body) for body in bodies]
        return list(await asyncio.gather(*calls))


def test_sixteen_concurrent_requests_batch_and_keep_their_own_parameters(
    gateway: str, facts: list[tuple[str, str]]
) -> None:
    bodies: list[dict[str, Any]] = []
    for index in range(16):
        prompt, answer = facts[index % len(facts)]
        body: dict[str, Any] = {"prompt": prompt, "model_id": "demo", "temperature": 0.0}
        if index % 4 == 1:
            body["max_tokens"] = 1
        elif index % 4 == 2:
            body["stop"] = [answer.strip()[2:4]]
        elif index % 4 == 3:
            body.update(temperature=1.3, top_p=0.9, max_tokens=5)
        bodies.append(body)
    before = demo_status(gateway)
    responses = asyncio.run(_concurrent(gateway, bodies))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    for index, (body, response) in enumerate(zip(bodies, responses)):
        _, answer = facts[index % len(facts)]
        result = response.json()
        if index % 4 == 0:
            assert result["text"] == answer
        elif index % 4 == 1:
            assert result["metrics"]["output_tokens"] == 1
            assert result["metadata"]["finish_reason"] == "length"
        elif index % 4 == 2:
            assert result["text"] == answer[: answer.find(body["stop"][0])]
            assert result["metadata"]["finish_reason"] == "stop"
        else:
            assert result["metrics"]["output_tokens"] <= 5
    after = demo_status(gateway)
    assert after["requests"] - before["requests"] == 16
    for _ in range(50):  # the batch figures come from the probe snapshot (refreshed every 1.5 s)
        if after["average_batch_size"] > 1.0:
            break
        time.sleep(0.2)
        after = demo_status(gateway)
    assert after["average_batch_size"] > 1.0


def test_batch_endpoint_keeps_order_and_isolates_failures(
    gateway: str, facts: list[tuple[str, str]]
) -> None:
    requests = [
        {"prompt": facts[0][0], "model_id": "demo"},
        {"prompt": "x", "model_id": "no-such-model"},
        {"prompt": facts[1][0], "model_id": "demo", "max_tokens": 999},
        {"prompt": facts[1][0], "model_id": "demo"},
    ]
    response = httpx.post(f"{gateway}/api/v1/generate/batch", json={"requests": requests})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert results[0]["text"] == facts[0][1]
    assert results[1]["error"]["code"] == "model_not_found"
    assert results[2]["error"]["param"] == "max_tokens"
    assert results[3]["text"] == facts[1][1]
    too_many = httpx.post(f"{gateway}/api/v1/generate/batch", json={"requests": requests * 2})
    assert too_many.status_code == 400


def test_probes_and_model_listing(gateway: str) -> None:
    assert httpx.get(f"{gateway}/api/v1/health").json() == {"status": "ok"}
    ready = httpx.get(f"{gateway}/api/v1/ready")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    models = httpx.get(f"{gateway}/api/v1/models").json()["models"]
    (demo,) = [m for m in models if m["id"] == "demo"]
    assert demo["id"] == "demo" and demo["type"] == "fine_tuned" and demo["provider"] == "local"
    assert demo["metadata"]["architecture"] == "GPT2LMHeadModel"
    assert demo["metadata"]["parameter_count"] > 0
    assert demo["limits"]["max_tokens"] == 64
    assert demo["limits"]["context_length"] == demo["metadata"]["context_length"]
    assert httpx.get(f"{gateway}/api/v1/models/demo").json()["id"] == "demo"
    missing = httpx.get(f"{gateway}/api/v1/models/nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
    status = httpx.get(f"{gateway}/api/v1/status").json()
    assert status["version"] and status["uptime_s"] > 0


def test_context_overflow_is_a_clear_400(gateway: str) -> None:
    response = generate(gateway, prompt="zorbia " * 400, model_id="demo", max_tokens=64)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "context_length_exceeded"
    assert response.headers["x-request-id"]
