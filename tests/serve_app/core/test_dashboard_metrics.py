"""Every Grafana panel plots a metric that the code records: driven through the gateway
(success, failure, provider rate limit, limiter failure) and the engine's batch recorder."""

import json
import re
from pathlib import Path

from deployments.engine.metrics import ENGINE_METRICS, EngineMetrics
from serve_app.contracts.errors import RateLimitError, UpstreamError
from serve_app.core.metrics import GATEWAY_METRICS, GatewayMetrics
from tests.serve_app.core.resilience_fakes import answer, build_rig, failing
from tests.serve_app.core.test_metrics import spy

DASHBOARD = Path(__file__).parents[3] / "deploy" / "grafana" / "llm-gateway-dashboard.json"
OURS = re.compile(r"ray_(llm_gateway_[a-z_]+?)(?:_bucket|_count|_sum)?\b")


def panel_metrics() -> set[str]:
    text = json.dumps(json.loads(DASHBOARD.read_text()))
    return {match.group(1) for match in OURS.finditer(text)}


async def test_each_panel_metric_is_recorded_by_the_code() -> None:
    rig = build_rig()
    metrics = GatewayMetrics()
    recorders = spy(metrics)
    rig.gateway.usage.metrics = metrics
    rig.gateway.admission.metrics = metrics
    try:
        ok = await rig.client.post("/api/v1/generate", json={"prompt": "hi", "model_id": "gpt-x"})
        assert ok.status_code == 200 and ok.json()["metadata"]["cost_usd"] > 0
        rig.handle("anthropic").behave = failing(UpstreamError("down"))
        await rig.client.post("/api/v1/generate", json={"prompt": "hi", "model_id": "claude-y"})
        rig.handle("openai").behave = failing(
            RateLimitError("over", code="provider_rate_limit", retry_after_s=1)
        )
        await rig.client.post("/api/v1/generate", json={"prompt": "hi", "model_id": "gpt-x"})
        rig.handle("openai").behave = answer  # answers again
        streamed = await rig.client.post(
            "/api/v1/generate", json={"prompt": "hi", "model_id": "gpt-x", "stream": True}
        )
        assert streamed.status_code == 200
        metrics.record_limiter_failure("closed")
    finally:
        await rig.close()
    engine = EngineMetrics()
    engine_recorders = spy(engine)
    engine.record_batch("demo", 4)

    names = {d.attr: d.name for d in GATEWAY_METRICS + ENGINE_METRICS}
    recorded = {
        names[attr]
        for spies in (recorders, engine_recorders)
        for attr, recorder in spies.items()
        if recorder.records
    }
    panels = panel_metrics()
    assert panels, "no llm_gateway metric found in the dashboard"
    assert panels <= recorded, f"panels plot metrics nothing records: {panels - recorded}"
    scopes = {tags["scope"] for _, tags in recorders["rate_limit_rejections_total"].records}
    assert "provider" in scopes
    in_flight = [value for value, _ in recorders["in_flight_requests"].records]
    assert in_flight[:2] == [1, 0]  # set while the call ran, cleared after
    assert in_flight[-2:] == [1, 0]  # the stream too, until it ended
