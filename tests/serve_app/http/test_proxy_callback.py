"""`serve_app.http.proxy_callback`: the middleware Ray wraps around its own HTTP servers."""

from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from serve_app.http.proxy_callback import DropMalformedRequestId, request_id_middlewares


def client(answer_probes: bool) -> tuple[TestClient, list[Any]]:
    seen: list[Any] = []

    async def anything(request: Request) -> JSONResponse:
        seen.append((request.url.path, request.headers.get("x-request-id")))
        return JSONResponse({"app": True})

    app = Starlette(
        routes=[Route("/{path:path}", anything, methods=["GET", "POST"])],
        middleware=[Middleware(DropMalformedRequestId, answer_probes=answer_probes)],
    )
    return TestClient(app), seen


def test_in_a_replica_the_health_probe_never_reaches_ray_or_the_app() -> None:
    test_client, seen = client(answer_probes=True)
    response = test_client.get("/api/v1/health", headers={"x-request-id": "probe-1"})
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert response.headers["x-request-id"] == "probe-1"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"
    assert seen == []
    fresh = test_client.get("/api/v1/health", headers={"x-request-id": "bad id!"})
    assert fresh.headers["x-request-id"] != "bad id!" and len(fresh.headers["x-request-id"]) == 32


def test_other_paths_and_serves_proxy_go_through_with_bad_ids_dropped() -> None:
    test_client, seen = client(answer_probes=True)
    assert test_client.get("/api/v1/ready").json() == {"app": True}
    assert test_client.post("/api/v1/health").json() == {"app": True}
    proxy_client, proxy_seen = client(answer_probes=False)
    assert proxy_client.get("/api/v1/health", headers={"x-request-id": "bad id!"}).json() == {
        "app": True
    }
    assert seen == [("/api/v1/ready", None), ("/api/v1/health", None)]
    assert proxy_seen == [("/api/v1/health", None)]


def test_outside_ray_the_callback_does_not_answer_probes() -> None:
    [middleware] = request_id_middlewares()
    built = middleware.cls(None, *middleware.args, **middleware.kwargs)  # type: ignore[misc]
    assert built.answer_probes is False
