"""Bodies and stream events of OpenAI's Responses API, built from the chat contract's
`GenerationOutput` / `StreamChunk`s.

The stream is the sequence the `openai` SDK's `responses.stream()` accumulates:
`response.created`, `response.in_progress`, per output item `response.output_item.added`,
(`response.content_part.added`, `response.output_text.delta`..., `response.output_text.done`,
`response.content_part.done`) or (`response.function_call_arguments.delta`...,
`response.function_call_arguments.done`), `response.output_item.done`, then
`response.completed` (or `response.incomplete`) with the whole response; every event has a
`sequence_number`.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from serve_app.contracts.errors import GatewayError
from serve_app.contracts.wire import ChatMessage, GenerationOutput, StreamChunk, ToolCall
from serve_app.http.formats import sse_event


@dataclass(slots=True)
class ResponseShell:
    """What a response object repeats from its request."""

    id: str
    created_at: int
    model: str
    request: dict[str, Any]  # instructions, tools, temperature, ... as the client sent them

    def body(
        self,
        status: str,
        output: list[dict[str, Any]],
        usage: Any = None,
        incomplete: str | None = None,
        error: Any = None,
    ) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "model": self.model,
            "output": output,
            "usage": usage,
            "error": error,
            "incomplete_details": {"reason": incomplete} if incomplete else None,
            **self.request,
        }


def usage_body(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }


def message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    return {
        "type": "message",
        "id": item_id,
        "status": status,
        "role": "assistant",
        "content": [part] if status == "completed" else [],
    }


def call_item(item_id: str, call: ToolCall, status: str = "completed") -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": call.id,
        "name": call.name,
        "arguments": call.arguments,
        "status": status,
    }


def output_items(shell: ResponseShell, output: GenerationOutput) -> list[dict[str, Any]]:
    items = []
    if output.text or not output.tool_calls:
        items.append(message_item(f"msg_{shell.id[5:]}", output.text))
    items += [call_item(f"fc_{shell.id[5:]}_{i}", call) for i, call in enumerate(output.tool_calls)]
    return items


def final_status(finish_reason: str) -> tuple[str, str | None]:
    if finish_reason == "length":
        return "incomplete", "max_output_tokens"
    if finish_reason == "content_filter":
        return "incomplete", "content_filter"
    return "completed", None


def response_body(shell: ResponseShell, output: GenerationOutput) -> dict[str, Any]:
    status, reason = final_status(output.finish_reason)
    usage = usage_body(output.input_tokens, output.output_tokens)
    return shell.body(status, output_items(shell, output), usage, reason)


def answer_turn(output: GenerationOutput) -> ChatMessage:
    """The assistant turn a later `previous_response_id` continues from."""
    return ChatMessage("assistant", output.text, tool_calls=output.tool_calls)


@dataclass(slots=True)
class _OpenItem:
    index: int
    item: dict[str, Any]
    text: list[str] = field(default_factory=list)


class ResponsesStream:
    """Stateful SSE formatter for one streamed response; `on_done` gets the final
    `GenerationOutput` (to store the response)."""

    def __init__(self, shell: ResponseShell, on_done: Callable[[GenerationOutput], None]) -> None:
        self.shell = shell
        self.on_done = on_done
        self.sequence = 0
        self.items: list[_OpenItem] = []
        self.message: _OpenItem | None = None
        self.calls: dict[int, _OpenItem] = {}
        self.call_list: list[ToolCall] = []

    def _event(self, kind: str, **body: Any) -> bytes:
        frame = sse_event(kind, {"type": kind, "sequence_number": self.sequence, **body})
        self.sequence += 1
        return frame

    def start(self) -> bytes:
        body = self.shell.body("in_progress", [])
        return self._event("response.created", response=body) + self._event(
            "response.in_progress", response=body
        )

    def _open(self, item: dict[str, Any]) -> tuple[_OpenItem, bytes]:
        opened = _OpenItem(len(self.items), item)
        self.items.append(opened)
        frame = self._event("response.output_item.added", output_index=opened.index, item=item)
        return opened, frame

    def delta(self, chunk: StreamChunk) -> bytes:
        frames = b""
        if chunk.text:
            if self.message is None:
                self.message, frame = self._open(
                    message_item(f"msg_{self.shell.id[5:]}", "", "in_progress")
                )
                part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
                frames += frame + self._event(
                    "response.content_part.added",
                    item_id=self.message.item["id"],
                    output_index=self.message.index,
                    content_index=0,
                    part=part,
                )
            self.message.text.append(chunk.text)
            frames += self._event(
                "response.output_text.delta",
                item_id=self.message.item["id"],
                output_index=self.message.index,
                content_index=0,
                delta=chunk.text,
                logprobs=[],
            )
        for piece in chunk.tool_calls:
            frames += self._call_delta(piece.index, piece.id, piece.name, piece.arguments)
        return frames

    def _call_delta(self, index: int, call_id: str | None, name: str | None, args: str) -> bytes:
        frames = b""
        if index not in self.calls:
            call = ToolCall(call_id or f"call_{index}", name or "", "")
            item = call_item(f"fc_{self.shell.id[5:]}_{index}", call, "in_progress")
            self.calls[index], frames = self._open(item)
        opened = self.calls[index]
        if args:
            opened.text.append(args)
            frames += self._event(
                "response.function_call_arguments.delta",
                item_id=opened.item["id"],
                output_index=opened.index,
                delta=args,
            )
        return frames

    def end(self, finish_reason: str, input_tokens: int, output_tokens: int) -> bytes:
        frames, output, calls = b"", [], []
        for opened in self.items:
            frames += self._close(opened)
            output.append(opened.item)
            if opened.item["type"] == "function_call":
                item = opened.item
                calls.append(ToolCall(item["call_id"], item["name"], item["arguments"]))
        status, reason = final_status(finish_reason)
        body = self.shell.body(status, output, usage_body(input_tokens, output_tokens), reason)
        text = "".join(self.message.text) if self.message else ""
        self.on_done(
            GenerationOutput(
                text, input_tokens, output_tokens, finish_reason, tool_calls=tuple(calls)
            )
        )
        kind = "response.completed" if status == "completed" else "response.incomplete"
        return frames + self._event(kind, response=body)

    def _close(self, opened: _OpenItem) -> bytes:
        item, text = opened.item, "".join(opened.text)
        where = {"item_id": item["id"], "output_index": opened.index}
        if item["type"] == "message":
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            item.update(status="completed", content=[part])
            frames = self._event(
                "response.output_text.done", **where, content_index=0, text=text, logprobs=[]
            )
            frames += self._event("response.content_part.done", **where, content_index=0, part=part)
        else:
            item.update(status="completed", arguments=text)
            frames = self._event(
                "response.function_call_arguments.done", **where, arguments=text, name=item["name"]
            )
        return frames + self._event(
            "response.output_item.done", output_index=opened.index, item=item
        )

    def error(self, error: GatewayError) -> bytes:
        return self._event("error", code=error.code, message=error.message, param=error.param)


def conversation_json(messages: tuple[ChatMessage, ...]) -> str:
    return json.dumps(
        [
            {
                "role": m.role,
                "content": m.content,
                "tool_call_id": m.tool_call_id,
                "tool_calls": [[c.id, c.name, c.arguments] for c in m.tool_calls],
            }
            for m in messages
        ],
        ensure_ascii=False,
    )


def conversation_from_json(text: str) -> tuple[ChatMessage, ...]:
    return tuple(
        ChatMessage(
            m["role"],
            m["content"],
            tool_call_id=m["tool_call_id"],
            tool_calls=tuple(ToolCall(*c) for c in m["tool_calls"]),
        )
        for m in json.loads(text)
    )
