"""OpenAI-compatible routes: `/v1/chat/completions`, `/v1/completions`, `/v1/models`."""

import time
from typing import Any

from fastapi import APIRouter, Depends
from starlette.responses import Response

from serve_app.access.auth import RequestContext
from serve_app.core.gateway import Gateway
from serve_app.http.formats import (
    OpenAIChatStream,
    OpenAICompletionStream,
    openai_chat_completion,
    openai_completion,
    openai_model_list,
)
from serve_app.http.routes.native import ERRORS, get_context, get_gateway, json_response
from serve_app.http.routes.responding import respond
from serve_app.http.schemas.openai import ChatCompletionRequest, CompletionRequest
from serve_app.http.schemas.openai_responses import ChatCompletion, Completion, OpenAIModelList
from serve_app.http.sse import SSEFormat

router = APIRouter(prefix="/v1", tags=["openai"])
STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "JSON, or SSE chunks"}
}


def _openai_sse(fmt: OpenAIChatStream | OpenAICompletionStream) -> SSEFormat:
    return SSEFormat(
        start=fmt.start(),
        delta=fmt.chunk,
        end=lambda r: fmt.finish(r.finish_reason, r.input_tokens, r.output_tokens),
        error=fmt.error,
    )


@router.post("/chat/completions", response_model=ChatCompletion, responses={**ERRORS, **STREAM_DOC})
async def chat_completions(
    body: ChatCompletionRequest,
    gateway: Gateway = Depends(get_gateway),
    ctx: RequestContext = Depends(get_context),
) -> Response:
    ctx.apply_cache_control(None, body.cache)
    admitted = await gateway.admitted(ctx, body.model, **body.generation_fields())
    completion_id, created = f"chatcmpl-{ctx.request_id}", int(time.time())
    return await respond(
        gateway,
        ctx,
        admitted,
        body.stream,
        lambda _, served: _openai_sse(
            OpenAIChatStream(served or body.model, completion_id, created, body.include_usage())
        ),
        lambda out, served: openai_chat_completion(
            out, model=served or body.model, completion_id=completion_id, created=created
        ),
    )


@router.post("/completions", response_model=Completion, responses={**ERRORS, **STREAM_DOC})
async def completions(
    body: CompletionRequest,
    gateway: Gateway = Depends(get_gateway),
    ctx: RequestContext = Depends(get_context),
) -> Response:
    ctx.apply_cache_control(None, body.cache)
    admitted = await gateway.admitted(ctx, body.model, **body.generation_fields())
    completion_id, created = f"cmpl-{ctx.request_id}", int(time.time())
    return await respond(
        gateway,
        ctx,
        admitted,
        body.stream,
        lambda _, served: _openai_sse(
            OpenAICompletionStream(
                served or body.model, completion_id, created, body.include_usage()
            )
        ),
        lambda out, served: openai_completion(
            out, model=served or body.model, completion_id=completion_id, created=created
        ),
    )


@router.get("/models", response_model=OpenAIModelList)
async def models(
    gateway: Gateway = Depends(get_gateway), _: RequestContext = Depends(get_context)
) -> Response:
    await gateway.adapters.sync()
    owners = [
        (r.model_id, "llm-gateway" if r.provider == "local" else r.provider)
        for r in gateway.catalog
    ]
    return json_response(openai_model_list(owners, int(gateway.started_wall)))
