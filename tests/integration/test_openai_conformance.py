"""Every JSON body and stream chunk of the OpenAI-shaped routes, for every model kind (local,
GPT, Claude), with and without tools, validated against OpenAI's published OpenAPI
description (`tests/openai_openapi`, pinned to a commit of `openai/openai-openapi`)."""

from typing import Any

import httpx
import pytest

from tests.openai_openapi.openapi_validator import problems, sse_json

pytestmark = pytest.mark.integration
MODELS = ("demo", "gpt-4o-mini", "claude-haiku-4-5")
# The local model with tools: `random` (1024-token context; the demo's 256 cannot hold the
# rendered tool definitions). Its arguments are bounded, so a forced call ends on its own.
LOCAL_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "parameters": {
                "type": "object",
                "properties": {"q": {"type": "string", "maxLength": 6}},
                "required": ["q"],
                "additionalProperties": False,
            },
        },
    }
]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "parameters": {
                "type": "object",
                "properties": {"q": {"type": "string"}},
                "required": ["q"],
            },
        },
    }
]
QUESTION = [{"role": "user", "content": "What is the capital of Zorbia?"}]


def post(gateway: str, path: str, body: dict[str, Any]) -> httpx.Response:
    response = httpx.post(f"{gateway}/v1/{path}", json=body, timeout=60)
    assert response.status_code == 200, response.text
    return response


def chat_cases() -> list[tuple[str, dict[str, Any]]]:
    cases = []
    for model in MODELS:
        cases.append((model, {}))
        if model != "demo":
            cases.append((model, {"tools": TOOLS, "tool_choice": "required"}))
            cases.append((model, {"tools": TOOLS}))
    forced = {"tool_choice": "required", "parallel_tool_calls": False, "max_tokens": 120}
    cases.append(("random", {"tools": LOCAL_TOOLS, **forced}))
    cases.append(("random", {"tools": LOCAL_TOOLS, "max_tokens": 8}))
    for model in ("gpt-4o-mini", "demo"):
        cases.append((model, {"logprobs": True, "top_logprobs": 2, "n": 2}))
    return cases


@pytest.mark.parametrize(("model", "extra"), chat_cases())
def test_chat_bodies_and_chunks_follow_openais_schema(
    gateway: str, model: str, extra: dict[str, Any]
) -> None:
    body = {"model": model, "messages": QUESTION, "max_tokens": 16, **extra}
    answer = post(gateway, "chat/completions", body).json()
    assert problems("CreateChatCompletionResponse", answer) == []
    stream_body = {**body, "stream": True, "stream_options": {"include_usage": True}}
    stream_body.pop("n", None)
    chunks = sse_json(post(gateway, "chat/completions", stream_body).content)
    assert len(chunks) >= 3
    for chunk in chunks:
        assert problems("CreateChatCompletionStreamResponse", chunk) == [], chunk
    if "tools" in extra and extra.get("tool_choice") == "required":
        assert answer["choices"][0]["message"]["tool_calls"]
        assert any(c["choices"] and c["choices"][0]["delta"].get("tool_calls") for c in chunks)


COMPLETION_CASES = [(model, {}) for model in MODELS] + [
    ("gpt-4o-mini", {"logprobs": 2}),
    ("demo", {"logprobs": 2}),
]


@pytest.mark.parametrize(("model", "extra"), COMPLETION_CASES)
def test_completion_bodies_follow_openais_schema(
    gateway: str, model: str, extra: dict[str, Any]
) -> None:
    prompt = "Q: What is the capital of Zorbia?\nA:"
    body = {"model": model, "prompt": prompt, "max_tokens": 8, **extra}
    answer = post(gateway, "completions", body).json()
    assert problems("CreateCompletionResponse", answer) == []
    if extra:
        logprobs = answer["choices"][0]["logprobs"]
        assert "".join(logprobs["tokens"]) == answer["choices"][0]["text"]
        assert all(len(top) == 2 for top in logprobs["top_logprobs"])
    chunks = sse_json(post(gateway, "completions", {**body, "stream": True}).content)
    for chunk in chunks:
        # Streamed completion chunks are `text_completion` objects whose finish_reason is
        # null until the last one, as the API sends them (the schema's enum lacks null).
        final = [c for c in chunk["choices"] if c["finish_reason"] is not None]
        assert len(final) <= 1
        shaped = {
            **chunk,
            "choices": [
                {**c, "finish_reason": c["finish_reason"] or "stop"} for c in chunk["choices"]
            ],
        }
        assert problems("CreateCompletionResponse", shaped) == [], chunk


def test_model_list_follows_openais_schema(gateway: str) -> None:
    listing = httpx.get(f"{gateway}/v1/models").json()
    assert problems("ListModelsResponse", listing) == []
    assert {m["id"] for m in listing["data"]} >= set(MODELS)
