"""Tools, images, structured output and sampling fields translated to each provider's body,
and tool calls read back from each provider's answer (real SDK types, no server)."""

import json
from typing import Any

import anthropic
import openai

from deployments.providers.anthropic_wire import anthropic_kwargs, anthropic_stream
from deployments.providers.openai_wire import openai_chat_kwargs, openai_stream, parse_openai_chat
from deployments.providers.translations import parse_anthropic
from serve_app.contracts.config import CommercialModelConfig, PriceConfig
from serve_app.contracts.wire import (
    ChatMessage,
    ContentPart,
    GenerationParams,
    ImagePart,
    OutputFormat,
    ToolCall,
    ToolChoice,
    ToolSpec,
)
from tests.fakes.sdk_json import real_shape

MODEL = CommercialModelConfig(
    id="m",
    provider="openai",
    upstream_model="up",
    price=PriceConfig(),
    context_window=1000,
    max_output_tokens=100,
)
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
IMAGE = ContentPart("image", image=ImagePart(media_type="image/png", data="AAAA"))
LOOP = (
    ChatMessage("system", "Be brief."),
    ChatMessage("user", "Look", parts=(ContentPart("text", text="Look"), IMAGE)),
    ChatMessage("assistant", "", tool_calls=(ToolCall("call_1", "weather", '{"city": "V"}'),)),
    ChatMessage("tool", "sunny", tool_call_id="call_1"),
    ChatMessage("tool", "boom", tool_call_id="call_1", is_error=True),
    ChatMessage("user", "and now?"),
)


def params(**fields: Any) -> GenerationParams:
    base: dict[str, Any] = {"request_id": "r", "model_id": "m", "prompt": "", "max_tokens": 9}
    return GenerationParams(**{**base, **fields})


def test_a_tool_loop_becomes_anthropic_turns() -> None:
    kwargs = anthropic_kwargs(
        params(
            messages=LOOP,
            tools=(ToolSpec("weather", SCHEMA, "w", strict=True),),
            tool_choice=ToolChoice("required", parallel=False),
            output_format=OutputFormat("json_schema", SCHEMA),
            user="u1",
            top_k=4,
        ),
        MODEL,
    )
    assert kwargs["system"] == "Be brief."
    user, assistant, results = kwargs["messages"]
    assert user["content"][1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"},
    }
    assert assistant == {
        "role": "assistant",
        "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "V"}}
        ],
    }
    assert [b["type"] for b in results["content"]] == ["tool_result", "tool_result", "text"]
    assert results["content"][1]["is_error"] is True
    assert results["content"][0]["tool_use_id"] == "toolu_1"
    assert kwargs["tools"] == [
        {"name": "weather", "input_schema": SCHEMA, "description": "w", "strict": True}
    ]
    assert kwargs["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert kwargs["output_config"] == {"format": {"type": "json_schema", "schema": SCHEMA}}
    assert (kwargs["metadata"], kwargs["extra_body"]) == ({"user_id": "u1"}, {"top_k": 4})


def test_a_tool_loop_becomes_openai_messages() -> None:
    anthropic_ids = tuple(
        ChatMessage(
            m.role,
            m.content,
            m.parts,
            tuple(ToolCall("toolu_9", c.name, c.arguments) for c in m.tool_calls),
            "toolu_9" if m.tool_call_id else None,
            m.is_error,
        )
        for m in LOOP
    )
    kwargs = openai_chat_kwargs(
        params(
            messages=anthropic_ids,
            tools=(ToolSpec("weather", SCHEMA),),
            tool_choice=ToolChoice("tool", "weather"),
            output_format=OutputFormat("json_object"),
            logprobs=True,
            top_logprobs=3,
            logit_bias=((5, -100.0),),
            service_tier="standard_only",
        ),
        MODEL,
    )
    messages = kwargs["messages"]
    assert messages[1]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,AAAA"},
    }
    assert messages[2]["tool_calls"][0]["id"] == "call_9" and messages[2]["content"] is None
    assert messages[3] == {"role": "tool", "tool_call_id": "call_9", "content": "sunny"}
    assert messages[4]["content"] == "[tool error] boom"
    assert kwargs["tool_choice"] == {"type": "function", "function": {"name": "weather"}}
    assert kwargs["response_format"] == {"type": "json_object"}
    assert (kwargs["logprobs"], kwargs["top_logprobs"]) == (True, 3)
    assert (kwargs["logit_bias"], kwargs["service_tier"]) == ({"5": -100.0}, "default")


