"""Fallbacks through the app with scripted handles: who answers, what the response says, what
the ledger records, what is not retried, streams, and the circuit breaker in front of it all."""

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from serve_app.access.admission import Admission
from serve_app.access.key_cache import KeyCache
from serve_app.access.key_store import KeySpec, open_key_store
from serve_app.contracts.config import GatewayConfig
from serve_app.contracts.errors import (
    GatewayError,
    InvalidRequestError,
    ServiceUnavailableError,
    UpstreamError,
    UpstreamRateLimitError,
    UpstreamTimeoutError,
)
from tests.serve_app.core.resilience_fakes import (
    Rig,
    ScriptedHandle,
    assert_error,
    build_rig,
    failing,
    gateway_args,
)

FALLBACK_ERRORS = [
    UpstreamError("bad gateway", code="upstream_server_error"),
    UpstreamTimeoutError("too slow", code="upstream_timeout"),
    UpstreamRateLimitError("busy", code="upstream_rate_limited"),
    ServiceUnavailableError("overloaded", code="backpressure"),
]
CHAT = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    built = build_rig()
    yield built
    await built.close()


async def generate(rig: Rig, model: str = "gpt-x", **body: Any) -> httpx.Response:
    return await rig.client.post(
        "/api/v1/generate", json={"prompt": "hi", "model_id": model, **body}
    )


def called(rig: Rig, name: str, method: str = "generate") -> list[str]:
    """The model ids the deployment `name` was asked for, in order."""
    return [call.params.model_id for call in rig.handle(name).calls(method)]


def sse_payloads(text: str) -> list[Any]:
    frames = [line[len("data: ") :] for line in text.splitlines() if line.startswith("data: ")]
    return [json.loads(frame) for frame in frames if frame != "[DONE]"]


@pytest.mark.parametrize("error", FALLBACK_ERRORS, ids=lambda e: type(e).__name__)
async def test_first_healthy_fallback_answers_on_the_native_api(
    rig: Rig, error: GatewayError
) -> None:
    rig.handle("openai").behave = failing(error)
    response = await generate(rig)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_id"] == "claude-y" and body["text"] == "claude-y answers"
    assert body["metadata"]["requested_model"] == "gpt-x"
    assert body["metadata"]["fallback_used"] is True
    assert body["metadata"]["provider"] == "anthropic"
    assert body["metadata"]["cost_usd"] == pytest.approx(3 * 3.0 / 1e6)  # claude-y's price
    assert called(rig, "openai") == ["gpt-x"]
    assert called(rig, "anthropic") == ["claude-y"]
    assert called(rig, "demo") == []


async def test_no_fallback_when_the_requested_model_answers(rig: Rig) -> None:
    body = (await generate(rig)).json()
    assert body["model_id"] == "gpt-x" and body["metadata"]["requested_model"] == "gpt-x"
    assert body["metadata"]["fallback_used"] is False
    assert called(rig, "anthropic") == [] and called(rig, "demo") == []


async def test_the_chain_goes_on_and_each_model_gets_its_own_caps_and_defaults(rig: Rig) -> None:
    rig.handle("openai").behave = failing(UpstreamError("down"))
    rig.handle("anthropic").behave = failing(UpstreamRateLimitError("busy"))
    response = await generate(rig, max_tokens=50)
    assert response.status_code == 200, response.text
    assert response.json()["model_id"] == "demo"
    (openai_call,) = rig.handle("openai").calls()
    (demo_call,) = rig.handle("demo").calls()
    assert (openai_call.params.max_tokens, openai_call.params.temperature) == (50, None)
    # demo caps max_tokens at 16 and fills in its default temperature
    assert (demo_call.params.max_tokens, demo_call.params.temperature) == (16, 0.3)
    assert demo_call.params.model_id == "demo" and demo_call.params.request_id == (
        openai_call.params.request_id
    )


async def test_openai_route_names_the_fallback_as_model(rig: Rig) -> None:
    rig.handle("openai").behave = failing(UpstreamError("down"))
    response = await rig.client.post("/v1/chat/completions", json={"model": "gpt-x", **CHAT})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "claude-y"
    assert body["choices"][0]["message"]["content"] == "claude-y answers"
    completion = await rig.client.post("/v1/completions", json={"model": "gpt-x", "prompt": "a"})
    assert completion.json()["model"] == "claude-y"
    rig.handle("openai").behave = rig.handle("demo").behave  # healthy again
    healthy = await rig.client.post("/v1/chat/completions", json={"model": "gpt-x", **CHAT})
    assert healthy.json()["model"] == "gpt-x"


