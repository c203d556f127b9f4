"""The tail every generation route shares: stream it as SSE, or call once and shape JSON."""

from collections.abc import Callable
from typing import Any

from starlette.responses import Response

from serve_app.access.auth import RequestContext
from serve_app.contracts.wire import GenerationOutput, GenerationParams, StreamChunk
from serve_app.core.catalog import ModelRoute
from serve_app.core.gateway import Gateway
from serve_app.http.routes.native import json_response
from serve_app.http.sse import SSEFormat, sse_response


async def respond(
    gateway: Gateway,
    ctx: RequestContext,
    admitted: tuple[ModelRoute, GenerationParams],
    stream: bool,
    sse_format: Callable[[StreamChunk, str | None], SSEFormat],
    body_of: Callable[[GenerationOutput, str | None], dict[str, Any]],
) -> Response:
    """`sse_format` gets the first chunk (some APIs put its token counts in the opening).
    Both get the id of the fallback model that answered, or None when the requested one did."""
    route, params = admitted
    if stream:
        chunks, first = await gateway.open_stream(route, params, ctx)
        return sse_response(chunks, first, sse_format(first, _fallback_name(route, chunks.route)))
    used, output, _, _ = await gateway.complete(route, params, ctx)
    return json_response(body_of(output, _fallback_name(route, used)))


def _fallback_name(requested: ModelRoute, used: ModelRoute) -> str | None:
    return None if used is requested else used.model_id