def test_tool_calls_are_read_back() -> None:
    call = {"id": "call_a", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    response = real_shape(
        openai.types.chat.ChatCompletion,
        {
            "id": "c",
            "object": "chat.completion",
            "created": 1,
            "model": "up",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "tool_calls",
                    "message": {"role": "assistant", "content": None, "tool_calls": [call]},
                },
                {
                    "index": 1,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": "hi"},
                },
            ],
        },
    )
    out = parse_openai_chat(response, MODEL)
    assert (out.tool_calls, out.finish_reason) == ((ToolCall("call_a", "f", "{}"),), "tool_calls")
    assert out.more_choices[0].text == "hi"
    message = real_shape(
        anthropic.types.Message,
        {
            "id": "m",
            "type": "message",
            "role": "assistant",
            "model": "up",
            "content": [{"type": "tool_use", "id": "toolu_b", "name": "f", "input": {"x": 1}}],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 3, "output_tokens": 2},
        },
    )
    out = parse_anthropic(message, MODEL)
    assert out.tool_calls == (ToolCall("toolu_b", "f", '{"x": 1}'),)
    assert out.finish_reason == "tool_calls"


async def _collect(stream: Any) -> list[Any]:
    return [chunk async for chunk in stream]


async def test_streamed_tool_calls_become_deltas() -> None:
    async def anthropic_events() -> Any:
        for event in (
            {
                "type": "message_start",
                "message": {
                    "id": "m",
                    "type": "message",
                    "role": "assistant",
                    "model": "up",
                    "content": [],
                    "stop_reason": None,
                    "usage": {"input_tokens": 5, "output_tokens": 0},
                },
            },
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "tool_use", "id": "toolu_c", "name": "f", "input": {}},
            },
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": '{"a":'},
            },
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": " 1}"},
            },
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use"},
                "usage": {"output_tokens": 4},
            },
        ):
            yield _event(event)

    chunks = await _collect(anthropic_stream(anthropic_events(), MODEL))
    pieces = [p for c in chunks for p in c.tool_calls]
    assert (pieces[0].id, pieces[0].name) == ("toolu_c", "f")
    assert json.loads("".join(p.arguments for p in pieces)) == {"a": 1}
    assert (chunks[-1].finish_reason, chunks[-1].input_tokens) == ("tool_calls", 5)

    async def openai_chunks() -> Any:
        for delta, finish in (
            (
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_d",
                            "type": "function",
                            "function": {"name": "f", "arguments": ""},
                        }
                    ]
                },
                None,
            ),
            ({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}, None),
            ({}, "tool_calls"),
        ):
            chunk = {
                "id": "c",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "up",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            openai.types.chat.ChatCompletionChunk.model_validate(chunk)  # a real chunk's shape
            yield chunk

    chunks = await _collect(openai_stream(openai_chunks(), MODEL))
    pieces = [p for c in chunks for p in c.tool_calls]
    assert (pieces[0].id, pieces[1].arguments) == ("call_d", "{}")
    assert chunks[-1].finish_reason == "tool_calls"


def _event(event: dict[str, Any]) -> Any:
    """The event as the SDK hands it over (its JSON), checked to be a real event's shape."""
    from pydantic import TypeAdapter

    TypeAdapter(anthropic.types.RawMessageStreamEvent).validate_python(event)
    return event
