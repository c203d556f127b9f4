"""Pure-ASGI middleware: request ids, security headers, body checks, last-resort 500s.

Pure ASGI (not `BaseHTTPMiddleware`) because it runs on every request: no extra task, no
body copy. It sits outside FastAPI's exception handling, so it also turns an unexpected
exception into the one error shape, with the request id, and never a stack trace.

Neither uvicorn nor Ray Serve's proxy limits how long a client may take to send a body, so
the middleware gives the whole body a deadline: a client that trickles it (slow-loris) or
stops half-way gets 408 and the connection is closed, instead of holding a request slot.
"""

import asyncio
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from serve_app.access.auth import Network, came_over_https, client_ip
from serve_app.contracts.errors import (
    GatewayError,
    InternalError,
    PayloadTooLargeError,
    RequestTimeoutError,
    UnsupportedMediaTypeError,
)
from serve_app.http.error_handlers import error_response

logger = logging.getLogger("ray.serve")
access_logger = logging.getLogger("llm_gateway.access")
# Liveness and readiness probes (every few seconds per load balancer) are not access-logged.
HEALTH_PATH = "/api/v1/health"
HEALTH_BODY = b'{"status":"ok"}'
PROBE_PATHS = frozenset({HEALTH_PATH, "/api/v1/ready"})


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def answer_health(send: Send, headers: list[tuple[bytes, bytes]]) -> None:
    """`GET /api/v1/health` (the route documents it) answered before the app stack."""
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(HEALTH_BODY)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": HEALTH_BODY})


REQUEST_ID_HEADER = b"x-request-id"
REQUEST_ID_PATTERN = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"x-xss-protection", b"0"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
)
DOCS_CSP = (
    b"content-security-policy",
    b"default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    b"style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; img-src 'self' data: "
    b"https://fastapi.tiangolo.com; frame-ancestors 'none'",
)
# The console (/ui): its own scripts, styles and API calls only; no inline script or style
# element, no CDN, no framing, no form posts elsewhere.
UI_CSP = (
    b"content-security-policy",
    b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    b"connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; "
    b"form-action 'none'; frame-ancestors 'none'",
)
NO_STORE = (b"cache-control", b"no-store")
CONNECTION_CLOSE = (b"connection", b"close")
DEFAULT_BODY_TIMEOUT_S = 60.0


def request_id_from(headers: list[tuple[bytes, bytes]]) -> tuple[str, bool]:
    """(request id, whether it is the caller's own): theirs when well formed, else a new one."""
    for name, value in headers:
        if name == REQUEST_ID_HEADER:
            if REQUEST_ID_PATTERN.match(value):
                return value.decode("ascii"), True
            break
    return uuid.uuid4().hex, False


def _joined_header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """Every line of a repeatable header, joined with commas in order (RFC 9110 5.3)."""
    values = [value for key, value in headers if key == name]
    return b",".join(values) if values else None


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


