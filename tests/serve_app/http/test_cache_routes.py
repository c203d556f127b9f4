"""The response cache through the real app (fake handles): hits, streams, opt-outs, keys,
the ledger and /status."""

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from serve_app.access.key_store import KeySpec
from tests.serve_app.app_factory import (
    ADMIN_KEY,
    COMMERCIAL_MODEL_ID,
    MODEL_ID,
    GatewayApp,
    build_gateway_app,
)

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}  # /status needs the admin key with auth on

CHAT = "/v1/chat/completions"


@pytest.fixture
def built(tmp_path: Path) -> Iterator[tuple[GatewayApp, TestClient]]:
    app = build_gateway_app(tmp_path, auth=True, cache={"enabled": True})
    with TestClient(app.app) as client:
        yield app, client


def headers(app: GatewayApp, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {app.user_key}", **extra}


def chat(model: str = COMMERCIAL_MODEL_ID, **fields: Any) -> dict[str, Any]:
    body = {"model": model, "messages": [{"role": "user", "content": "say cached things"}]}
    return {**body, "temperature": 0, **fields}


def upstream_calls(app: GatewayApp, name: str = "openai", method: str = "generate") -> int:
    handle = app.gateway.catalog.get(COMMERCIAL_MODEL_ID if name == "openai" else name).handle
    return len(handle.calls(method))


def test_two_identical_requests_make_one_upstream_call(
    built: tuple[GatewayApp, TestClient],
) -> None:
    app, client = built
    first = client.post(CHAT, json=chat(), headers=headers(app))
    second = client.post(CHAT, json=chat(), headers=headers(app))
    assert first.status_code == second.status_code == 200, second.text
    assert first.headers["x-cache"] == "miss" and second.headers["x-cache"] == "hit"
    assert upstream_calls(app) == 1
    a, b = first.json(), second.json()
    assert a["choices"] == b["choices"] and a["usage"] == b["usage"]
    assert a["id"] != b["id"]  # a new completion, with the cached answer
    status = client.get("/api/v1/status", headers=ADMIN).json()["cache"]
    assert (status["hits"], status["misses"], status["hit_rate"]) == (1, 1, 0.5)


def test_sampling_requests_are_never_cached(built: tuple[GatewayApp, TestClient]) -> None:
    app, client = built
    for _ in range(2):
        response = client.post(CHAT, json=chat(temperature=0.8), headers=headers(app))
        assert "x-cache" not in response.headers
    assert upstream_calls(app) == 2


def test_a_seed_makes_a_request_cacheable(built: tuple[GatewayApp, TestClient]) -> None:
    app, client = built
    for _ in range(2):
        client.post(CHAT, json=chat(temperature=0.9, seed=7), headers=headers(app))
    assert upstream_calls(app) == 1
    client.post(CHAT, json=chat(temperature=0.9, seed=8), headers=headers(app))
    assert upstream_calls(app) == 2


@pytest.mark.parametrize(
    ("cache_control", "body_cache", "calls", "last_header"),
    [
        ("no-cache", None, 2, None),  # never read, but stored
        ("no-store", None, 2, "miss"),  # read, but never stored
        (None, False, 2, None),
    ],
)
def test_clients_opt_out(
    built: tuple[GatewayApp, TestClient],
    cache_control: str | None,
    body_cache: bool | None,
    calls: int,
    last_header: str | None,
) -> None:
    app, client = built
    extra = {"Cache-Control": cache_control} if cache_control else {}
    fields = {} if body_cache is None else {"cache": body_cache}
    for _ in range(2):
        response = client.post(CHAT, json=chat(**fields), headers=headers(app, **extra))
        assert response.status_code == 200, response.text
    assert upstream_calls(app) == calls
    assert response.headers.get("x-cache") == last_header
    if cache_control == "no-cache":  # what it stored serves the next plain request
        assert client.post(CHAT, json=chat(), headers=headers(app)).headers["x-cache"] == "hit"


def sse_payloads(text: str) -> list[Any]:
    lines = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
    return [json.loads(line) for line in lines if line != "[DONE]"]


def test_a_stream_is_stored_and_replayed_as_chunks(built: tuple[GatewayApp, TestClient]) -> None:
    app, client = built
    body = chat(stream=True, stream_options={"include_usage": True})
    first = client.post(CHAT, json=body, headers=headers(app))
    second = client.post(CHAT, json=body, headers=headers(app))
    assert second.headers["x-cache"] == "hit"
    assert upstream_calls(app, method="generate_stream") == 1

    def deltas(text: str) -> list[str]:
        return [
            c["choices"][0]["delta"].get("content", "") for c in sse_payloads(text) if c["choices"]
        ]

    replayed = [piece for piece in deltas(second.text) if piece]
    assert len(replayed) > 1  # chunks, not one block
    assert "".join(replayed) == "".join(deltas(first.text))
    assert sse_payloads(second.text)[-1]["usage"] == sse_payloads(first.text)[-1]["usage"]
    # A JSON request is served from what the stream stored, and the reverse.
    assert client.post(CHAT, json=chat(), headers=headers(app)).headers["x-cache"] == "hit"


def test_a_cached_answer_serves_other_apis_native_stream(
    built: tuple[GatewayApp, TestClient],
) -> None:
    app, client = built
    body = {"prompt": "cache me", "model_id": MODEL_ID, "temperature": 0, "max_tokens": 8}
    plain = client.post("/api/v1/generate", json=body, headers=headers(app)).json()
    streamed = client.post("/api/v1/generate", json={**body, "stream": True}, headers=headers(app))
    assert streamed.headers["x-cache"] == "hit"
    final = sse_payloads(streamed.text)[-1]
    assert final["text"] == plain["text"] and final["metadata"]["cost_usd"] == 0


def test_a_hit_needs_a_key_allowed_to_use_the_model(
    built: tuple[GatewayApp, TestClient],
) -> None:
    app, client = built
    assert app.keys is not None
    _, other_key = app.keys.store.create(KeySpec("other", allowed_models=[MODEL_ID]))
    assert client.post(CHAT, json=chat(), headers=headers(app)).status_code == 200
    denied = client.post(CHAT, json=chat(), headers={"Authorization": f"Bearer {other_key}"})
    assert denied.status_code == 403 and "x-cache" not in denied.headers


def test_the_ledger_marks_a_hit_with_no_cost_and_the_saving(
    built: tuple[GatewayApp, TestClient], tmp_path: Path
) -> None:
    app, client = built
    for _ in range(2):
        client.post(CHAT, json=chat(), headers=headers(app))
    usage = client.get("/api/v1/usage", headers=headers(app)).json()["models"]
    (row,) = [r for r in usage if r["model_id"] == COMMERCIAL_MODEL_ID]
    assert row["requests"] == 2 and row["cache_hits"] == 1
    assert row["cost_usd"] == pytest.approx(row["saved_usd"]) and row["saved_usd"] > 0
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        rows = db.execute("SELECT cache_hit, cost_usd, saved_usd FROM usage ORDER BY ts").fetchall()
    assert rows[0][0] == 0 and rows[0][1] > 0
    assert rows[1] == (1, 0.0, rows[0][1])


def test_the_cache_is_off_by_default(tmp_path: Path) -> None:
    app = build_gateway_app(tmp_path, auth=False)
    with TestClient(app.app) as client:
        for _ in range(2):
            assert "x-cache" not in client.post(CHAT, json=chat()).headers
        assert client.get("/api/v1/status", headers=ADMIN).json()["cache"]["enabled"] is False
    assert upstream_calls(app) == 2
