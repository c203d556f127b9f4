"""Response bodies and server-sent-event frames of the OpenAI- and Anthropic-compatible APIs.

Pure functions and small immutable formatter classes: no I/O, no FastAPI. Routes build the
response from these. Bodies are plain dicts; SSE frames are UTF-8 bytes of compact JSON
(`ensure_ascii=False`, non-finite floats refused).

Internal finish reasons are "stop" (EOS or a stop string) and "length" (max tokens), with
the occasional "content_filter" or "tool_calls" from a provider; each API gets its own names.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson

from serve_app.contracts.errors import GatewayError
from serve_app.contracts.tool_ids import openai_tool_id
from serve_app.contracts.wire import (
    GenerationOutput,
    StreamChunk,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
)

SSE_DONE = b"data: [DONE]\n\n"


def json_bytes(body: Any) -> bytes:
    """Compact UTF-8 JSON, as used in every SSE frame."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def json_string(text: str) -> bytes:
    """One JSON string (UTF-8, unescaped non-ASCII), as `json_bytes(text)` gives it."""
    try:
        return orjson.dumps(text)
    except orjson.JSONEncodeError:  # a lone surrogate: escaped, as json does
        return json.dumps(text).encode()


DELTA_MARK = "\x00delta\x00"


@dataclass(frozen=True, slots=True)
class DeltaTemplate:
    """A text-delta frame cut around its text once per stream: each delta is then two
    concatenations and one JSON string, instead of a dict built and serialised."""

    head: bytes
    tail: bytes

    @classmethod
    def of(cls, frame: bytes) -> "DeltaTemplate":
        head, mark, tail = frame.rpartition(json_bytes(DELTA_MARK))
        if not mark:
            raise ValueError("the frame does not hold the delta mark")
        return cls(head, tail)

    def frame(self, text: str) -> bytes:
        return self.head + json_string(text) + self.tail


def sse_data(body: Any) -> bytes:
    """One OpenAI-style frame: `data: {json}` and a blank line."""
    return b"data: " + json_bytes(body) + b"\n\n"


def sse_event(event: str, body: Any) -> bytes:
    """One Anthropic-style frame: `event: <type>`, `data: {json}` and a blank line."""
    return b"event: " + event.encode() + b"\ndata: " + json_bytes(body) + b"\n\n"


# -- finish reasons ------------------------------------------------------------------------------


def openai_finish_reason(reason: str) -> str:
    """Chat completions: stop | length | content_filter | tool_calls | function_call."""
    match reason:
        case "length" | "max_tokens":
            return "length"
        case "content_filter" | "refusal":
            return "content_filter"
        case "tool_calls" | "tool_use":
            return "tool_calls"
        case "function_call":
            return "function_call"
        case _:
            return "stop"


def openai_completion_finish_reason(reason: str) -> str:
    """Legacy completions know only stop | length | content_filter."""
    mapped = openai_finish_reason(reason)
    return mapped if mapped in ("length", "content_filter") else "stop"


def anthropic_stop_reason(reason: str) -> str:
    """end_turn | max_tokens | refusal | tool_use. A stop string also maps to end_turn:
    the internal output does not say which stop string (if any) ended the generation."""
    match reason:
        case "length" | "max_tokens":
            return "max_tokens"
        case "content_filter" | "refusal":
            return "refusal"
        case "tool_calls" | "tool_use" | "function_call":
            return "tool_use"
        case _:
            return "end_turn"


# -- OpenAI ------------------------------------------------------------------------------------


def openai_usage(input_tokens: int, output_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": input_tokens,
        "completion_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
    }


def openai_tool_calls(calls: Sequence[ToolCall]) -> list[dict[str, Any]]:
    return [
        {
            "id": openai_tool_id(call.id),
            "type": "function",
            "function": {"name": call.name, "arguments": call.arguments},
        }
        for call in calls
    ]


def _token_logprob(token: TokenLogprob) -> dict[str, Any]:
    return {
        "token": token.token,
        "logprob": token.logprob,
        "bytes": list(token.bytes) if token.bytes is not None else None,
        "top_logprobs": [
            {
                "token": top.token,
                "logprob": top.logprob,
                "bytes": list(top.bytes) if top.bytes is not None else None,
            }
            for top in token.top
        ],
    }


