"""Wire schemas of the OpenAI-compatible API (`/v1/chat/completions`, `/v1/completions`).

Requests are strict like OpenAI's own API: an unknown field is rejected (OpenAI's
"Unrecognized request argument"). Every field OpenAI documents for these routes is parsed
into the wire contract (`GenerationParams`); whether the chosen model can honour it is
decided in `serve_app.core.capabilities` (a 400 naming the field and the model if not).
Response models live in `openai_responses`.
"""

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, ValidationInfo, field_validator

from serve_app.contracts.wire import ChatMessage
from serve_app.http.schemas.openai_base import OpenAIWireModel
from serve_app.http.schemas.openai_chat import (
    ChatMessageIn,
    ImageURLPart,
    NamedToolChoice,
    ResponseFormat,
    ToolIn,
    check_tool_results,
    check_tools,
    output_format,
    tool_choice,
)

MAX_STOP_STRINGS = 4
MAX_CHOICES = 128
MAX_TOP_LOGPROBS = 20
MAX_COMPLETION_LOGPROBS = 5
TokenId = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,9}$")]
Bias = Annotated[float, Field(ge=-100, le=100)]
ServiceTier = Literal["auto", "default", "flex", "scale", "priority"]


def _null_to_default(model: type[OpenAIWireModel], value: Any, info: ValidationInfo) -> Any:
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


def _logit_bias(value: dict[str, float] | None) -> tuple[tuple[int, float], ...]:
    return tuple((int(token), bias) for token, bias in (value or {}).items())


class StreamOptions(OpenAIWireModel):
    include_usage: bool = Field(
        False, description="Send one last chunk with `usage` (and `choices: []`) before [DONE]."
    )
    include_obfuscation: bool | None = Field(
        None, description="Accepted for compatibility; the gateway never adds obfuscation."
    )


class _SamplingFields(OpenAIWireModel):
    """Fields shared by both request kinds."""

    model: str = Field(min_length=1, max_length=256, description="A model from /v1/models.")
    temperature: float | None = Field(None, ge=0, le=2, description="0 = greedy.")
    top_p: float | None = Field(None, gt=0, le=1, description="Nucleus sampling mass.")
    n: int = Field(1, ge=1, le=MAX_CHOICES, description="Number of choices.")
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
    user: str | None = Field(None, max_length=512, description="End-user id, passed on.")
    seed: int | None = Field(None, description="Same seed, same request: the same text.")
    presence_penalty: float | None = Field(None, ge=-2, le=2, description="-2..2.")
    frequency_penalty: float | None = Field(None, ge=-2, le=2, description="-2..2.")
    logit_bias: dict[TokenId, Bias] | None = Field(
        None, description="Token id (as a string) -> bias -100..100."
    )

    @field_validator("n", "stream", "cache", mode="before")
    @classmethod
    def _null_means_default(cls, value: Any, info: ValidationInfo) -> Any:
        return _null_to_default(cls, value, info)

    @field_validator("stop")
    @classmethod
    def _stop_rules(cls, value: str | list[str] | None) -> str | list[str] | None:
        return _check_stop(value)

    def stop_list(self) -> list[str]:
        return _as_stop_list(self.stop)

    def include_usage(self) -> bool:
        """Whether a stream ends with a usage chunk (`stream_options.include_usage`)."""
        return self.stream_options is not None and self.stream_options.include_usage

    def sampling_options(self) -> dict[str, Any]:
        """The `GenerationParams` fields both request kinds carry."""
        return {
            "n": self.n,
            "seed": self.seed,
            "presence_penalty": self.presence_penalty,
            "frequency_penalty": self.frequency_penalty,
            "logit_bias": _logit_bias(self.logit_bias),
            "user": self.user,
        }


