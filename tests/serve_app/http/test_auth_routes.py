"""Keys, admin routes, per-key/per-IP limits and security headers through the ingress."""

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from deployments.limits.rate_limiter import RateLimiter
from serve_app.access.admission import Admission
from serve_app.access.key_cache import KeyCache
from serve_app.access.key_store import open_key_store
from serve_app.contracts.config import GatewayConfig
from serve_app.contracts.wire import GenerationOutput, GenerationParams
from serve_app.core.gateway import Gateway
from serve_app.http.app import create_app
from tests.fakes.handles import FakeHandle

ADMIN = {"Authorization": "Bearer admin-secret-key"}


def reply(params: GenerationParams) -> GenerationOutput:
    return GenerationOutput("ok", 1_000_000, 0, "stop", "demo")  # costs 1 USD per call


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    db = f"sqlite:///{tmp_path}/gw.db"
    config = GatewayConfig.model_validate(
        {
            "models": [
                {"id": "demo", "path": "x", "price": {"input_per_million_usd": 1.0}},
                {"id": "other", "path": "x"},
            ],
            "ledger": {"url": db},
            "rate_limits": {"ip_rpm": 5},
            "security": {
                "trusted_proxies": ["10.0.0.0/8"],
                "cors_origins": ["https://app.example"],
            },
        }
    )
    handles = {
        name: FakeHandle(generate=reply, describe=lambda: {"metadata": {}})
        for name in ("demo", "other")
    }
    keys = KeyCache(open_key_store(db), ttl_s=5)
    admission = Admission(
        config, keys, RateLimiter(), environ={"GATEWAY_ADMIN_KEY": "admin-secret-key"}
    )
    with TestClient(create_app(Gateway(config, handles, admission=admission))) as test_client:
        yield test_client


