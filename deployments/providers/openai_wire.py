"""`GenerationParams` -> an OpenAI chat/completions body, and its answer -> ours.

Tools, tool results, images (data URL or URL parts), structured output, logprobs, `n` and
the sampling fields are all sent as OpenAI takes them. Pure functions.
"""

from collections.abc import AsyncIterator
from typing import Any

from serve_app.contracts.config import CommercialModelConfig
from serve_app.contracts.tool_ids import openai_tool_id
from serve_app.contracts.wire import (
    ChatMessage,
    Choice,
    ContentPart,
    GenerationOutput,
    GenerationParams,
    StreamChunk,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    TopLogprob,
)

OPENAI_FINISH = {
    "stop": "stop",
    "length": "length",
    "content_filter": "content_filter",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
}
TOOL_ERROR_PREFIX = "[tool error] "  # OpenAI has no is_error: it travels in the text
JSON = dict[str, Any]


def _part(part: ContentPart) -> dict[str, Any]:
    if part.image is None:
        return {"type": "text", "text": part.text}
    image = part.image
    url = image.url or f"data:{image.media_type};base64,{image.data}"
    body: dict[str, Any] = {"url": url}
    if image.detail:
        body["detail"] = image.detail
    return {"type": "image_url", "image_url": body}


def _message(m: ChatMessage) -> dict[str, Any]:
    if m.role == "tool":
        content = TOOL_ERROR_PREFIX + m.content if m.is_error else m.content
        return {
            "role": "tool",
            "tool_call_id": openai_tool_id(m.tool_call_id or ""),
            "content": content,
        }
    if m.tool_calls:
        calls = [
            {
                "id": openai_tool_id(c.id),
                "type": "function",
                "function": {"name": c.name, "arguments": c.arguments},
            }
            for c in m.tool_calls
        ]
        return {"role": "assistant", "content": m.content or None, "tool_calls": calls}
    body: dict[str, Any] = {"role": m.role}
    body["content"] = [_part(p) for p in m.parts] if m.parts else m.content
    if m.name:
        body["name"] = m.name
    return body


def openai_messages(params: GenerationParams) -> list[dict[str, Any]]:
    if params.messages:
        return [_message(m) for m in params.messages]
    return [{"role": "user", "content": params.prompt}]


def _tool_choice(choice: ToolChoice) -> Any:
    if choice.mode == "tool":
        return {"type": "function", "function": {"name": choice.name}}
    return choice.mode


def _tools(params: GenerationParams) -> dict[str, Any]:
    if not params.tools:
        return {}
    tools = []
    for tool in params.tools:
        function: dict[str, Any] = {"name": tool.name, "parameters": tool.parameters}
        if tool.description is not None:
            function["description"] = tool.description
        if tool.strict:
            function["strict"] = True
        tools.append({"type": "function", "function": function})
    kwargs: dict[str, Any] = {"tools": tools}
    if params.tool_choice is not None:
        kwargs["tool_choice"] = _tool_choice(params.tool_choice)
        if not params.tool_choice.parallel:
            kwargs["parallel_tool_calls"] = False
    return kwargs


def _response_format(params: GenerationParams) -> dict[str, Any]:
    fmt = params.output_format
    if fmt is None:
        return {}
    if fmt.type == "json_object":
        return {"response_format": {"type": "json_object"}}
    spec: dict[str, Any] = {"name": fmt.name or "response", "schema": fmt.schema or {}}
    if fmt.strict:
        spec["strict"] = True
    return {"response_format": {"type": "json_schema", "json_schema": spec}}


def _optional(params: GenerationParams) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "temperature": params.temperature,
        "top_p": params.top_p,
        "seed": params.seed,
        "presence_penalty": params.presence_penalty,
        "frequency_penalty": params.frequency_penalty,
        "user": params.user,
    }
    kwargs: dict[str, Any] = {k: v for k, v in fields.items() if v is not None}
    if params.stop:
        kwargs["stop"] = list(params.stop)
    if params.n != 1:
        kwargs["n"] = params.n
    if params.logit_bias:
        kwargs["logit_bias"] = {str(token): bias for token, bias in params.logit_bias}
    if params.logprobs:
        kwargs["logprobs"] = True
        if params.top_logprobs:
            kwargs["top_logprobs"] = params.top_logprobs
    if params.metadata:
        kwargs["metadata"] = dict(params.metadata)
    if params.service_tier is not None:
        tier = params.service_tier
        kwargs["service_tier"] = "default" if tier == "standard_only" else tier
    return kwargs


