"""Operator configuration: the `args` of a Serve config's application, validated strictly.

These models describe what an operator tunes (catalog, prices, limits, replicas, GPUs). They
are separate from the wire schemas and import nothing else from the project, so deployments
can use them. Unknown keys are errors (`extra="forbid"`).
"""

import datetime as dt
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SHIPPED_CATALOG = Path(__file__).with_name("commercial_catalog.yaml")
MODEL_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
RESERVED_DEPLOYMENT_NAMES = frozenset({"Gateway", "openai", "anthropic", "RateLimiter"})
FALLBACKS_DESCRIPTION = (
    "Model ids tried in order when this model fails upstream (429, 5xx, timeout, "
    "connection error, open circuit)."
)


class StrictModel(BaseModel):
    """Base for config models: unknown keys are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class BatchingConfig(StrictModel):
    mode: Literal["continuous", "static"] = Field(
        "continuous",
        description="`continuous`: rows join the running batch at the next decode step and "
        "leave as soon as they end; `static`: `@serve.batch` batches decoded to their end.",
    )
    max_batch_size: int = Field(
        8,
        ge=1,
        le=256,
        description="Most rows one decode step serves (continuous: the running batch; "
        "static: one `@serve.batch` batch).",
    )
    batch_wait_timeout_s: float = Field(
        0.01, ge=0, le=5, description="Static mode: how long a partial batch waits for more."
    )
    max_waiting: int = Field(
        256,
        ge=1,
        description="Continuous mode: requests waiting for a slot; past it a request gets 503 "
        "`backpressure` at once.",
    )
    max_prefill_tokens: int = Field(
        512,
        ge=1,
        description="Continuous mode: prompt tokens prefilled between two decode steps (at "
        "least one request each step), so newcomers never stall the running rows for long.",
    )
    prefix_cache_tokens: int = Field(
        8192,
        ge=0,
        description="Continuous mode: KV of prompt prefixes kept for reuse, in tokens "
        "(least recently used dropped); 0 turns prefix reuse off.",
    )
    prefix_block_tokens: int = Field(
        16, ge=1, le=1024, description="Prefixes are reused in whole blocks of this many tokens."
    )


class AutoscalingConfig(StrictModel):
    """Subset of Ray Serve's autoscaling_config, with the same names and meanings."""

    min_replicas: int = Field(1, ge=0, description="Fewest replicas kept running.")
    max_replicas: int = Field(1, ge=1, description="Most replicas the autoscaler may start.")
    initial_replicas: int | None = Field(None, ge=0, description="Replicas at deploy time.")
    target_ongoing_requests: float = Field(
        2.0, gt=0, description="Ongoing requests per replica the autoscaler aims for."
    )
    upscale_delay_s: float = Field(30.0, ge=0, description="Sustained load before scaling up.")
    downscale_delay_s: float = Field(600.0, ge=0, description="Idle time before scaling down.")
    look_back_period_s: float = Field(30.0, gt=0, description="Window the load is averaged on.")
    metrics_interval_s: float = Field(10.0, gt=0, description="How often replicas report load.")

    @model_validator(mode="after")
    def _bounds(self) -> "AutoscalingConfig":
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must not exceed max_replicas")
        return self


class PriceConfig(StrictModel):
    input_per_million_usd: float = Field(0.0, ge=0, description="USD per 1M input tokens.")
    output_per_million_usd: float = Field(0.0, ge=0, description="USD per 1M output tokens.")
    as_of: dt.date | None = Field(None, description="Date the price was taken from the provider.")


class ReplicaConfig(StrictModel):
    """Replica count and resources shared by every deployment kind."""

    num_replicas: int = Field(1, ge=1, description="Fixed replica count (ignored if autoscaling).")
    autoscaling: AutoscalingConfig | None = Field(None, description="Autoscale instead.")
    num_cpus: float = Field(0.25, ge=0, description="Logical CPUs per replica (fractional ok).")
    max_ongoing_requests: int = Field(64, ge=1, description="Concurrent requests per replica.")
    max_queued_requests: int = Field(
        -1, ge=-1, description="Requests a caller may queue per deployment; -1 = unbounded."
    )

    def serve_options(self) -> dict[str, Any]:
        """Keyword arguments for `serve.deployment(...).options(...)`."""
        options: dict[str, Any] = {
            "max_ongoing_requests": self.max_ongoing_requests,
            "max_queued_requests": self.max_queued_requests,
            "ray_actor_options": {"num_cpus": self.num_cpus},
        }
        if self.autoscaling is not None:
            options["autoscaling_config"] = self.autoscaling.model_dump(exclude_none=True)
        else:
            options["num_replicas"] = self.num_replicas
        return options


