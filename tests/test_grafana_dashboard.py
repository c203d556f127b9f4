"""The Grafana dashboard only queries series the gateway (or Ray Serve) actually exports."""

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deployments.engine.metrics import ENGINE_METRICS
from serve_app.contracts.metrics import exported_series
from serve_app.core.metrics import GATEWAY_METRICS

METRICS = GATEWAY_METRICS + ENGINE_METRICS

DASHBOARD = (
    Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "llm-gateway-dashboard.json"
)
PROMQL_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or"}
    | {"unless", "offset", "inf", "nan"}
)
IDENTIFIER = re.compile(r"(?<![\w.$])[a-zA-Z_:][a-zA-Z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, labels and keywords dropped)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for match in IDENTIFIER.finditer(expr):
        followed_by_call = expr[match.end() :].lstrip().startswith("(")
        if not followed_by_call and match.group() not in PROMQL_KEYWORDS:
            names.add(match.group())
    return names


def label_values_metric(query: str) -> set[str]:
    match = re.fullmatch(r"label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*\w+\s*\)", query)
    return {match.group(1)} if match else set()


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def exprs(dashboard: dict[str, Any]) -> list[str]:
    found = [
        target["expr"]
        for panel in all_panels(dashboard["panels"])
        for target in panel.get("targets", [])
        if target.get("expr")
    ]
    assert found, "the dashboard has no Prometheus queries"
    return found


def test_the_parser_finds_metric_names() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (model, le) (rate(a_bucket{model=~"$model"}'
        "[$__rate_interval]))) / on (model) sum(b_total offset 1h) * 1e3"
    )
    assert metric_names(expr) == {"a_bucket", "b_total"}


def test_every_queried_metric_is_exported(dashboard: dict[str, Any]) -> None:
    known = exported_series(METRICS)
    names = set().union(*(metric_names(expr) for expr in exprs(dashboard)))
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        query = query.get("query", "") if isinstance(query, dict) else query or ""
        names |= label_values_metric(query)
    unknown = {n for n in names if n not in known and not n.startswith("ray_serve_")}
    assert not unknown, f"queried but never exported: {sorted(unknown)}"


def test_every_gateway_metric_has_a_panel(dashboard: dict[str, Any]) -> None:
    used = set().union(*(metric_names(expr) for expr in exprs(dashboard)))
    unused = [m.name for m in METRICS if not used & set(m.exported_series())]
    assert not unused, f"no panel shows: {unused}"
    assert "ray_serve_num_http_requests_total" in used
    assert "ray_serve_deployment_processing_latency_ms_bucket" in used


def test_dashboard_structure(dashboard: dict[str, Any]) -> None:
    assert dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = list(all_panels(dashboard["panels"]))
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
