"""OpenAI chat messages, tools and response formats, parsed into the wire contract.

Message shapes as OpenAI documents them: system/developer and tool turns (text), user turns
(text and `image_url` parts), assistant turns (text, `refusal`, `tool_calls`). An unknown or
unsupported part type is refused naming the part, never dropped.
"""

import json
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from serve_app.contracts.wire import (
    ChatMessage,
    ContentPart,
    ImagePart,
    OutputFormat,
    ToolCall,
    ToolChoice,
    ToolSpec,
)
from serve_app.http.schemas.media import image_from_data_url, image_from_url
from serve_app.http.schemas.openai_base import OpenAIWireModel

# Several text parts of one message are joined with this (as vLLM does).
PART_SEPARATOR = "\n"
TOOL_NAME_PATTERN = r"^[a-zA-Z0-9_-]{1,64}$"
PART_TYPES = {
    "system": ("text",),
    "developer": ("text",),
    "user": ("text", "image_url"),
    "assistant": ("text", "refusal"),
    "tool": ("text",),
}


class TextPart(OpenAIWireModel):
    type: Literal["text"]
    text: str


class RefusalPart(OpenAIWireModel):
    type: Literal["refusal"]
    refusal: str


class ImageURL(OpenAIWireModel):
    url: str = Field(min_length=1, description="https URL or a base64 `data:image/...` URL.")
    detail: Literal["auto", "low", "high"] | None = None

    def image_part(self) -> ImagePart:
        if self.url.startswith("data:"):
            return image_from_data_url(self.url, self.detail)
        return image_from_url(self.url, self.detail)


class ImageURLPart(OpenAIWireModel):
    type: Literal["image_url"]
    image_url: ImageURL

    @model_validator(mode="after")
    def _check_url(self) -> "ImageURLPart":
        self.image()  # a bad data: URL, a non-image media type or scheme is a 400 here
        return self

    def image(self) -> ImagePart:
        return self.image_url.image_part()


Part = Annotated[TextPart | RefusalPart | ImageURLPart, Field(discriminator="type")]


class FunctionCallIn(OpenAIWireModel):
    name: str = Field(min_length=1, max_length=64)
    arguments: str = Field(description="The arguments as JSON text (an object).")

    @field_validator("arguments")
    @classmethod
    def _json_object(cls, value: str) -> str:
        try:
            parsed = json.loads(value)
        except ValueError:
            raise ValueError("arguments must be JSON text of an object") from None
        if not isinstance(parsed, dict):
            raise ValueError("arguments must be JSON text of an object")
        return value


class ToolCallIn(OpenAIWireModel):
    index: int | None = Field(
        None, description="Accepted: the SDKs' stream helpers leave it on assembled calls."
    )
    id: str = Field(min_length=1, max_length=256)
    type: Literal["function"]
    function: FunctionCallIn


def _check_part_types(role: Any, content: Any) -> None:
    if not isinstance(content, list):
        return
    allowed = PART_TYPES.get(role, ("text",))
    for index, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind is not None and kind not in allowed:
            raise ValueError(
                f"content part {index} has type {kind!r}; a {role} message takes "
                f"{', '.join(allowed)} parts"
            )
        url = part.get("image_url", {}).get("url") if kind == "image_url" else None
        if isinstance(url, str):  # one clear message rather than a union error dump
            try:
                ImageURL(url=url).image_part()
            except ValueError as exc:
                raise ValueError(f"content part {index}: {exc}") from None


class ChatMessageIn(OpenAIWireModel):
    role: Literal["system", "developer", "user", "assistant", "tool"] = Field(
        description="`developer` is treated as `system`; the legacy `function` role is refused."
    )
    content: str | list[Part] | None = Field(
        None, description="A string or a non-empty list of parts; null only beside tool_calls."
    )
    name: str | None = Field(None, description="Passed to OpenAI models.")
    tool_calls: list[ToolCallIn] | None = Field(None, description="An assistant turn's calls.")
    tool_call_id: str | None = Field(None, description="A tool turn: the call it answers.")
    refusal: str | None = Field(None, description="An assistant turn's refusal text.")

    @model_validator(mode="before")
    @classmethod
    def _parts_fit_role(cls, data: Any) -> Any:
        if isinstance(data, dict):
            _check_part_types(data.get("role"), data.get("content"))
        return data

    @model_validator(mode="after")
    def _role_rules(self) -> "ChatMessageIn":
        if isinstance(self.content, list) and not self.content:
            raise ValueError("content must not be an empty list")
        if self.tool_calls is not None and self.role != "assistant":
            raise ValueError("only assistant messages carry tool_calls")
        if (self.tool_call_id is None) != (self.role != "tool"):
            raise ValueError("tool_call_id is required on tool messages, and only there")
        if self.content is None and not (
            self.role == "assistant" and (self.tool_calls or self.refusal)
        ):
            raise ValueError("content is required (it may be null only beside tool_calls)")
        return self

    def text(self) -> str:
        if self.content is None:
            return self.refusal or ""
        if isinstance(self.content, str):
            return self.content
        texts = [
            p.text if isinstance(p, TextPart) else p.refusal
            for p in self.content
            if not isinstance(p, ImageURLPart)
        ]
        return PART_SEPARATOR.join(texts)

    def parts(self) -> tuple[ContentPart, ...]:
        """Text and images in order, only when the message holds an image."""
        if not isinstance(self.content, list) or not any(
            isinstance(p, ImageURLPart) for p in self.content
        ):
            return ()
        return tuple(
            ContentPart("image", image=p.image())
            if isinstance(p, ImageURLPart)
            else ContentPart("text", text=p.text if isinstance(p, TextPart) else p.refusal)
            for p in self.content
        )

    def wire(self) -> ChatMessage:
        calls = tuple(
            ToolCall(c.id, c.function.name, c.function.arguments) for c in self.tool_calls or ()
        )
        return ChatMessage(
            role="system" if self.role == "developer" else self.role,
            content=self.text(),
            parts=self.parts(),
            tool_calls=calls,
            tool_call_id=self.tool_call_id,
            name=self.name,
        )