class GenerationDefaults(StrictModel):
    temperature: float = Field(1.0, ge=0, le=2, description="Used when a request sets none.")
    top_p: float = Field(1.0, gt=0, le=1, description="Used when a request sets none.")
    max_tokens: int = Field(
        64, ge=1, description="Used when a request sets none (capped at max_new_tokens)."
    )


ModelTask = Literal["generate", "embed"]


class LocalModelConfig(ReplicaConfig):
    """One local (fine-tuned) causal LM, served by its own deployment named after `id`."""

    id: str = Field(pattern=MODEL_ID_PATTERN, description="Gateway model id and deployment name.")
    path: str = Field(min_length=1, description="Directory saved with `save_pretrained`.")
    task: ModelTask = Field(
        "generate",
        description="`generate`: a causal LM (chat, completions); `embed`: /v1/embeddings "
        "only (mean-pooled, L2-normalised last hidden states).",
    )
    description: str = Field("", description="Shown in the model listing.")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="`auto`: bfloat16/float16 on CUDA, float32 on CPU."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="`auto` picks CUDA when the replica sees a GPU."
    )
    max_new_tokens: int = Field(256, ge=1, le=32768, description="Cap on a request's max_tokens.")
    batching: BatchingConfig = Field(default_factory=BatchingConfig)
    num_gpus: float = Field(0.0, ge=0, description="GPUs per replica; fractions share a GPU.")
    resources: dict[str, float] = Field(
        default_factory=dict, description="Custom Ray resources each replica needs."
    )
    torch_threads: int = Field(1, ge=1, le=64, description="CPU threads torch may use.")
    defaults: GenerationDefaults = Field(default_factory=GenerationDefaults)
    price: PriceConfig = Field(default_factory=PriceConfig)
    max_queued_requests: int = Field(
        256, ge=-1, description="Requests waiting for a replica; beyond it a fast 503."
    )
    model_cache_size: int = Field(
        3,
        ge=1,
        le=256,
        description="LoRA adapters kept loaded per replica, least recently used evicted "
        "(MODEL_CACHE_SIZE when the YAML sets none).",
    )
    grammar_cache_size: int = Field(
        64,
        ge=1,
        le=4096,
        description="Compiled grammars (response_format schemas, forced tool calls) kept "
        "per replica, least recently used evicted.",
    )
    fallbacks: list[str] = Field(
        default_factory=list, description=FALLBACKS_DESCRIPTION, max_length=8
    )


class AdapterConfig(StrictModel):
    """A fine-tune stored as a PEFT LoRA adapter, served by its base model's deployment."""

    id: str = Field(pattern=MODEL_ID_PATTERN, description="Gateway model id of the fine-tune.")
    base: str = Field(description="Id of the local model the adapter was trained on.")
    path: str = Field(min_length=1, description="Directory saved with PEFT `save_pretrained`.")
    description: str = Field("", description="Shown in the model listing.")
    price: PriceConfig | None = Field(None, description="Defaults to the base model's price.")
    fallbacks: list[str] = Field(
        default_factory=list, description=FALLBACKS_DESCRIPTION, max_length=8
    )


class AdaptersConfig(StrictModel):
    """LoRA fine-tunes: declared here, or registered at run time (`/api/v1/admin/adapters`).

    A plain list under `adapters:` is read as `declared` (the older form)."""

    declared: list[AdapterConfig] = Field(
        default_factory=list, description="LoRA fine-tunes, each over one of `models`."
    )
    allowed_roots: list[str] = Field(
        default_factory=list,
        description="Directories under which an adapter registered at run time must lie "
        "(resolved, symlinks followed); empty: run-time registration is refused.",
    )
    store_url: str | None = Field(
        None,
        description="Database of run-time adapters; default `auth.key_store_url`, else the "
        "ledger's.",
    )

    @model_validator(mode="before")
    @classmethod
    def _list_is_declared(cls, value: Any) -> Any:
        return {"declared": value} if isinstance(value, list) else value

    def __len__(self) -> int:
        return len(self.declared)


