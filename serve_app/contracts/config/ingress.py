"""The ingress deployment and its circuit breakers."""

from typing import Literal

from pydantic import Field

from serve_app.contracts.config.base import (
    ReplicaConfig,
    StrictModel,
)


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
