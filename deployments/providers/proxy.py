"""The autoscaled deployment that calls one commercial provider through its official SDK.

One SDK client per replica, built at start. Before each call the replica takes a slot from
the shared `RateLimiter` deployment (so limits hold across replicas): for large limits from
a lease of permits it holds (`deployments.limits.leases`, one hop per lease), else one hop
per call. Failures are retried with backoff honouring `retry-after` up to a bound, then
mapped to gateway errors. Streams are coalesced before they cross the handle
(`deployments.streaming`).
"""

import asyncio
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from opentelemetry.trace import SpanKind
from ray.exceptions import RayError
from ray.serve.exceptions import RayServeException

from deployments.limits.lease_holder import LeaseHolder
from deployments.providers.sdk_calls import openai_embeddings_create
from deployments.providers.sdk_errors import is_retryable, map_sdk_error, retry_after_seconds
from deployments.providers.token_counts import (
    anthropic_count,
    anthropic_count_body,
    encoding_name,
    openai_estimate,
)
from deployments.providers.translations import TRANSLATIONS, make_client
from deployments.streaming import coalesced
from serve_app.contracts.config import CommercialModelConfig, ProviderConfig
from serve_app.contracts.errors import (
    GatewayError,
    InvalidRequestError,
    RateLimitError,
    ServiceUnavailableError,
    UpstreamTimeoutError,
)
from serve_app.contracts.limits import Decision, LimitSpec
from serve_app.contracts.tracing import (
    embedding_attributes,
    request_attributes,
    tracing_from_env,
)
from serve_app.contracts.wire import (
    EmbeddingOutput,
    EmbeddingParams,
    GenerationOutput,
    GenerationParams,
    StreamChunk,
    estimate_tokens,
)

logger = logging.getLogger("ray.serve")
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 8.0
MIN_ATTEMPT_TIMEOUT_S = 0.05

ClientFactory = Callable[[str, ProviderConfig, str], Any]
Create = Callable[[Any, dict[str, Any]], Awaitable[Any]]
Params = GenerationParams | EmbeddingParams