def openai_logprobs(tokens: Sequence[TokenLogprob] | None) -> dict[str, Any] | None:
    """Chat logprobs: `{"content": [...], "refusal": null}`, or null when not asked for."""
    if tokens is None:
        return None
    return {"content": [_token_logprob(token) for token in tokens], "refusal": None}


def completion_logprobs(tokens: Sequence[TokenLogprob] | None, offset: int = 0) -> Any:
    """Legacy completions' logprobs: parallel lists, the alternatives as token -> logprob."""
    if tokens is None:
        return None
    offsets, at = [], offset
    for token in tokens:
        offsets.append(at)
        at += len(token.token)
    return {
        "tokens": [token.token for token in tokens],
        "token_logprobs": [token.logprob for token in tokens],
        "top_logprobs": [{top.token: top.logprob for top in token.top} for token in tokens],
        "text_offset": offsets,
    }


def _chat_choice(
    index: int,
    text: str,
    finish_reason: str,
    calls: Sequence[ToolCall],
    logprobs: Sequence[TokenLogprob] | None,
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": text if text or not calls else None,
        "refusal": None,
    }
    if calls:
        message["tool_calls"] = openai_tool_calls(calls)
    return {
        "index": index,
        "message": message,
        "logprobs": openai_logprobs(logprobs),
        "finish_reason": openai_finish_reason(finish_reason),
    }


def openai_chat_completion(
    output: GenerationOutput, *, model: str, completion_id: str, created: int
) -> dict[str, Any]:
    """The body of a non-streamed `chat.completion` (one choice per `n`)."""
    o = output
    choices = [_chat_choice(0, o.text, o.finish_reason, o.tool_calls, o.logprobs)]
    choices += [
        _chat_choice(c.index, c.text, c.finish_reason, c.tool_calls, c.logprobs)
        for c in o.more_choices
    ]
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": choices,
        "usage": openai_usage(output.input_tokens, output.output_tokens),
    }


def openai_completion(
    output: GenerationOutput, *, model: str, completion_id: str, created: int
) -> dict[str, Any]:
    """The body of a non-streamed legacy `text_completion` (one choice per `n`)."""
    choices = [
        {
            "index": index,
            "text": text,
            "logprobs": completion_logprobs(logprobs),
            "finish_reason": openai_completion_finish_reason(finish),
        }
        for index, text, finish, logprobs in [
            (0, output.text, output.finish_reason, output.logprobs),
            *((c.index, c.text, c.finish_reason, c.logprobs) for c in output.more_choices),
        ]
    ]
    return {
        "id": completion_id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": choices,
        "usage": openai_usage(output.input_tokens, output.output_tokens),
    }


def openai_error_body(error: GatewayError) -> dict[str, Any]:
    return {"error": error.to_dict()}


def openai_model_list(model_ids_with_owner: list[tuple[str, str]], created: int) -> dict[str, Any]:
    data = [
        {"id": model_id, "object": "model", "created": created, "owned_by": owner}
        for model_id, owner in model_ids_with_owner
    ]
    return {"object": "list", "data": data}


