"""Hostile and malformed tools, tool turns, images, schemas and sampling fields: each is a
clean 400 (or 413) in the route's own error shape naming the field, and nothing reaches a
deployment. The app runs with small `max_tools`, `max_schema_bytes`, `max_image_bytes`."""

import base64
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.serve_app.app_factory import COMMERCIAL_MODEL_ID, MODEL_ID, build_gateway_app
from tests.serve_app.hostile_requests import (
    CHAT,
    MESSAGES,
    assert_error,
    assert_names,
    serve_in_process,
    valid_body,
)

module_loop = pytest.mark.asyncio(loop_scope="module")
LIMITS = {"max_tools": 4, "max_schema_bytes": 1024, "max_image_bytes": 2048}
OBJECT = {"type": "object", "properties": {"q": {"type": "string"}}}
BIG_SCHEMA = {"type": "object", "description": "x" * 2000}
PNG = base64.b64encode(bytes(64)).decode()
BIG_PNG = base64.b64encode(bytes(4096)).decode()


def fn(name: str, parameters: Any = OBJECT) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "parameters": parameters}}


def tool(name: str, schema: Any = OBJECT) -> dict[str, Any]:
    return {"name": name, "input_schema": schema}


def user(*parts: Any) -> list[dict[str, Any]]:
    return [{"role": "user", "content": list(parts)}]


def image_url(url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}}


def image_block(media_type: str, data: str) -> dict[str, Any]:
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}


