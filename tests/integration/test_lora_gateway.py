"""LoRA fine-tunes multiplexed over one base deployment: answers in each adapter's style, the
`<base>:<adapter>` alias, an LRU of at most `model_cache_size` adapters whose evicted weights
leave the model, and requests for different adapters batched in one forward pass."""

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from deployments.demo.adapters import expected_answer
from deployments.demo.corpus import build_facts

pytestmark = pytest.mark.integration
APP = "lora"
FACTS = build_facts()


@pytest.fixture(scope="module")
def lora_app(
    gateway: str,
    demo_model_dir: Path,
    demo_adapters_dir: Path,
    untrained_adapter_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    from ray import serve

    from serve_app.runtime.builder import build_app

    ledger = tmp_path_factory.mktemp("lora") / "usage.db"
    args = {
        "auth": {"enabled": False},
        "ingress": {"num_cpus": 0.05},
        "models": [
            {
                "id": "base",
                "path": str(demo_model_dir),
                "num_cpus": 0.1,
                "model_cache_size": 1,
                "batching": {"max_batch_size": 8, "batch_wait_timeout_s": 0.3},
                "defaults": {"temperature": 0.0, "max_tokens": 24},
            }
        ],
        "adapters": [
            {"id": "formal", "base": "base", "path": str(demo_adapters_dir / "formal")},
            {"id": "noise", "base": "base", "path": str(untrained_adapter_dir)},
        ],
        "ledger": {"url": f"sqlite:///{ledger}"},
    }
    serve.run(build_app(args), name=APP, route_prefix=f"/{APP}")
    yield f"{gateway}/{APP}"
    serve.delete(APP)


def ask(base: str, model: str, question: str) -> httpx.Response:
    body = {"prompt": f"Q: {question}\nA:", "model_id": model}
    return httpx.post(f"{base}/api/v1/generate", json=body, timeout=60)


def describe(base: str, model: str) -> dict[str, Any]:
    response = httpx.get(f"{base}/api/v1/models/{model}", timeout=30)
    assert response.status_code == 200, response.text
    return dict(response.json()["metadata"])


def test_adapter_answers_in_its_style_by_id_and_alias(lora_app: str) -> None:
    fact = FACTS[0]
    plain = ask(lora_app, "base", fact.question).json()["text"]
    assert plain == f" {fact.answer}"
    for name in ("formal", "base:formal"):
        response = ask(lora_app, name, fact.question)
        assert response.status_code == 200, response.text
        assert response.json()["text"] == expected_answer("formal", plain)
        assert response.json()["model_id"] == "formal"
    adapter = describe(lora_app, "formal")["adapter"]
    assert adapter["loaded"] is True and adapter["base_model"] == "base"
    assert adapter["loaded_on"]["replica_id"]


def test_lru_keeps_model_cache_size_adapters_and_frees_the_evicted(lora_app: str) -> None:
    ask(lora_app, "formal", FACTS[1].question)
    loaded_formal = describe(lora_app, "formal")
    lora_params = loaded_formal["adapter"]
    assert lora_params["loaded"] and lora_params["model_cache_size"] == 1
    assert ask(lora_app, "noise", FACTS[1].question).status_code == 200
    assert describe(lora_app, "formal")["adapter"]["loaded"] is False  # evicted (LRU, size 1)
    assert describe(lora_app, "noise")["adapter"]["loaded"] is True
    again = ask(lora_app, "formal", FACTS[2].question)  # loaded again on demand
    base = ask(lora_app, "base", FACTS[2].question)
    assert again.json()["text"] == expected_answer("formal", base.json()["text"])


async def _mixed(base: str, count: int) -> list[tuple[str, str]]:
    models = ["base", "formal"] * (count // 2)
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        calls = [
            client.post(
                "/api/v1/generate",
                json={"prompt": f"Q: {FACTS[i].question}\nA:", "model_id": model},
            )
            for i, model in enumerate(models)
        ]
        responses = await asyncio.gather(*calls)
    return [(model, r.json()["text"]) for model, r in zip(models, responses)]


def test_base_and_adapter_requests_share_batches(lora_app: str) -> None:
    before = httpx.get(f"{lora_app}/api/v1/status", timeout=30).json()
    results = asyncio.run(_mixed(lora_app, 8))
    for index, (model, text) in enumerate(results):
        answer = f" {FACTS[index].answer}"
        assert text == (answer if model == "base" else expected_answer("formal", answer))
    for _ in range(50):  # batch figures come from the probe snapshot (refreshed every 1.5 s)
        after = httpx.get(f"{lora_app}/api/v1/status", timeout=30).json()
        batch_sizes = {m["id"]: m["average_batch_size"] for m in after["models"]}
        if (batch_sizes["base"] or 0) > 1.0:
            break
        time.sleep(0.2)
    assert batch_sizes["base"] > 1.0, (before, after)
