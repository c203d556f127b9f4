"""OpenAI's Responses API: `POST /v1/responses`, `GET` and `DELETE /v1/responses/{id}`.

A request becomes a chat generation (instructions as a system turn, input items as turns,
function tools, `text.format`), so every model answers, streamed or not. With `store: true`
(the default, as OpenAI's) the response and its conversation are kept in the ledger's
database, visible only to the key that made it; `previous_response_id` continues it.
"""

import asyncio
import json
import time
import uuid
from collections.abc import Coroutine
from typing import Any

from fastapi import APIRouter, Depends
from starlette.responses import Response

from serve_app.access.auth import RequestContext
from serve_app.contracts.errors import NotFoundError
from serve_app.contracts.wire import ChatMessage, GenerationOutput
from serve_app.core.gateway import Gateway
from serve_app.http.responses_format import (
    ResponseShell,
    ResponsesStream,
    answer_turn,
    conversation_from_json,
    conversation_json,
    response_body,
)
from serve_app.http.routes.native import ERRORS, get_context, get_gateway, json_response
from serve_app.http.schemas.responses import ResponseRequest
from serve_app.http.sse import SSEFormat, sse_response

router = APIRouter(prefix="/v1", tags=["openai"])
STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "JSON, or SSE events"}
}


def _not_found(response_id: str) -> NotFoundError:
    return NotFoundError(
        f"No response with id {response_id!r} is stored for this API key.",
        param="response_id",
        code="response_not_found",
    )


async def _owned(gateway: Gateway, ctx: RequestContext, response_id: str) -> tuple[str, str]:
    """(body JSON, conversation JSON) of a stored response the caller may see; else 404."""
    row = await asyncio.to_thread(gateway.responses.get, response_id)
    if row is None or (row[0] != ctx.key_id and not ctx.is_admin):
        raise _not_found(response_id)
    return row[1], row[2]


def _echo(body: ResponseRequest) -> dict[str, Any]:
    """The request fields a response object repeats."""
    return {
        "instructions": body.instructions,
        "max_output_tokens": body.max_output_tokens,
        "previous_response_id": body.previous_response_id,
        "temperature": body.temperature,
        "top_p": body.top_p,
        "tools": body.tools or [],
        "tool_choice": body.tool_choice or "auto",
        "parallel_tool_calls": body.parallel_tool_calls is not False,
        "text": body.text.model_dump(by_alias=True, exclude_none=True)
        if body.text
        else {"format": {"type": "text"}},
        "store": body.store,
        "metadata": body.metadata or {},
        "user": body.user,
        "truncation": "disabled",
    }


def _spawn(gateway: Gateway, work: Coroutine[Any, Any, None]) -> None:
    task = asyncio.get_running_loop().create_task(work)
    gateway.background.add(task)
    task.add_done_callback(gateway.background.discard)


async def _turns(
    gateway: Gateway, ctx: RequestContext, body: ResponseRequest
) -> tuple[ChatMessage, ...]:
    """The conversation so far (a stored response's, for `previous_response_id`), then
    this request's input."""
    history: tuple[ChatMessage, ...] = ()
    if body.previous_response_id is not None:
        _, stored = await _owned(gateway, ctx, body.previous_response_id)
        history = conversation_from_json(stored)
    return history + body.input_messages()


def _stored_row(
    shell: ResponseShell,
    ctx: RequestContext,
    turns: tuple[ChatMessage, ...],
    output: GenerationOutput,
) -> tuple[str, str, float, str, str, str]:
    return (
        shell.id,
        ctx.key_id,
        float(shell.created_at),
        shell.model,
        json.dumps(response_body(shell, output), ensure_ascii=False),
        conversation_json((*turns, answer_turn(output))),
    )


@router.post("/responses", responses={**ERRORS, **STREAM_DOC})
async def create_response(
    body: ResponseRequest,
    gateway: Gateway = Depends(get_gateway),
    ctx: RequestContext = Depends(get_context),
) -> Response:
    ctx.apply_cache_control(None, body.cache)
    turns = await _turns(gateway, ctx, body)
    system = (ChatMessage("system", body.instructions),) if body.instructions else ()
    route, params = await gateway.admitted(
        ctx,
        body.model,
        messages=system + turns,
        max_tokens=body.max_output_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        options=body.options(),
    )
    shell = ResponseShell(f"resp_{uuid.uuid4().hex}", int(time.time()), body.model, _echo(body))

    async def store(output: GenerationOutput) -> None:
        if body.store:
            row = _stored_row(shell, ctx, turns, output)
            await asyncio.to_thread(gateway.responses.put, row)

    if body.stream:
        chunks, first = await gateway.open_stream(route, params, ctx)
        fmt = ResponsesStream(shell, lambda output: _spawn(gateway, store(output)))
        sse = SSEFormat(
            start=fmt.start(),
            delta=fmt.delta,
            end=lambda r: fmt.end(r.finish_reason, r.input_tokens, r.output_tokens),
            error=fmt.error,
        )
        return sse_response(chunks, first, sse)
    _, output, _, _ = await gateway.complete(route, params, ctx)
    await store(output)
    return json_response(response_body(shell, output))


@router.get("/responses/{response_id}", responses=ERRORS)
async def get_response(
    response_id: str,
    gateway: Gateway = Depends(get_gateway),
    ctx: RequestContext = Depends(get_context),
) -> Response:
    stored, _ = await _owned(gateway, ctx, response_id)
    return json_response(json.loads(stored))


@router.delete("/responses/{response_id}", responses=ERRORS)
async def delete_response(
    response_id: str,
    gateway: Gateway = Depends(get_gateway),
    ctx: RequestContext = Depends(get_context),
) -> Response:
    await _owned(gateway, ctx, response_id)
    await asyncio.to_thread(gateway.responses.delete, response_id)
    return json_response({"id": response_id, "object": "response.deleted", "deleted": True})