CALL = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
USE = {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}
CASES: list[tuple[str, str, dict[str, Any], int, str]] = [
    ("schema not an object", CHAT, {"tools": [fn("f", {"type": "array"})]}, 400, "tools"),
    ("schema not an object", MESSAGES, {"tools": [tool("f", {"type": "string"})]}, 400, "tools"),
    ("duplicate tool", CHAT, {"tools": [fn("f"), fn("f")]}, 400, "tools"),
    ("duplicate tool", MESSAGES, {"tools": [tool("f"), tool("f")]}, 400, "tools"),
    ("bad tool name", CHAT, {"tools": [fn("no spaces")]}, 400, "tools"),
    (
        "choice names no tool",
        CHAT,
        {"tools": [fn("f")], "tool_choice": {"type": "function", "function": {"name": "g"}}},
        400,
        "tool_choice",
    ),
    (
        "choice names no tool",
        MESSAGES,
        {"tools": [tool("f")], "tool_choice": {"type": "tool", "name": "g"}},
        400,
        "tool_choice",
    ),
    ("too many tools", CHAT, {"tools": [fn(f"f{i}") for i in range(5)]}, 400, "tools"),
    ("too many tools", MESSAGES, {"tools": [tool(f"f{i}") for i in range(5)]}, 400, "tools"),
    ("schema too large", CHAT, {"tools": [fn("f", BIG_SCHEMA)]}, 400, "tools[0]"),
    ("schema too large", MESSAGES, {"tools": [tool("f", BIG_SCHEMA)]}, 400, "tools[0]"),
    (
        "format schema too large",
        CHAT,
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "r", "schema": BIG_SCHEMA},
            }
        },
        400,
        "response_format",
    ),
    (
        "result answers no call",
        CHAT,
        {
            "messages": [
                *user({"type": "text", "text": "hi"}),
                {"role": "tool", "tool_call_id": "x", "content": "1"},
            ]
        },
        400,
        "messages",
    ),
    (
        "result answers no call",
        MESSAGES,
        {"messages": user({"type": "tool_result", "tool_use_id": "toolu_x", "content": "1"})},
        400,
        "messages",
    ),
    (
        "arguments not JSON",
        CHAT,
        {
            "messages": [
                *user({"type": "text", "text": "hi"}),
                {
                    "role": "assistant",
                    "tool_calls": [{**CALL, "function": {"name": "f", "arguments": "{oops"}}],
                },
            ]
        },
        400,
        "messages",
    ),
    (
        "arguments not an object",
        CHAT,
        {
            "messages": [
                *user({"type": "text", "text": "hi"}),
                {
                    "role": "assistant",
                    "tool_calls": [{**CALL, "function": {"name": "f", "arguments": "[1]"}}],
                },
            ]
        },
        400,
        "messages",
    ),
    (
        "tool_use input not an object",
        MESSAGES,
        {
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": [{**USE, "input": [1]}]},
            ]
        },
        400,
        "messages",
    ),
    ("unknown part", CHAT, {"messages": user({"type": "video", "video": {}})}, 400, "messages"),
    ("unknown block", MESSAGES, {"messages": user({"type": "video"})}, 400, "messages"),
    (
        "image in a system turn",
        CHAT,
        {"messages": [{"role": "system", "content": [image_url("https://a/b.png")]}]},
        400,
        "messages",
    ),
    (
        "not an image",
        CHAT,
        {"messages": user(image_url("data:text/plain;base64,AAAA"))},
        400,
        "messages",
    ),
    (
        "not an image",
        MESSAGES,
        {"messages": user(image_block("application/pdf", PNG))},
        400,
        "messages",
    ),
    ("not base64", CHAT, {"messages": user(image_url("data:image/png,raw"))}, 400, "messages"),
    ("file URL", CHAT, {"messages": user(image_url("file:///etc/passwd"))}, 400, "messages"),
    (
        "image to a text-only model",
        CHAT,
        {"messages": user(image_url(f"data:image/png;base64,{PNG}"))},
        400,
        "messages[0].content[0]",
    ),
    (
        "image to a text-only model",
        MESSAGES,
        {"messages": user({"type": "text", "text": "a"}, image_block("image/png", PNG))},
        400,
        "messages[0].content[1]",
    ),
    (
        "image too large",
        CHAT,
        {
            "model": COMMERCIAL_MODEL_ID,
            "messages": user(image_url(f"data:image/png;base64,{BIG_PNG}")),
        },
        413,
        "messages[0].content[0]",
    ),
    (
        "image too large",
        MESSAGES,
        {"model": COMMERCIAL_MODEL_ID, "messages": user(image_block("image/png", BIG_PNG))},
        413,
        "messages[0].content[0]",
    ),
    (
        "top_logprobs out of range",
        CHAT,
        {"logprobs": True, "top_logprobs": 21},
        400,
        "top_logprobs",
    ),
    ("top_logprobs without logprobs", CHAT, {"top_logprobs": 2}, 400, "top_logprobs"),
    ("logit_bias key not a token id", CHAT, {"logit_bias": {"abc": 1}}, 400, "logit_bias"),
    ("logit_bias out of range", CHAT, {"logit_bias": {"1": 101}}, 400, "logit_bias"),
    (
        "top_k to an OpenAI model",
        MESSAGES,
        {"model": COMMERCIAL_MODEL_ID, "top_k": 3},
        400,
        "top_k",
    ),
    ("service tier the model lacks", CHAT, {"service_tier": "flex"}, 400, "service_tier"),
    (
        "server tool",
        MESSAGES,
        {"tools": [{"type": "web_search_20250305", "name": "web_search"}]},
        400,
        "tools",
    ),
    ("too many choices", CHAT, {"n": 500}, 400, "n"),
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[httpx.AsyncClient]:
    built = build_gateway_app(
        tmp_path_factory.mktemp("surface"), auth=False, max_body_bytes=1 << 20, ingress=LIMITS
    )
    async with serve_in_process(built) as served:
        yield served


@module_loop
@pytest.mark.parametrize(
    ("path", "fields", "status", "param"),
    [case[1:] for case in CASES],
    ids=[f"{case[1]} {case[0]}" for case in CASES],
)
async def test_bad_chat_surface_input_is_refused_by_name(
    client: httpx.AsyncClient, path: str, fields: dict[str, Any], status: int, param: str
) -> None:
    response = await client.post(path, json=valid_body(path, **fields))
    error = assert_error(response, path, status)
    assert_names(error, path, param)


@module_loop
async def test_the_same_requests_within_limits_are_served(client: httpx.AsyncClient) -> None:
    tools = {"tools": [fn(f"f{i}") for i in range(4)], "tool_choice": "required"}
    image = user({"type": "text", "text": "hi"}, image_url(f"data:image/png;base64,{PNG}"))
    for fields in (tools, {"model": COMMERCIAL_MODEL_ID, "messages": image}):
        response = await client.post(CHAT, json=valid_body(CHAT, **fields))
        assert response.status_code == 200, response.text
    assert MODEL_ID  # the local model served the tool request (tools pass through to it)
