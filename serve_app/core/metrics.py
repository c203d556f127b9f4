"""The ingress's own Prometheus metrics: requests, tokens, cost, latency, rejections.

`GatewayMetrics` is created once per ingress replica (never at import). How metrics are
defined, exported and guarded is in `serve_app.contracts.metrics`.
"""

from collections.abc import Callable
from typing import Any

from serve_app.contracts.metrics import (
    PREFIX,
    MetricDef,
    MetricSet,
    ray_metric,
    tags,
)

LATENCY_BOUNDARIES_MS = (
    1, 2, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 20_000, 30_000, 60_000, 120_000
)  # fmt: skip
RATE_LIMIT_SCOPES = ("key", "ip", "provider")

GATEWAY_METRICS: tuple[MetricDef, ...] = (
    MetricDef(
        "requests_total",
        "counter",
        PREFIX + "requests_total",
        "Completed gateway requests.",
        ("model", "provider", "status"),
    ),
    MetricDef(
        "tokens_total",
        "counter",
        PREFIX + "tokens_total",
        "Tokens processed; direction is input (prompt) or output (completion).",
        ("model", "provider", "direction"),
    ),
    MetricDef(
        "cost_usd_total",
        "counter",
        PREFIX + "cost_usd_total",
        "Estimated spend in US dollars.",
        ("model", "provider"),
    ),
    MetricDef(
        "request_latency_ms",
        "histogram",
        PREFIX + "request_latency_ms",
        "End-to-end request latency inside the gateway, in milliseconds.",
        ("model", "provider"),
        LATENCY_BOUNDARIES_MS,
    ),
    MetricDef(
        "rate_limit_rejections_total",
        "counter",
        PREFIX + "rate_limit_rejections_total",
        "Requests refused by a rate limit; scope is key, ip or provider.",
        ("scope",),
    ),
    MetricDef(
        "rate_limiter_failures_total",
        "counter",
        PREFIX + "rate_limiter_failures_total",
        "Limiter store calls that timed out or failed; on_failure is closed (503) or open.",
        ("on_failure",),
    ),
    MetricDef(
        "errors_total",
        "counter",
        PREFIX + "errors_total",
        "Failed requests by error type.",
        ("model", "error_type"),
    ),
    MetricDef(
        "in_flight_requests",
        "gauge",
        PREFIX + "in_flight_requests",
        "Requests being handled by this ingress replica.",
        ("model",),
    ),
)


class GatewayMetrics(MetricSet):
    """The ingress's metrics; create one per ingress replica."""

    def __init__(
        self,
        enabled: bool = True,
        factory: Callable[[MetricDef], Any] = ray_metric,
        flush_interval_s: float = 0.0,
    ) -> None:
        super().__init__(GATEWAY_METRICS, enabled, factory, flush_interval_s)
        self._in_flight: dict[str, int] = {}

    def record_request(
        self,
        model: str,
        provider: str,
        status: int | str,
        latency_ms: float,
        input_tokens: int,
        output_tokens: int,
        cost_usd: float,
        error_type: str | None = None,
    ) -> None:
        """One finished request (success or failure); zero counts are skipped."""
        self.inc("requests_total", 1, tags(model=model, provider=provider, status=status))
        self.observe("request_latency_ms", latency_ms, tags(model=model, provider=provider))
        for direction, count in (("input", input_tokens), ("output", output_tokens)):
            self.inc(
                "tokens_total", count, tags(model=model, provider=provider, direction=direction)
            )
        self.inc("cost_usd_total", cost_usd, tags(model=model, provider=provider))
        if error_type:
            self.inc("errors_total", 1, tags(model=model, error_type=error_type))

    def record_rate_limited(self, scope: str) -> None:
        """A request refused by a rate limit; scope is one of RATE_LIMIT_SCOPES."""
        self.inc("rate_limit_rejections_total", 1, tags(scope=scope))

    def record_limiter_failure(self, on_failure: str) -> None:
        """A limiter call past its deadline or failed, and what was done (closed/open)."""
        self.inc("rate_limiter_failures_total", 1, tags(on_failure=on_failure))

    def request_started(self, model: str) -> None:
        self._set_in_flight(model, self._in_flight.get(model, 0) + 1)

    def request_finished(self, model: str) -> None:
        self._set_in_flight(model, max(0, self._in_flight.get(model, 0) - 1))

    def _set_in_flight(self, model: str, count: int) -> None:
        self._in_flight[model] = count
        self.set("in_flight_requests", count, tags(model=model))


def in_flight_until_accounted(metrics: Any, model: str, account: Any) -> Any:
    """Count a stream in `in_flight_requests` from now until `account` runs (once, when the
    stream ends however it ends); `account` itself when there are no metrics."""
    if metrics is None:
        return account
    metrics.request_started(model)

    def finished(*args: Any, **kwargs: Any) -> Any:
        metrics.request_finished(model)
        return account(*args, **kwargs)

    return finished
