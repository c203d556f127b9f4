"""Tool calling for local models: the prompt format, forced-call grammars and the parser.

Format (the call tags of the Hermes / Qwen2.5 convention, which many open models are
trained on). Tools are listed at the end of the system turn after a `Tools:` line, one
compact JSON function signature (`name`, `description`, `parameters`) a line, followed by
the instruction to answer a call as a JSON object inside `<tool_call>` tags, one per call:

    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Velmora"}}
    </tool_call>

An assistant turn that made calls is rendered as its text followed by its calls in that
form, and tool results as a user turn of `<tool_response>` blocks (prefixed `Error: ` when
the result reports a failure). A tokenizer whose chat template takes `tools` renders them
itself (it gets OpenAI-shaped messages and tools); one whose template does not (the demo
model's) gets the block above appended to its system turn.

`tool_choice` `required` or a named tool forces the answer through a grammar: one call
(`parallel` False) or several, arguments valid against the tool's schema. `auto` lets the
model answer text or calls, which `parse_tool_calls` picks out of the text; `none` leaves
the tools out of the prompt and the answer unparsed.
"""

import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

from serve_app.contracts.wire import ChatMessage, GenerationParams, ToolCall, ToolSpec

CALL_OPEN = "<tool_call>"
CALL_CLOSE = "</tool_call>"
_CALL_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)
CALL_HEADER = re.compile(r'\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"arguments"\s*:\s*')
TOOLS_PREAMBLE = "Tools:\n"
TOOLS_POSTAMBLE = (
    '\nTo call a tool, answer <tool_call>\n{"name": <tool name>, "arguments": <JSON object>}'
    "\n</tool_call> (one block per call)."
)


def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


def tool_schema(tool: ToolSpec) -> dict[str, Any]:
    """OpenAI's function-tool shape (what HF chat templates take as `tools`)."""
    function: dict[str, Any] = {"name": tool.name, "parameters": tool.parameters}
    if tool.description:
        function["description"] = tool.description
    return {"type": "function", "function": function}


def tools_block(tools: tuple[ToolSpec, ...]) -> str:
    lines = "\n".join(
        json.dumps(tool_schema(t)["function"], ensure_ascii=False, separators=(",", ":"))
        for t in tools
    )
    return TOOLS_PREAMBLE + lines + TOOLS_POSTAMBLE


def render_call(call: ToolCall) -> str:
    arguments = call.arguments.strip() or "{}"
    body = f'{{"name": {json.dumps(call.name)}, "arguments": {arguments}}}'
    return f"{CALL_OPEN}\n{body}\n{CALL_CLOSE}"


def tools_offered(params: GenerationParams) -> tuple[ToolSpec, ...]:
    """The tools the model is told about (none when `tool_choice` is `none`)."""
    choice = params.tool_choice
    return () if choice is not None and choice.mode == "none" else params.tools


def plain_messages(params: GenerationParams) -> list[dict[str, str]]:
    """The conversation as role/content turns for a template that knows no tools."""
    out: list[dict[str, str]] = []
    tools = tools_offered(params)
    for message in params.messages:
        if message.role == "tool":
            block = _tool_response(message)
            if out and out[-1]["role"] == "user" and out[-1].get("tool_results") == "1":
                out[-1]["content"] += "\n" + block
            else:
                out.append({"role": "user", "content": block, "tool_results": "1"})
            continue
        content = message.content
        if message.tool_calls:
            calls = "\n".join(render_call(c) for c in message.tool_calls)
            content = f"{content}\n{calls}" if content else calls
        out.append({"role": message.role, "content": content})
    if tools:
        if out and out[0]["role"] == "system":
            out[0]["content"] += "\n\n" + tools_block(tools)
        else:
            out.insert(0, {"role": "system", "content": tools_block(tools)})
    return [{"role": m["role"], "content": m["content"]} for m in out]


def _tool_response(message: ChatMessage) -> str:
    text = f"Error: {message.content}" if message.is_error else message.content
    return f"<tool_response>\n{text}\n</tool_response>"


def openai_messages(params: GenerationParams) -> list[dict[str, Any]]:
    """The conversation in OpenAI's shape, for chat templates that render tools."""
    out: list[dict[str, Any]] = []
    for message in params.messages:
        turn: dict[str, Any] = {"role": message.role, "content": message.content}
        if message.tool_calls:
            turn["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": _json_or_text(c.arguments)},
                }
                for c in message.tool_calls
            ]
        if message.tool_call_id is not None:
            turn["tool_call_id"] = message.tool_call_id
            if message.is_error:
                turn["content"] = f"Error: {message.content}"
        if message.name:
            turn["name"] = message.name
        out.append(turn)
    return out


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def forced_call_grammar(params: GenerationParams) -> str | None:
    """A Lark grammar (llguidance) that forces the answer to be tool calls, or None."""
    choice = params.tool_choice
    if choice is None or choice.mode not in ("required", "tool") or not params.tools:
        return None
    tools = [t for t in params.tools if choice.mode == "required" or t.name == choice.name]
    if not tools:
        return None
    bodies = [
        {
            "type": "object",
            "properties": {"name": {"const": t.name}, "arguments": t.parameters},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for t in tools
    ]
    body: dict[str, Any] = dict(bodies[0]) if len(bodies) == 1 else {"anyOf": bodies}
    body["x-guidance"] = {"whitespace_flexible": False}  # compact JSON, as for schemas
    start = "start: call" if not choice.parallel else 'start: call ("\\n" call)*'
    return (
        f"{start}\n"
        f'call: "{CALL_OPEN}\\n" body "\\n{CALL_CLOSE}"\n'
        f"body: %json {json.dumps(body, sort_keys=False)}\n"
    )


@dataclass(frozen=True, slots=True)
class ParsedAnswer:
    text: str
    calls: tuple[ToolCall, ...]


def call_from(raw: str, names: set[str]) -> ToolCall | None:
    try:
        obj = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(obj, dict) or obj.get("name") not in names:
        return None
    arguments = obj.get("arguments", {})
    if isinstance(arguments, str):
        arguments = _json_or_text(arguments)
    if not isinstance(arguments, dict):
        return None
    header = CALL_HEADER.match(raw)
    args_text = raw[header.end() : raw.rstrip().rfind("}")].strip() if header else ""
    if not args_text or _json_or_text(args_text) != arguments:
        args_text = json.dumps(arguments, ensure_ascii=False)
    return ToolCall(id=new_call_id(), name=str(obj["name"]), arguments=args_text)


def parse_tool_calls(text: str, params: GenerationParams) -> ParsedAnswer:
    """Split an answer into its text and its tool calls (only those of offered tools)."""
    tools = tools_offered(params)
    if not tools or CALL_OPEN not in text:
        return ParsedAnswer(text, ())
    names = {t.name for t in tools}
    calls: list[ToolCall] = []
    for match in _CALL_BLOCK.finditer(text):
        call = call_from(match.group(1), names)
        if call is not None:
            calls.append(call)
    if not calls:
        return ParsedAnswer(text, ())
    choice = params.tool_choice
    if choice is not None and not choice.parallel:
        calls = calls[:1]
    return ParsedAnswer(text[: text.find(CALL_OPEN)].strip(), tuple(calls))
