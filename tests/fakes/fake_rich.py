"""The fake provider's answers with tool calls, logprobs or several choices, in each API's
shape, streamed and not (the plain text answers stay in `fake_provider`)."""

from typing import Any

from tests.fakes import fake_features
from tests.fakes.fake_provider import (
    Generation,
    Meta,
    _anthropic_stop,
    _openai_finish,
    _openai_usage,
    message_body,
    split_pieces,
    sse,
)

Call = tuple[str, str, str]


def _chat_message(gen: Generation, calls: list[Call]) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": None if calls else gen.text,
        "refusal": None,
    }
    if calls:
        message["tool_calls"] = [
            {"id": i, "type": "function", "function": {"name": n, "arguments": a}}
            for i, n, a in calls
        ]
    return message


def _chat_logprobs(gen: Generation, body: dict[str, Any]) -> dict[str, Any] | None:
    if body.get("logprobs") is not True:
        return None
    top = int(body.get("top_logprobs") or 0)
    content = fake_features.logprobs_content(split_pieces(gen.text), top)
    return {"content": content, "refusal": None}


def chat_rich_body(gen: Generation, meta: Meta, body: dict[str, Any], calls: list[Call]) -> Any:
    finish = "tool_calls" if calls else _openai_finish(gen)
    n = int(body.get("n") or 1)
    choices = [
        {
            "index": index,
            "message": _chat_message(gen, calls),
            "logprobs": _chat_logprobs(gen, body),
            "finish_reason": finish,
        }
        for index in range(n)
    ]
    usage = _openai_usage(gen)
    usage["completion_tokens"] *= n
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    return {**meta.openai("chat.completion"), "choices": choices, "usage": usage}


def chat_rich_events(
    gen: Generation, meta: Meta, body: dict[str, Any], calls: list[Call]
) -> list[bytes]:
    options = body.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    extra: dict[str, Any] = {"usage": None} if include_usage else {}

    def chunk(delta: dict[str, Any], finish: str | None = None, lp: Any = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": lp, "finish_reason": finish}
        return sse({**meta.openai("chat.completion.chunk"), "choices": [choice], **extra})

    events = [chunk({"role": "assistant", "content": None if calls else ""})]
    for index, (ident, name, arguments) in enumerate(calls):
        head = {"index": index, "id": ident, "type": "function"}
        events.append(
            chunk({"tool_calls": [{**head, "function": {"name": name, "arguments": ""}}]})
        )
        events += [
            chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
            for piece in fake_features.pieces(arguments)
        ]
    if not calls:
        top = int(body.get("top_logprobs") or 0)
        for piece in split_pieces(gen.text):
            lp = None
            if body.get("logprobs") is True:
                lp = {"content": fake_features.logprobs_content([piece], top), "refusal": None}
            events.append(chunk({"content": piece}, lp=lp))
    events.append(chunk({}, "tool_calls" if calls else _openai_finish(gen)))
    if include_usage:
        usage = {"choices": [], "usage": _openai_usage(gen)}
        events.append(sse({**meta.openai("chat.completion.chunk"), **usage}))
    return [*events, sse("[DONE]")]


def messages_rich_body(gen: Generation, meta: Meta, calls: list[Call]) -> dict[str, Any]:
    out = message_body(gen, meta)
    if calls:
        out["content"] = [
            {"type": "tool_use", "id": i, "name": n, "input": fake_features.json.loads(a)}
            for i, n, a in calls
        ]
        out["stop_reason"], out["stop_sequence"] = "tool_use", None
    return out


def messages_rich_events(gen: Generation, meta: Meta, calls: list[Call]) -> list[bytes]:
    start = {**messages_rich_body(gen, meta, calls), "content": [], "stop_reason": None}
    start["usage"] = {"input_tokens": gen.input_tokens, "output_tokens": 0}
    events: list[dict[str, Any]] = [{"type": "message_start", "message": start}, {"type": "ping"}]
    for index, (ident, name, arguments) in enumerate(calls):
        block = {"type": "tool_use", "id": ident, "name": name, "input": {}}
        events.append({"type": "content_block_start", "index": index, "content_block": block})
        events += [
            {
                "type": "content_block_delta",
                "index": index,
                "delta": {"type": "input_json_delta", "partial_json": piece},
            }
            for piece in fake_features.pieces(arguments)
        ]
        events.append({"type": "content_block_stop", "index": index})
    if not calls:
        block = {"type": "text", "text": ""}
        events.append({"type": "content_block_start", "index": 0, "content_block": block})
        events += [
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}
            for p in split_pieces(gen.text)
        ]
        events.append({"type": "content_block_stop", "index": 0})
    stop = "tool_use" if calls else _anthropic_stop(gen)
    delta = {"stop_reason": stop, "stop_sequence": None if calls else gen.stop_sequence}
    events.append(
        {"type": "message_delta", "delta": delta, "usage": {"output_tokens": gen.output_tokens}}
    )
    events.append({"type": "message_stop"})
    return [sse(event, event["type"]) for event in events]


def rich_answer(kind: str, body: dict[str, Any], gen: Generation, meta: Meta, number: int) -> Any:
    """The JSON body (dict) or SSE events (list) for a chat or messages request, or None when
    the plain answer of `fake_provider` fits (no calls, logprobs or extra choices)."""
    calls = fake_features.tool_calls(kind, body, number)
    rich = calls or body.get("logprobs") is True or int(body.get("n") or 1) > 1
    if kind == "completion" or not rich:
        return None
    stream = body.get("stream") is True
    if kind == "chat":
        if stream:
            return chat_rich_events(gen, meta, body, calls)
        return chat_rich_body(gen, meta, body, calls)
    return (
        messages_rich_events(gen, meta, calls) if stream else messages_rich_body(gen, meta, calls)
    )
