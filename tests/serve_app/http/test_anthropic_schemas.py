"""Anthropic-compatible request schema: what it accepts, what it refuses and why."""

import json
from typing import Any

import anthropic
import httpx2
import pytest
from pydantic import ValidationError

from serve_app.contracts.wire import ChatMessage, ToolCall, ToolChoice
from serve_app.http.schemas.anthropic import (
    AnthropicErrorResponse,
    AnthropicMessage,
    MessagesRequest,
)

USER = [{"role": "user", "content": "hi"}]


def request(**fields: Any) -> MessagesRequest:
    body = {"model": "demo", "max_tokens": 32, "messages": USER, **fields}
    return MessagesRequest.model_validate({k: v for k, v in body.items() if v is not ...})


def test_minimal_request() -> None:
    parsed = request()
    assert parsed.max_tokens == 32 and parsed.stream is False
    assert parsed.chat_messages() == (ChatMessage("user", "hi"),)
    assert parsed.stop_list() == []


def test_system_comes_first_and_blocks_are_flattened() -> None:
    parsed = request(
        system=[
            {"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "Answer in French."},
        ],
        messages=[
            {
                "role": "user",
                "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            },
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "c"},
        ],
    )
    assert parsed.chat_messages() == (
        ChatMessage("system", "You are terse.\nAnswer in French."),
        ChatMessage("user", "a\nb"),
        ChatMessage("assistant", "ok"),
        ChatMessage("user", "c"),
    )
    assert request(system="Be kind.").chat_messages()[0] == ChatMessage("system", "Be kind.")
    assert request(system="").chat_messages() == (ChatMessage("user", "hi"),)


def test_optional_fields_are_accepted() -> None:
    parsed = request(
        temperature=1,
        top_p=0.5,
        top_k=40,
        stop_sequences=["\n\nHuman:"],
        stream=True,
        metadata={"user_id": "u-1"},
    )
    assert parsed.stop_list() == ["\n\nHuman:"]
    assert parsed.top_k == 40 and parsed.stream
    assert request(top_k=0).top_k == 0


def test_temperature_above_one_is_rejected() -> None:
    with pytest.raises(ValidationError) as excinfo:
        request(temperature=1.5)
    assert excinfo.value.errors()[0]["loc"] == ("temperature",)


def test_max_tokens_is_required() -> None:
    with pytest.raises(ValidationError) as excinfo:
        request(max_tokens=...)
    error = excinfo.value.errors()[0]
    assert (error["type"], error["loc"]) == ("missing", ("max_tokens",))
    with pytest.raises(ValidationError):
        request(max_tokens=0)


@pytest.mark.parametrize(
    "block",
    [
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}},
        {"type": "thinking", "thinking": "hm", "signature": "s"},
        {"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}},
    ],
)
def test_unsupported_blocks_are_rejected_clearly(block: dict[str, Any]) -> None:
    content = [{"type": "text", "text": "look"}, block]
    with pytest.raises(ValidationError) as excinfo:
        request(messages=[{"role": "user", "content": content}])
    error = excinfo.value.errors()[0]
    assert error["loc"] == ("messages", 0)
    assert f"content block 1 has type {block['type']!r}" in error["msg"]
    with pytest.raises(ValidationError, match="a system turn takes text blocks"):
        request(system=[block])


@pytest.mark.parametrize(
    "fields",
    [
        {"tools": [{"name": "f", "input_schema": {"type": "array"}}]},
        {"thinking": {"type": "enabled", "budget_tokens": 1024}},
        {"messages": []},
        {"messages": [{"role": "system", "content": "no"}]},
        {"messages": [{"role": "user", "content": []}]},
        {"messages": [{"role": "user", "content": "hi", "name": "x"}]},
        {"metadata": {"user_id": "u", "other": 1}},
        {"stop_sequences": ["ok", ""]},
        {"stop_sequences": "not-a-list"},
        {"temperature": float("nan")},
        {"temperature": -0.1},
        {"top_p": 0},
        {"top_k": -1},
        {"model": ""},
    ],
)
def test_invalid_requests_are_rejected(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        request(**fields)


def test_json_nan_is_rejected() -> None:
    raw = '{"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}],'
    with pytest.raises(ValidationError, match="finite number"):
        MessagesRequest.model_validate_json(raw + ' "top_p": NaN}')


def test_accepts_what_the_anthropic_sdk_sends() -> None:
    sent: list[dict[str, Any]] = []

    def handler(http_request: httpx2.Request) -> httpx2.Response:
        sent.append(json.loads(http_request.content))
        error = {"type": "invalid_request_error", "message": "captured"}
        return httpx2.Response(400, json={"type": "error", "error": error})

    http_client = httpx2.Client(transport=httpx2.MockTransport(handler))
    with (
        anthropic.Anthropic(
            api_key="k", base_url="http://gateway", http_client=http_client, max_retries=0
        ) as client,
        pytest.raises(anthropic.BadRequestError),
    ):
        client.messages.create(
            model="demo",
            max_tokens=10,
            system=[{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral"}}],
            messages=[{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
            stop_sequences=["END"],
            metadata={"user_id": "u"},
            stream=True,
            # anthropic 2.x dropped the sampling keyword arguments from `create`.
            extra_body={"temperature": 0.5, "top_k": 5},
        )
    parsed = MessagesRequest.model_validate(sent[0])
    assert parsed.chat_messages() == (ChatMessage("system", "sys"), ChatMessage("user", "hi"))
    assert parsed.stream and parsed.stop_list() == ["END"]
    assert (parsed.temperature, parsed.top_k) == (0.5, 5)


def test_response_models_have_openapi_schemas() -> None:
    for model in (AnthropicMessage, AnthropicErrorResponse):
        assert model.model_json_schema()["type"] == "object"
    assert MessagesRequest.model_json_schema()["additionalProperties"] is False


def test_tool_turns_and_images_become_wire_messages() -> None:
    image = {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
    parsed = request(
        system=[{"type": "text", "text": "Be brief."}],
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "look"}, image]},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Calling."},
                    {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": "ok",
                        "is_error": True,
                    },
                    {"type": "text", "text": "and?"},
                ],
            },
        ],
        tools=[{"name": "f", "input_schema": {"type": "object"}, "strict": True}],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
        output_config={"format": {"type": "json_schema", "schema": {"type": "object"}}},
    )
    system, user, assistant, result, follow = parsed.chat_messages()
    assert (system.role, system.content) == ("system", "Be brief.")
    assert [p.type for p in user.parts] == ["text", "image"]
    assert user.parts[1].image.url == "https://example.com/a.png"  # type: ignore[union-attr]
    assert assistant.tool_calls == (ToolCall("toolu_1", "f", '{"a": 1}'),)
    assert (result.role, result.tool_call_id, result.is_error) == ("tool", "toolu_1", True)
    assert (follow.role, follow.content) == ("user", "and?")
    assert parsed.image_locations() == ("messages[0].content[1]",)
    options = parsed.options()
    assert options["tool_choice"] == ToolChoice("required", None, False)
    assert options["tools"][0].strict and options["output_format"].schema == {"type": "object"}