class ChatCompletionRequest(_SamplingFields):
    messages: list[ChatMessageIn] = Field(min_length=1, description="The conversation so far.")
    max_tokens: int | None = Field(
        None, ge=1, description="Deprecated by OpenAI; `max_completion_tokens` wins."
    )
    max_completion_tokens: int | None = Field(
        None, ge=1, description="Tokens to generate; the model's default if unset."
    )
    logprobs: bool | None = Field(None, description="Return each output token's logprob.")
    top_logprobs: int | None = Field(
        None, ge=0, le=MAX_TOP_LOGPROBS, description="Alternatives per token (needs logprobs)."
    )
    tools: list[ToolIn] | None = Field(None, description="Functions the model may call.")
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = Field(
        None, description="none, auto, required, or a named function."
    )
    parallel_tool_calls: bool | None = Field(None, description="false: at most one call.")
    response_format: ResponseFormat | None = Field(
        None, description="text, json_object or json_schema (structured output)."
    )
    metadata: dict[str, str] | None = Field(None, description="Up to 16 pairs, passed on.")
    service_tier: ServiceTier | None = Field(None, description="Passed on where it applies.")

    # Cross-field checks are field validators (reading the fields declared before them),
    # so that the 400 names the field.
    @field_validator("messages")
    @classmethod
    def _results_answer_calls(cls, value: list[ChatMessageIn]) -> list[ChatMessageIn]:
        check_tool_results(value)
        return value

    @field_validator("top_logprobs")
    @classmethod
    def _needs_logprobs(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value and not info.data.get("logprobs"):
            raise ValueError("top_logprobs needs logprobs: true")
        return value

    @field_validator("tools")
    @classmethod
    def _unique_tools(cls, value: list[ToolIn] | None) -> list[ToolIn] | None:
        check_tools(value, None)
        return value

    @field_validator("tool_choice")
    @classmethod
    def _choice_names_a_tool(cls, value: Any, info: ValidationInfo) -> Any:
        check_tools(info.data.get("tools"), value)
        return value

    @field_validator("metadata")
    @classmethod
    def _sixteen_pairs(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is not None and len(value) > 16:
            raise ValueError("metadata holds at most 16 pairs")
        return value

    def chat_messages(self) -> tuple[ChatMessage, ...]:
        return tuple(m.wire() for m in self.messages)

    def image_locations(self) -> tuple[str, ...]:
        return tuple(
            f"messages[{i}].content[{j}]"
            for i, m in enumerate(self.messages)
            if isinstance(m.content, list)
            for j, part in enumerate(m.content)
            if isinstance(part, ImageURLPart)
        )

    def resolved_max_tokens(self) -> int | None:
        if self.max_completion_tokens is not None:
            return self.max_completion_tokens
        return self.max_tokens

    def generation_fields(self) -> dict[str, Any]:
        """What the gateway's `prepare` takes (the model id apart)."""
        return {
            "messages": self.chat_messages(),
            "max_tokens": self.resolved_max_tokens(),
            "temperature": self.temperature,
            "top_p": self.top_p,
            "stop": self.stop_list(),
            "options": self.options(),
            "image_at": self.image_locations(),
        }

    def options(self) -> dict[str, Any]:
        """Every `GenerationParams` field beyond the basic ones."""
        return {
            **self.sampling_options(),
            "logprobs": bool(self.logprobs),
            "top_logprobs": self.top_logprobs or 0,
            "metadata": tuple((self.metadata or {}).items()),
            "service_tier": self.service_tier,
            "tools": tuple(tool.wire() for tool in self.tools or ()),
            "tool_choice": tool_choice(self.tool_choice, self.parallel_tool_calls),
            "output_format": output_format(self.response_format),
        }


class CompletionRequest(_SamplingFields):
    prompt: str | list[str] = Field(
        description="A non-empty string, or a list holding exactly one such string."
    )
    max_tokens: int = Field(16, ge=1, description="Tokens to generate (16 if unset, as OpenAI).")
    echo: bool = Field(False, description="Only false: the prompt is never echoed.")
    logprobs: int | None = Field(
        None, ge=0, le=MAX_COMPLETION_LOGPROBS, description="Logprobs of the top N tokens."
    )

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

    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]

    def generation_fields(self) -> dict[str, Any]:
        """What the gateway's `prepare` takes (the model id apart)."""
        return {
            "prompt": self.prompt_text(),
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "stop": self.stop_list(),
            "options": self.options(),
        }

    def options(self) -> dict[str, Any]:
        return {
            **self.sampling_options(),
            "logprobs": self.logprobs is not None,
            "top_logprobs": self.logprobs or 0,
        }
