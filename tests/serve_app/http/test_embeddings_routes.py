"""`POST /v1/embeddings` through the real app over fake handles: shapes, limits, keys, usage."""

import base64
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from deployments.limits.rate_limiter import RateLimiter
from serve_app.access.admission import Admission
from serve_app.access.key_cache import KeyCache
from serve_app.access.key_store import KeySpec, open_key_store
from serve_app.contracts.wire import EmbeddingOutput, EmbeddingParams
from serve_app.core.gateway import Gateway
from serve_app.http.app import create_app
from serve_app.runtime.config_check import validate_args
from tests.fakes.handles import FakeHandle

URL = "/v1/embeddings"


def vectors(params: EmbeddingParams) -> EmbeddingOutput:
    size = params.dimensions or 4
    rows = [[float(i + 1)] + [0.5] * (size - 1) for i in range(len(params.inputs))]
    return EmbeddingOutput(rows, 7 * len(params.inputs), params.model_id)


def handle() -> FakeHandle:
    return FakeHandle(embed=vectors, describe=lambda: {"metadata": {}})


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[TestClient, FakeHandle, str, str]]:
    db = f"sqlite:///{tmp_path}/gw.db"
    config = validate_args(
        {
            "ingress": {"max_batch_items": 3, "max_prompt_chars": 50},
            "models": [
                {"id": "embedder", "path": "x", "task": "embed"},
                {"id": "demo", "path": "x"},
            ],
            "commercial": {},
            "ledger": {"url": db},
        },
        "test",
        {},
    )
    handles = {"embedder": handle(), "demo": handle(), "openai": handle(), "anthropic": handle()}
    store = open_key_store(db)
    _, key = store.create(KeySpec("user"))
    _, chat_only = store.create(KeySpec("chat-only", allowed_models=["demo"]))
    keys = KeyCache(store, ttl_s=5)
    admission = Admission(config, keys, RateLimiter(), environ={})
    app = create_app(Gateway(config, handles, admission=admission))
    with TestClient(app, headers={"Authorization": f"Bearer {key}"}) as client:
        yield client, handles["openai"], key, chat_only


def post(client: TestClient, **body: Any) -> Any:
    return client.post(URL, json=body)


def test_local_and_openai_models_answer_in_openai_shape(
    setup: tuple[TestClient, FakeHandle, str, str],
) -> None:
    client, openai_handle, _, _ = setup
    local = post(client, model="embedder", input=["a", "b"])
    assert local.status_code == 200, local.text
    body = local.json()
    assert body["object"] == "list" and body["model"] == "embedder"
    assert [d["index"] for d in body["data"]] == [0, 1]
    assert body["data"][1]["embedding"] == [2.0, 0.5, 0.5, 0.5]
    assert body["usage"] == {"prompt_tokens": 14, "total_tokens": 14}
    remote = post(client, model="text-embedding-3-small", input=[1, 2, 3], dimensions=256)
    assert remote.status_code == 200, remote.text
    (sent,) = openai_handle.embed.calls  # type: ignore[attr-defined]
    assert sent[0].inputs == ((1, 2, 3),) and sent[0].dimensions == 256
    assert len(remote.json()["data"][0]["embedding"]) == 256


def test_base64_is_little_endian_float32(setup: tuple[TestClient, FakeHandle, str, str]) -> None:
    client, *_ = setup
    body = post(client, model="embedder", input="a", encoding_format="base64").json()
    raw = base64.b64decode(body["data"][0]["embedding"])
    assert struct.unpack("<4f", raw) == (1.0, 0.5, 0.5, 0.5)


@pytest.mark.parametrize(
    ("body", "param", "needle"),
    [
        ({"model": "embedder", "input": []}, "input", "empty"),
        ({"model": "embedder", "input": ""}, "input", "empty"),
        ({"model": "embedder", "input": ["a", ""]}, "input", "empty"),
        ({"model": "embedder", "input": ["a", 1]}, "input", ""),
        ({"model": "embedder", "input": ["a", "b", "c", "d"]}, "input", "at most 3"),
        ({"model": "embedder", "input": "x" * 51}, "input", "limit is 50"),
        ({"model": "embedder", "input": "a", "dimensions": 2}, "dimensions", "dimensions=2"),
        ({"model": "text-embedding-3-small", "input": "a", "dimensions": 4096}, "dimensions", ""),
        ({"model": "claude-haiku-4-5", "input": "a"}, "model", "claude-haiku-4-5"),
        ({"model": "demo", "input": "a"}, "model", "not an embedding model"),
        ({"model": "embedder", "input": "a", "encoding_format": "int8"}, "encoding_format", ""),
        ({"model": "embedder", "input": "a", "unknown": 1}, "unknown", ""),
    ],
)
def test_bad_requests_are_400_naming_the_field(
    setup: tuple[TestClient, FakeHandle, str, str], body: dict[str, Any], param: str, needle: str
) -> None:
    client, *_ = setup
    response = client.post(URL, json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert param in (error["param"] or "") + error["message"]
    assert needle in error["message"]
    assert response.headers["x-request-id"]


def test_an_embedding_model_refuses_chat(setup: tuple[TestClient, FakeHandle, str, str]) -> None:
    client, *_ = setup
    response = client.post(
        "/v1/chat/completions",
        json={"model": "embedder", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 400 and "/v1/embeddings" in response.json()["error"]["message"]


def test_keys_usage_and_cost(setup: tuple[TestClient, FakeHandle, str, str]) -> None:
    client, _, _, chat_only = setup
    denied = client.post(
        URL,
        json={"model": "embedder", "input": "a"},
        headers={"Authorization": f"Bearer {chat_only}"},
    )
    assert denied.status_code == 403
    assert client.post(URL, json={"model": "embedder", "input": "a"}, headers={}).status_code == 200
    missing = TestClient(client.app).post(URL, json={"model": "embedder", "input": "a"})
    assert missing.status_code == 401
    post(client, model="text-embedding-3-small", input=["a", "b"])
    usage = {r["model_id"]: r for r in client.get("/api/v1/usage").json()["models"]}
    assert usage["text-embedding-3-small"]["input_tokens"] == 14
    assert usage["text-embedding-3-small"]["cost_usd"] == pytest.approx(14 * 0.02 / 1e6)
    assert usage["embedder"]["requests"] == 1