async def test_anthropic_route_names_the_fallback_as_model(rig: Rig) -> None:
    rig.handle("openai").behave = failing(UpstreamTimeoutError("slow"))
    response = await rig.client.post(
        "/v1/messages", json={"model": "gpt-x", "max_tokens": 10, **CHAT}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "claude-y" and body["content"][0]["text"] == "claude-y answers"


@pytest.mark.parametrize(
    "path", ["/api/v1/generate", "/v1/chat/completions", "/v1/messages"], ids=str
)
async def test_a_client_error_is_not_retried_on_a_fallback(rig: Rig, path: str) -> None:
    rig.handle("openai").behave = failing(
        InvalidRequestError("messages: bad order", param="messages")
    )
    body: dict[str, Any] = {"prompt": "hi", "model_id": "gpt-x"}
    if path != "/api/v1/generate":
        body = {"model": "gpt-x", "max_tokens": 10, **CHAT}
    response = await rig.client.post(path, json=body)
    assert response.status_code == 400, response.text
    assert "bad order" in response.text
    assert called(rig, "anthropic") == [] and called(rig, "demo") == []
    assert len(rig.ledger.records) == 1


async def test_all_failing_returns_the_last_error_in_each_shape(rig: Rig) -> None:
    rig.handle("openai").behave = failing(UpstreamError("openai down"))
    rig.handle("anthropic").behave = failing(UpstreamRateLimitError("anthropic busy"))
    rig.handle("demo").behave = failing(UpstreamTimeoutError("demo slow", code="demo_timeout"))
    error = assert_error(await generate(rig), 504, "upstream_timeout")
    assert (error["message"], error["code"]) == ("demo slow", "demo_timeout")
    chat = await rig.client.post("/v1/chat/completions", json={"model": "gpt-x", **CHAT})
    assert assert_error(chat, 504, "upstream_timeout")["message"] == "demo slow"
    messages = await rig.client.post(
        "/v1/messages", json={"model": "gpt-x", "max_tokens": 10, **CHAT}
    )
    assert messages.status_code == 504
    assert messages.json() == {
        "type": "error",
        "error": {"type": "timeout_error", "message": "demo slow"},
    }
    assert called(rig, "demo") == ["demo"] * 3


async def test_the_ledger_has_one_row_per_attempt(rig: Rig) -> None:
    rig.handle("openai").behave = failing(UpstreamError("down"))
    rig.handle("anthropic").behave = failing(UpstreamRateLimitError("busy"))
    response = await generate(rig, max_tokens=5)
    assert response.status_code == 200
    rows = [
        (r.model_id, r.served_model, r.provider, r.status, r.outcome) for r in rig.ledger.records
    ]
    assert rows == [
        ("gpt-x", "gpt-x", "openai", 502, "upstream_error"),
        ("gpt-x", "claude-y", "anthropic", 429, "upstream_rate_limit_error"),
        ("gpt-x", "demo", "local", 200, "ok"),
    ]
    assert len({r.request_id for r in rig.ledger.records}) == 1
    assert [r.output_tokens for r in rig.ledger.records] == [0, 0, 2]
    status = (await rig.client.get("/api/v1/status")).json()
    counters = {m["id"]: (m["requests"], m["errors"]) for m in status["models"]}
    assert counters == {"demo": (1, 0), "gpt-x": (1, 1), "claude-y": (1, 1)}


async def test_a_key_not_allowed_to_use_a_fallback_skips_it(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/gw.db"
    store = open_key_store(db)
    _, key = store.create(KeySpec("limited", allowed_models=["gpt-x", "demo"]))

    def admission(config: GatewayConfig) -> Admission:
        return Admission(config, KeyCache(store, ttl_s=5), None, environ={})

    rig = build_rig(gateway_args(auth={"enabled": True}, ledger={"url": db}), admission=admission)
    rig.handle("openai").behave = failing(UpstreamError("down"))
    try:
        response = await rig.client.post(
            "/api/v1/generate",
            json={"prompt": "hi", "model_id": "gpt-x"},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert response.status_code == 200, response.text
        assert response.json()["model_id"] == "demo"
        assert called(rig, "anthropic") == []
    finally:
        await rig.close()
        store.close()


# ---- streams --------------------------------------------------------------------------------


async def test_a_stream_falls_back_before_its_first_chunk(rig: Rig) -> None:
    rig.handle("openai").behave = failing(UpstreamError("down"))
    response = await generate(rig, stream=True)
    assert response.status_code == 200, response.text
    payloads = sse_payloads(response.text)
    assert "".join(p.get("text", "") for p in payloads[:-1]) == "claude-y answers"
    final = payloads[-1]
    assert final["model_id"] == "claude-y"
    assert final["metadata"]["requested_model"] == "gpt-x"
    assert final["metadata"]["fallback_used"] is True
    assert called(rig, "openai", "generate_stream") == ["gpt-x"]
    assert called(rig, "anthropic", "generate_stream") == ["claude-y"]
    rows = [(r.model_id, r.served_model, r.status) for r in rig.ledger.records]
    assert rows == [("gpt-x", "gpt-x", 502), ("gpt-x", "claude-y", 200)]


async def test_openai_and_anthropic_streams_name_the_fallback(rig: Rig) -> None:
    rig.handle("openai").behave = failing(UpstreamError("down"))
    chat = await rig.client.post(
        "/v1/chat/completions", json={"model": "gpt-x", "stream": True, **CHAT}
    )
    chunks = sse_payloads(chat.text)
    assert chunks and {chunk["model"] for chunk in chunks} == {"claude-y"}
    messages = await rig.client.post(
        "/v1/messages", json={"model": "gpt-x", "max_tokens": 10, "stream": True, **CHAT}
    )
    (start,) = [p for p in sse_payloads(messages.text) if p["type"] == "message_start"]
    assert start["message"]["model"] == "claude-y"


async def test_a_stream_failing_after_its_first_chunk_is_not_retried(rig: Rig) -> None:
    openai = rig.handle("openai")
    openai.behave = failing(UpstreamError("died mid-stream"))
    openai.script.fail_after_first = True
    response = await generate(rig, stream=True)
    assert response.status_code == 200
    payloads = sse_payloads(response.text)
    assert payloads[0] == {"text": "partial"}
    assert payloads[-1]["error"]["message"] == "died mid-stream"
    assert called(rig, "anthropic", "generate_stream") == []
    assert called(rig, "demo", "generate_stream") == []


async def test_a_stream_whose_chain_all_fails_gets_the_last_error_as_status(rig: Rig) -> None:
    for name in ("openai", "anthropic", "demo"):
        rig.handle(name).behave = failing(UpstreamError(f"{name} down"))
    response = await generate(rig, stream=True)
    assert assert_error(response, 502, "upstream_error")["message"] == "demo down"


# ---- the circuit breaker in front of the chain ----------------------------------------------


async def test_an_open_circuit_stops_calling_the_dead_provider(rig: Rig) -> None:
    openai = rig.handle("openai")
    openai.behave = failing(UpstreamError("down"))
    for _ in range(5):
        response = await generate(rig)
        assert response.json()["model_id"] == "claude-y"
    assert len(openai.calls()) == 3  # threshold 3: then the circuit is open
    status = (await rig.client.get("/api/v1/status")).json()
    assert status["circuit_breakers"]["openai"]["state"] == "open"
    assert status["circuit_breakers"]["anthropic"]["state"] == "closed"
    shed = [r for r in rig.ledger.records if r.served_model == "gpt-x"][-1]
    assert (shed.status, shed.outcome) == (503, "service_unavailable")

    rig.clock.advance(30)  # cooldown: one trial, which fails, and the circuit reopens
    assert (await generate(rig)).json()["model_id"] == "claude-y"
    assert (await generate(rig)).json()["model_id"] == "claude-y"
    assert len(openai.calls()) == 4

    rig.clock.advance(30)  # the provider is back: the trial succeeds and closes the circuit
    openai.behave = rig.handle("demo").behave
    for _ in range(3):
        assert (await generate(rig)).json()["model_id"] == "gpt-x"
    assert len(openai.calls()) == 7


async def test_without_fallbacks_an_open_circuit_is_a_fast_503_with_retry_after() -> None:
    args = gateway_args()
    args["commercial"]["models"] = [
        {**model, "fallbacks": []} for model in args["commercial"]["models"]
    ]
    rig = build_rig(args)
    rig.handle("openai").behave = failing(UpstreamError("down"))
    try:
        for _ in range(3):
            assert (await generate(rig)).status_code == 502
        rig.clock.advance(12)
        response = await generate(rig)
        error = assert_error(response, 503, "service_unavailable")
        assert error["code"] == "circuit_open"
        assert response.headers["retry-after"] == "18"
        assert len(rig.handle("openai").calls()) == 3
    finally:
        await rig.close()


async def test_an_open_circuit_stops_streamed_calls_too(rig: Rig) -> None:
    openai = rig.handle("openai")
    openai.behave = failing(UpstreamError("down"))
    for _ in range(5):
        response = await generate(rig, stream=True)
        assert sse_payloads(response.text)[-1]["model_id"] == "claude-y"
    assert len(openai.calls("generate_stream")) == 3


async def test_a_fallback_whose_provider_is_not_deployed_is_skipped() -> None:
    handles = {name: ScriptedHandle() for name in ("demo", "openai")}  # no anthropic proxy
    rig = build_rig(handles=handles)
    rig.handle("openai").behave = failing(UpstreamError("down"))
    try:
        response = await generate(rig)
        assert response.status_code == 200, response.text
        assert response.json()["model_id"] == "demo"
    finally:
        await rig.close()
