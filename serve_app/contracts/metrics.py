"""How the gateway's Prometheus metrics are defined and recorded (through `ray.serve.metrics`).

Each process defines its own metrics with `MetricDef`s and records them through a
`MetricSet` built once per replica (never at import): the ingress its request metrics
(`serve_app.core.metrics`), a model deployment its batch sizes
(`deployments.engine.metrics`). Ray exports each metric on every node's metrics export port
with a `ray_` prefix, and Serve adds the `deployment`, `replica` and `application` tags when
the metric is created inside a replica:

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

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

logger = logging.getLogger("ray.serve")

PREFIX = "llm_gateway_"
RAY_EXPORT_PREFIX = "ray_"

Kind = Literal["counter", "histogram", "gauge"]


@dataclass(frozen=True, slots=True)
class MetricDef:
    """One metric: `attr` is its attribute on its MetricSet, `name` its Ray name."""

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


def exported_series(definitions: Sequence[MetricDef]) -> frozenset[str]:
    """Every Prometheus series name these metrics appear under."""
    return frozenset(series for metric in definitions for series in metric.exported_series())


class Metric(Protocol):
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


def ray_metric(metric: MetricDef) -> Any:
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


def tags(**values: object) -> dict[str, str]:
    return {key: str(value) for key, value in values.items()}


Series = tuple[str, tuple[tuple[str, str], ...]]  # (attr, label items)


class MetricSet:
    """The metrics of one process; subclasses add the record methods.

    `factory` makes one Ray metric from its definition (tests hand in a broken one). With
    `flush_interval_s` > 0, counter increments are summed and gauges keep their last value
    per series, and both reach Ray at most that often (a timer on the running event loop;
    `flush()` on shutdown): one Ray record per series per interval instead of several per
    request. Histograms are recorded at once (Ray takes one observation per record)."""

    def __init__(
        self,
        definitions: Sequence[MetricDef],
        enabled: bool = True,
        factory: Callable[[MetricDef], Any] = ray_metric,
        flush_interval_s: float = 0.0,
    ) -> None:
        created = self._create_all(definitions, enabled, factory)
        self.enabled = enabled and not any(isinstance(m, NullMetric) for m in created.values())
        self.metrics: dict[str, Metric] = created
        self.flush_interval_s = flush_interval_s
        self._failed = False
        self._counts: dict[Series, float] = {}
        self._levels: dict[Series, float] = {}
        self._flush_timer: asyncio.TimerHandle | None = None

    @staticmethod
    def _create_all(
        definitions: Sequence[MetricDef], enabled: bool, factory: Callable[[MetricDef], Any]
    ) -> dict[str, Any]:
        if enabled:
            try:
                return {metric.attr: factory(metric) for metric in definitions}
            except Exception:
                logger.warning("Ray metrics unavailable; gateway metrics disabled", exc_info=True)
        return {metric.attr: NullMetric() for metric in definitions}

    def inc(self, attr: str, value: float, labels: dict[str, str]) -> None:
        if value <= 0 or not self.enabled:  # Ray counters reject increments <= 0
            return
        if self.flush_interval_s <= 0:
            self._guard(self.metrics[attr].inc, value, labels)
            return
        series = (attr, tuple(labels.items()))
        self._counts[series] = self._counts.get(series, 0.0) + value
        self._flush_later()

    def observe(self, attr: str, value: float, labels: dict[str, str]) -> None:
        if self.enabled:
            self._guard(self.metrics[attr].observe, value, labels)

    def set(self, attr: str, value: float, labels: dict[str, str]) -> None:
        if not self.enabled:
            return
        if self.flush_interval_s <= 0:
            self._guard(self.metrics[attr].set, value, labels)
            return
        self._levels[(attr, tuple(labels.items()))] = value
        self._flush_later()

    def flush(self) -> None:
        """Hand every summed counter and last gauge value to Ray now."""
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        counts, self._counts = self._counts, {}
        levels, self._levels = self._levels, {}
        for (attr, labels), value in counts.items():
            self._guard(self.metrics[attr].inc, value, dict(labels))
        for (attr, labels), value in levels.items():
            self._guard(self.metrics[attr].set, value, dict(labels))

    def _flush_later(self) -> None:
        if self._flush_timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (a script, a sync test): nothing would flush
            self.flush()
            return
        self._flush_timer = loop.call_later(self.flush_interval_s, self.flush)

    def _guard(self, record: Any, value: float, labels: Mapping[str, str]) -> None:
        try:
            record(float(value), dict(labels))
        except Exception:
            if not self._failed:
                logger.warning("Dropping a gateway metric record", exc_info=True)
            self._failed = True
