"""What crosses a `DeploymentHandle`: small slotted dataclasses, validated once at the ingress.

The ingress validates the wire request with pydantic and hands these plain objects to the
model or provider deployment, which trusts them (no second validation across the handle).
"""

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: str
    content: str


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
    deadline: float | None = None  # wall-clock time (time.time()) after which to give up


@dataclass(frozen=True, slots=True)
class GenerationOutput:
    """The result of one generation, whatever served it."""

    text: str
    input_tokens: int
    output_tokens: int
    finish_reason: str  # "stop" | "length"
    served_model: str = ""
    batch_size: int = 1


@dataclass(frozen=True, slots=True)
class StreamChunk:
    """One piece of a streamed generation. The last chunk has `finish_reason` set and the
    final token counts; earlier chunks carry only text (counts so far, for accounting)."""

    text: str
    finish_reason: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    served_model: str = ""
