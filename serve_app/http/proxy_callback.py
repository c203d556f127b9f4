"""Middleware for Ray Serve's own HTTP servers: one well-formed request id per response.

Set by `serve_app.runtime.launch` (and needed in the environment of any Ray cluster serving the
gateway):
RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH=serve_app.http.proxy_callback:request_id_middlewares

Ray Serve wraps every HTTP server it runs (its proxy, and the ingress replica's own server
under direct ingress / HAProxy) in `RequestIdMiddleware` (ray/serve/_private/http_util.py),
which puts the caller's X-Request-ID, whatever it is, on the response, or makes one. The
gateway replaces a malformed id and so adds a second header line. Middlewares returned by
the callback named in RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH wrap *outside* Ray's, so
this one drops an id the gateway would refuse before Ray reads it: Ray then makes a fresh
id, echoes it once, and the gateway (which takes a well-formed id as the caller's) keeps it.

In an ingress replica's own server (the fast path) it also answers the liveness probe.
"""

from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from serve_app.http.middleware import (
    HEALTH_PATH,
    REQUEST_ID_HEADER,
    REQUEST_ID_PATTERN,
    answer_health,
    health_headers,
    request_id_from,
)

REPLICA_ACTOR_PREFIX = "SERVE_REPLICA::"


def in_serve_replica() -> bool:
    """Whether this process is a Serve replica (the ingress's own server under direct
    ingress), not Serve's proxy: only a replica may answer for the gateway's liveness."""
    import ray

    if not ray.is_initialized():
        return False
    return (ray.get_runtime_context().get_actor_name() or "").startswith(REPLICA_ACTOR_PREFIX)


class DropMalformedRequestId:
    """Also answers `GET /api/v1/health` in an ingress replica's own server (the fast
    path), before Ray's per-request replica work (request metadata, queue accounting,
    metrics) and the app stack: the probe then costs what a bare ASGI answer costs. The
    answer is the app's own (body, security headers, one X-Request-ID)."""

    def __init__(self, app: ASGIApp, answer_probes: bool | None = None) -> None:
        self.app = app
        self.answer_probes = in_serve_replica() if answer_probes is None else answer_probes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = scope["headers"]
            if (
                self.answer_probes
                and scope["path"] == HEALTH_PATH
                and scope["method"] in ("GET", "HEAD")
            ):
                await answer_health(send, health_headers(request_id_from(headers)[0]))
                return
            kept = [
                (name, value)
                for name, value in headers
                if name != REQUEST_ID_HEADER or REQUEST_ID_PATTERN.match(value)
            ]
            if len(kept) != len(headers):
                scope = {**scope, "headers": kept}
        await self.app(scope, receive, send)


def request_id_middlewares() -> list[Middleware]:
    """The callback Ray calls for the middlewares of its proxy and direct-ingress servers."""
    return [Middleware(DropMalformedRequestId)]
