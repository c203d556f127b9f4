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
"""

from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from serve_app.http.middleware import REQUEST_ID_HEADER, REQUEST_ID_PATTERN


class DropMalformedRequestId:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = scope["headers"]
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
