"""Wire schemas of the Anthropic-compatible API (`/v1/messages`).

Text, image, tool_use and tool_result blocks, tools, tool choice and structured output
(`output_config.format`); another block type (document, thinking, ...) is rejected naming
it, as is any unknown field. The response
models document the bodies built in `serve_app.http.formats`.

Imports nothing from the project but the internal `ChatMessage` dataclass and the Unicode
check shared by the wire schemas.
"""

from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator

from serve_app.contracts.wire import ChatMessage, OutputFormat
from serve_app.http.schemas.anthropic_blocks import (
    AnthropicToolChoice,
    AnthropicToolIn,
    AnthropicWireModel,
    Block,
    TextBlockIn,
    check_block_types,
    check_tool_results,
    check_tools,
    image_locations,
    text_of,
    wire_turn,
)


class AnthropicMessageIn(AnthropicWireModel):
    role: Literal["user", "assistant"]
    content: str | list[Block] = Field(
        description="A string, or a non-empty list of blocks (text, image, tool_use, tool_result)."
    )

    @model_validator(mode="before")
    @classmethod
    def _blocks_fit_role(cls, data: Any) -> Any:
        if isinstance(data, dict):
            check_block_types(data.get("role"), data.get("content"))
        return data


class AnthropicMetadata(AnthropicWireModel):
    user_id: str | None = Field(None, max_length=512, description="End-user id, passed on.")


class JSONOutputFormat(AnthropicWireModel):
    type: Literal["json_schema"]
    schema_: dict[str, Any] = Field(alias="schema", description="The JSON Schema to follow.")


class OutputConfig(AnthropicWireModel):
    format: JSONOutputFormat | None = Field(None, description="Structured output.")