class CircuitBreakerConfig(StrictModel):
    """One breaker per provider and per local deployment, in each ingress replica."""

    enabled: bool = Field(True, description="Stop calling a deployment that keeps failing.")
    failure_threshold: int = Field(
        5, ge=1, description="Consecutive upstream failures that open the circuit."
    )
    cooldown_s: float = Field(
        30.0, gt=0, description="Open time before one trial call (half-open) is let through."
    )


class IngressConfig(ReplicaConfig):
    """The FastAPI ingress deployment and the limits it enforces on requests."""

    max_ongoing_requests: int = Field(256, ge=1, description="Concurrent requests per replica.")
    max_body_bytes: int = Field(1_048_576, ge=1024, description="Larger bodies get 413.")
    body_timeout_s: float = Field(
        60.0, gt=0, description="Time a client has to send the request body (then 408, closed)."
    )
    max_prompt_chars: int = Field(32_000, ge=1, description="Longer prompts get 400.")
    max_batch_items: int = Field(16, ge=1, le=1024, description="Items in one /generate/batch.")
    max_stop_sequences: int = Field(4, ge=0, le=64, description="Stop strings per request.")
    max_tools: int = Field(128, ge=0, le=4096, description="Tools one request may declare (400).")
    max_schema_bytes: int = Field(
        65_536,
        ge=256,
        description="Largest JSON Schema (a tool's parameters or a response format), as "
        "compact JSON; larger is a 400.",
    )
    max_image_bytes: int = Field(
        5_242_880,
        ge=1024,
        description="Largest inline (base64 / data: URL) image, decoded; larger is a 413. "
        "Images also count toward max_body_bytes.",
    )
    request_timeout_s: float = Field(
        120.0,
        gt=0,
        description="Deadline of one request, end to end (fallbacks included); a client may "
        "ask for less with the X-Request-Timeout header (seconds).",
    )
    max_queued_requests: int = Field(
        2048, ge=-1, description="Requests waiting for an ingress replica; beyond it 503."
    )
    status_probe_timeout_s: float = Field(2.0, gt=0, description="Per-model probe in /ready.")
    probe_interval_s: float = Field(
        1.5,
        ge=0.1,
        le=60,
        description="How often one background task per ingress replica asks the deployments "
        "to describe themselves; /ready and /status answer from that snapshot.",
    )
    probe_startup_interval_s: float = Field(
        0.25,
        ge=0.05,
        le=60,
        description="The interval instead of probe_interval_s while a deployment is not "
        "available yet, during the first probe_startup_window_s of the replica's probing: "
        "/ready turns 200 soon after the models have loaded.",
    )
    probe_startup_window_s: float = Field(
        60.0, ge=0, le=3600, description="How long the start-up interval may apply."
    )
    fast_path: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Ray 2.60's HAProxy ingress (direct to the ingress replica, gRPC between "
        "deployments), switched on by `serve_app.runtime.launch` before Ray starts. "
        "`auto`: on unless "
        "per-IP limits are set (HAProxy adds no X-Forwarded-For, so every client would share "
        "its address). GATEWAY_FAST_PATH=on|off overrides.",
    )


ProviderName = Literal["openai", "anthropic"]


ProviderPlacement = Literal["ingress", "deployment"]
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


class LedgerConfig(StrictModel):
    url: str = Field(
        "sqlite:///data/usage.db",
        description="sqlite:///relative/or//absolute/path.db or postgresql://user@host/db "
        "(LEDGER_URL overrides). SQLite only where one ingress replica runs.",
    )
    url_env: str | None = Field(
        None,
        description="Environment variable that must hold the database URL: the start fails "
        "when it is unset (production: LEDGER_URL).",
    )
    flush_interval_s: float = Field(1.0, gt=0, le=60, description="Batch writes this often.")
    max_buffer: int = Field(
        100_000, ge=100, description="Records kept in memory while the store is down."
    )
    batch_size: int = Field(500, ge=1, description="Most records written in one transaction.")
    auto_migrate: bool | None = Field(
        None,
        description="Upgrade an older database schema at start (else refuse to start and "
        "name `llm-gateway db upgrade`); unset: true in development only.",
    )


