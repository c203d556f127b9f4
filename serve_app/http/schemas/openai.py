"""Wire schemas of the OpenAI-compatible API (`/v1/chat/completions`, `/v1/completions`).

Text only, one choice per request. Requests are strict like OpenAI's own API: an unknown
field is rejected (OpenAI's "Unrecognized request argument"), and so is any feature the
gateway cannot honour (`n` > 1, logprobs, image or audio content parts) rather than being
silently ignored. The response models document the bodies built in `serve_app.http.formats`.

Imports nothing from the project but the internal `ChatMessage` dataclass and the Unicode
check shared by the wire schemas.
"""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from serve_app.contracts.wire import ChatMessage
from serve_app.http.schemas.unicode import reject_lone_surrogates

MAX_STOP_STRINGS = 4
# Several text parts of one message are joined with this (as vLLM does).
PART_SEPARATOR = "\n"


class OpenAIWireModel(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        return reject_lone_surrogates(data)


def _null_to_default(model: type[BaseModel], value: Any, info: ValidationInfo) -> Any:
    """OpenAI accepts an explicit `null` for a defaulted field and means the default."""
    if value is None and info.field_name is not None:
        return model.model_fields[info.field_name].default
    return value


def _check_stop(value: str | list[str] | None) -> str | list[str] | None:
    items = [value] if isinstance(value, str) else (value or [])
    if len(items) > MAX_STOP_STRINGS:
        raise ValueError(f"at most {MAX_STOP_STRINGS} stop strings are supported")
    if any(item == "" for item in items):
        raise ValueError("stop strings must not be empty")
    return value


def _as_stop_list(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _reject_non_text_parts(value: Any) -> Any:
    """Give one clear message for an image/audio/file part instead of a union error dump."""
    if isinstance(value, list):
        for index, part in enumerate(value):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind is not None and kind != "text":
                raise ValueError(
                    f"content part {index} has type {kind!r}; only text parts "
                    '({"type": "text", "text": ...}) are supported by this gateway'
                )
    return value


class StreamOptions(OpenAIWireModel):
    include_usage: bool = Field(
        False, description="Send one last chunk with `usage` (and `choices: []`) before [DONE]."
    )
    include_obfuscation: bool | None = Field(
        None, description="Accepted for compatibility; the gateway never adds obfuscation."
    )


class TextContentPart(OpenAIWireModel):
    type: Literal["text"]
    text: str


class ChatMessageIn(OpenAIWireModel):
    role: Literal["system", "developer", "user", "assistant"] = Field(
        description="`developer` is treated as `system`; tool and function roles are refused."
    )
    content: str | list[TextContentPart] = Field(
        description="A string, or a non-empty list of text parts (joined with a newline)."
    )
    name: str | None = Field(None, description="Accepted for compatibility and ignored.")

    @field_validator("content", mode="before")
    @classmethod
    def _text_only(cls, value: Any) -> Any:
        if isinstance(value, list) and not value:
            raise ValueError("content must not be an empty list")
        return _reject_non_text_parts(value)

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return PART_SEPARATOR.join(part.text for part in self.content)


class _SamplingFields(OpenAIWireModel):
    """Fields shared by both request kinds."""

    model: str = Field(min_length=1, max_length=256, description="A model from /v1/models.")
    temperature: float | None = Field(None, ge=0, le=2, description="0 = greedy.")
    top_p: float | None = Field(None, gt=0, le=1, description="Nucleus sampling mass.")
    n: int = Field(1, description="Number of choices; only 1 is supported.")
    stop: str | list[str] | None = Field(
        None, description="Up to 4 non-empty strings; generation ends before the first one."
    )
    stream: bool = Field(False, description="Stream server-sent events ending in `[DONE]`.")
    stream_options: StreamOptions | None = Field(None, description="Only read when streaming.")
    cache: bool = Field(
        True,
        description="Gateway extension: false neither reads nor stores this request in the "
        "response cache (as `Cache-Control: no-cache, no-store`).",
    )
    user: str | None = Field(None, description="End-user id; accepted and ignored.")
    seed: int | None = Field(None, description="Accepted; sampling is not made reproducible.")
    presence_penalty: float | None = Field(
        None, ge=-2, le=2, description="Accepted and ignored by local models."
    )
    frequency_penalty: float | None = Field(
        None, ge=-2, le=2, description="Accepted and ignored by local models."
    )

    @field_validator("n", "stream", "cache", mode="before")
    @classmethod
    def _null_means_default(cls, value: Any, info: ValidationInfo) -> Any:
        return _null_to_default(cls, value, info)

    @field_validator("n")
    @classmethod
    def _only_one_choice(cls, value: int) -> int:
        if value != 1:
            raise ValueError(f"n={value} is not supported; this gateway returns one choice")
        return value

    @field_validator("stop")
    @classmethod
    def _stop_rules(cls, value: str | list[str] | None) -> str | list[str] | None:
        return _check_stop(value)

    def stop_list(self) -> list[str]:
        return _as_stop_list(self.stop)

    def include_usage(self) -> bool:
        """Whether a stream ends with a usage chunk (`stream_options.include_usage`)."""
        return self.stream_options is not None and self.stream_options.include_usage


class ChatCompletionRequest(_SamplingFields):
    messages: list[ChatMessageIn] = Field(min_length=1, description="The conversation so far.")
    max_tokens: int | None = Field(
        None, ge=1, description="Deprecated by OpenAI; `max_completion_tokens` wins."
    )
    max_completion_tokens: int | None = Field(
        None, ge=1, description="Tokens to generate; the model's default if unset."
    )
    logprobs: bool | None = Field(None, description="Only false/null: no logprobs are returned.")

    @field_validator("logprobs")
    @classmethod
    def _no_logprobs(cls, value: bool | None) -> bool | None:
        if value:
            raise ValueError("logprobs are not supported by this gateway")
        return value

    def chat_messages(self) -> tuple[ChatMessage, ...]:
        return tuple(
            ChatMessage(role="system" if m.role == "developer" else m.role, content=m.text())
            for m in self.messages
        )

    def resolved_max_tokens(self) -> int | None:
        if self.max_completion_tokens is not None:
            return self.max_completion_tokens
        return self.max_tokens


class CompletionRequest(_SamplingFields):
    prompt: str | list[str] = Field(
        description="A non-empty string, or a list holding exactly one such string."
    )
    max_tokens: int = Field(16, ge=1, description="Tokens to generate (16 if unset, as OpenAI).")
    echo: bool = Field(False, description="Only false: the prompt is never echoed.")
    logprobs: int | None = Field(None, description="Only null: no logprobs are returned.")

    @field_validator("prompt", mode="before")
    @classmethod
    def _one_text_prompt(cls, value: Any) -> Any:
        items = value if isinstance(value, list) else [value]
        if len(items) != 1 or not isinstance(items[0], str):
            raise ValueError(
                "prompt must be a string or a list of exactly one string; "
                "batches and token-id prompts are not supported"
            )
        if not items[0]:
            raise ValueError("prompt must not be empty")
        return value

    @field_validator("max_tokens", "echo", mode="before")
    @classmethod
    def _completion_nulls(cls, value: Any, info: ValidationInfo) -> Any:
        return _null_to_default(cls, value, info)

    @field_validator("echo")
    @classmethod
    def _no_echo(cls, value: bool) -> bool:
        if value:
            raise ValueError("echo is not supported by this gateway")
        return value

    @field_validator("logprobs")
    @classmethod
    def _no_logprobs(cls, value: int | None) -> int | None:
        if value is not None:
            raise ValueError("logprobs are not supported by this gateway")
        return value

    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


# -- responses (documentation of what `serve_app.http.formats` builds) ------------------------

FinishReason = Literal["stop", "length", "content_filter", "tool_calls"]


class OpenAIUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"]
    content: str


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    logprobs: None = None
    finish_reason: FinishReason


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"]
    created: int = Field(description="Unix seconds.")
    model: str
    choices: list[ChatChoice]
    usage: OpenAIUsage


class ChunkDelta(BaseModel):
    role: Literal["assistant"] | None = Field(None, description="Only on the first chunk.")
    content: str | None = None


class ChatChunkChoice(BaseModel):
    index: int
    delta: ChunkDelta
    logprobs: None = None
    finish_reason: FinishReason | None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChatChunkChoice] = Field(description="Empty in the final usage chunk.")
    usage: OpenAIUsage | None = Field(
        None,
        description="Present only with `include_usage`: null on every chunk but the last.",
    )


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: None = None
    finish_reason: Literal["stop", "length", "content_filter"] | None = Field(
        description="Null on streamed chunks before the last."
    )


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: OpenAIUsage


class CompletionChunk(BaseModel):
    """Legacy completions stream chunks share the object name `text_completion`."""

    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChoice] = Field(description="Empty in the final usage chunk.")
    usage: OpenAIUsage | None = Field(
        None,
        description="Present only with `include_usage`: null on every chunk but the last.",
    )


class OpenAIModel(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class OpenAIModelList(BaseModel):
    object: Literal["list"]
    data: list[OpenAIModel]


class OpenAIErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIErrorResponse(BaseModel):
    error: OpenAIErrorBody
