"""Cache entries as JSON: a `GenerationOutput` (tool calls, logprobs and extra choices
included) with the model that produced it. JSON rather than pickle, so that whoever can
write to a shared Redis cannot make the gateway run code."""

import dataclasses
import json
from typing import Any

from serve_app.contracts.wire import (
    Choice,
    GenerationOutput,
    TokenLogprob,
    ToolCall,
    TopLogprob,
)

ENTRY_VERSION = 1


def encode_entry(output: GenerationOutput, served_model: str, created: float) -> bytes:
    plain = not (output.tool_calls or output.logprobs or output.more_choices)
    body = {
        "v": ENTRY_VERSION,
        "served_model": served_model,
        "created": round(created, 3),
        "output": _plain(output) if plain else dataclasses.asdict(output),
    }
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def _plain(output: GenerationOutput) -> dict[str, Any]:
    """`asdict` of an output with no tool calls, logprobs or extra choices, without its
    recursive copy (the common case, on every stored miss)."""
    return {
        "text": output.text,
        "input_tokens": output.input_tokens,
        "output_tokens": output.output_tokens,
        "finish_reason": output.finish_reason,
        "served_model": output.served_model,
        "tool_calls": [],
        "logprobs": None,
        "more_choices": [],
    }


def decode_entry(raw: bytes) -> tuple[GenerationOutput, str] | None:
    """The entry's output and model; None for an entry this version cannot read."""
    try:
        body = json.loads(raw)
        if body.get("v") != ENTRY_VERSION:
            return None
        return _output(body["output"]), str(body["served_model"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _bytes(value: Any) -> tuple[int, ...] | None:
    return None if value is None else tuple(value)


def _logprobs(items: Any) -> tuple[TokenLogprob, ...] | None:
    if items is None:
        return None
    return tuple(
        TokenLogprob(
            token=item["token"],
            logprob=item["logprob"],
            bytes=_bytes(item["bytes"]),
            top=tuple(
                TopLogprob(top["token"], top["logprob"], _bytes(top["bytes"]))
                for top in item["top"]
            ),
        )
        for item in items
    )


def _tool_calls(items: Any) -> tuple[ToolCall, ...]:
    return tuple(ToolCall(item["id"], item["name"], item["arguments"]) for item in items)


def _output(body: dict[str, Any]) -> GenerationOutput:
    return GenerationOutput(
        text=body["text"],
        input_tokens=int(body["input_tokens"]),
        output_tokens=int(body["output_tokens"]),
        finish_reason=body["finish_reason"],
        served_model=body["served_model"],
        tool_calls=_tool_calls(body["tool_calls"]),
        logprobs=_logprobs(body["logprobs"]),
        more_choices=tuple(
            Choice(
                index=int(choice["index"]),
                text=choice["text"],
                finish_reason=choice["finish_reason"],
                tool_calls=_tool_calls(choice["tool_calls"]),
                logprobs=_logprobs(choice["logprobs"]),
            )
            for choice in body["more_choices"]
        ),
    )
