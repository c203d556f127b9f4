"""Wire schema of OpenAI's Responses API (`POST /v1/responses`), mapped onto the chat
contract (`ChatMessage`, `ToolSpec`, `ToolChoice`, `OutputFormat`), so every model answers.

Strict like the other OpenAI routes: an unknown field is a 400 naming it; hosted tools the
gateway cannot run (web search, file search, code interpreter, ...) and input item types it
cannot map (images, files, reasoning, item references) are 400s naming the type.
"""

from typing import Any, Literal

from pydantic import Field, field_validator

from serve_app.contracts.errors import InvalidRequestError
from serve_app.contracts.wire import ChatMessage, OutputFormat, ToolCall, ToolChoice, ToolSpec
from serve_app.http.schemas.openai_base import OpenAIWireModel

TEXT_PARTS = ("input_text", "output_text", "text")
EMPTY_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}


class FunctionToolIn(OpenAIWireModel):
    type: Literal["function"]
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    description: str | None = None
    parameters: dict[str, Any] | None = Field(None, description="JSON Schema of the arguments.")
    strict: bool | None = Field(None, description="Enforce the schema (default false here).")

    def wire(self) -> ToolSpec:
        return ToolSpec(
            self.name, self.parameters or EMPTY_PARAMETERS, self.description, bool(self.strict)
        )


class TextFormatIn(OpenAIWireModel):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = Field(None, max_length=64)
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    description: str | None = None
    strict: bool | None = None


class TextConfigIn(OpenAIWireModel):
    format: TextFormatIn | None = None
    verbosity: Literal["low", "medium", "high"] | None = Field(
        None, description="Accepted; only `medium` behaviour is produced."
    )


class ResponseRequest(OpenAIWireModel):
    model: str = Field(min_length=1, max_length=256)
    input: str | list[dict[str, Any]] = Field(description="A string or a list of input items.")
    instructions: str | None = Field(None, description="A system message for this turn only.")
    tools: list[dict[str, Any]] | None = Field(None, description="Function tools only.")
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    text: TextConfigIn | None = None
    previous_response_id: str | None = Field(None, max_length=128)
    store: bool = Field(True, description="false: nothing is kept (no GET, no continuation).")
    stream: bool = False
    metadata: dict[str, str] | None = None
    user: str | None = Field(None, max_length=512)
    cache: bool = Field(True, description="Gateway extension: false skips the response cache.")

    @field_validator("input")
    @classmethod
    def _not_empty(cls, value: Any) -> Any:
        if value == "" or value == []:
            raise ValueError("input must not be empty")
        return value

    @field_validator("store", "stream", "cache", mode="before")
    @classmethod
    def _null_default(cls, value: Any, info: Any) -> Any:
        return cls.model_fields[info.field_name].default if value is None else value

    def function_tools(self) -> tuple[ToolSpec, ...]:
        specs = []
        for index, tool in enumerate(self.tools or ()):
            kind = tool.get("type") if isinstance(tool, dict) else None
            if kind != "function":
                raise InvalidRequestError(
                    f"tools[{index}] has type {kind!r}: this gateway runs no hosted tools; "
                    "only function tools are supported.",
                    param=f"tools[{index}].type",
                    code="unsupported_tool",
                )
            specs.append(FunctionToolIn.model_validate(tool).wire())
        return tuple(specs)

    def choice(self, tools: tuple[ToolSpec, ...]) -> ToolChoice | None:
        parallel = self.parallel_tool_calls is not False
        value = self.tool_choice
        if value is None:
            return None if parallel else ToolChoice(parallel=False)
        if value in ("auto", "none", "required"):
            return ToolChoice(value, parallel=parallel)  # type: ignore[arg-type]
        if isinstance(value, dict) and value.get("type") == "function":
            name = value.get("name")
            if name not in {tool.name for tool in tools}:
                raise InvalidRequestError(
                    f"tool_choice names {name!r}, which is not in tools.", param="tool_choice"
                )
            return ToolChoice("tool", str(name), parallel)
        kind = value.get("type") if isinstance(value, dict) else value
        raise InvalidRequestError(
            f"tool_choice {kind!r} is not supported (auto, none, required or a function).",
            param="tool_choice",
        )

    def output_format(self) -> OutputFormat | None:
        fmt = self.text.format if self.text is not None else None
        if fmt is None or fmt.type == "text":
            return None
        if fmt.type == "json_schema" and fmt.schema_ is None:
            raise InvalidRequestError("text.format.schema is required.", param="text.format")
        return OutputFormat(fmt.type, fmt.schema_, fmt.name, bool(fmt.strict))

    def options(self) -> dict[str, Any]:
        tools = self.function_tools()
        return {
            "tools": tools,
            "tool_choice": self.choice(tools),
            "output_format": self.output_format(),
            "user": self.user,
            "metadata": tuple((self.metadata or {}).items()),
        }

    def input_messages(self) -> tuple[ChatMessage, ...]:
        if isinstance(self.input, str):
            return (ChatMessage("user", self.input),)
        messages: list[ChatMessage] = []
        for index, item in enumerate(self.input):
            append_item(messages, item, f"input[{index}]")
        return tuple(messages)


def _text_of(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequestError(f"{where}.content must be a string or a list.", param=where)
    texts = []
    for index, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in TEXT_PARTS or not isinstance(part.get("text"), str):
            raise InvalidRequestError(
                f"{where}.content[{index}] has type {kind!r}; only input_text and output_text "
                "parts are supported on /v1/responses.",
                param=f"{where}.content[{index}].type",
            )
        texts.append(part["text"])
    return "\n".join(texts)


def append_item(messages: list[ChatMessage], item: Any, where: str) -> None:
    """One input item as chat turns: a message, a function call (joined to the assistant
    turn before it), or a function call's output (a tool result)."""
    if not isinstance(item, dict):
        raise InvalidRequestError(f"{where} must be an object.", param=where)
    kind = item.get("type", "message")
    if kind == "message":
        role = item.get("role")
        if role not in ("user", "assistant", "system", "developer"):
            raise InvalidRequestError(f"{where}.role {role!r} is not valid.", param=f"{where}.role")
        text = _text_of(item.get("content"), where)
        messages.append(ChatMessage("system" if role == "developer" else role, text))
    elif kind == "function_call":
        call = ToolCall(str(item.get("call_id")), str(item.get("name")), str(item.get("arguments")))
        last = messages[-1] if messages else None
        if last is not None and last.role == "assistant":
            messages[-1] = ChatMessage(
                "assistant", last.content, tool_calls=(*last.tool_calls, call)
            )
        else:
            messages.append(ChatMessage("assistant", "", tool_calls=(call,)))
    elif kind == "function_call_output":
        output = item.get("output")
        if not isinstance(output, str) or not item.get("call_id"):
            raise InvalidRequestError(
                f"{where} needs call_id and a string output.", param=f"{where}.output"
            )
        messages.append(ChatMessage("tool", output, tool_call_id=str(item["call_id"])))
    else:
        raise InvalidRequestError(
            f"{where} has type {kind!r}; supported: message, function_call, function_call_output.",
            param=f"{where}.type",
        )