class AuthConfig(StrictModel):
    enabled: bool = Field(True, description="Require a gateway API key on model routes.")
    admin_key_env: str = Field(
        "GATEWAY_ADMIN_KEY", description="Variable holding the admin key (admin routes)."
    )
    key_store_url: str | None = Field(
        None,
        description="Deprecated: keys live in the ledger's database (ledger.url / LEDGER_URL); "
        "when set it must be that same URL.",
    )
    cache_ttl_s: float = Field(
        5.0, gt=0, le=300, description="Keys, disables and spend are re-read this often."
    )


class RateLimitConfig(StrictModel):
    """Per-key and per-client-IP limits, exact across every ingress replica and node."""

    backend: Literal["ray", "redis"] = Field(
        "ray", description="`ray`: the shared RateLimiter deployment; `redis`: a Redis server."
    )
    redis_url: str | None = Field(None, description="redis://host:port/db for `redis`.")
    key_rpm: int | None = Field(None, ge=1, description="Default rpm of a key without one.")
    key_tpm: int | None = Field(None, ge=1, description="Default tpm of a key without one.")
    ip_rpm: int | None = Field(None, ge=1, description="Requests per minute per client IP.")
    ip_tpm: int | None = Field(None, ge=1, description="Tokens per minute per client IP.")
    timeout_ms: int = Field(
        50, ge=1, le=10_000, description="Deadline of one call to the limiter store."
    )
    on_failure: Literal["closed", "open"] = Field(
        "closed",
        description="When the limiter store times out or is down: `closed` answers 503 "
        "rate_limiter_unavailable with Retry-After; `open` lets the request through (no "
        "rate limit, and no budget reservation: budgets are then checked from the ledger).",
    )
    failure_retry_after_s: float = Field(
        1.0, gt=0, le=60, description="Retry-After of a 503 rate_limiter_unavailable."
    )

    @model_validator(mode="after")
    def _redis_needs_url(self) -> "RateLimitConfig":
        if self.backend == "redis" and not self.redis_url:
            raise ValueError("backend redis needs redis_url (or the RATE_LIMIT_URL variable)")
        return self


class SecurityConfig(StrictModel):
    cors_origins: list[str] = Field(
        default_factory=list, description="Allowed CORS origins; '*' is refused in production."
    )
    trusted_proxies: list[str] = Field(
        default_factory=lambda: ["127.0.0.1/32", "::1/128"],
        description="CIDRs whose X-Forwarded-For / X-Forwarded-Proto are believed.",
    )
    hsts_max_age_s: int = Field(31_536_000, ge=0, description="Strict-Transport-Security.")
    public_status: bool = Field(
        False, description="Serve /api/v1/status without the admin key (it names every model)."
    )


class LoggingConfig(StrictModel):
    access_log: bool = Field(True, description="One JSON line per request.")
    log_prompts: bool = Field(False, description="Include prompts and completions (privacy!).")
    level: str = Field("INFO", description="Log level of the gateway's logger.")


class UIConfig(StrictModel):
    """The operator console at `/ui` and the API its charts read."""

    enabled: bool = Field(True, description="Serve the operator console at /ui.")
    max_points: int = Field(
        1000,
        ge=1,
        le=100_000,
        description="Most buckets one /usage/timeseries series may hold (400 beyond).",
    )


class CacheConfig(StrictModel):
    """Exact-match response cache for deterministic requests (temperature 0 or a seed)."""

    enabled: bool = Field(False, description="Serve repeated deterministic requests from cache.")
    backend: Literal["memory", "redis"] = Field(
        "memory",
        description="`memory`: per ingress replica (LRU); `redis`: shared by every replica.",
    )
    redis_url: str | None = Field(
        None, description="redis://host:port/db for `redis` (else the CACHE_REDIS_URL variable)."
    )
    ttl_s: float = Field(3600.0, gt=0, description="Seconds an answer stays cached.")
    max_entries: int = Field(10_000, ge=1, description="Most answers kept; the oldest go first.")
    max_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="Most bytes of answers kept (memory backend)."
    )
    max_entry_bytes: int = Field(
        256 * 1024, ge=256, description="Answers larger than this are not cached."
    )
    models: list[str] = Field(
        default_factory=list, description="Cache only these model ids; empty: every model."
    )
    namespace: str = Field(
        "llmgw:cache:", min_length=1, description="Prefix of the Redis keys (redis backend)."
    )

    @model_validator(mode="after")
    def _redis_needs_url(self) -> "CacheConfig":
        if self.enabled and self.backend == "redis" and not self.redis_url:
            raise ValueError("cache backend redis needs redis_url (or CACHE_REDIS_URL)")
        return self


