"""Gateway metrics: recording works without a Ray cluster, inside a replica, and disabled."""

import asyncio
import logging
import re
from types import SimpleNamespace
from typing import Any

import pytest

from deployments.engine.metrics import BATCH_SIZE_BOUNDARIES, ENGINE_METRICS, EngineMetrics
from serve_app.contracts import metrics as metrics_module
from serve_app.contracts.metrics import MetricSet, NullMetric, exported_series
from serve_app.core.metrics import GATEWAY_METRICS, LATENCY_BOUNDARIES_MS, GatewayMetrics

METRICS = GATEWAY_METRICS + ENGINE_METRICS

PROMETHEUS_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class Recorder:
    """Stands in for the Cython metric under a Ray metric object: keeps what reaches it."""

    def __init__(self) -> None:
        self.records: list[tuple[float, dict[str, str]]] = []

    def record(self, value: float, tags: dict[str, str]) -> None:
        self.records.append((value, dict(tags)))


def spy(metric_set: MetricSet) -> dict[str, Recorder]:
    recorders = {}
    for attr, metric in metric_set.metrics.items():
        recorders[attr] = Recorder()
        metric._metric = recorders[attr]  # type: ignore[attr-defined]
    return recorders


def test_names_boundaries_and_exported_series() -> None:
    for metric in METRICS:
        assert metric.name.startswith("llm_gateway_") and PROMETHEUS_NAME.match(metric.name)
        assert metric.name.endswith("_total") == (metric.kind == "counter")
        assert {"deployment", "replica", "application"}.isdisjoint(metric.tag_keys)
    assert LATENCY_BOUNDARIES_MS[0] == 1 and LATENCY_BOUNDARIES_MS[-1] == 120_000
    assert list(LATENCY_BOUNDARIES_MS) == sorted(set(LATENCY_BOUNDARIES_MS))
    assert BATCH_SIZE_BOUNDARIES == (1, 2, 4, 8, 16, 32, 64)
    series = exported_series(METRICS)
    assert "ray_llm_gateway_requests_total" in series
    assert "ray_llm_gateway_requests_total_total" not in series
    assert {"ray_llm_gateway_request_latency_ms_bucket", "ray_llm_gateway_batch_size_count"} <= (
        series
    )


def test_records_reach_ray_metrics_with_or_without_a_cluster() -> None:
    gateway = GatewayMetrics()
    assert gateway.enabled
    gateway.record_request("demo", "local", 200, 12.5, 7, 3, 0.002)  # real objects: no crash
    recorders = spy(gateway)
    gateway.record_request("gpt", "openai", 429, 80.0, 10, 0, 0.0, error_type="rate_limited")
    gateway.record_rate_limited("ip")
    engine = EngineMetrics()
    recorders.update(spy(engine))
    engine.record_batch("demo", 4)
    assert recorders["requests_total"].records == [
        (1.0, {"model": "gpt", "provider": "openai", "status": "429"})
    ]
    assert recorders["request_latency_ms"].records == [
        (80.0, {"model": "gpt", "provider": "openai"})
    ]
    # zero output tokens and zero cost are skipped (Ray counters reject increments <= 0)
    assert recorders["tokens_total"].records == [
        (10.0, {"model": "gpt", "provider": "openai", "direction": "input"})
    ]
    assert recorders["cost_usd_total"].records == []
    assert recorders["errors_total"].records == [
        (1.0, {"model": "gpt", "error_type": "rate_limited"})
    ]
    assert recorders["rate_limit_rejections_total"].records == [(1.0, {"scope": "ip"})]
    assert recorders["batch_size"].records == [(4.0, {"model": "demo"})]


def test_in_flight_gauge_counts_up_and_down() -> None:
    gateway = GatewayMetrics()
    recorder = spy(gateway)["in_flight_requests"]
    gateway.request_started("demo")
    gateway.request_started("demo")
    gateway.request_finished("demo")
    gateway.request_finished("demo")
    gateway.request_finished("demo")  # never below zero
    assert [value for value, _ in recorder.records] == [1.0, 2.0, 1.0, 0.0, 0.0]