def openai_chat_kwargs(params: GenerationParams, model: CommercialModelConfig) -> dict[str, Any]:
    return {
        "model": model.upstream_model,
        "messages": openai_messages(params),
        "max_tokens": params.max_tokens,
        **_optional(params),
        **_tools(params),
        **_response_format(params),
    }


def _bytes(values: list[int] | None) -> tuple[int, ...] | None:
    return tuple(values) if values is not None else None


def _logprobs(logprobs: JSON | None) -> tuple[TokenLogprob, ...] | None:
    content = logprobs.get("content") if logprobs else None
    if content is None:
        return None
    return tuple(
        TokenLogprob(
            t["token"],
            t["logprob"],
            _bytes(t.get("bytes")),
            tuple(
                TopLogprob(a["token"], a["logprob"], _bytes(a.get("bytes")))
                for a in t.get("top_logprobs") or ()
            ),
        )
        for t in content
    )


def _calls(message: JSON) -> tuple[ToolCall, ...]:
    return tuple(
        ToolCall(c["id"], c["function"]["name"], c["function"].get("arguments") or "{}")
        for c in message.get("tool_calls") or ()
        if c.get("function") is not None
    )


def _finish(reason: str | None) -> str:
    return OPENAI_FINISH.get(reason or "stop", reason or "stop")


def parse_openai_chat(response: JSON, model: CommercialModelConfig) -> GenerationOutput:
    """A chat completion, as the JSON the SDK read (`sdk_calls`: no SDK model is built)."""
    first, *others = sorted(response["choices"], key=lambda c: c["index"])
    usage = response.get("usage")
    return GenerationOutput(
        text=first["message"].get("content") or "",
        input_tokens=usage["prompt_tokens"] if usage else 0,
        output_tokens=usage["completion_tokens"] if usage else 0,
        finish_reason=_finish(first.get("finish_reason")),
        served_model=response.get("model") or model.upstream_model,
        tool_calls=_calls(first["message"]),
        logprobs=_logprobs(first.get("logprobs")),
        more_choices=tuple(
            Choice(
                c["index"],
                c["message"].get("content") or "",
                _finish(c.get("finish_reason")),
                _calls(c["message"]),
                _logprobs(c.get("logprobs")),
            )
            for c in others
        ),
    )


def _deltas(delta: JSON) -> tuple[ToolCallDelta, ...]:
    pieces = []
    for call in delta.get("tool_calls") or ():
        function = call.get("function") or {}
        pieces.append(
            ToolCallDelta(
                call["index"],
                call.get("id"),
                function.get("name"),
                function.get("arguments") or "",
            )
        )
    return tuple(pieces)


async def openai_stream(stream: Any, model: CommercialModelConfig) -> AsyncIterator[StreamChunk]:
    """Chunks of an OpenAI chat stream opened with `include_usage` (text, tool-call pieces,
    logprobs, per choice), then the first choice's finish reason and the usage. Each chunk
    is the JSON the SDK read."""
    finish, input_tokens, output_tokens, served = "stop", 0, 0, model.upstream_model
    async for chunk in stream:
        served = chunk.get("model") or served
        usage = chunk.get("usage")
        if usage is not None:
            input_tokens, output_tokens = usage["prompt_tokens"], usage["completion_tokens"]
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            text = delta.get("content") or ""
            calls = _deltas(delta)
            logprobs = _logprobs(choice.get("logprobs"))
            reason = choice.get("finish_reason")
            done = _finish(reason) if reason else None
            index = choice.get("index", 0)
            if index == 0 and done:
                finish, done = done, None
            if text or calls or logprobs or done:
                yield StreamChunk(text, done, index=index, tool_calls=calls, logprobs=logprobs)
    yield StreamChunk("", finish, input_tokens, output_tokens, served)