class TracingConfig(StrictModel):
    """OpenTelemetry traces: exported (OTLP/HTTP) only when OTEL_EXPORTER_OTLP_ENDPOINT is set
    in the replicas' environment; these settings shape what the spans hold."""

    service_name: str = Field(
        "llm-gateway", min_length=1, description="service.name (OTEL_SERVICE_NAME wins)."
    )
    capture_content: bool = Field(
        False,
        description="Put prompts and completions in spans (gen_ai.input.messages / "
        "gen_ai.output.messages). Off: never.",
    )


class GatewayConfig(StrictModel):
    """The `args` of `serve_app.builder:build_app`."""

    environment: Literal["development", "testing", "production"] = Field(
        "development", description="APP_ENV overrides; production enforces safe settings."
    )
    auth: AuthConfig = Field(default_factory=AuthConfig)
    rate_limits: RateLimitConfig = Field(default_factory=RateLimitConfig)
    security: SecurityConfig = Field(default_factory=SecurityConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)

    ingress: IngressConfig = Field(default_factory=IngressConfig)
    models: list[LocalModelConfig] = Field(default_factory=list, description="Local models.")
    adapters: AdaptersConfig = Field(
        default_factory=AdaptersConfig,
        description="LoRA fine-tunes (a list: the declared ones) and run-time registration.",
    )
    circuit_breaker: CircuitBreakerConfig = Field(default_factory=CircuitBreakerConfig)
    commercial: CommercialConfig | None = Field(
        None, description="Commercial providers and their catalog; omit to serve none."
    )
    ledger: LedgerConfig = Field(default_factory=LedgerConfig)
    ui: UIConfig = Field(default_factory=UIConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    tracing: TracingConfig = Field(default_factory=TracingConfig)

    @model_validator(mode="after")
    def _unique_ids(self) -> "GatewayConfig":
        seen: set[str] = set()
        for model in self.models:
            if model.id in seen:
                raise ValueError(f"model id {model.id!r} is declared twice")
            if model.id in RESERVED_DEPLOYMENT_NAMES:
                raise ValueError(f"model id {model.id!r} is reserved for a gateway deployment")
            seen.add(model.id)
        for adapter in self.adapters.declared:
            if adapter.id in seen or adapter.id in RESERVED_DEPLOYMENT_NAMES:
                raise ValueError(f"adapter id {adapter.id!r} is already a model id")
            if adapter.base not in {model.id for model in self.models}:
                raise ValueError(
                    f"adapter {adapter.id!r}: base {adapter.base!r} is not a local model id"
                )
            alias = f"{adapter.base}:{adapter.id}"
            if alias in seen:
                raise ValueError(f"model id {alias!r} hides the alias of adapter {adapter.id!r}")
            seen.update({adapter.id, alias})
        return self

    @model_validator(mode="after")
    def _one_database(self) -> "GatewayConfig":
        url = self.auth.key_store_url
        if url is not None and url != self.ledger.url:
            raise ValueError(
                "auth.key_store_url must be the ledger's database (ledger.url / LEDGER_URL): "
                "keys and spend live together; remove auth.key_store_url"
            )
        return self

    def auto_migrate(self) -> bool:
        """`ledger.auto_migrate`, else true in development only."""
        if self.ledger.auto_migrate is not None:
            return self.ledger.auto_migrate
        return self.environment == "development"

    def local_ids(self) -> set[str]:
        """Ids of local models and adapters (adapters also answer as `<base>:<id>`)."""
        declared = self.adapters.declared
        ids = {model.id for model in self.models} | {a.id for a in declared}
        return ids | {f"{a.base}:{a.id}" for a in declared}

    def adapter_store_url(self) -> str:
        return self.adapters.store_url or self.auth.key_store_url or self.ledger.url