async def test_summed_counters_and_last_gauges_reach_ray_once_per_interval() -> None:
    gateway = GatewayMetrics(flush_interval_s=0.05)
    recorders = spy(gateway)
    for status in (200, 200, 500):
        gateway.request_started("gpt")
        gateway.record_request("gpt", "openai", status, 10.0, 3, 2, 0.25)
    gateway.request_finished("gpt")
    # histograms go at once (one observation per record); the rest waits for the timer
    assert len(recorders["request_latency_ms"].records) == 3
    assert recorders["requests_total"].records == []
    assert recorders["in_flight_requests"].records == []
    await asyncio.sleep(0.15)
    assert sorted(recorders["requests_total"].records, key=lambda r: r[1]["status"]) == [
        (2.0, {"model": "gpt", "provider": "openai", "status": "200"}),
        (1.0, {"model": "gpt", "provider": "openai", "status": "500"}),
    ]
    tokens = {r[1]["direction"]: r[0] for r in recorders["tokens_total"].records}
    assert tokens == {"input": 9.0, "output": 6.0}
    assert recorders["cost_usd_total"].records == [(0.75, {"model": "gpt", "provider": "openai"})]
    assert recorders["in_flight_requests"].records == [(2.0, {"model": "gpt"})]
    gateway.request_finished("gpt")
    gateway.flush()  # what shutdown does: nothing waits for the timer
    assert recorders["in_flight_requests"].records[-1] == (1.0, {"model": "gpt"})
    await asyncio.sleep(0.1)  # the flushed timer was cancelled: nothing is recorded twice
    assert len(recorders["in_flight_requests"].records) == 2


def test_summing_without_an_event_loop_records_at_once() -> None:
    gateway = GatewayMetrics(flush_interval_s=1.0)
    recorder = spy(gateway)["rate_limit_rejections_total"]
    gateway.record_rate_limited("key")
    assert recorder.records == [(1.0, {"scope": "key"})]


def test_inside_a_replica_serve_adds_its_tags(monkeypatch: pytest.MonkeyPatch) -> None:
    from ray.serve import context

    replica = SimpleNamespace(deployment="Ingress", replica_tag="Ingress#abc", app_name="gateway")
    monkeypatch.setattr(context, "_get_internal_replica_context", lambda: replica)
    gateway = GatewayMetrics()
    info: dict[str, Any] = gateway.metrics["requests_total"].info  # type: ignore[attr-defined]
    assert info["tag_keys"][:3] == ("deployment", "replica", "application")
    recorder = spy(gateway)["requests_total"]
    gateway.record_request("demo", "local", "200", 5.0, 1, 1, 0.0)
    assert recorder.records[0][1] == {
        "deployment": "Ingress",
        "replica": "Ingress#abc",
        "application": "gateway",
        "model": "demo",
        "provider": "local",
        "status": "200",
    }


def test_disabled_metrics_are_no_ops() -> None:
    gateway = GatewayMetrics(enabled=False)
    assert not gateway.enabled
    assert all(isinstance(metric, NullMetric) for metric in gateway.metrics.values())
    gateway.record_request("demo", "local", 200, 1.0, 1, 1, 0.5, error_type="timeout")
    gateway.record_rate_limited("key")
    EngineMetrics(enabled=False).record_batch("demo", 8)
    gateway.request_started("demo")
    gateway.request_finished("demo")


def test_unavailable_ray_metrics_fall_back_to_no_ops() -> None:
    def broken(metric: Any) -> Any:
        raise RuntimeError("no metrics here")

    gateway = GatewayMetrics(factory=broken)
    assert not gateway.enabled
    gateway.record_request("demo", "local", 200, 1.0, 1, 1, 0.5)


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_a_failing_record_is_logged_once_and_never_raises() -> None:
    class Broken:
        def record(self, value: float, tags: dict[str, str]) -> None:
            raise RuntimeError("exporter down")

    gateway = GatewayMetrics()
    gateway.metrics["requests_total"]._metric = Broken()  # type: ignore[attr-defined]
    handler = ListHandler()  # attached directly: Serve may stop "ray.serve" propagating
    metrics_module.logger.addHandler(handler)
    try:
        gateway.record_request("demo", "local", 200, 1.0, 0, 0, 0.0)
        gateway.record_request("demo", "local", 200, 1.0, 0, 0, 0.0)
    finally:
        metrics_module.logger.removeHandler(handler)
    assert handler.messages == ["Dropping a gateway metric record"]
