"""Commercial providers (where their proxies run, SDK settings, limits) and models."""

from typing import Any, Literal

from pydantic import Field, model_validator

from serve_app.contracts.config.base import (
    FALLBACKS_DESCRIPTION,
    MODEL_ID_PATTERN,
    AutoscalingConfig,
    PriceConfig,
    ReplicaConfig,
    StrictModel,
)
from serve_app.contracts.config.local import (
    ModelTask,
)

ProviderName = Literal["openai", "anthropic"]


ProviderPlacement = Literal["ingress", "deployment"]
HttpClient = Literal["aiohttp", "httpx"]


DEPLOYMENT_ONLY_FIELDS = (
    "num_replicas",
    "autoscaling",
    "num_cpus",
    "max_ongoing_requests",
    "max_queued_requests",
)


class ProviderConfig(ReplicaConfig):
    """One provider's proxy: SDK client settings, limits, and where it runs (in each ingress
    replica, or as its own autoscaled deployment)."""

    enabled: bool = Field(True, description="Serve this provider's models at all.")
    placement: ProviderPlacement = Field(
        "ingress",
        description=(
            "`ingress` (default): each ingress replica holds this provider's SDK client and "
            "calls it in process (no actor hop; scales with the ingress). `deployment`: a "
            "separate proxy deployment with its own replicas and autoscaling (`num_replicas`, "
            "`autoscaling`, `num_cpus`, `max_ongoing_requests`, `max_queued_requests` apply "
            "only there)."
        ),
    )
    limiter_timeout_ms: int = Field(
        2000,
        ge=1,
        le=60_000,
        description="Deadline of each call from this proxy to the shared RateLimiter (a "
        "permit or a lease). Past it, or with the limiter down, the call is refused with 503 "
        "rate_limiter_unavailable and Retry-After: the provider is never called unpermitted. "
        "Generous by default: a replica's first handle call waits for Serve's routing table.",
    )
    base_url: str | None = Field(
        None, description="SDK base_url (an OpenAI-compatible server works for openai)."
    )
    api_key_env: str = Field(
        min_length=1, description="Environment variable the replicas read the API key from."
    )
    required: bool = Field(
        False,
        description=(
            "Refuse to start (`make run`) when the key variable is not set, instead of "
            "listing the provider as unavailable."
        ),
    )
    timeout_s: float = Field(60.0, gt=0, description="SDK timeout per upstream attempt.")
    http_client: HttpClient = Field(
        "aiohttp",
        description=(
            "The SDK client's HTTP transport. `aiohttp` (the SDKs' `DefaultAioHttpClient`): "
            "about 0.3 ms less CPU per call than `httpx`, measured with `bench/sdk_transport.py`. "
            "`httpx`: the SDKs' default transport. Both honour HTTP(S)_PROXY and the timeouts."
        ),
    )
    max_retries: int = Field(
        2, ge=0, le=10, description="SDK retries on 429/5xx/timeouts (honours retry-after)."
    )
    max_retry_after_s: float = Field(
        20.0, ge=0, description="Longest retry-after the SDK may wait before giving up."
    )
    rpm: int = Field(ge=1, description="Requests per minute for the whole provider.")
    tpm: int | None = Field(None, ge=1, description="Tokens per minute for the whole provider.")
    rate_limit_wait_s: float = Field(
        2.0, ge=0, description="How long a request over the limit waits before 429."
    )
    lease_size: int = Field(
        64,
        ge=0,
        le=100_000,
        description=(
            "Permits a proxy replica takes from the shared limiter at once and spends locally "
            "(one limiter hop per lease instead of per call); 0 or 1: a hop per call."
        ),
    )
    lease_ttl_s: float = Field(
        1.0, gt=0, le=30, description="A lease's life; then its unused permits go back."
    )
    lease_min_free: int = Field(
        1000,
        ge=1,
        description=(
            "Lease only limits (rpm, tpm) of at least this size, and only while this much "
            "of them is free; nearer the limit every call asks the limiter."
        ),
    )
    max_ongoing_requests: int = Field(128, ge=1, description="Concurrent calls per replica.")
    max_queued_requests: int = Field(
        1024, ge=-1, description="Calls waiting for a replica; beyond it a fast 503."
    )
    stream_coalesce_ms: float = Field(
        2.0,
        ge=0,
        le=100,
        description=(
            "Stream pieces that arrive within this many ms of the first one held cross to "
            "the ingress as one chunk (never the first chunk of a stream); 0 turns it off."
        ),
    )
    stream_coalesce_max_pieces: int = Field(
        16, ge=1, le=1024, description="At most this many stream pieces merged into one chunk."
    )
    autoscaling: AutoscalingConfig | None = Field(
        default_factory=lambda: AutoscalingConfig(
            min_replicas=1, max_replicas=4, target_ongoing_requests=32
        ),
        description="Replicas scale with ongoing upstream calls.",
    )

    @model_validator(mode="after")
    def _replica_fields_need_a_deployment(self) -> "ProviderConfig":
        if self.placement == "ingress":
            fields = type(self).model_fields
            given = [
                name
                for name in DEPLOYMENT_ONLY_FIELDS
                if getattr(self, name) != fields[name].get_default(call_default_factory=True)
            ]
            if given:
                raise ValueError(
                    f"`placement: ingress` takes no {', '.join(given)}: they apply only "
                    "with `placement: deployment` (in the ingress, the provider scales with "
                    "`ingress.*`)"
                )
        return self


