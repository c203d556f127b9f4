"""What crosses a `DeploymentHandle`: small slotted dataclasses, validated once at the ingress.

The ingress validates the wire request with pydantic and hands these plain objects to the
model or provider deployment, which trusts them (no second validation across the handle).
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

# The one rough rule behind every token estimate made before a tokenizer has counted
# (rate-limit charges, spend of an abandoned stream, a provider's pre-call tpm check).
CHARS_PER_TOKEN_ESTIMATE = 4


def estimate_tokens(chars: int) -> int:
    return chars // CHARS_PER_TOKEN_ESTIMATE


def prompt_chars(prompt: str, messages: Iterable["ChatMessage"]) -> int:
    """Characters of a prompt and of its chat messages' text: what the limits count."""
    return len(prompt) + sum(len(message.content) for message in messages)


@dataclass(frozen=True, slots=True)
class ImagePart:
    """An image in a user turn: a URL the provider fetches (the gateway never does), or
    inline bytes as base64 (`data`, without a `data:` prefix) with their `media_type`."""

    url: str | None = None
    media_type: str | None = None
    data: str | None = None
    detail: str | None = None  # OpenAI's "auto" | "low" | "high"


@dataclass(frozen=True, slots=True)
class ContentPart:
    """One part of a multi-part message, in order; set only when a message has an image."""

    type: Literal["text", "image"]
    text: str = ""
    image: ImagePart | None = None


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call the assistant made: `arguments` is the JSON text of the arguments object.
    `id` is kept as given (`call_…` from OpenAI, `toolu_…` from Anthropic, ours for local)."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One turn. `role` is system, user, assistant or tool (a tool result)."""

    role: str
    content: str  # the text of the turn (text parts joined)
    parts: tuple[ContentPart, ...] = ()  # text and images in order, when there are images
    tool_calls: tuple[ToolCall, ...] = ()  # an assistant turn's calls
    tool_call_id: str | None = None  # a tool result: the call it answers
    is_error: bool = False  # a tool result that reports a failure (Anthropic's is_error)
    name: str | None = None


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A function the model may call; `parameters` is its JSON Schema (an object schema)."""

    name: str
    parameters: dict[str, Any]
    description: str | None = None
    strict: bool = False


@dataclass(frozen=True, slots=True)
class ToolChoice:
    """`auto`, `none`, `required` (any tool) or `tool` (the one named); `parallel` False
    asks for at most one call."""

    mode: Literal["auto", "none", "required", "tool"] = "auto"
    name: str | None = None
    parallel: bool = True


@dataclass(frozen=True, slots=True)
class OutputFormat:
    """Structured output: any JSON object, or JSON valid against `schema`."""

    type: Literal["json_object", "json_schema"]
    schema: dict[str, Any] | None = None
    name: str | None = None
    strict: bool = False


@dataclass(frozen=True, slots=True)
class TopLogprob:
    token: str
    logprob: float
    bytes: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """One generated token's log probability and its most likely alternatives."""

    token: str
    logprob: float
    bytes: tuple[int, ...] | None = None
    top: tuple[TopLogprob, ...] = ()


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of a streamed tool call, as OpenAI streams them: the first piece of call
    `index` has its id and name, later pieces only more `arguments` text."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class GenerationParams:
    """One generation, already validated and resolved against the model's defaults."""

    request_id: str
    model_id: str
    prompt: str
    max_tokens: int
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    messages: tuple[ChatMessage, ...] = field(default=())
    adapter: str | None = None  # LoRA fine-tune to apply over the deployment's base model
    adapter_path: str | None = None  # where to load it from (adapters registered at run time)
    deadline: float | None = None  # wall-clock time (time.time()) after which to give up
    # Sampling beyond temperature/top_p (None / empty: the model's own behaviour).
    n: int = 1
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: tuple[tuple[int, float], ...] = ()  # (token id, bias -100..100)
    top_k: int | None = None
    logprobs: bool = False
    top_logprobs: int = 0
    # Passed on to providers that take them.
    user: str | None = None
    metadata: tuple[tuple[str, str], ...] = ()
    service_tier: str | None = None
    # Tools and structured output.
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoice | None = None
    output_format: OutputFormat | None = None
    # W3C trace context of the ingress's span for this call (None when tracing is off).
    traceparent: str | None = None

    def prompt_chars(self) -> int:
        return prompt_chars(self.prompt, self.messages)


@dataclass(frozen=True, slots=True)
class Choice:
    """One more answer to the same request (`n` > 1); the first is the output itself."""

    index: int
    text: str
    finish_reason: str
    tool_calls: tuple[ToolCall, ...] = ()
    logprobs: tuple[TokenLogprob, ...] | None = None


@dataclass(frozen=True, slots=True)
class GenerationOutput:
    """The result of one generation, whatever served it. `input_tokens`/`output_tokens`
    cover every choice (as the providers bill them)."""

    text: str
    input_tokens: int
    output_tokens: int
    finish_reason: str  # "stop" | "length" | "tool_calls" | "content_filter" | "cancelled"
    served_model: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    logprobs: tuple[TokenLogprob, ...] | None = None
    more_choices: tuple[Choice, ...] = ()  # choices 1..n-1


@dataclass(frozen=True, slots=True)
class StreamChunk:
    """One piece of a streamed generation. The last chunk has `finish_reason` set and the
    final token counts; earlier chunks carry only text (counts so far, for accounting)."""

    text: str
    finish_reason: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    served_model: str = ""
    index: int = 0  # the choice this piece belongs to (`n` > 1)
    tool_calls: tuple[ToolCallDelta, ...] = ()
    logprobs: tuple[TokenLogprob, ...] | None = None


@dataclass(frozen=True, slots=True)
class EmbeddingParams:
    """One embeddings request: texts, or token-id arrays, embedded in one batch."""

    request_id: str
    model_id: str
    inputs: tuple[str | tuple[int, ...], ...]
    dimensions: int | None = None  # shorten the vectors (models that support it)
    deadline: float | None = None
    traceparent: str | None = None

    def input_chars(self) -> int:
        """Characters of the text inputs (a token array counts as 4 characters a token)."""
        return sum(
            len(item) if isinstance(item, str) else len(item) * CHARS_PER_TOKEN_ESTIMATE
            for item in self.inputs
        )


@dataclass(frozen=True, slots=True)
class EmbeddingOutput:
    """One vector per input, in input order; `input_tokens` over all inputs."""

    vectors: list[list[float]]
    input_tokens: int
    served_model: str = ""