def create_key(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post("/api/v1/admin/keys", json={"name": "t", **body}, headers=ADMIN)
    assert response.status_code == 201, response.text
    return dict(response.json())


def generate(client: TestClient, key: str | None, model: str = "demo", **headers: str) -> Any:
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return client.post(
        "/api/v1/generate", json={"prompt": "hi", "model_id": model}, headers=headers
    )


def test_missing_invalid_and_disabled_keys_are_401(client: TestClient) -> None:
    assert generate(client, None).json()["error"]["code"] == "missing_api_key"
    assert generate(client, "gw-nope").status_code == 401
    created = create_key(client)
    assert generate(client, created["key"]).status_code == 200
    x_api_key = client.post(
        "/api/v1/generate",
        json={"prompt": "a", "model_id": "demo"},
        headers={"x-api-key": created["key"]},
    )
    assert x_api_key.status_code == 200
    disabled = client.post(f"/api/v1/admin/keys/{created['id']}/disable", headers=ADMIN)
    assert disabled.status_code == 200, disabled.text
    assert generate(client, created["key"]).json()["error"]["code"] == "key_disabled"


def test_model_permission_403_and_budget_402(client: TestClient) -> None:
    limited = create_key(client, allowed_models=["demo"], budget_usd=1.5)
    assert generate(client, limited["key"], "other").status_code == 403
    assert generate(client, limited["key"]).status_code == 200  # spends 1 USD
    assert generate(client, limited["key"]).status_code == 200  # spent 1 < 1.5: allowed
    spent = generate(client, limited["key"])
    assert spent.status_code == 402 and spent.json()["error"]["type"] == "budget_exceeded"


def test_admin_routes_need_the_admin_key_and_never_show_stored_keys(client: TestClient) -> None:
    user = create_key(client)
    assert user["key"].startswith("gw-")
    assert client.get("/api/v1/admin/keys").status_code == 401
    forbidden = client.get("/api/v1/admin/keys", headers={"Authorization": f"Bearer {user['key']}"})
    assert forbidden.status_code == 403
    listing = client.get("/api/v1/admin/keys", headers=ADMIN)
    assert user["key"] not in listing.text and user["id"] in listing.text


def test_usage_shows_a_key_its_own_and_the_admin_everything(client: TestClient) -> None:
    first, second = create_key(client), create_key(client)
    generate(client, first["key"])
    generate(client, second["key"])
    generate(client, second["key"])
    own = client.get("/api/v1/usage", headers={"Authorization": f"Bearer {second['key']}"})
    assert own.json()["models"][0]["requests"] == 2
    everything = client.get("/api/v1/usage", headers=ADMIN).json()
    assert everything["models"][0]["requests"] == 3


def test_key_rpm_is_exact_with_headers_and_retry_after(client: TestClient) -> None:
    key = create_key(client, rpm=3)["key"]
    responses = [generate(client, key, **{"X-Forwarded-For": f"10.9.9.{i}"}) for i in range(4)]
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    assert responses[0].headers["x-ratelimit-limit-requests"] == "3"
    assert responses[0].headers["x-ratelimit-remaining-requests"] == "2"
    assert responses[0].headers["x-ratelimit-reset-requests"].endswith("s")
    assert int(responses[3].headers["retry-after"]) > 0


def test_ip_limit_honours_forwarded_for_only_from_trusted_proxies(client: TestClient) -> None:
    key = create_key(client)["key"]
    # TestClient's peer is "testclient" (not a trusted proxy): X-Forwarded-For is ignored,
    # so five different claimed addresses still share one counter.
    statuses = [
        generate(client, key, **{"X-Forwarded-For": f"203.0.113.{i}"}).status_code for i in range(6)
    ]
    assert statuses == [200] * 5 + [429]


def test_security_headers_hsts_and_cors(client: TestClient) -> None:
    plain = client.get("/api/v1/health")
    assert "strict-transport-security" not in plain.headers
    secure = TestClient(client.app, base_url="https://testserver").get("/api/v1/health")
    assert secure.headers["strict-transport-security"].startswith("max-age=")
    cors = client.options(
        "/api/v1/generate",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
    )
    assert cors.headers["access-control-allow-origin"] == "https://app.example"
    other = client.get("/api/v1/health", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_access_log_is_one_json_line_without_the_key(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    key = create_key(client)["key"]
    with caplog.at_level(logging.INFO, logger="llm_gateway.access"):
        response = generate(client, key, **{"X-Request-ID": "req-42"})
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "llm_gateway.access"]
    (line,) = [entry for entry in lines if entry["request_id"] == "req-42"]
    assert line["status"] == 200 and line["model"] == "demo" and line["key_id"].startswith("key_")
    assert line["input_tokens"] == 1_000_000 and line["cost_usd"] == 1.0
    assert key not in caplog.text and response.headers["x-request-id"] == "req-42"


def test_forwarded_for_lines_are_joined_and_only_trusted_hops_skipped() -> None:
    from serve_app.access.auth import client_ip, parse_networks
    from serve_app.http.middleware import _joined_header

    trusted = parse_networks(["10.0.0.0/8"])
    headers = [(b"x-forwarded-for", b"6.6.6.6"), (b"x-forwarded-for", b"203.0.113.7")]
    joined = _joined_header(headers, b"x-forwarded-for")
    assert joined == b"6.6.6.6,203.0.113.7"
    # the client's own (spoofable) first line does not win: the proxy's appended line does
    assert client_ip("10.1.1.1", joined.decode(), trusted) == "203.0.113.7"
    assert client_ip("8.8.8.8", joined.decode(), trusted) == "8.8.8.8"  # untrusted peer


@pytest.mark.parametrize(
    "bad",
    [
        {"budget_usd": -1},
        {"budget_usd": "inf"},
        {"budget_usd": "NaN"},
        {"budget_period": "yearly"},
        {"budget_period": -1},
    ],
)
def test_budget_fields_refuse_negative_non_finite_and_unknown_values(
    client: TestClient, bad: dict[str, Any]
) -> None:
    response = client.post("/api/v1/admin/keys", json={"name": "b", **bad}, headers=ADMIN)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] in ("budget_usd", "budget_period")
    created = create_key(client)
    response = client.post(f"/api/v1/admin/keys/{created['id']}/budget", json=bad, headers=ADMIN)
    assert response.status_code == 400, response.text


def test_an_overflowing_budget_is_refused(client: TestClient) -> None:
    raw = '{"name": "b", "budget_usd": 1e400}'  # JSON that parses to infinity
    headers = {**ADMIN, "content-type": "application/json"}
    response = client.post("/api/v1/admin/keys", content=raw, headers=headers)
    assert response.status_code == 400 and response.json()["error"]["param"] == "budget_usd"


def test_budget_period_and_reset_in_the_admin_view(client: TestClient) -> None:
    monthly = create_key(client, budget_usd=2.5, budget_period="monthly")
    assert monthly["budget_period"] == "monthly"
    assert monthly["budget_reset_at"].endswith("T00:00:00Z")
    assert monthly["budget_reset_at"][8:10] == "01"  # the 1st of next month
    total = create_key(client, budget_usd=1)
    assert total["budget_period"] == "total" and total["budget_reset_at"] is None
    changed = client.post(
        f"/api/v1/admin/keys/{total['id']}/budget",
        json={"budget_usd": 0, "budget_period": "daily"},
        headers=ADMIN,
    )
    assert changed.status_code == 200 and changed.json()["budget_period"] == "daily"
    listed = client.get("/api/v1/admin/keys", headers=ADMIN).json()["keys"]
    assert {k["id"]: k["budget_period"] for k in listed}[total["id"]] == "daily"
    refused = generate(client, total["key"])  # a $0 budget: refused before the call
    assert refused.status_code == 402
    assert refused.json()["error"]["type"] == "budget_exceeded"
