"""Wire schemas of the native API (`/api/v1`). Imports nothing else from the project but
the Unicode check shared by the wire schemas."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from serve_app.http.schemas.unicode import reject_lone_surrogates


class WireModel(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        return reject_lone_surrogates(data)


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """The one error shape of the native API; the response also carries `X-Request-ID`."""

    error: ErrorBody


class GenerateRequest(WireModel):
    prompt: str = Field(min_length=1, description="Text the model continues.")
    model_id: str = Field(min_length=1, max_length=256, description="A model from /models.")
    max_tokens: int | None = Field(
        None, ge=1, description="Tokens to generate; 1..the model's cap (its default if unset)."
    )
    temperature: float | None = Field(None, ge=0, le=2, description="0 = greedy.")
    top_p: float | None = Field(None, gt=0, le=1, description="Nucleus sampling mass.")
    stop: str | list[str] | None = Field(
        None, description="Up to 4 non-empty strings; generation ends before the first one."
    )
    stream: bool = Field(False, description="Server-sent events: text deltas, then the result.")
    cache: bool = Field(
        True, description="false: neither read nor store this request in the response cache."
    )

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def generation_fields(self) -> dict[str, Any]:
        """What the gateway's `prepare` takes (the model id apart)."""
        return {
            "prompt": self.prompt,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "stop": self.stop_list(),
        }


class GenerateMetrics(BaseModel):
    latency_ms: float
    input_tokens: int
    output_tokens: int
    total_tokens: int


class GenerateMetadata(BaseModel):
    model_type: Literal["fine_tuned", "commercial"]
    provider: str
    cost_usd: float
    finish_reason: str
    request_id: str
    requested_model: str = Field(description="The model asked for (`model_id` answered).")
    fallback_used: bool = Field(description="True when a fallback model answered.")


class GenerateResponse(BaseModel):
    text: str
    model_id: str
    metrics: GenerateMetrics
    metadata: GenerateMetadata
    timestamp: str = Field(description="ISO-8601 UTC time the response was made.")


class BatchGenerateRequest(WireModel):
    requests: list[GenerateRequest] = Field(min_length=1, description="Items, capped in config.")


class BatchGenerateResponse(BaseModel):
    results: list[GenerateResponse | ErrorResponse] = Field(
        description="One entry per request, in input order; a failed item holds its error."
    )


class ModelLimits(BaseModel):
    max_tokens: int
    context_length: int | None = None
    max_prompt_chars: int
    rpm: int | None = None
    tpm: int | None = None


class ModelInfo(BaseModel):
    id: str
    type: Literal["fine_tuned", "commercial"]
    provider: str
    description: str
    status: str
    price: dict[str, float] | None = Field(None, description="USD per 1M input/output tokens.")
    limits: ModelLimits
    metadata: dict[str, Any]


class ModelList(BaseModel):
    models: list[ModelInfo]


class HealthResponse(BaseModel):
    status: Literal["ok"]


class ReadyResponse(BaseModel):
    ready: bool
    not_ready: dict[str, str] = Field(description="Model id -> why it is not ready.")


class ModelStatus(BaseModel):
    id: str
    type: str
    provider: str
    state: str
    reason: str | None = None
    requests: int
    errors: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    average_batch_size: float | None
    deployment: str | None = None
    replicas: dict[str, int] | None = Field(None, description="Serve replicas per state.")
    ongoing_requests: int | None = Field(None, description="Queued or decoding, one replica.")
    placement: dict[str, Any] | None = Field(None, description="Node and GPUs of a replica.")


class LedgerHealth(BaseModel):
    backend: str
    degraded: bool
    pending_records: int
    dropped_records: int
    last_error: str | None


class CacheStatus(BaseModel):
    """This ingress replica's response cache (counts since it started)."""

    enabled: bool
    backend: str | None
    hits: int
    misses: int
    hit_rate: float | None = Field(description="hits / (hits + misses); null before any.")
    stores: int
    errors: int = Field(description="Failed reads or writes (each served as a miss).")
    entries: int | None = Field(None, description="Memory backend only.")
    bytes: int | None = Field(None, description="Memory backend only.")
    evictions: int | None = Field(None, description="Memory backend only.")


class StatusResponse(BaseModel):
    version: str
    uptime_s: float
    models: list[ModelStatus]
    ledger: LedgerHealth
    circuit_breakers: dict[str, dict[str, Any]] = Field(default_factory=dict)
    cache: CacheStatus


class CommercialModelList(BaseModel):
    models: list[ModelInfo]


class ProviderCheck(BaseModel):
    provider: str
    key_configured: bool = False
    reachable: bool
    key_accepted: bool = False
    latency_ms: float | None = None
    error: str | None = None


class ProviderCheckList(BaseModel):
    providers: list[ProviderCheck]


class UsageTotals(BaseModel):
    requests: int
    errors: int
    input_tokens: int
    output_tokens: int
    cost_usd: float


class ModelUsage(UsageTotals):
    provider: str
    model_id: str
    cache_hits: int = Field(0, description="Requests answered from the response cache.")
    saved_usd: float = Field(0.0, description="What those answers would have cost upstream.")


class UsageResponse(BaseModel):
    since: str | None
    until: str | None
    providers: dict[str, UsageTotals]
    models: list[ModelUsage]


class TimeseriesTotals(UsageTotals):
    latency_p50_ms: float | None = Field(None, description="Successful requests, nearest rank.")
    latency_p95_ms: float | None = None


class TimeseriesSeries(BaseModel):
    name: str = Field(description="The model id, provider or key id of this series.")
    requests: list[int] = Field(description="One value per bucket, aligned with `buckets`.")
    errors: list[int]
    input_tokens: list[int]
    output_tokens: list[int]
    cost_usd: list[float]
    totals: UsageTotals


class TimeseriesResponse(BaseModel):
    since: str
    until: str
    bucket: str
    group_by: str
    buckets: list[str] = Field(description="Start of each bucket (UTC, ISO-8601).")
    series: list[TimeseriesSeries] = Field(description="Largest cost first.")
    totals: TimeseriesTotals