class MessagesRequest(AnthropicWireModel):
    model: str = Field(min_length=1, max_length=256, description="A model from /v1/models.")
    messages: list[AnthropicMessageIn] = Field(min_length=1, description="The conversation so far.")
    system: str | list[TextBlockIn] | None = Field(
        None, description="System prompt: a string or a list of text blocks."
    )
    max_tokens: int = Field(ge=1, description="Tokens to generate (required, as Anthropic).")
    temperature: float | None = Field(None, ge=0, le=1, description="0 = greedy.")
    top_p: float | None = Field(None, gt=0, le=1, description="Nucleus sampling mass.")
    top_k: int | None = Field(None, ge=0, description="Sample from the k likeliest tokens.")
    stop_sequences: list[str] | None = Field(
        None, description="Non-empty strings; generation ends before the first one."
    )
    stream: bool = Field(False, description="Stream Anthropic server-sent events.")
    cache: bool = Field(
        True,
        description="Gateway extension: false neither reads nor stores this request in the "
        "response cache (as `Cache-Control: no-cache, no-store`).",
    )
    metadata: AnthropicMetadata | None = Field(None, description="`user_id` is passed on.")
    tools: list[AnthropicToolIn] | None = Field(None, description="Tools the model may use.")
    tool_choice: AnthropicToolChoice | None = Field(None, description="auto, any, tool, none.")
    output_config: OutputConfig | None = Field(
        None, description="`format`: structured output (JSON following a schema)."
    )
    service_tier: Literal["auto", "standard_only"] | None = Field(
        None, description="Passed on where it applies."
    )

    @model_validator(mode="before")
    @classmethod
    def _system_text_only(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("system"), list):
            check_block_types("system", data["system"])
        return data

    # Cross-field checks are field validators (reading the fields declared before them),
    # so that the 400 names the field.
    @field_validator("messages")
    @classmethod
    def _results_answer_uses(cls, value: list[AnthropicMessageIn]) -> list[AnthropicMessageIn]:
        check_tool_results(value)
        return value

    @field_validator("tools")
    @classmethod
    def _unique_tools(cls, value: list[AnthropicToolIn] | None) -> list[AnthropicToolIn] | None:
        check_tools(value, None)
        return value

    @field_validator("tool_choice")
    @classmethod
    def _choice_names_a_tool(cls, value: Any, info: ValidationInfo) -> Any:
        check_tools(info.data.get("tools"), value)
        return value

    @field_validator("stop_sequences")
    @classmethod
    def _non_empty_stops(cls, value: list[str] | None) -> list[str] | None:
        if value and any(item == "" for item in value):
            raise ValueError("stop sequences must not be empty")
        return value

    @field_validator("stream", mode="before")
    @classmethod
    def _null_stream(cls, value: Any) -> Any:
        return False if value is None else value

    @field_validator("cache", mode="before")
    @classmethod
    def _null_cache(cls, value: Any) -> Any:
        return True if value is None else value

    def system_text(self) -> str:
        return "" if self.system is None else text_of(self.system)

    def chat_messages(self) -> tuple[ChatMessage, ...]:
        """The system prompt first (as role "system", only when non-empty), then the turns
        (a user turn with tool results becomes `tool` messages, then the rest of the turn)."""
        system = self.system_text()
        head = [ChatMessage(role="system", content=system)] if system else []
        for m in self.messages:
            head += wire_turn(m.role, m.content)
        return tuple(head)

    def image_locations(self) -> tuple[str, ...]:
        return tuple(
            where for i, m in enumerate(self.messages) for where in image_locations(i, m.content)
        )

    def stop_list(self) -> list[str]:
        return list(self.stop_sequences or [])

    def generation_fields(self) -> dict[str, Any]:
        """What the gateway's `prepare` takes (the model id apart)."""
        return {
            "messages": self.chat_messages(),
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "stop": self.stop_list(),
            "options": self.options(),
            "image_at": self.image_locations(),
        }

    def options(self) -> dict[str, Any]:
        """Every `GenerationParams` field beyond the basic ones."""
        fmt = self.output_config.format if self.output_config else None
        return {
            "top_k": self.top_k,
            "user": self.metadata.user_id if self.metadata else None,
            "service_tier": self.service_tier,
            "tools": tuple(tool.wire() for tool in self.tools or ()),
            "tool_choice": self.tool_choice.wire() if self.tool_choice else None,
            "output_format": OutputFormat("json_schema", fmt.schema_, strict=True) if fmt else None,
        }


class CountTokensRequest(MessagesRequest):
    """`/v1/messages/count_tokens`: a Messages request without the generation fields."""

    max_tokens: int = Field(1, ge=1, description="Not used for counting; accepted if sent.")


# -- responses (documentation of what `serve_app.http.formats` builds) ------------------------

StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use", "refusal"]


class AnthropicTextBlock(BaseModel):
    type: Literal["text"]
    text: str


class AnthropicToolUseBlock(BaseModel):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]


class AnthropicUsage(BaseModel):
    input_tokens: int
    output_tokens: int


class AnthropicMessage(BaseModel):
    id: str
    type: Literal["message"]
    role: Literal["assistant"]
    model: str
    content: list[AnthropicTextBlock | AnthropicToolUseBlock]
    stop_reason: StopReason | None = Field(description="Null only in a stream's message_start.")
    stop_sequence: str | None = Field(
        None, description="Always null: the gateway does not report which stop string matched."
    )
    usage: AnthropicUsage


class TokenCount(BaseModel):
    input_tokens: int
    estimated: bool | None = Field(None, description="True for an estimate (OpenAI models).")
    tokenizer: str | None = Field(None, description="The vocabulary an estimate used.")


AnthropicErrorType = Literal[
    "invalid_request_error",
    "authentication_error",
    "billing_error",
    "permission_error",
    "not_found_error",
    "rate_limit_error",
    "timeout_error",
    "api_error",
    "overloaded_error",
]


class AnthropicErrorBody(BaseModel):
    type: AnthropicErrorType
    message: str


class AnthropicErrorResponse(BaseModel):
    type: Literal["error"]
    error: AnthropicErrorBody
