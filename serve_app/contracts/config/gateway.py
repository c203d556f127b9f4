"""`GatewayConfig`: the whole `args` of the application, checked across sections."""

from typing import Literal

from pydantic import Field, model_validator

from serve_app.contracts.config.base import (
    RESERVED_DEPLOYMENT_NAMES,
    StrictModel,
)
from serve_app.contracts.config.commercial import (
    CommercialConfig,
)
from serve_app.contracts.config.ingress import (
    CircuitBreakerConfig,
    IngressConfig,
)
from serve_app.contracts.config.local import (
    AdaptersConfig,
    LocalModelConfig,
)
from serve_app.contracts.config.operations import (
    AuthConfig,
    CacheConfig,
    LedgerConfig,
    LoggingConfig,
    MetricsConfig,
    RateLimitConfig,
    SecurityConfig,
    TracingConfig,
    UIConfig,
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
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)

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