class RequestContextMiddleware:
    """`proxy_echoes_request_id`: behind Ray Serve's proxy, which always puts the incoming
    X-Request-ID (or one it made) on the response itself; we then add ours only when we
    replaced a malformed one, so a response never carries the same id twice."""

    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        proxy_echoes_request_id: bool = False,
        trusted_proxies: tuple[Network, ...] = (),
        hsts_max_age_s: int = 0,
        access_log: bool = False,
        body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s
        self.proxy_echoes_request_id = proxy_echoes_request_id
        self.trusted_proxies = trusted_proxies
        self.hsts = (
            b"strict-transport-security",
            f"max-age={hsts_max_age_s}; includeSubDomains".encode(),
        )
        self.access_log = access_log

    def _client(self, scope: Scope) -> tuple[str, bool]:
        peer = (scope.get("client") or ("", 0))[0] or ""
        forwarded_for = _joined_header(scope["headers"], b"x-forwarded-for")
        forwarded_proto = _joined_header(scope["headers"], b"x-forwarded-proto")
        ip = client_ip(
            peer, forwarded_for.decode("latin-1") if forwarded_for else None, self.trusted_proxies
        )
        https = came_over_https(
            scope.get("scheme", "http"),
            peer,
            forwarded_proto.decode("latin-1") if forwarded_proto else None,
            self.trusted_proxies,
        )
        return ip, https

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        request_id, from_caller = request_id_from(headers)
        ip, https = self._client(scope)
        state = scope.setdefault("state", {})
        log: dict[str, Any] = {}
        state.update(request_id=request_id, client_ip=ip, log=log, rate_limit_headers=[])
        echo = not (from_caller and self.proxy_echoes_request_id)
        extra = self._response_headers(scope["path"], request_id, echo)
        if https:
            extra.append(self.hsts)
        if scope["path"] == HEALTH_PATH and scope["method"] in ("GET", "HEAD"):
            await answer_health(send, extra)  # liveness: no routing, no app stack
            return
        started = False
        began = time.perf_counter()
        body = BodyGuard(receive, self.max_body_bytes, self.body_timeout_s)

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                log["status"] = message["status"]
                message["headers"] = [
                    *message.get("headers", ()),
                    *extra,
                    *state["rate_limit_headers"],
                    *([CONNECTION_CLOSE] if body.refused else []),
                ]
            await send(message)
            if (
                message["type"] == "http.response.body"
                and not message.get("more_body")
                and self.access_log
                and scope["path"] not in PROBE_PATHS
            ):
                self._log_access(scope, request_id, ip, log, began)

        try:
            error = self._precheck(scope["method"], headers)
            if error is not None:
                body.refused = True  # never read: close rather than drain it
                await error_response(error, scope["path"])(scope, receive, send_with_headers)
                return
            await self.app(scope, body.receive, send_with_headers)
        except Exception as exc:
            if started:
                raise
            if not isinstance(exc, GatewayError):
                logger.exception("unhandled error serving request %s", request_id)
                exc = InternalError("The gateway failed to serve the request.")
            await error_response(exc, scope["path"])(scope, receive, send_with_headers)

    @staticmethod
    def _log_access(
        scope: Scope, request_id: str, ip: str, log: dict[str, Any], began: float
    ) -> None:
        line = {
            "request_id": request_id,
            "method": scope["method"],
            "path": scope["path"],
            "client_ip": ip,
            "latency_ms": round((time.perf_counter() - began) * 1000, 3),
            **log,
        }
        access_logger.info(json.dumps(line, ensure_ascii=False, separators=(",", ":")))

    @staticmethod
    def _response_headers(path: str, request_id: str, echo: bool) -> list[tuple[bytes, bytes]]:
        headers = [NO_STORE]
        if echo:
            headers.append((REQUEST_ID_HEADER, request_id.encode("ascii")))
        if path.startswith(("/docs", "/redoc")):
            return [*headers, *SECURITY_HEADERS[:-1], DOCS_CSP]
        if path == "/ui" or path.startswith("/ui/"):
            return [*headers, *SECURITY_HEADERS[:-1], UI_CSP]
        return [*headers, *SECURITY_HEADERS]

    def _precheck(self, method: str, headers: list[tuple[bytes, bytes]]) -> GatewayError | None:
        if method not in BODY_METHODS:
            return None
        length = _header(headers, b"content-length")
        has_body = _header(headers, b"transfer-encoding") is not None or length not in (None, b"0")
        if not has_body:
            return None  # a bodiless POST (e.g. .../disable) needs no content type
        content_type = (_header(headers, b"content-type") or b"").split(b";")[0].strip()
        if content_type.lower() != b"application/json":
            return UnsupportedMediaTypeError(
                "Send the request body as JSON with 'Content-Type: application/json'.",
                code="unsupported_media_type",
            )
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            return too_large(self.max_body_bytes)
        return None


def health_headers(request_id: str) -> list[tuple[bytes, bytes]]:
    """The headers of the health answer: the app's security headers and the request id."""
    return RequestContextMiddleware._response_headers(HEALTH_PATH, request_id, True)


def too_large(max_body_bytes: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"The request body exceeds {max_body_bytes} bytes.", code="body_too_large"
    )


class BodyGuard:
    """The app's `receive` while the request body arrives: counts its bytes (for bodies
    without, or lying in, Content-Length: 413) and holds the whole body to one deadline from
    the request's start (408). Once the body is complete it passes messages straight through
    (a streaming response waits on `receive` for the disconnect). `refused`: the body was cut
    off, so the response must close the connection."""

    def __init__(self, receive: Receive, max_bytes: int, timeout_s: float) -> None:
        self._receive = receive
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.deadline = asyncio.get_running_loop().time() + timeout_s
        self.received = 0
        self.complete = False
        self.refused = False

    async def receive(self) -> Message:
        if self.complete:
            return await self._receive()
        try:
            async with asyncio.timeout_at(self.deadline):  # no extra task, unlike wait_for
                message = await self._receive()
        except TimeoutError:
            raise self._refuse(
                RequestTimeoutError(
                    f"The request body did not arrive within {self.timeout_s:g} s.",
                    code="body_timeout",
                )
            ) from None
        if message["type"] != "http.request":
            self.complete = True  # http.disconnect
            return message
        self.received += len(message.get("body", b""))
        if self.received > self.max_bytes:
            raise self._refuse(too_large(self.max_bytes))
        self.complete = not message.get("more_body", False)
        return message

    def _refuse(self, error: GatewayError) -> GatewayError:
        self.refused = True
        return error
