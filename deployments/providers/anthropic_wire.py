"""`GenerationParams` -> an Anthropic Messages body, and its answer -> ours.

System messages move to `system`; tool results become `tool_result` blocks of a user turn
(with the user text that follows them, as Anthropic requires turns to alternate); assistant
calls become `tool_use` blocks; images become `image` blocks (base64 or url source);
structured output goes in `output_config.format`. Temperature is clamped to 0..1. Pure
functions.
"""

import json
from collections.abc import AsyncIterator
from typing import Any

from serve_app.contracts.config import CommercialModelConfig
from serve_app.contracts.tool_ids import anthropic_tool_id
from serve_app.contracts.wire import (
    ChatMessage,
    ContentPart,
    GenerationOutput,
    GenerationParams,
    StreamChunk,
    ToolCall,
    ToolCallDelta,
)

ANTHROPIC_MAX_TEMPERATURE = 1.0
ANTHROPIC_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
TOOL_CHOICE = {"auto": "auto", "none": "none", "required": "any", "tool": "tool"}
JSON = dict[str, Any]


def _block(part: ContentPart) -> dict[str, Any]:
    if part.image is None:
        return {"type": "text", "text": part.text}
    image = part.image
    if image.url:
        return {"type": "image", "source": {"type": "url", "url": image.url}}
    source = {"type": "base64", "media_type": image.media_type, "data": image.data}
    return {"type": "image", "source": source}


def _arguments(call: ToolCall) -> dict[str, Any]:
    parsed = json.loads(call.arguments or "{}")  # checked at the ingress
    return parsed if isinstance(parsed, dict) else {}


def _content(m: ChatMessage) -> list[dict[str, Any]]:
    if m.role == "tool":
        result: dict[str, Any] = {
            "type": "tool_result",
            "tool_use_id": anthropic_tool_id(m.tool_call_id or ""),
            "content": m.content,
        }
        if m.is_error:
            result["is_error"] = True
        return [result]
    blocks = [_block(p) for p in m.parts] if m.parts else []
    if not m.parts and (m.content or not m.tool_calls):
        blocks.append({"type": "text", "text": m.content})
    blocks += [
        {"type": "tool_use", "id": anthropic_tool_id(c.id), "name": c.name, "input": _arguments(c)}
        for c in m.tool_calls
    ]
    return blocks


def anthropic_messages(params: GenerationParams) -> tuple[str, list[dict[str, Any]]]:
    """(system text, turns): consecutive user-side messages (tool results, then user text)
    merge into one user turn."""
    if not params.messages:
        return "", [{"role": "user", "content": params.prompt}]
    system = "\n\n".join(m.content for m in params.messages if m.role == "system")
    turns: list[dict[str, Any]] = []
    for m in params.messages:
        if m.role == "system":
            continue
        role = "assistant" if m.role == "assistant" else "user"
        blocks = _content(m)
        if turns and turns[-1]["role"] == role and role == "user":
            turns[-1]["content"] += blocks
        else:
            turns.append({"role": role, "content": blocks})
    for turn in turns:  # plain one-text turns stay plain strings, as before
        content = turn["content"]
        if len(content) == 1 and content[0]["type"] == "text":
            turn["content"] = content[0]["text"]
    return system, turns


def _tools(params: GenerationParams) -> dict[str, Any]:
    if not params.tools:
        return {}
    tools = []
    for tool in params.tools:
        spec: dict[str, Any] = {"name": tool.name, "input_schema": tool.parameters}
        if tool.description is not None:
            spec["description"] = tool.description
        if tool.strict:
            spec["strict"] = True
        tools.append(spec)
    kwargs: dict[str, Any] = {"tools": tools}
    choice = params.tool_choice
    if choice is not None:
        body: dict[str, Any] = {"type": TOOL_CHOICE[choice.mode]}
        if choice.mode == "tool":
            body["name"] = choice.name
        if not choice.parallel and choice.mode != "none":
            body["disable_parallel_tool_use"] = True
        kwargs["tool_choice"] = body
    return kwargs