class ProviderProxy:
    def __init__(
        self,
        provider: str,
        config: dict[str, Any],
        models: list[dict[str, Any]],
        limiter: Any,
        client_factory: ClientFactory = make_client,
    ) -> None:
        self.provider = provider
        self.config = ProviderConfig.model_validate(config)
        self.models = {m["id"]: CommercialModelConfig.model_validate(m) for m in models}
        self.translation = TRANSLATIONS[provider]
        self.limiter = limiter
        self.leases = LeaseHolder(
            limiter, self.config.lease_size, self.config.lease_ttl_s, self.config.lease_min_free
        )
        self.encodings: dict[str, Any] = {}  # tokenizers for count_tokens, loaded on first use
        api_key = os.environ.get(self.config.api_key_env, "")
        self.unavailable_reason = (
            None if api_key else f"no API key: set the {self.config.api_key_env} variable"
        )
        self.client = client_factory(provider, self.config, api_key) if api_key else None
        if self.unavailable_reason:
            logger.warning("%s proxy unavailable: %s", provider, self.unavailable_reason)
        # Checked once per replica: no span at all without OTEL_EXPORTER_OTLP_ENDPOINT.
        self.tracing = tracing_from_env(os.environ, "llm-gateway")

    async def generate(self, params: GenerationParams) -> GenerationOutput:
        model = self._model(params.model_id)
        self._require_client()
        await self._take_rate_limit_slot(model, self._tokens(params))
        kwargs = self.translation.build_kwargs(params, model)
        kwargs["extra_headers"] = {"X-Request-ID": params.request_id}
        response = await self._call_with_retries(kwargs, params)
        return self.translation.parse(response, model)

    async def embed(self, params: EmbeddingParams) -> EmbeddingOutput:
        """`embeddings.create` (OpenAI only; the ingress refuses the others), float vectors
        in input order."""
        model = self._model(params.model_id)
        self._require_client()
        if self.provider != "openai":
            raise InvalidRequestError(f"{model.id!r} has no embeddings API.", param="model")
        await self._take_rate_limit_slot(model, estimate_tokens(params.input_chars()))
        kwargs: dict[str, Any] = {
            "model": model.upstream_model,
            "input": [item if isinstance(item, str) else list(item) for item in params.inputs],
            "encoding_format": "float",
            "extra_headers": {"X-Request-ID": params.request_id},
        }
        if params.dimensions is not None:
            kwargs["dimensions"] = params.dimensions
        response = await self._call_with_retries(kwargs, params, openai_embeddings_create)
        data = sorted(response.data, key=lambda item: item.index)
        tokens = response.usage.prompt_tokens if response.usage else 0
        return EmbeddingOutput([list(item.embedding) for item in data], tokens, model.id)

    @staticmethod
    def _tokens(params: GenerationParams) -> int:
        return estimate_tokens(params.prompt_chars()) + params.max_tokens

    async def generate_stream(self, params: GenerationParams) -> AsyncIterator[StreamChunk]:
        """Stream through the SDK; closing this generator closes the upstream stream."""
        model = self._model(params.model_id)
        self._require_client()
        await self._take_rate_limit_slot(model, self._tokens(params))
        kwargs = self.translation.build_kwargs(params, model)
        headers = {"X-Request-ID": params.request_id}
        kwargs.update(self.translation.stream_kwargs, extra_headers=headers)
        stream = await self._call_with_retries(kwargs, params)
        pieces = self.translation.read_stream(stream, model)
        window_s = self.config.stream_coalesce_ms / 1000
        try:
            async for chunk in coalesced(pieces, window_s, self.config.stream_coalesce_max_pieces):
                yield chunk
        except Exception as exc:
            logger.warning("%s stream failed: %s", self.provider, type(exc).__name__)
            raise map_sdk_error(exc, self.provider) from None
        finally:
            await stream.close()

    async def count_tokens(self, params: GenerationParams) -> dict[str, Any]:
        """Input tokens of a request: Anthropic's endpoint, or an estimate for OpenAI."""
        model = self._model(params.model_id)
        if self.provider == "openai":
            name = encoding_name(model.upstream_model)
            if name not in self.encodings:
                import bpe_openai

                self.encodings[name] = bpe_openai.get_encoding(name)
            tokens = await asyncio.to_thread(openai_estimate, self.encodings[name], params)
            return {"input_tokens": tokens, "estimated": True, "tokenizer": name}
        self._require_client()
        body = anthropic_count_body(params, model)
        try:
            return {"input_tokens": await anthropic_count(self.client, body, params.request_id)}
        except Exception as exc:
            logger.warning("%s count_tokens failed: %s", self.provider, type(exc).__name__)
            raise map_sdk_error(exc, self.provider) from None

    async def close(self) -> None:
        """Close the SDK client's connections (the aiohttp session, when that transport)."""
        if self.client is not None:
            await self.client.close()

    def _require_client(self) -> None:
        if self.client is None:
            raise ServiceUnavailableError(
                f"The {self.provider} provider is unavailable ({self.unavailable_reason}).",
                code="provider_unavailable",
            )

    def _model(self, model_id: str) -> CommercialModelConfig:
        model = self.models.get(model_id)
        if model is None:
            raise InvalidRequestError(f"{model_id!r} is not a {self.provider} model.")
        return model

    def _limit_specs(self, model: CommercialModelConfig) -> list[LimitSpec]:
        return [
            LimitSpec(f"provider:{self.provider}", self.config.rpm, self.config.tpm),
            LimitSpec(f"model:{model.id}", model.rpm, model.tpm),
        ]

    async def _take_rate_limit_slot(self, model: CommercialModelConfig, tokens: int) -> None:
        """Wait up to `rate_limit_wait_s` for a slot, then give up with 429 + Retry-After."""
        deadline = time.monotonic() + self.config.rate_limit_wait_s
        specs = self._limit_specs(model)
        leased = self.leases.leasable(specs)
        while True:
            decision = await self._permit(specs, tokens, leased)
            if decision.allowed:
                return
            if time.monotonic() + decision.retry_after_s > deadline:
                raise RateLimitError(
                    f"The gateway's rate limit for {self.provider}/{model.id} is reached.",
                    code="provider_rate_limit",
                    retry_after_s=decision.retry_after_s,
                )
            await asyncio.sleep(decision.retry_after_s)

    async def _permit(self, specs: list[LimitSpec], tokens: int, leased: bool) -> Decision:
        """One permit from a lease or the limiter, within `limiter_timeout_ms`; a limiter
        that does not answer (or is dead) refuses the call: 503 rate_limiter_unavailable."""
        call = (
            self.leases.acquire(specs, tokens)
            if leased
            else self.limiter.acquire.remote(specs, tokens)
        )
        timeout_s = self.config.limiter_timeout_ms / 1000
        try:
            decision: Decision = await asyncio.wait_for(call, timeout_s)
        except (TimeoutError, RayError, RayServeException) as exc:
            logger.warning("%s: rate limiter unavailable: %r", self.provider, exc)
            raise ServiceUnavailableError(
                "The rate limiter is unavailable; retry shortly.",
                code="rate_limiter_unavailable",
                retry_after_s=1.0,
            ) from None
        return decision

    def _within_deadline(self, kwargs: dict[str, Any], params: Params) -> dict[str, Any]:
        """An SDK call never outlives the request's deadline (per-attempt `timeout`)."""
        if params.deadline is not None:
            left = params.deadline - time.time()
            if left <= MIN_ATTEMPT_TIMEOUT_S:
                raise UpstreamTimeoutError(
                    "The request's deadline passed before the upstream call.",
                    code="deadline_exceeded",
                )
            kwargs["timeout"] = min(self.config.timeout_s, left)
        return kwargs

    async def _call_with_retries(
        self, kwargs: dict[str, Any], params: Params, create: Create | None = None
    ) -> Any:
        """`create` (the translation's generation call by default) with bounded retries."""
        create = create or self.translation.create
        attempt = 0
        while True:
            attempt_kwargs = self._within_deadline(kwargs, params)
            try:
                if self.tracing.enabled:
                    return await self._traced_attempt(create, attempt_kwargs, params, attempt)
                return await create(self.client, attempt_kwargs)
            except Exception as exc:
                delay = self._retry_delay(exc, attempt)
                deadline = params.deadline
                if delay is not None and deadline is not None and time.time() + delay >= deadline:
                    delay = None  # no retry would finish in time
                if delay is None:
                    logger.warning("%s call failed: %s", self.provider, type(exc).__name__)
                    raise map_sdk_error(exc, self.provider) from None
                logger.info("%s retry %d in %.2fs: %s", self.provider, attempt + 1, delay, exc)
                await asyncio.sleep(delay)
                attempt += 1

    async def _traced_attempt(
        self, create: Create, kwargs: dict[str, Any], params: Params, attempt: int
    ) -> Any:
        """One SDK call in a CLIENT span, child of the ingress's deployment-call span; a
        retry is a sibling span (`llm_gateway.attempt` 2, 3...)."""
        upstream = self.models[params.model_id].upstream_model
        if isinstance(params, EmbeddingParams):
            attributes = embedding_attributes(params, self.provider, upstream)
        else:
            attributes = request_attributes(params, self.provider, upstream)
        attributes["llm_gateway.attempt"] = attempt + 1
        carrier = {"traceparent": params.traceparent} if params.traceparent else None
        name = f"{attributes['gen_ai.operation.name']} {upstream}"
        with self.tracing.span(name, SpanKind.CLIENT, attributes, carrier) as span:
            try:
                return await create(self.client, kwargs)
            except Exception as exc:
                error = map_sdk_error(exc, self.provider)
                span.set_attribute("error.type", error.error_type)
                raise

    def _retry_delay(self, exc: BaseException, attempt: int) -> float | None:
        """Seconds to wait before the next try, or None when the error is final."""
        if isinstance(exc, GatewayError) or attempt >= self.config.max_retries:
            return None
        if not is_retryable(exc):
            return None
        retry_after = retry_after_seconds(exc)
        if retry_after is not None:
            return retry_after if retry_after <= self.config.max_retry_after_s else None
        return min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2**attempt) * (0.75 + random.random() / 4)

    async def describe(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "key_configured": self.client is not None,
            "status": "available" if self.client is not None else "unavailable",
            "unavailable_reason": self.unavailable_reason,
        }

    async def check_upstream(self) -> dict[str, Any]:
        """A cheap authenticated call (list models): is the upstream up, is the key accepted."""
        result: dict[str, Any] = {
            "provider": self.provider,
            "key_configured": self.client is not None,
            "reachable": False,
            "key_accepted": False,
            "latency_ms": None,
            "error": self.unavailable_reason,
        }
        if self.client is None:
            return result
        started = time.perf_counter()
        try:
            await self.translation.list_models(self.client)
            result.update(reachable=True, key_accepted=True, error=None)
        except Exception as exc:
            error = map_sdk_error(exc, self.provider)
            reachable = error.code not in ("upstream_unreachable", "upstream_timeout")
            result.update(reachable=reachable, error=f"{error.error_type}: {error.message}")
        result["latency_ms"] = round((time.perf_counter() - started) * 1000, 3)
        return result


class ProviderProxyDeployment(ProviderProxy):
    """`placement: deployment`: Serve calls `__del__` on a clean stop of the replica."""

    async def __del__(self) -> None:
        await self.close()
