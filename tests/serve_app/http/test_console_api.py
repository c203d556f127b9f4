"""The API the console adds: PATCH a key, key spend and last use, whoami, the timeseries'
scoping and bounds, and the /ui mount with its CSP (through FastAPI's TestClient)."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from serve_app.contracts.config import GatewayConfig
from serve_app.http.console import mount_console
from tests.serve_app.http.console_harness import ADMIN_KEY, console_gateway

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    app, _, _ = console_gateway(tmp_path)
    with TestClient(app) as test_client:
        yield test_client


def new_key(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post("/api/v1/admin/keys", headers=ADMIN, json={"name": "k", **body})
    assert response.status_code == 201
    return dict(response.json())


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_patch_changes_only_what_is_sent_and_null_clears(client: TestClient) -> None:
    key = new_key(client, rpm=10, budget_usd=5, allowed_models=["demo"])
    path = f"/api/v1/admin/keys/{key['id']}"
    changed = client.patch(path, headers=ADMIN, json={"tpm": 1000, "name": "renamed"}).json()
    assert (changed["name"], changed["rpm"], changed["tpm"], changed["budget_usd"]) == (
        "renamed",
        10,
        1000,
        5.0,
    )
    cleared = client.patch(path, headers=ADMIN, json={"rpm": None, "budget_usd": None}).json()
    assert (cleared["rpm"], cleared["budget_usd"], cleared["allowed_models"]) == (
        None,
        None,
        ["demo"],
    )
    # The key works at once with its new limits (the cache learns the edit).
    assert (
        client.post(
            "/api/v1/generate",
            headers=bearer(key["key"]),
            json={"model_id": "demo", "prompt": "hi"},
        ).status_code
        == 200
    )


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"rpm": 0}, 400, "rpm"),
        ({"budget_usd": -1}, 400, "budget_usd"),
        ({"name": None}, 400, "name"),
        ({"name": " "}, 400, "name"),
        ({"enabled": False}, 400, "enabled"),
    ],
)
def test_patch_refuses_bad_values_in_the_error_shape(
    client: TestClient, body: dict[str, Any], status: int, param: str
) -> None:
    key = new_key(client)
    response = client.patch(f"/api/v1/admin/keys/{key['id']}", headers=ADMIN, json=body)
    assert response.status_code == status, response.text
    assert param in str(response.json()["error"]["param"]) + response.json()["error"]["message"]


def test_patch_needs_the_admin_and_an_existing_key(client: TestClient) -> None:
    key = new_key(client)
    missing = client.patch("/api/v1/admin/keys/key_nope", headers=ADMIN, json={"rpm": 5})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "key_not_found"
    refused = client.patch(
        f"/api/v1/admin/keys/{key['id']}", headers=bearer(key["key"]), json={"rpm": 5}
    )
    assert refused.status_code == 403


def test_key_list_has_spend_and_last_use_and_whoami_tells_roles(client: TestClient) -> None:
    key = new_key(client)
    idle = new_key(client, name="idle")
    client.post(
        "/api/v1/generate",
        headers=bearer(key["key"]),
        json={"model_id": "gpt-fake", "prompt": "a b"},
    )
    listed = {k["id"]: k for k in client.get("/api/v1/admin/keys", headers=ADMIN).json()["keys"]}
    assert listed[key["id"]]["requests"] == 1 and listed[key["id"]]["spend_usd"] > 0
    assert listed[key["id"]]["last_used_at"] is not None
    assert (listed[idle["id"]]["spend_usd"], listed[idle["id"]]["last_used_at"]) == (0.0, None)
    assert client.get("/api/v1/whoami", headers=ADMIN).json() == {"role": "admin", "key": None}
    mine = client.get("/api/v1/whoami", headers=bearer(key["key"])).json()
    assert (
        mine["role"] == "key" and mine["key"]["id"] == key["id"] and "key_hash" not in mine["key"]
    )
    assert client.get("/api/v1/whoami").status_code == 401


def test_timeseries_is_scoped_to_the_calling_key(client: TestClient) -> None:
    one, two = new_key(client, name="one"), new_key(client, name="two")
    for key in (one, two, two):
        client.post(
            "/api/v1/generate", headers=bearer(key["key"]), json={"model_id": "demo", "prompt": "x"}
        )
    own = client.get("/api/v1/usage/timeseries?group_by=key", headers=bearer(two["key"])).json()
    assert [(s["name"], s["totals"]["requests"]) for s in own["series"]] == [(two["id"], 2)]
    everyone = client.get("/api/v1/usage/timeseries?group_by=key", headers=ADMIN).json()
    assert everyone["totals"]["requests"] == 3 and len(everyone["buckets"]) == 25
    only = client.get(f"/api/v1/usage/timeseries?key_id={one['id']}", headers=ADMIN).json()
    assert only["totals"]["requests"] == 1


def test_timeseries_point_limit_is_the_config_field(client: TestClient) -> None:
    fits = "since=2026-01-01T00:00:00Z&until=2026-02-11T16:00:00Z&bucket=hour"  # 1000 hours
    assert client.get(f"/api/v1/usage/timeseries?{fits}", headers=ADMIN).status_code == 200
    one_more = fits.replace("T16:00:00Z", "T16:00:01Z")  # 1001 buckets
    over = client.get(f"/api/v1/usage/timeseries?{one_more}", headers=ADMIN)
    assert over.status_code == 400 and over.json()["error"]["code"] == "too_many_points"
    assert "ui.max_points" in over.json()["error"]["message"]
    docs = client.get("/openapi.json").json()["paths"]["/api/v1/usage/timeseries"]["get"]
    assert {p["name"] for p in docs["parameters"]} >= {"since", "until", "bucket", "group_by"}
    assert "ui.max_points" in docs["description"]
    with pytest.raises(ValueError, match="max_points"):
        GatewayConfig.model_validate({"ui": {"max_points": 0}})
    with pytest.raises(ValueError, match="extra"):
        GatewayConfig.model_validate({"ui": {"max_pointz": 10}})


def test_ui_is_served_with_its_own_csp_and_api_keeps_the_strict_one(client: TestClient) -> None:
    page = client.get("/ui/")
    assert page.status_code == 200 and 'id="app"' in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp and "http" not in csp
    assert client.get("/", follow_redirects=False).headers["location"] == "/ui/"
    api_csp = client.get("/api/v1/status").headers["content-security-policy"]
    assert api_csp.startswith("default-src 'none'")
    assert client.get("/ui/nothing-here.js").status_code == 404


def test_mount_needs_a_build(tmp_path: Path) -> None:
    app = FastAPI()
    assert mount_console(app, tmp_path) is False
    (tmp_path / "index.html").write_text("<!doctype html>")
    assert mount_console(app, tmp_path) is True
