"""Anthropic content blocks, tools and tool choice, parsed into the wire contract.

User turns take `text`, `image` and `tool_result` blocks; assistant turns `text` and
`tool_use`. A `tool_result` becomes a wire message of role `tool` (before the rest of its
user turn, as Anthropic requires them first). Any other block type is refused naming the
block, never dropped.
"""

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from serve_app.contracts.wire import (
    ChatMessage,
    ContentPart,
    ImagePart,
    ToolCall,
    ToolChoice,
    ToolSpec,
)
from serve_app.http.schemas.media import check_media_type, image_from_base64, image_from_url
from serve_app.http.schemas.unicode import reject_lone_surrogates

# Several text blocks of one message (or of `system`) are joined with this.
BLOCK_SEPARATOR = "\n"
TOOL_NAME_PATTERN = r"^[a-zA-Z0-9_-]{1,128}$"
BLOCK_TYPES = {"user": ("text", "image", "tool_result"), "assistant": ("text", "tool_use")}


class AnthropicWireModel(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        return reject_lone_surrogates(data)


CacheControl = dict[str, Any] | None
CACHE_DOC = "Accepted for compatibility (clients send it); prompt caching is the provider's."


class TextBlockIn(AnthropicWireModel):
    type: Literal["text"]
    text: str
    cache_control: CacheControl = Field(None, description=CACHE_DOC)
    citations: list[dict[str, Any]] | None = Field(None, description="Accepted, not used.")


class Base64Source(AnthropicWireModel):
    type: Literal["base64"]
    media_type: str
    data: str


class URLSource(AnthropicWireModel):
    type: Literal["url"]
    url: str


class ImageBlockIn(AnthropicWireModel):
    type: Literal["image"]
    source: Annotated[Base64Source | URLSource, Field(discriminator="type")]
    cache_control: CacheControl = Field(None, description=CACHE_DOC)

    def image(self) -> ImagePart:
        if isinstance(self.source, URLSource):
            return image_from_url(self.source.url)
        return image_from_base64(self.source.media_type, self.source.data)

    @model_validator(mode="after")
    def _check_source(self) -> "ImageBlockIn":
        self.image()
        return self


class ToolUseBlockIn(AnthropicWireModel):
    type: Literal["tool_use"]
    id: str = Field(min_length=1, max_length=256)
    name: str = Field(min_length=1, max_length=128)
    input: dict[str, Any]
    cache_control: CacheControl = Field(None, description=CACHE_DOC)


class ToolResultBlockIn(AnthropicWireModel):
    type: Literal["tool_result"]
    tool_use_id: str = Field(min_length=1, max_length=256)
    content: str | list[TextBlockIn] | None = Field(
        None, description="Text, or text blocks (images in tool results are refused)."
    )
    is_error: bool | None = None
    cache_control: CacheControl = Field(None, description=CACHE_DOC)

    @field_validator("content", mode="before")
    @classmethod
    def _text_only(cls, value: Any) -> Any:
        for index, block in enumerate(value if isinstance(value, list) else ()):
            kind = block.get("type") if isinstance(block, dict) else None
            if kind is not None and kind != "text":
                raise ValueError(f"tool_result content block {index} has type {kind!r}; only text")
        return value

    def text(self) -> str:
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        return BLOCK_SEPARATOR.join(block.text for block in self.content)


Block = Annotated[
    TextBlockIn | ImageBlockIn | ToolUseBlockIn | ToolResultBlockIn, Field(discriminator="type")
]


def check_block_types(role: Any, content: Any) -> None:
    if isinstance(content, list) and not content:
        raise ValueError("content must not be an empty list")
    allowed = BLOCK_TYPES.get(role, ("text",))
    for index, block in enumerate(content if isinstance(content, list) else ()):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind is not None and kind not in allowed:
            raise ValueError(
                f"content block {index} has type {kind!r}; a {role} turn takes "
                f"{', '.join(allowed)} blocks"
            )
        source = block.get("source") if kind == "image" else None
        if isinstance(source, dict) and source.get("type") == "base64":
            try:  # one clear message rather than a union error dump
                check_media_type(str(source.get("media_type")))
            except ValueError as exc:
                raise ValueError(f"content block {index}: {exc}") from None


def text_of(content: str | list[TextBlockIn]) -> str:
    if isinstance(content, str):
        return content
    return BLOCK_SEPARATOR.join(block.text for block in content)


def wire_turn(role: str, content: str | list[Any]) -> list[ChatMessage]:
    """One Anthropic turn as wire messages: its tool results first, then the rest."""
    if isinstance(content, str):
        return [ChatMessage(role=role, content=content)]
    results = [
        ChatMessage("tool", b.text(), tool_call_id=b.tool_use_id, is_error=bool(b.is_error))
        for b in content
        if isinstance(b, ToolResultBlockIn)
    ]
    rest = [b for b in content if not isinstance(b, ToolResultBlockIn | ToolUseBlockIn)]
    calls = tuple(
        ToolCall(b.id, b.name, json.dumps(b.input, ensure_ascii=False))
        for b in content
        if isinstance(b, ToolUseBlockIn)
    )
    if not rest and not calls:
        return results
    text = BLOCK_SEPARATOR.join(b.text for b in rest if isinstance(b, TextBlockIn))
    parts: tuple[ContentPart, ...] = ()
    if any(isinstance(b, ImageBlockIn) for b in rest):
        parts = tuple(
            ContentPart("image", image=b.image())
            if isinstance(b, ImageBlockIn)
            else ContentPart("text", text=b.text)
            for b in rest
        )
    return [*results, ChatMessage(role, text, parts=parts, tool_calls=calls)]


def image_locations(index: int, content: str | list[Any]) -> list[str]:
    if isinstance(content, str):
        return []
    return [
        f"messages[{index}].content[{j}]"
        for j, b in enumerate(content)
        if isinstance(b, ImageBlockIn)
    ]


def check_tool_results(messages: list[Any]) -> None:
    """Every tool_result answers a tool_use of an earlier assistant turn."""
    calls: set[str] = set()
    for index, message in enumerate(messages):
        blocks = message.content if isinstance(message.content, list) else []
        calls.update(b.id for b in blocks if isinstance(b, ToolUseBlockIn))
        for b in blocks:
            if isinstance(b, ToolResultBlockIn) and b.tool_use_id not in calls:
                raise ValueError(
                    f"messages[{index}]: tool_result {b.tool_use_id!r} answers no tool_use "
                    "of an earlier assistant turn"
                )


# -- tools -------------------------------------------------------------------------------------


class AnthropicToolIn(AnthropicWireModel):
    name: str = Field(pattern=TOOL_NAME_PATTERN)
    description: str | None = None
    input_schema: dict[str, Any] = Field(description="A JSON Schema of type object.")
    type: Literal["custom"] | None = Field(None, description="Server tools are refused.")
    strict: bool | None = Field(None, description="The input must follow the schema exactly.")
    cache_control: CacheControl = Field(None, description=CACHE_DOC)

    @field_validator("input_schema")
    @classmethod
    def _object_schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        if value.get("type") != "object":
            raise ValueError("input_schema must be a JSON Schema of type 'object'")
        return value

    def wire(self) -> ToolSpec:
        return ToolSpec(self.name, self.input_schema, self.description, bool(self.strict))


class AnthropicToolChoice(AnthropicWireModel):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None

    @model_validator(mode="after")
    def _name_with_tool(self) -> "AnthropicToolChoice":
        if (self.type == "tool") != (self.name is not None):
            raise ValueError("tool_choice names a tool exactly when its type is 'tool'")
        return self

    def wire(self) -> ToolChoice:
        mode = {"auto": "auto", "any": "required", "tool": "tool", "none": "none"}[self.type]
        return ToolChoice(mode, self.name, not self.disable_parallel_tool_use)  # type: ignore[arg-type]


def check_tools(tools: list[AnthropicToolIn] | None, choice: AnthropicToolChoice | None) -> None:
    names = [tool.name for tool in tools or ()]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"tool names must be unique; repeated: {', '.join(duplicates)}")
    if choice is not None and choice.name is not None and choice.name not in names:
        raise ValueError(f"tool_choice names {choice.name!r}, which is not in tools")
    if choice is not None and choice.type == "any" and not names:
        raise ValueError("tool_choice 'any' needs tools")
