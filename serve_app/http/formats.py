"""Response bodies and server-sent-event frames of the OpenAI- and Anthropic-compatible APIs.

Pure functions and small immutable formatter classes: no I/O, no FastAPI. Routes build the
response from these. Bodies are plain dicts; SSE frames are UTF-8 bytes of compact JSON
(`ensure_ascii=False`, non-finite floats refused).

Internal finish reasons are "stop" (EOS or a stop string) and "length" (max tokens), with
the occasional "content_filter" or "tool_calls" from a provider; each API gets its own names.
"""

import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson

from serve_app.contracts.errors import GatewayError
from serve_app.contracts.wire import GenerationOutput

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


def openai_chat_completion(
    output: GenerationOutput, *, model: str, completion_id: str, created: int
) -> dict[str, Any]:
    """The body of a non-streamed `chat.completion`."""
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": output.text},
        "logprobs": None,
        "finish_reason": openai_finish_reason(output.finish_reason),
    }
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [choice],
        "usage": openai_usage(output.input_tokens, output.output_tokens),
    }


def openai_completion(
    output: GenerationOutput, *, model: str, completion_id: str, created: int
) -> dict[str, Any]:
    """The body of a non-streamed legacy `text_completion`."""
    choice = {
        "index": 0,
        "text": output.text,
        "logprobs": None,
        "finish_reason": openai_completion_finish_reason(output.finish_reason),
    }
    return {
        "id": completion_id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [choice],
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


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class OpenAIChatStream(_OpenAIStreamBase):
    """SSE frames of a streamed `chat.completion.chunk` sequence with one choice."""

    def _choice(self, delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}

    def start(self) -> bytes:
        return sse_data(self._chunk([self._choice({"role": "assistant", "content": ""}, None)]))

    def _delta_frame(self, text: str) -> bytes:
        return sse_data(self._chunk([self._choice({"content": text}, None)]))

    def finish(self, finish_reason: str, input_tokens: int, output_tokens: int) -> bytes:
        last = self._choice({}, openai_finish_reason(finish_reason))
        return self._tail(last, input_tokens, output_tokens)


@dataclass(frozen=True, slots=True)
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

    def finish(self, finish_reason: str, input_tokens: int, output_tokens: int) -> bytes:
        last = self._choice("", openai_completion_finish_reason(finish_reason))
        return self._tail(last, input_tokens, output_tokens)


# -- Anthropic ---------------------------------------------------------------------------------


def _anthropic_message(
    model: str,
    message_id: str,
    content: list[dict[str, str]],
    stop_reason: str | None,
    usage: dict[str, int],
) -> dict[str, Any]:
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage,
    }


def anthropic_message(output: GenerationOutput, *, model: str, message_id: str) -> dict[str, Any]:
    """The body of a non-streamed Anthropic `message`."""
    usage = {"input_tokens": output.input_tokens, "output_tokens": output.output_tokens}
    stop_reason = anthropic_stop_reason(output.finish_reason)
    content = [{"type": "text", "text": output.text}]
    return _anthropic_message(model, message_id, content, stop_reason, usage)


def anthropic_error_type(error: GatewayError) -> str:
    """Anthropic's error type for a gateway error, chosen by its HTTP status."""
    match error.status_code:
        case 401:
            return "authentication_error"
        case 402:
            return "billing_error"
        case 403:
            return "permission_error"
        case 404:
            return "not_found_error"
        case 429:
            return "rate_limit_error"
        case 503 | 529:
            return "overloaded_error"
        case 504:
            return "timeout_error"
        case status if status < 500:
            return "invalid_request_error"
        case _:
            return "api_error"


def anthropic_error_body(error: GatewayError) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {"type": anthropic_error_type(error), "message": error.message},
    }


@dataclass(frozen=True, slots=True)
class AnthropicStream:
    """SSE frames of a streamed Anthropic message holding one text block."""

    model: str
    message_id: str
    template: DeltaTemplate = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "template", DeltaTemplate.of(self._delta_frame(DELTA_MARK)))

    def start(self, input_tokens: int) -> bytes:
        """message_start (output_tokens 1, as Anthropic sends), content_block_start, ping."""
        usage = {"input_tokens": input_tokens, "output_tokens": 1}
        message = _anthropic_message(self.model, self.message_id, [], None, usage)
        block = {"type": "text", "text": ""}
        return (
            sse_event("message_start", {"type": "message_start", "message": message})
            + sse_event(
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": block},
            )
            + sse_event("ping", {"type": "ping"})
        )

    def _delta_frame(self, text: str) -> bytes:
        body = {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": text},
        }
        return sse_event("content_block_delta", body)

    def delta(self, text: str) -> bytes:
        return self.template.frame(text) if text else b""

    def finish(self, finish_reason: str, output_tokens: int) -> bytes:
        """content_block_stop, message_delta (stop reason, cumulative usage), message_stop."""
        delta = {"stop_reason": anthropic_stop_reason(finish_reason), "stop_sequence": None}
        message_delta = {
            "type": "message_delta",
            "delta": delta,
            "usage": {"output_tokens": output_tokens},
        }
        return (
            sse_event("content_block_stop", {"type": "content_block_stop", "index": 0})
            + sse_event("message_delta", message_delta)
            + sse_event("message_stop", {"type": "message_stop"})
        )

    def error(self, error: GatewayError) -> bytes:
        """An `error` event (which the Anthropic SDK raises as `APIStatusError`)."""
        return sse_event("error", anthropic_error_body(error))