def check_tool_results(messages: list[ChatMessageIn]) -> None:
    """Every tool turn answers a call made by an earlier assistant turn."""
    calls: set[str] = set()
    for index, message in enumerate(messages):
        calls.update(call.id for call in message.tool_calls or ())
        if message.role == "tool" and message.tool_call_id not in calls:
            raise ValueError(
                f"messages[{index}].tool_call_id {message.tool_call_id!r} answers no tool call "
                "of an earlier assistant message"
            )


# -- tools and formats -------------------------------------------------------------------------


def check_object_schema(schema: dict[str, Any], what: str) -> dict[str, Any]:
    kind = schema.get("type", "object")
    if kind != "object":
        raise ValueError(f"{what} must be a JSON Schema of type 'object', not {kind!r}")
    return schema


class FunctionDef(OpenAIWireModel):
    name: str = Field(pattern=TOOL_NAME_PATTERN, description="a-z, A-Z, 0-9, _ and -, 1-64.")
    description: str | None = None
    parameters: dict[str, Any] | None = Field(None, description="A JSON Schema of an object.")
    strict: bool | None = Field(None, description="Arguments must follow the schema exactly.")

    @field_validator("parameters")
    @classmethod
    def _object_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else check_object_schema(value, "parameters")


class ToolIn(OpenAIWireModel):
    type: Literal["function"]
    function: FunctionDef

    def wire(self) -> ToolSpec:
        f = self.function
        parameters = (
            f.parameters if f.parameters is not None else {"type": "object", "properties": {}}
        )
        return ToolSpec(f.name, parameters, f.description, bool(f.strict))


class NamedFunction(OpenAIWireModel):
    name: str = Field(min_length=1)


class NamedToolChoice(OpenAIWireModel):
    type: Literal["function"]
    function: NamedFunction


class JSONSchemaSpec(OpenAIWireModel):
    name: str = Field(pattern=TOOL_NAME_PATTERN)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class TextFormat(OpenAIWireModel):
    type: Literal["text"]


class JSONObjectFormat(OpenAIWireModel):
    type: Literal["json_object"]


class JSONSchemaFormat(OpenAIWireModel):
    type: Literal["json_schema"]
    json_schema: JSONSchemaSpec


ResponseFormat = Annotated[
    TextFormat | JSONObjectFormat | JSONSchemaFormat, Field(discriminator="type")
]


def output_format(value: Any) -> OutputFormat | None:
    if isinstance(value, JSONObjectFormat):
        return OutputFormat("json_object")
    if isinstance(value, JSONSchemaFormat):
        spec = value.json_schema
        schema = spec.schema_ if spec.schema_ is not None else {"type": "object"}
        return OutputFormat("json_schema", schema, spec.name, bool(spec.strict))
    return None


def tool_choice(
    value: Literal["none", "auto", "required"] | NamedToolChoice | None, parallel: bool | None
) -> ToolChoice | None:
    if value is None and parallel is None:
        return None
    parallel_ok = parallel is not False
    if isinstance(value, NamedToolChoice):
        return ToolChoice("tool", value.function.name, parallel_ok)
    return ToolChoice(value or "auto", None, parallel_ok)


def check_tools(tools: list[ToolIn] | None, choice: Any) -> None:
    names = [tool.function.name for tool in tools or ()]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"tool names must be unique; repeated: {', '.join(duplicates)}")
    if isinstance(choice, NamedToolChoice) and choice.function.name not in names:
        raise ValueError(f"tool_choice names {choice.function.name!r}, which is not in tools")
    if choice in ("required",) and not names:
        raise ValueError("tool_choice 'required' needs tools")
