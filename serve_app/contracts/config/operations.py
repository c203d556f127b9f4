"""The ledger, keys, rate limits, security, logging, the console, the cache and traces."""

from typing import Literal

from pydantic import Field, model_validator

from serve_app.contracts.config.base import (
    StrictModel,
)


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


class MetricsConfig(StrictModel):
    """The ingress's Prometheus metrics (exported by Ray as `ray_llm_gateway_*`)."""

    enabled: bool = Field(True, description="Record the gateway's request metrics at all.")
    flush_interval_s: float = Field(
        1.0,
        ge=0,
        le=60,
        description=(
            "Counters and gauges are summed in the replica and handed to Ray this often "
            "(Ray exports them every few seconds anyway); latency histograms are recorded "
            "per request. 0: every record goes to Ray at once."
        ),
    )


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