class OpenAIProviderConfig(ProviderConfig):
    api_key_env: str = Field("OPENAI_API_KEY", min_length=1, description="Key variable.")
    rpm: int = Field(60, ge=1, description="Requests per minute for the whole provider.")


class AnthropicProviderConfig(ProviderConfig):
    api_key_env: str = Field("ANTHROPIC_API_KEY", min_length=1, description="Key variable.")
    rpm: int = Field(50, ge=1, description="Requests per minute for the whole provider.")


class CommercialModelConfig(StrictModel):
    id: str = Field(pattern=MODEL_ID_PATTERN, description="Gateway model id.")
    provider: ProviderName
    upstream_model: str = Field(min_length=1, description="The provider's model name.")
    description: str = ""
    price: PriceConfig = Field(description="USD per million tokens, with the date taken.")
    task: ModelTask = Field("generate", description="`embed`: an embedding model.")
    dimensions: int | None = Field(
        None, ge=1, description="Embedding models: the length of their vectors."
    )
    shortenable: bool = Field(
        False, description="Embedding models: a request may ask for fewer `dimensions`."
    )
    context_window: int = Field(ge=1, description="Tokens of context the model accepts.")
    max_output_tokens: int = Field(ge=1, description="Cap on a request's max_tokens.")
    default_max_tokens: int = Field(
        1024, ge=1, description="max_tokens sent when a request sets none."
    )
    vision: bool = Field(False, description="The model takes images in user turns.")
    rpm: int | None = Field(None, ge=1, description="Requests per minute for this model.")
    tpm: int | None = Field(None, ge=1, description="Tokens per minute for this model.")
    fallbacks: list[str] = Field(
        default_factory=list, description=FALLBACKS_DESCRIPTION, max_length=8
    )


class CommercialConfig(StrictModel):
    openai: OpenAIProviderConfig = Field(default_factory=OpenAIProviderConfig)
    anthropic: AnthropicProviderConfig = Field(default_factory=AnthropicProviderConfig)
    include_default_catalog: bool = Field(
        True,
        description="Start from the shipped catalog (serve_app/contracts/commercial_catalog.yaml).",
    )
    models: list[CommercialModelConfig] = Field(
        default_factory=list, description="Added to the catalog; same id replaces an entry."
    )

    def provider(self, name: str) -> ProviderConfig:
        config: ProviderConfig = getattr(self, name)
        return config

    def placed(
        self, placement: ProviderPlacement
    ) -> list[tuple[str, ProviderConfig, list[dict[str, Any]]]]:
        """The enabled providers with models that run at `placement`: (name, config, their
        models as JSON), what a proxy of each is built from."""
        out = []
        for name in ("openai", "anthropic"):
            provider = self.provider(name)
            models = [m.model_dump(mode="json") for m in self.models if m.provider == name]
            if provider.enabled and models and provider.placement == placement:
                out.append((name, provider, models))
        return out
