"""The gateway's own Prometheus metrics, recorded through `ray.serve.metrics`.

`GatewayMetrics` is created once per ingress replica (never at import). Ray exports each
metric on every node's metrics export port with a `ray_` prefix, and Serve adds the
`deployment`, `replica` and `application` tags when the metric is created inside a replica:

* a counter named `llm_gateway_requests_total` is exported as `ray_llm_gateway_requests_total`
  (counter names here already end in `_total`, so no deprecated gauge twin is exported);
* a histogram `llm_gateway_request_latency_ms` is exported as
  `ray_llm_gateway_request_latency_ms_bucket{le=...}`, `..._sum` and `..._count`;
* a gauge keeps its name: `ray_llm_gateway_in_flight_requests`.

Ray 2.60's OpenTelemetry export rebuilds each histogram from its bucket counts (one point at
each bucket's midpoint), so `_bucket` and `_count` are exact but `_sum` is approximate: use
quantiles over buckets, not `_sum / _count`.

Outside a Ray worker (tests, scripts) the Ray metric objects still accept records and drop
them; if they cannot even be created, or `enabled=False`, every method is a no-op. A failing
record never fails a request: it is logged once and dropped.
"""

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

logger = logging.getLogger("ray.serve")

PREFIX = "llm_gateway_"
RAY_EXPORT_PREFIX = "ray_"
LATENCY_BOUNDARIES_MS = (
    1, 2, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 20_000, 30_000, 60_000, 120_000
)  # fmt: skip
BATCH_SIZE_BOUNDARIES = (1, 2, 4, 8, 16, 32, 64)
RATE_LIMIT_SCOPES = ("key", "ip", "provider")

Kind = Literal["counter", "histogram", "gauge"]


@dataclass(frozen=True, slots=True)
class MetricDef:
    """One metric: `attr` is its attribute on GatewayMetrics, `name` its Ray name."""

    attr: str
    kind: Kind
    name: str
    description: str
    tag_keys: tuple[str, ...]
    boundaries: tuple[float, ...] = ()

    def exported_series(self) -> tuple[str, ...]:
        """The Prometheus series names Ray exports for this metric."""
        base = RAY_EXPORT_PREFIX + self.name
        if self.kind == "histogram":
            return (f"{base}_bucket", f"{base}_sum", f"{base}_count")
        return (base,)


METRICS: tuple[MetricDef, ...] = (
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
        "batch_size",
        "histogram",
        PREFIX + "batch_size",
        "Requests per generation batch.",
        ("model",),
        BATCH_SIZE_BOUNDARIES,
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


def exported_series() -> frozenset[str]:
    """Every Prometheus series name the gateway's own metrics appear under."""
    return frozenset(series for metric in METRICS for series in metric.exported_series())


class _Metric(Protocol):
    def inc(self, value: float = 1.0, tags: dict[str, str] | None = None) -> None: ...

    def observe(self, value: float, tags: dict[str, str] | None = None) -> None: ...

    def set(self, value: float, tags: dict[str, str] | None = None) -> None: ...


class NullMetric:
    """Accepts every record and keeps nothing."""

    def inc(self, value: float = 1.0, tags: dict[str, str] | None = None) -> None:
        return None

    def observe(self, value: float, tags: dict[str, str] | None = None) -> None:
        return None

    def set(self, value: float, tags: dict[str, str] | None = None) -> None:
        return None


def _ray_metric(metric: MetricDef) -> Any:
    from ray.serve import metrics as serve_metrics

    # Ray annotates tag_keys as Tuple[str] but takes any tuple of str.
    tag_keys: Any = metric.tag_keys
    if metric.kind == "counter":
        return serve_metrics.Counter(metric.name, metric.description, tag_keys=tag_keys)
    if metric.kind == "gauge":
        return serve_metrics.Gauge(metric.name, metric.description, tag_keys=tag_keys)
    boundaries = [float(b) for b in metric.boundaries]
    return serve_metrics.Histogram(
        metric.name, metric.description, boundaries=boundaries, tag_keys=tag_keys
    )


def _create_all(enabled: bool) -> dict[str, Any]:
    if enabled:
        try:
            return {metric.attr: _ray_metric(metric) for metric in METRICS}
        except Exception:
            logger.warning("Ray metrics unavailable; gateway metrics disabled", exc_info=True)
    return {metric.attr: NullMetric() for metric in METRICS}


def _tags(**values: object) -> dict[str, str]:
    return {key: str(value) for key, value in values.items()}


class GatewayMetrics:
    """The gateway's custom metrics; create one per ingress replica."""

    def __init__(self, enabled: bool = True) -> None:
        created = _create_all(enabled)
        self.enabled = enabled and not isinstance(created["requests_total"], NullMetric)
        self.requests_total: _Metric = created["requests_total"]
        self.tokens_total: _Metric = created["tokens_total"]
        self.cost_usd_total: _Metric = created["cost_usd_total"]
        self.request_latency_ms: _Metric = created["request_latency_ms"]
        self.rate_limit_rejections_total: _Metric = created["rate_limit_rejections_total"]
        self.batch_size: _Metric = created["batch_size"]
        self.errors_total: _Metric = created["errors_total"]
        self.in_flight_requests: _Metric = created["in_flight_requests"]
        self._in_flight: dict[str, int] = {}
        self._failed = False

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
        self._inc(self.requests_total, 1, _tags(model=model, provider=provider, status=status))
        self._observe(self.request_latency_ms, latency_ms, _tags(model=model, provider=provider))
        for direction, count in (("input", input_tokens), ("output", output_tokens)):
            tags = _tags(model=model, provider=provider, direction=direction)
            self._inc(self.tokens_total, count, tags)
        self._inc(self.cost_usd_total, cost_usd, _tags(model=model, provider=provider))
        if error_type:
            self._inc(self.errors_total, 1, _tags(model=model, error_type=error_type))

    def record_rate_limited(self, scope: str) -> None:
        """A request refused by a rate limit; scope is one of RATE_LIMIT_SCOPES."""
        self._inc(self.rate_limit_rejections_total, 1, _tags(scope=scope))

    def record_batch(self, model: str, size: int) -> None:
        self._observe(self.batch_size, size, _tags(model=model))

    def request_started(self, model: str) -> None:
        self._set_in_flight(model, self._in_flight.get(model, 0) + 1)

    def request_finished(self, model: str) -> None:
        self._set_in_flight(model, max(0, self._in_flight.get(model, 0) - 1))

    def _set_in_flight(self, model: str, count: int) -> None:
        self._in_flight[model] = count
        self._guard(self.in_flight_requests.set, count, _tags(model=model))

    def _inc(self, metric: _Metric, value: float, tags: dict[str, str]) -> None:
        if value > 0:  # Ray counters reject increments <= 0
            self._guard(metric.inc, value, tags)

    def _observe(self, metric: _Metric, value: float, tags: dict[str, str]) -> None:
        self._guard(metric.observe, value, tags)

    def _guard(self, record: Any, value: float, tags: Mapping[str, str]) -> None:
        try:
            record(float(value), dict(tags))
        except Exception:
            if not self._failed:
                logger.warning("Dropping a gateway metric record", exc_info=True)
            self._failed = True