def _output_config(params: GenerationParams) -> dict[str, Any]:
    fmt = params.output_format
    if fmt is None:
        return {}
    schema = fmt.schema if fmt.type == "json_schema" and fmt.schema else {"type": "object"}
    return {"output_config": {"format": {"type": "json_schema", "schema": schema}}}


def _sampling(params: GenerationParams) -> dict[str, Any]:
    """temperature, top_p, top_k: in `extra_body` (the API's JSON names)."""
    sampling: dict[str, Any] = {}
    if params.temperature is not None:
        sampling["temperature"] = min(params.temperature, ANTHROPIC_MAX_TEMPERATURE)
    if params.top_p is not None:
        sampling["top_p"] = params.top_p
    if params.top_k is not None:
        sampling["top_k"] = params.top_k
    return {"extra_body": sampling} if sampling else {}


def anthropic_kwargs(params: GenerationParams, model: CommercialModelConfig) -> dict[str, Any]:
    system, messages = anthropic_messages(params)
    kwargs: dict[str, Any] = {
        "model": model.upstream_model,
        "max_tokens": params.max_tokens,
        "messages": messages,
    }
    if system:
        kwargs["system"] = system
    if params.stop:
        kwargs["stop_sequences"] = list(params.stop)
    if params.user is not None:
        kwargs["metadata"] = {"user_id": params.user}
    if params.service_tier is not None:
        kwargs["service_tier"] = (
            "standard_only" if params.service_tier == "default" else params.service_tier
        )
    return {**kwargs, **_sampling(params), **_tools(params), **_output_config(params)}


def parse_anthropic(response: JSON, model: CommercialModelConfig) -> GenerationOutput:
    """A message, as the JSON the SDK read (`sdk_calls`: no SDK model is built)."""
    blocks = response["content"]
    text = "".join(block["text"] for block in blocks if block["type"] == "text")
    calls = tuple(
        ToolCall(block["id"], block["name"], json.dumps(block["input"], ensure_ascii=False))
        for block in blocks
        if block["type"] == "tool_use"
    )
    reason = response.get("stop_reason") or "end_turn"
    usage = response["usage"]
    return GenerationOutput(
        text=text,
        input_tokens=usage["input_tokens"],
        output_tokens=usage["output_tokens"],
        finish_reason=ANTHROPIC_FINISH.get(reason, reason),
        served_model=response.get("model") or model.upstream_model,
        tool_calls=calls,
    )


async def anthropic_stream(stream: Any, model: CommercialModelConfig) -> AsyncIterator[StreamChunk]:
    """Text and tool-call pieces from Anthropic's raw message events (the JSON the SDK read),
    then the usage and stop reason (`message_delta` may carry a final input count too)."""
    finish, input_tokens, output_tokens, served = "stop", 0, 0, model.upstream_model
    calls = -1
    async for event in stream:
        kind = event["type"]
        if kind == "message_start":
            input_tokens = event["message"]["usage"]["input_tokens"]
            served = event["message"].get("model") or served
        elif kind == "content_block_start" and event["content_block"]["type"] == "tool_use":
            calls += 1
            block = event["content_block"]
            piece = ToolCallDelta(calls, block["id"], block["name"], "")
            yield StreamChunk("", input_tokens=input_tokens, tool_calls=(piece,))
        elif kind == "content_block_delta" and event["delta"]["type"] == "text_delta":
            yield StreamChunk(event["delta"]["text"], input_tokens=input_tokens)
        elif kind == "content_block_delta" and event["delta"]["type"] == "input_json_delta":
            piece = ToolCallDelta(calls, arguments=event["delta"]["partial_json"])
            yield StreamChunk("", input_tokens=input_tokens, tool_calls=(piece,))
        elif kind == "message_delta":
            reason = event["delta"].get("stop_reason") or "end_turn"
            finish = ANTHROPIC_FINISH.get(reason, reason)
            output_tokens = event["usage"]["output_tokens"]
            input_tokens = event["usage"].get("input_tokens") or input_tokens
    yield StreamChunk("", finish, input_tokens, output_tokens, served)
