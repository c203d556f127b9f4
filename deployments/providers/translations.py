"""Translation between a `GenerationParams` and each provider's SDK call and response.

Pure functions (no I/O besides the SDK call itself), unit-tested without a server. The
body and answer mapping of each provider is in `openai_wire` and `anthropic_wire`.
"""

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from deployments.providers.anthropic_wire import (
    ANTHROPIC_FINISH,
    ANTHROPIC_MAX_TEMPERATURE,
    anthropic_kwargs,
    anthropic_stream,
    parse_anthropic,
)
from deployments.providers.openai_wire import (
    OPENAI_FINISH,
    openai_chat_kwargs,
    openai_stream,
    parse_openai_chat,
)
from deployments.providers.sdk_calls import anthropic_messages_create, openai_chat_create
from serve_app.contracts.config import CommercialModelConfig, ProviderConfig
from serve_app.contracts.wire import GenerationOutput, GenerationParams, StreamChunk

__all__ = [
    "ANTHROPIC_FINISH",
    "ANTHROPIC_MAX_TEMPERATURE",
    "OPENAI_FINISH",
    "TRANSLATIONS",
    "ProviderTranslation",
    "anthropic_kwargs",
    "anthropic_stream",
    "make_client",
    "openai_chat_kwargs",
    "openai_stream",
    "parse_anthropic",
    "parse_openai_chat",
]


@dataclass(frozen=True, slots=True)
class ProviderTranslation:
    """How one provider's SDK client is called for a generation and for a health probe."""

    build_kwargs: Callable[[GenerationParams, CommercialModelConfig], dict[str, Any]]
    parse: Callable[[Any, CommercialModelConfig], GenerationOutput]
    create: Callable[[Any, dict[str, Any]], Awaitable[Any]]
    list_models: Callable[[Any], Awaitable[Any]]
    stream_kwargs: dict[str, Any]
    read_stream: Callable[[Any, CommercialModelConfig], AsyncIterator[StreamChunk]]


async def _list_models(client: Any) -> Any:
    return await client.models.list()


TRANSLATIONS: dict[str, ProviderTranslation] = {
    "openai": ProviderTranslation(
        openai_chat_kwargs,
        parse_openai_chat,
        openai_chat_create,
        _list_models,
        {"stream": True, "stream_options": {"include_usage": True}},
        openai_stream,
    ),
    "anthropic": ProviderTranslation(
        anthropic_kwargs,
        parse_anthropic,
        anthropic_messages_create,
        _list_models,
        {"stream": True},
        anthropic_stream,
    ),
}


def make_client(provider: str, config: ProviderConfig, api_key: str) -> Any:
    """One SDK client per replica (never per request); the SDK's own retries are off.
    `http_client: aiohttp` gives it the SDK's aiohttp transport (its session is opened on
    the first call, in the replica's event loop)."""
    sdk: Any
    if provider == "openai":
        import openai as sdk

        client_class = sdk.AsyncOpenAI
    else:
        import anthropic as sdk

        client_class = sdk.AsyncAnthropic
    transport = (
        {"http_client": sdk.DefaultAioHttpClient()} if config.http_client == "aiohttp" else {}
    )
    return client_class(
        api_key=api_key,
        base_url=config.base_url,
        timeout=config.timeout_s,
        max_retries=0,
        **transport,
    )
