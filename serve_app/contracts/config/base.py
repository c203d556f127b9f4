"""The config models' base: strict models, ids, prices, replicas and autoscaling."""

import datetime as dt
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

SHIPPED_CATALOG = Path(__file__).parent.parent / "commercial_catalog.yaml"


MODEL_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"


RESERVED_DEPLOYMENT_NAMES = frozenset({"Gateway", "openai", "anthropic", "RateLimiter"})


FALLBACKS_DESCRIPTION = (
    "Model ids tried in order when this model fails upstream (429, 5xx, timeout, "
    "connection error, open circuit)."
)


class StrictModel(BaseModel):
    """Base for config models: unknown keys are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


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
