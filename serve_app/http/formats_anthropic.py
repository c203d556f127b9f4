"""Anthropic-shaped response bodies and stream events (text and `tool_use` blocks).

Pure functions and one small stateful stream formatter per response (it tracks which
content block is open). No I/O, no FastAPI.
"""

import json
from dataclasses import dataclass, field
from typing import Any

from serve_app.contracts.errors import GatewayError, UpstreamError
from serve_app.contracts.tool_ids import anthropic_tool_id
from serve_app.contracts.wire import GenerationOutput, StreamChunk, ToolCall
from serve_app.http.formats import anthropic_stop_reason, sse_event


def _anthropic_message(
    model: str,
    message_id: str,
    content: list[dict[str, Any]],
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


def tool_input(call: ToolCall) -> dict[str, Any]:
    """A call's arguments as the object Anthropic's `input` is; a model that produced
    something else is an upstream fault (502), not the client's."""
    try:
        parsed = json.loads(call.arguments or "{}")
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise UpstreamError(
            f"The model's call of {call.name!r} has arguments that are not a JSON object.",
            code="upstream_malformed",
        )
    return parsed


def anthropic_content(output: GenerationOutput) -> list[dict[str, Any]]:
    content: list[dict[str, Any]] = []
    if output.text or not output.tool_calls:
        content.append({"type": "text", "text": output.text})
    content += [
        {
            "type": "tool_use",
            "id": anthropic_tool_id(call.id),
            "name": call.name,
            "input": tool_input(call),
        }
        for call in output.tool_calls
    ]
    return content


def anthropic_message(output: GenerationOutput, *, model: str, message_id: str) -> dict[str, Any]:
    """The body of a non-streamed Anthropic `message`."""
    usage = {"input_tokens": output.input_tokens, "output_tokens": output.output_tokens}
    stop_reason = anthropic_stop_reason(output.finish_reason)
    return _anthropic_message(model, message_id, anthropic_content(output), stop_reason, usage)


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


def _block_start(index: int, block: dict[str, Any]) -> bytes:
    body = {"type": "content_block_start", "index": index, "content_block": block}
    return sse_event("content_block_start", body)


def _block_delta(index: int, delta: dict[str, Any]) -> bytes:
    body = {"type": "content_block_delta", "index": index, "delta": delta}
    return sse_event("content_block_delta", body)


@dataclass(slots=True)
class AnthropicStream:
    """SSE frames of a streamed Anthropic message: a text block and `tool_use` blocks, each
    opened when its first piece arrives and closed when the next begins (or at the end)."""

    model: str
    message_id: str
    block: int = -1  # index of the open block (-1: none yet)
    open_kind: str | None = None
    tool_blocks: dict[int, int] = field(default_factory=dict)  # call index -> block index

    def start(self, input_tokens: int) -> bytes:
        """message_start (output_tokens 1, as Anthropic sends), a text block, ping."""
        usage = {"input_tokens": input_tokens, "output_tokens": 1}
        message = _anthropic_message(self.model, self.message_id, [], None, usage)
        opening = sse_event("message_start", {"type": "message_start", "message": message})
        return opening + self._open_text() + sse_event("ping", {"type": "ping"})

    def _close(self) -> bytes:
        if self.open_kind is None:
            return b""
        self.open_kind = None
        return sse_event("content_block_stop", {"type": "content_block_stop", "index": self.block})

    def _open_text(self) -> bytes:
        frames = self._close()
        self.block += 1
        self.open_kind = "text"
        return frames + _block_start(self.block, {"type": "text", "text": ""})

    def delta(self, text: str) -> bytes:
        if not text:
            return b""
        frames = b"" if self.open_kind == "text" else self._open_text()
        return frames + _block_delta(self.block, {"type": "text_delta", "text": text})

    def chunk(self, chunk: StreamChunk) -> bytes:
        frames = self.delta(chunk.text)
        for piece in chunk.tool_calls:
            if piece.id is not None:
                frames += self._close()
                self.block += 1
                self.open_kind = "tool_use"
                self.tool_blocks[piece.index] = self.block
                tool = {"type": "tool_use", "id": anthropic_tool_id(piece.id), "name": piece.name}
                frames += _block_start(self.block, {**tool, "input": {}})
            if piece.arguments:
                index = self.tool_blocks.get(piece.index, self.block)
                delta = {"type": "input_json_delta", "partial_json": piece.arguments}
                frames += _block_delta(index, delta)
        return frames

    def finish(
        self, finish_reason: str, output_tokens: int, input_tokens: int | None = None
    ) -> bytes:
        """content_block_stop, message_delta (stop reason, cumulative usage: with the real
        input tokens, which an OpenAI upstream reports only at the end), message_stop."""
        delta = {"stop_reason": anthropic_stop_reason(finish_reason), "stop_sequence": None}
        usage = {"output_tokens": output_tokens}
        if input_tokens is not None:
            usage = {"input_tokens": input_tokens, **usage}
        message_delta = {"type": "message_delta", "delta": delta, "usage": usage}
        return (
            self._close()
            + sse_event("message_delta", message_delta)
            + sse_event("message_stop", {"type": "message_stop"})
        )

    def error(self, error: GatewayError) -> bytes:
        """An `error` event (which the Anthropic SDK raises as `APIStatusError`)."""
        return sse_event("error", anthropic_error_body(error))
