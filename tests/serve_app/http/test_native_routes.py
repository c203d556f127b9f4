"""The native API through FastAPI's TestClient with fake model handles."""

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from serve_app.contracts.config import GatewayConfig
from serve_app.contracts.errors import UpstreamError
from serve_app.contracts.wire import GenerationOutput, GenerationParams
from serve_app.core.gateway import Gateway
from serve_app.http.app import create_app
from tests.fakes.handles import FakeHandle

ERROR_KEYS = {"message", "type", "param", "code"}


def echo(params: GenerationParams) -> GenerationOutput | Exception:
    if params.prompt == "explode":
        return UpstreamError("replica died", code="replica_failed")
    if params.prompt == "crash":
        return RuntimeError("secret internals")
    return GenerationOutput(params.prompt.upper(), 3, 2, "stop", "demo")


def describe() -> dict[str, Any]:
    return {"metadata": {"context_length": 256, "architecture": "GPT2"}, "average_batch_size": 2.0}


@pytest.fixture
def handle() -> FakeHandle:
    return FakeHandle(generate=echo, describe=describe)


@pytest.fixture
def client(handle: FakeHandle) -> Iterator[TestClient]:
    config = GatewayConfig.model_validate(
        {
            "ingress": {"max_body_bytes": 2048, "max_prompt_chars": 50, "max_batch_items": 3},
            "models": [
                {
                    "id": "demo",
                    "path": "x",
                    "max_new_tokens": 16,
                    "price": {"input_per_million_usd": 1.0, "output_per_million_usd": 2.0},
                }
            ],
            "ledger": {"url": "sqlite://:memory:"},
            "auth": {"enabled": False},
        }
    )
    with TestClient(create_app(Gateway(config, {"demo": handle}))) as test_client:
        yield test_client


def assert_error(response: Any, status: int, error_type: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == ERROR_KEYS
    assert body["error"]["type"] == error_type
    assert response.headers["x-request-id"]
    assert "Traceback" not in response.text
    return dict(body["error"])


def test_generate_shape_cost_and_params_across_the_handle(
    client: TestClient, handle: FakeHandle
) -> None:
    response = client.post(
        "/api/v1/generate",
        json={"prompt": "hi", "model_id": "demo", "max_tokens": 4, "stop": "x"},
        headers={"X-Request-ID": "abc-123"},
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "abc-123"
    body = response.json()
    assert body["text"] == "HI" and body["model_id"] == "demo"
    assert body["metrics"]["total_tokens"] == 5
    assert body["metadata"]["cost_usd"] == pytest.approx((3 * 1.0 + 2 * 2.0) / 1e6)
    (sent,) = handle.generate.calls[-1]  # type: ignore[attr-defined]
    assert (sent.max_tokens, sent.stop, sent.temperature, sent.request_id) == (
        4,
        ("x",),
        1.0,
        "abc-123",
    )


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": "", "model_id": "demo"}, "prompt"),
        ({"prompt": "x" * 51, "model_id": "demo"}, "prompt"),
        ({"prompt": "hi", "model_id": "demo", "max_tokens": 17}, "max_tokens"),
        ({"prompt": "hi", "model_id": "demo", "max_tokens": 0}, "max_tokens"),
        ({"prompt": "hi", "model_id": "demo", "temperature": 2.5}, "temperature"),
        ({"prompt": "hi", "model_id": "demo", "top_p": 0}, "top_p"),
        ({"prompt": "hi", "model_id": "demo", "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"prompt": "hi", "model_id": "demo", "stop": [""]}, "stop"),
        ({"prompt": "hi", "model_id": "demo", "extra": 1}, "extra"),
    ],
)
def test_invalid_requests_are_400_naming_the_field(
    client: TestClient, body: dict[str, Any], param: str
) -> None:
    error = assert_error(client.post("/api/v1/generate", json=body), 400, "invalid_request_error")
    assert (error["param"] or "").startswith(param)


def test_transport_level_errors(client: TestClient) -> None:
    post = client.post
    assert_error(
        post("/api/v1/generate", content=b"{x", headers={"content-type": "application/json"}),
        400,
        "invalid_request_error",
    )
    assert_error(
        post("/api/v1/generate", content=b"a", headers={"content-type": "text/plain"}),
        415,
        "unsupported_media_type",
    )
    big = b'{"prompt": "' + b"a" * 4096 + b'", "model_id": "demo"}'
    assert_error(
        post("/api/v1/generate", content=big, headers={"content-type": "application/json"}),
        413,
        "request_too_large",
    )
    assert_error(
        post("/api/v1/generate", json={"prompt": "a", "model_id": "gpt-9"}), 404, "not_found_error"
    )
    assert_error(client.get("/nowhere"), 404, "not_found_error")
    assert_error(client.delete("/api/v1/generate"), 405, "method_not_allowed")


def test_deployment_failures_keep_the_shape_and_hide_internals(client: TestClient) -> None:
    assert_error(
        client.post("/api/v1/generate", json={"prompt": "explode", "model_id": "demo"}),
        502,
        "upstream_error",
    )
    response = client.post("/api/v1/generate", json={"prompt": "crash", "model_id": "demo"})
    error = assert_error(response, 500, "internal_error")
    assert "secret" not in error["message"]


def test_bad_request_id_is_replaced(client: TestClient) -> None:
    response = client.get("/api/v1/health", headers={"X-Request-ID": "bad id\r\nx: y"})
    assert response.headers["x-request-id"] != "bad id\r\nx: y"
    assert len(response.headers["x-request-id"]) == 32


def test_batch_isolates_item_failures(client: TestClient) -> None:
    items = [{"prompt": "a", "model_id": "demo"}, {"prompt": "a", "model_id": "nope"}]
    results = client.post("/api/v1/generate/batch", json={"requests": items}).json()["results"]
    assert results[0]["text"] == "A"
    assert results[1]["error"]["code"] == "model_not_found"
    too_many = client.post("/api/v1/generate/batch", json={"requests": items * 2})
    assert_error(too_many, 400, "invalid_request_error")


def test_probes_status_and_models(client: TestClient) -> None:
    assert client.get("/api/v1/health").json() == {"status": "ok"}
    assert client.get("/api/v1/ready").json() == {"ready": True, "not_ready": {}}
    client.post("/api/v1/generate", json={"prompt": "a", "model_id": "demo"})
    status = client.get("/api/v1/status").json()
    (model,) = status["models"]
    assert model["requests"] == 1 and model["average_batch_size"] == 2.0
    assert model["latency_p50_ms"] is not None
    assert status["ledger"]["backend"] == "sqlite"
    info = client.get("/api/v1/models/demo").json()
    assert info["limits"]["context_length"] == 256 and info["status"] == "available"


def test_security_headers_on_success_and_error(client: TestClient) -> None:
    for response in (client.get("/api/v1/health"), client.get("/missing")):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["cache-control"] == "no-store"
        assert "default-src 'none'" in response.headers["content-security-policy"]


def test_chunked_body_over_the_limit_is_413(client: TestClient) -> None:
    def chunks() -> Any:
        yield b'{"prompt": "'
        for _ in range(10):
            yield b"a" * 512
        yield b'", "model_id": "demo"}'

    response = client.post(
        "/api/v1/generate", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_error(response, 413, "request_too_large")
