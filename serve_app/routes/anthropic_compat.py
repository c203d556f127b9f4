"""Anthropic-compatible route: `/v1/messages` (errors in Anthropic's own shape)."""

from typing import Any

from fastapi import APIRouter, Depends
from starlette.responses import Response

from serve_app.auth import RequestContext
from serve_app.formats import AnthropicStream, anthropic_message
from serve_app.gateway import Gateway
from serve_app.routes.native import get_context, get_gateway, json_response
from serve_app.routes.sse import SSEFormat, sse_response
from serve_app.schemas.anthropic import AnthropicErrorResponse, AnthropicMessage, MessagesRequest

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
    rid = ctx.request_id
    route, params = gateway.prepare(
        body.model,
        rid,
        messages=body.chat_messages(),
        max_tokens=body.max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        stop=body.stop_list(),
    )
    await gateway.admission.admit(ctx, route, params)
    message_id = f"msg_{rid}"
    if body.stream:
        stream, first = await gateway.open_stream(route, params, ctx)
        fmt = AnthropicStream(body.model, message_id)
        sse = SSEFormat(
            start=fmt.start(first.input_tokens),
            delta=fmt.delta,
            end=lambda r: fmt.finish(r.finish_reason, r.output_tokens),
            error=fmt.error,
        )
        return sse_response(stream, first, sse)
    output, _, _ = await gateway.call_model(route, params, ctx)
    return json_response(anthropic_message(output, model=body.model, message_id=message_id))
