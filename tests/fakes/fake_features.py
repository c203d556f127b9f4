"""What the fake provider does with tools, structured output, images, logprobs and `n`,
as the real APIs do (pure functions; `fake_provider` calls them).

- Tools: a forced choice (`required`/`any`, or a named tool) and `auto` on a turn that is
  not a tool result answer with calls whose arguments fit each tool's schema (`auto` calls
  every tool, or the first one when parallel calls are off); a turn of tool results is
  answered with text ("Tool said: ..." with the results).
- Structured output: `response_format` json_schema / json_object (OpenAI) and
  `output_config.format` (Anthropic) answer with JSON that fits the schema.
- Images: each image part counts `IMAGE_TOKENS` input tokens.
- Logprobs: one entry per word piece, with `top_logprobs` alternatives.
- The request checks the real APIs make on tool turns (a result answers an earlier call;
  Anthropic turns alternate) answer 400, so a wrong translation fails loudly.
"""

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

IMAGE_TOKENS = 85
ARGUMENT_PIECE = 7  # characters of arguments per streamed piece


def schema_instance(schema: Any) -> Any:
    """A value valid against the (simple, common) JSON Schema `schema`."""
    if not isinstance(schema, dict):
        return None
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return schema_instance(schema[key][0])
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties") or {}
        return {name: schema_instance(sub) for name, sub in props.items()}
    if kind == "array":
        count = max(1, int(schema.get("minItems", 1)))
        return [schema_instance(schema.get("items", {"type": "string"})) for _ in range(count)]
    if kind in ("integer", "number"):
        return _number(schema, kind == "integer")
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return "x" * max(1, int(schema.get("minLength", 4)))


def _number(schema: dict[str, Any], integer: bool) -> float:
    step = 1 if integer else 0.5
    low = schema.get("minimum")
    if low is None and "exclusiveMinimum" in schema:
        low = schema["exclusiveMinimum"] + step
    high = schema.get("maximum")
    if high is None and "exclusiveMaximum" in schema:
        high = schema["exclusiveMaximum"] - step
    value = low if low is not None else (high if high is not None else 1 + step)
    return int(value) if integer else value


# -- request reading ------------------------------------------------------------------------------


def image_count(body: Mapping[str, Any]) -> int:
    count = 0
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        for part in content if isinstance(content, list) else []:
            if isinstance(part, dict) and part.get("type") in ("image_url", "image"):
                count += 1
    return count


def _tool_results(kind: str, body: Mapping[str, Any]) -> list[str] | None:
    """The texts of the last turn's tool results, or None when it holds none."""
    messages = body.get("messages") or []
    if kind == "chat":
        tail = []
        for message in reversed(messages):
            if message.get("role") != "tool":
                break
            tail.insert(0, str(message.get("content")))
        return tail or None
    last = messages[-1] if messages else {}
    content = last.get("content") if last.get("role") == "user" else None
    results = (
        [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"]
        if isinstance(content, list)
        else []
    )
    return [_result_text(b.get("content")) for b in results] or None


def _result_text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(b.get("text", "") for b in content if isinstance(b, dict))
    return str(content or "")


def tool_problem(kind: str, body: Mapping[str, Any]) -> str | None:
    """The 400 the real API gives a malformed tool conversation, else None."""
    calls: set[str] = set()
    previous_role = None
    for index, message in enumerate(body.get("messages") or []):
        role = message.get("role")
        if kind == "messages" and role == previous_role:
            return f"messages.{index}: roles must alternate between user and assistant"
        previous_role = role
        if kind == "chat":
            calls.update(c.get("id") for c in message.get("tool_calls") or [])
            if role == "tool" and message.get("tool_call_id") not in calls:
                return f"messages.[{index}].tool_call_id: no preceding tool call"
            continue
        content = message.get("content")
        for block in content if isinstance(content, list) else []:
            if block.get("type") == "tool_use":
                calls.add(block.get("id"))
            if block.get("type") == "tool_result" and block.get("tool_use_id") not in calls:
                return f"messages.{index}: tool_result without a matching tool_use"
    return None


def _tools(kind: str, body: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    tools = body.get("tools") or []
    if kind == "chat":
        return [(t["function"]["name"], t["function"].get("parameters") or {}) for t in tools]
    return [(t["name"], t.get("input_schema") or {}) for t in tools]


def _choice(kind: str, body: Mapping[str, Any]) -> tuple[str, str | None, bool]:
    """(mode auto|none|required|tool, tool name, parallel)"""
    choice = body.get("tool_choice")
    if kind == "chat":
        parallel = body.get("parallel_tool_calls") is not False
        if isinstance(choice, dict):
            return "tool", choice["function"]["name"], parallel
        return choice or "auto", None, parallel
    choice = choice or {"type": "auto"}
    mode = {"any": "required"}.get(choice["type"], choice["type"])
    return mode, choice.get("name"), not choice.get("disable_parallel_tool_use")


def tool_calls(kind: str, body: Mapping[str, Any], number: int) -> list[tuple[str, str, str]]:
    """(id, name, arguments JSON) of the calls this request is answered with."""
    tools = _tools(kind, body)
    mode, name, parallel = _choice(kind, body)
    if not tools or mode == "none":
        return []
    if mode == "auto" and _tool_results(kind, body) is not None:
        return []
    if mode == "tool":
        tools = [t for t in tools if t[0] == name]
    elif mode == "required" or not parallel:
        tools = tools[:1]
    prefix = "call_fake" if kind == "chat" else "toolu_fake"
    return [
        (f"{prefix}{number:04d}{i}", tool, json.dumps(schema_instance(schema)))
        for i, (tool, schema) in enumerate(tools)
    ]


def structured_text(kind: str, body: Mapping[str, Any]) -> str | None:
    if kind == "chat":
        fmt = body.get("response_format") or {}
        if fmt.get("type") == "json_schema":
            return json.dumps(schema_instance(fmt["json_schema"].get("schema") or {}))
        if fmt.get("type") == "json_object":
            return json.dumps({"answer": "fake"})
        return None
    fmt = (body.get("output_config") or {}).get("format")
    return json.dumps(schema_instance(fmt["schema"])) if fmt else None


def adjust(kind: str, body: Mapping[str, Any], gen: Any) -> Any:
    """The generation with its text replaced for structured output and tool results, and
    image tokens added to the input."""
    text = structured_text(kind, body)
    results = _tool_results(kind, body)
    if text is None and results is not None:
        text = "Tool said: " + "; ".join(results)
    inputs = gen.input_tokens + IMAGE_TOKENS * image_count(body)
    if text is None:
        return dataclasses.replace(gen, input_tokens=inputs)
    return dataclasses.replace(
        gen, text=text, finish="stop", output_tokens=len(text.split()), input_tokens=inputs
    )


def pieces(arguments: str) -> list[str]:
    return [arguments[i : i + ARGUMENT_PIECE] for i in range(0, len(arguments), ARGUMENT_PIECE)]


def logprobs_content(text_pieces: list[str], top: int) -> list[dict[str, Any]]:
    def entry(token: str, logprob: float) -> dict[str, Any]:
        return {"token": token, "logprob": logprob, "bytes": list(token.encode())}

    return [
        {
            **entry(piece, -0.25),
            "top_logprobs": [entry(piece if k == 0 else f"alt{k}", -0.25 - k) for k in range(top)],
        }
        for piece in text_pieces
    ]
