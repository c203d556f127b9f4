"""Translation between a `GenerationParams` and each provider's SDK call and response.

Pure functions (no I/O besides the SDK call itself), unit-tested without a server.
"""

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from deployments.providers.sdk_calls import anthropic_messages_create, openai_chat_create
from serve_app.contracts.config import CommercialModelConfig
from serve_app.contracts.wire import GenerationOutput, GenerationParams, StreamChunk

ANTHROPIC_MAX_TEMPERATURE = 1.0
OPENAI_FINISH = {"stop": "stop", "length": "length", "content_filter": "content_filter"}
ANTHROPIC_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def _messages(params: GenerationParams) -> list[dict[str, str]]:
    if params.messages:
        return [{"role": m.role, "content": m.content} for m in params.messages]
    return [{"role": "user", "content": params.prompt}]


def openai_chat_kwargs(params: GenerationParams, model: CommercialModelConfig) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "model": model.upstream_model,
        "messages": _messages(params),
        "max_tokens": params.max_tokens,
    }
    if params.temperature is not None:
        kwargs["temperature"] = params.temperature
    if params.top_p is not None:
        kwargs["top_p"] = params.top_p
    if params.stop:
        kwargs["stop"] = list(params.stop)
    return kwargs


def parse_openai_chat(response: Any, model: CommercialModelConfig) -> GenerationOutput:
    choice = response.choices[0]
    usage = response.usage
    return GenerationOutput(
        text=choice.message.content or "",
        input_tokens=usage.prompt_tokens if usage else 0,
        output_tokens=usage.completion_tokens if usage else 0,
        finish_reason=OPENAI_FINISH.get(choice.finish_reason or "stop", choice.finish_reason),
        served_model=getattr(response, "model", None) or model.upstream_model,
    )


def anthropic_kwargs(params: GenerationParams, model: CommercialModelConfig) -> dict[str, Any]:
    """Messages API call; system messages move to `system`, temperature is clamped to 0..1.

    The anthropic 2.x SDK has no sampling arguments on `messages.create`; temperature and
    top_p, when the caller sets them, travel in `extra_body` (the API's JSON field names).
    """
    messages = _messages(params)
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    kwargs: dict[str, Any] = {
        "model": model.upstream_model,
        "max_tokens": params.max_tokens,
        "messages": [m for m in messages if m["role"] != "system"],
    }
    if system:
        kwargs["system"] = system
    sampling: dict[str, float] = {}
    if params.temperature is not None:
        sampling["temperature"] = min(params.temperature, ANTHROPIC_MAX_TEMPERATURE)
    if params.top_p is not None:
        sampling["top_p"] = params.top_p
    if sampling:
        kwargs["extra_body"] = sampling
    if params.stop:
        kwargs["stop_sequences"] = list(params.stop)
    return kwargs


def parse_anthropic(response: Any, model: CommercialModelConfig) -> GenerationOutput:
    text = "".join(block.text for block in response.content if block.type == "text")
    reason = response.stop_reason or "end_turn"
    return GenerationOutput(
        text=text,
        input_tokens=response.usage.input_tokens,
        output_tokens=response.usage.output_tokens,
        finish_reason=ANTHROPIC_FINISH.get(reason, reason),
        served_model=getattr(response, "model", None) or model.upstream_model,
    )


async def openai_stream(stream: Any, model: CommercialModelConfig) -> AsyncIterator[StreamChunk]:
    """Text deltas from an OpenAI chat stream opened with `include_usage`, then the usage."""
    finish, input_tokens, output_tokens, served = "stop", 0, 0, model.upstream_model
    async for chunk in stream:
        served = getattr(chunk, "model", None) or served
        if chunk.usage is not None:
            input_tokens, output_tokens = chunk.usage.prompt_tokens, chunk.usage.completion_tokens
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        if choice.finish_reason:
            finish = OPENAI_FINISH.get(choice.finish_reason, choice.finish_reason)
        if choice.delta and choice.delta.content:
            yield StreamChunk(choice.delta.content)
    yield StreamChunk("", finish, input_tokens, output_tokens, served)


async def anthropic_stream(stream: Any, model: CommercialModelConfig) -> AsyncIterator[StreamChunk]:
    """Text deltas from Anthropic's raw message events, then the usage and stop reason."""
    finish, input_tokens, output_tokens, served = "stop", 0, 0, model.upstream_model
    async for event in stream:
        if event.type == "message_start":
            input_tokens = event.message.usage.input_tokens
            served = event.message.model or served
        elif event.type == "content_block_delta" and event.delta.type == "text_delta":
            yield StreamChunk(event.delta.text, input_tokens=input_tokens)
        elif event.type == "message_delta":
            reason = event.delta.stop_reason or "end_turn"
            finish = ANTHROPIC_FINISH.get(reason, reason)
            output_tokens = event.usage.output_tokens
    yield StreamChunk("", finish, input_tokens, output_tokens, served)


@dataclass(frozen=True, slots=True)
class ProviderAdapter:
    """How one provider's SDK client is called for a generation and for a health probe."""

    build_kwargs: Callable[[GenerationParams, CommercialModelConfig], dict[str, Any]]
    parse: Callable[[Any, CommercialModelConfig], GenerationOutput]
    create: Callable[[Any, dict[str, Any]], Awaitable[Any]]
    list_models: Callable[[Any], Awaitable[Any]]
    stream_kwargs: dict[str, Any]
    read_stream: Callable[[Any, CommercialModelConfig], AsyncIterator[StreamChunk]]


async def _list_models(client: Any) -> Any:
    return await client.models.list()


ADAPTERS: dict[str, ProviderAdapter] = {
    "openai": ProviderAdapter(
        openai_chat_kwargs,
        parse_openai_chat,
        openai_chat_create,
        _list_models,
        {"stream": True, "stream_options": {"include_usage": True}},
        openai_stream,
    ),
    "anthropic": ProviderAdapter(
        anthropic_kwargs,
        parse_anthropic,
        anthropic_messages_create,
        _list_models,
        {"stream": True},
        anthropic_stream,
    ),
}


def make_client(provider: str, base_url: str | None, api_key: str, timeout_s: float) -> Any:
    """One SDK client per replica (never per request); the SDK's own retries are off."""
    if provider == "openai":
        import openai

        return openai.AsyncOpenAI(
            api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=0
        )
    import anthropic

    return anthropic.AsyncAnthropic(
        api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=0
    )
