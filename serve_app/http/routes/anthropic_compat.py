"""Anthropic-compatible route: `/v1/messages` (errors in Anthropic's own shape)."""

from typing import Any

from fastapi import APIRouter, Depends
from starlette.responses import Response

from serve_app.access.auth import RequestContext
from serve_app.contracts.wire import StreamChunk
from serve_app.core.gateway import Gateway
from serve_app.http.formats_anthropic import AnthropicStream, anthropic_message
from serve_app.http.routes.native import get_context, get_gateway, json_response
from serve_app.http.routes.responding import respond
from serve_app.http.schemas.anthropic import (
    AnthropicErrorResponse,
    AnthropicMessage,
    CountTokensRequest,
    MessagesRequest,
    TokenCount,
)
from serve_app.http.sse import SSEFormat

router = APIRouter(prefix="/v1", tags=["anthropic"])
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": AnthropicErrorResponse, "description": text}
    for code, text in {
        400: "Invalid request",
        404: "Unknown model",
        413: "Too large",
        429: "Rate limited",
        500: "API error",
        502: "Upstream failed",
        503: "Overloaded",
        504: "Timeout",
    }.items()
}
STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "JSON, or SSE events"}
}


@router.post("/messages", response_model=AnthropicMessage, responses={**ERRORS, **STREAM_DOC})
async def messages(
    body: MessagesRequest,
    gateway: Gateway = Depends(get_gateway),
    ctx: RequestContext = Depends(get_context),
) -> Response:
    ctx.apply_cache_control(None, body.cache)
    admitted = await gateway.admitted(ctx, body.model, **body.generation_fields())
    message_id = f"msg_{ctx.request_id}"

    def sse(first: StreamChunk, served: str | None) -> SSEFormat:
        fmt = AnthropicStream(served or body.model, message_id)
        return SSEFormat(
            start=fmt.start(first.input_tokens),
            delta=fmt.chunk,
            end=lambda r: fmt.finish(r.finish_reason, r.output_tokens, r.input_tokens),
            error=fmt.error,
        )

    return await respond(
        gateway,
        ctx,
        admitted,
        body.stream,
        sse,
        lambda out, served: anthropic_message(
            out, model=served or body.model, message_id=message_id
        ),
    )


@router.post("/messages/count_tokens", response_model=TokenCount, responses=ERRORS)
async def count_tokens(
    body: CountTokensRequest,
    gateway: Gateway = Depends(get_gateway),
    ctx: RequestContext = Depends(get_context),
) -> Response:
    """Anthropic's token counting, for every model: exact for local and Claude models, an
    estimate (`"estimated": true`) for OpenAI models, which have no counting endpoint."""
    counted = await gateway.count_tokens(
        ctx,
        body.model,
        messages=body.chat_messages(),
        options=body.options(),
        image_at=body.image_locations(),
    )
    return json_response(counted)