@dataclass(slots=True)
class _OpenAIStreamBase:
    model: str
    completion_id: str
    created: int
    include_usage: bool
    template: DeltaTemplate = field(init=False, repr=False, compare=False)

    _object: ClassVar[str] = "chat.completion.chunk"

    def __post_init__(self) -> None:
        object.__setattr__(self, "template", DeltaTemplate.of(self._delta_frame(DELTA_MARK)))

    def _delta_frame(self, text: str) -> bytes:
        raise NotImplementedError

    def delta(self, text: str) -> bytes:
        return self.template.frame(text) if text else b""

    def _chunk(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self.completion_id,
            "object": self._object,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
        if self.include_usage:
            # OpenAI sends `usage: null` on every chunk but the final usage chunk.
            chunk["usage"] = None
        return chunk

    def _tail(self, last_choice: dict[str, Any], input_tokens: int, output_tokens: int) -> bytes:
        """The chunk with the finish reason, the usage chunk if asked for, then [DONE]."""
        frames = sse_data(self._chunk([last_choice]))
        if self.include_usage:
            usage_chunk = self._chunk([])
            usage_chunk["usage"] = openai_usage(input_tokens, output_tokens)
            frames += sse_data(usage_chunk)
        return frames + SSE_DONE

    def error(self, error: GatewayError) -> bytes:
        """An error frame (which the OpenAI SDK raises as `APIError`), then [DONE]."""
        return sse_data(openai_error_body(error)) + SSE_DONE


def _tool_call_delta(piece: ToolCallDelta) -> dict[str, Any]:
    """OpenAI's stream shape: the first piece of a call has id, type and name."""
    if piece.id is None:
        return {"index": piece.index, "function": {"arguments": piece.arguments}}
    function = {"name": piece.name or "", "arguments": piece.arguments}
    return {
        "index": piece.index,
        "id": openai_tool_id(piece.id),
        "type": "function",
        "function": function,
    }


@dataclass(slots=True)
class OpenAIChatStream(_OpenAIStreamBase):
    """SSE frames of a streamed `chat.completion.chunk` sequence (one formatter per stream:
    it remembers which choices have had their opening `role` delta)."""

    opened: set[int] = field(default_factory=lambda: {0})

    def _choice(
        self, delta: dict[str, Any], finish_reason: str | None, index: int = 0, logprobs: Any = None
    ) -> dict[str, Any]:
        return {
            "index": index,
            "delta": delta,
            "logprobs": logprobs,
            "finish_reason": finish_reason,
        }

    def start(self) -> bytes:
        return sse_data(self._chunk([self._choice({"role": "assistant", "content": ""}, None)]))

    def _delta_frame(self, text: str) -> bytes:
        return sse_data(self._chunk([self._choice({"content": text}, None)]))

    def chunk(self, chunk: StreamChunk) -> bytes:
        """One model chunk: text, tool-call pieces and logprobs of choice `chunk.index`; a
        finish reason of a choice other than the first (the first finishes in `finish`)."""
        delta: dict[str, Any] = {}
        if chunk.index not in self.opened:
            self.opened.add(chunk.index)
            delta["role"] = "assistant"
        if chunk.text:
            delta["content"] = chunk.text
        if chunk.tool_calls:
            delta["tool_calls"] = [_tool_call_delta(piece) for piece in chunk.tool_calls]
        last = chunk.finish_reason if chunk.index else None
        if not delta and last is None and chunk.logprobs is None:
            return b""
        finish = openai_finish_reason(last) if last else None
        choice = self._choice(delta, finish, chunk.index, openai_logprobs(chunk.logprobs))
        return sse_data(self._chunk([choice]))

    def finish(self, finish_reason: str, input_tokens: int, output_tokens: int) -> bytes:
        last = self._choice({}, openai_finish_reason(finish_reason))
        return self._tail(last, input_tokens, output_tokens)


@dataclass(slots=True)
class OpenAICompletionStream(_OpenAIStreamBase):
    """SSE frames of a streamed legacy completion (chunks are `text_completion` objects)."""

    _object: ClassVar[str] = "text_completion"

    def _choice(self, text: str, finish_reason: str | None) -> dict[str, Any]:
        return {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}

    def start(self) -> bytes:
        """Legacy completions have no opening chunk: b"", so routes treat both streams alike."""
        return b""

    def _delta_frame(self, text: str) -> bytes:
        return sse_data(self._chunk([self._choice(text, None)]))

    def chunk(self, chunk: StreamChunk) -> bytes:
        if not chunk.text and chunk.logprobs is None:
            return b""
        choice = self._choice(chunk.text, None)
        choice["index"] = chunk.index
        choice["logprobs"] = completion_logprobs(chunk.logprobs)
        return sse_data(self._chunk([choice]))

    def finish(self, finish_reason: str, input_tokens: int, output_tokens: int) -> bytes:
        last = self._choice("", openai_completion_finish_reason(finish_reason))
        return self._tail(last, input_tokens, output_tokens)
