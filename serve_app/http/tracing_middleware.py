"""The request's server span (installed only when tracing is on): continues an incoming W3C
`traceparent`, is current while the route runs (so deployment-call spans are its children),
and ends when the response, streamed or not, has been sent."""

from typing import Any

from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve_app.contracts.tracing import Tracing

PROPAGATED = (b"traceparent", b"tracestate")


class TracingMiddleware:
    def __init__(self, app: ASGIApp, tracing: Tracing) -> None:
        self.app = app
        self.tracing = tracing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carrier = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope["headers"]
            if name in PROPAGATED
        }
        state = scope.get("state") or {}
        attributes: dict[str, Any] = {
            "http.request.method": scope["method"],
            "url.path": scope["path"],
            "llm_gateway.request_id": state.get("request_id", ""),
        }
        name = f"{scope['method']} {scope['path']}"
        with self.tracing.span(name, SpanKind.SERVER, attributes, carrier) as span:

            async def send_status(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_status(Status(StatusCode.ERROR))
                await send(message)

            await self.app(scope, receive, send_status)
            route = scope.get("route")
            template = getattr(route, "path", None)
            if template:  # the route's template, not the path (ids stay out of the name)
                span.set_attribute("http.route", template)
                span.update_name(f"{scope['method']} {template}")
