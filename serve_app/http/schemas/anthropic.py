"""Wire schemas of the Anthropic-compatible API (`/v1/messages`).

Text only: a content block other than `text` (image, document, tool_use, tool_result,
thinking, ...) is rejected with one clear message, as is any unknown field. The response
models document the bodies built in `serve_app.http.formats`.

Imports nothing from the project but the internal `ChatMessage` dataclass and the Unicode
check shared by the wire schemas.
"""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from serve_app.contracts.wire import ChatMessage
from serve_app.http.schemas.unicode import reject_lone_surrogates

# Several text blocks of one message (or of `system`) are joined with this.
BLOCK_SEPARATOR = "\n"


class AnthropicWireModel(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        return reject_lone_surrogates(data)


def _reject_non_text_blocks(value: Any) -> Any:
    if isinstance(value, list):
        if not value:
            raise ValueError("content must not be an empty list")
        for index, block in enumerate(value):
            kind = block.get("type") if isinstance(block, dict) else None
            if kind is not None and kind != "text":
                raise ValueError(
                    f"content block {index} has type {kind!r}; only text blocks "
                    '({"type": "text", "text": ...}) are supported by this gateway'
                )
    return value


class AnthropicTextBlockIn(AnthropicWireModel):
    type: Literal["text"]
    text: str
    cache_control: dict[str, Any] | None = Field(
        None, description="Accepted for compatibility (clients send it) and ignored."
    )


def _text_of(content: str | list[AnthropicTextBlockIn]) -> str:
    if isinstance(content, str):
        return content
    return BLOCK_SEPARATOR.join(block.text for block in content)


class AnthropicMessageIn(AnthropicWireModel):
    role: Literal["user", "assistant"]
    content: str | list[AnthropicTextBlockIn] = Field(
        description="A string, or a non-empty list of text blocks (joined with a newline)."
    )

    @field_validator("content", mode="before")
    @classmethod
    def _text_only(cls, value: Any) -> Any:
        return _reject_non_text_blocks(value)


class AnthropicMetadata(AnthropicWireModel):
    user_id: str | None = Field(None, description="End-user id; accepted and ignored.")


class MessagesRequest(AnthropicWireModel):
    model: str = Field(min_length=1, max_length=256, description="A model from /v1/models.")
    messages: list[AnthropicMessageIn] = Field(min_length=1, description="The conversation so far.")
    system: str | list[AnthropicTextBlockIn] | None = Field(
        None, description="System prompt: a string or a list of text blocks."
    )
    max_tokens: int = Field(ge=1, description="Tokens to generate (required, as Anthropic).")
    temperature: float | None = Field(None, ge=0, le=1, description="0 = greedy.")
    top_p: float | None = Field(None, gt=0, le=1, description="Nucleus sampling mass.")
    top_k: int | None = Field(
        None, ge=0, description="Accepted; local models ignore it (sampling uses top_p only)."
    )
    stop_sequences: list[str] | None = Field(
        None, description="Non-empty strings; generation ends before the first one."
    )
    stream: bool = Field(False, description="Stream Anthropic server-sent events.")
    cache: bool = Field(
        True,
        description="Gateway extension: false neither reads nor stores this request in the "
        "response cache (as `Cache-Control: no-cache, no-store`).",
    )
    metadata: AnthropicMetadata | None = Field(None, description="Accepted and ignored.")

    @field_validator("system", mode="before")
    @classmethod
    def _system_text_only(cls, value: Any) -> Any:
        return _reject_non_text_blocks(value)

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
        return "" if self.system is None else _text_of(self.system)

    def chat_messages(self) -> tuple[ChatMessage, ...]:
        """The system prompt first (as role "system", only when non-empty), then the turns."""
        system = self.system_text()
        head = (ChatMessage(role="system", content=system),) if system else ()
        turns = tuple(ChatMessage(role=m.role, content=_text_of(m.content)) for m in self.messages)
        return head + turns

    def stop_list(self) -> list[str]:
        return list(self.stop_sequences or [])


# -- responses (documentation of what `serve_app.http.formats` builds) ------------------------

StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use", "refusal"]


class AnthropicTextBlock(BaseModel):
    type: Literal["text"]
    text: str


class AnthropicUsage(BaseModel):
    input_tokens: int
    output_tokens: int


class AnthropicMessage(BaseModel):
    id: str
    type: Literal["message"]
    role: Literal["assistant"]
    model: str
    content: list[AnthropicTextBlock]
    stop_reason: StopReason | None = Field(description="Null only in a stream's message_start.")
    stop_sequence: str | None = Field(
        None, description="Always null: the gateway does not report which stop string matched."
    )
    usage: AnthropicUsage


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
