"""The native API (`/api/v1`): thin routes that validate, call the gateway, shape the answer."""

import json
from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from serve_app.access.auth import RequestContext
from serve_app.core.catalog import ModelRoute
from serve_app.core.gateway import Gateway
from serve_app.core.streaming import StreamResult
from serve_app.http.formats import SSE_DONE, sse_data
from serve_app.http.middleware import HEALTH_BODY
from serve_app.http.schemas.native import (
    BatchGenerateRequest,
    BatchGenerateResponse,
    ErrorResponse,
    GenerateRequest,
    GenerateResponse,
    HealthResponse,
    ModelInfo,
    ModelList,
    ReadyResponse,
    StatusResponse,
)
from serve_app.http.sse import SSEFormat, sse_response

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        400: "Invalid request",
        401: "Missing or invalid API key",
        402: "Budget spent",
        403: "Model not allowed for this key",
        404: "Unknown model",
        413: "Body too large",
        415: "Not JSON",
        429: "Rate limited",
        502: "Upstream failed",
        503: "Unavailable",
        504: "Upstream timed out",
    }.items()
}

router = APIRouter(prefix="/api/v1", tags=["native"])


async def get_gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


async def request_id(request: Request) -> str:
    return str(request.state.request_id)


async def get_context(request: Request) -> RequestContext:
    """Authenticate the caller (401 on a missing/unknown/disabled key when auth is on)."""
    gateway: Gateway = request.app.state.gateway
    return await gateway.admission.identify(request.headers, request.scope["state"])


def json_response(body: object, status_code: int = 200) -> Response:
    """Encode once, without re-validating what the gateway already shaped."""
    payload = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    return Response(payload, status_code, media_type="application/json")


@router.get("/health", response_model=HealthResponse)
async def health() -> Response:
    # Answered by RequestContextMiddleware before routing; kept for the API's schema.
    return Response(HEALTH_BODY, media_type="application/json")


@router.get("/ready", response_model=ReadyResponse, responses={503: {"model": ReadyResponse}})
async def ready(gateway: Gateway = Depends(get_gateway)) -> Response:
    is_ready, not_ready = await gateway.probe.readiness()
    return json_response({"ready": is_ready, "not_ready": not_ready}, 200 if is_ready else 503)


@router.get("/status", response_model=StatusResponse)
async def status(request: Request, gateway: Gateway = Depends(get_gateway)) -> Response:
    """Admin only (with auth on), unless `security.public_status`."""
    config = gateway.config
    if config.auth.enabled and not config.security.public_status:
        (await get_context(request)).require_admin()
    return json_response(await gateway.status())


@router.get("/models", response_model=ModelList, responses=ERRORS)
async def list_models(
    gateway: Gateway = Depends(get_gateway), _: RequestContext = Depends(get_context)
) -> Response:
    await gateway.adapters.sync()
    return json_response({"models": await gateway.probe.list_models()})


@router.get("/models/{model_id}", response_model=ModelInfo, responses=ERRORS)
async def get_model(
    model_id: str,
    gateway: Gateway = Depends(get_gateway),
    _: RequestContext = Depends(get_context),
) -> Response:
    await gateway.adapters.sync()
    return json_response(await gateway.probe.get_model(model_id))


def native_sse(gateway: Gateway, route: ModelRoute, used: ModelRoute, rid: str) -> SSEFormat:
    """`data: {"text": delta}` frames, then the full native response, then `[DONE]`."""

    def end(result: StreamResult) -> bytes:
        body = gateway.shape_response(
            used, result.output(), result.latency_ms, result.cost_usd, rid, requested=route
        )
        body["metrics"]["time_to_first_token_ms"] = round(result.first_token_ms or 0.0, 3)
        return sse_data(body) + SSE_DONE

    return SSEFormat(
        start=b"",
        delta=lambda chunk: sse_data({"text": chunk.text}) if chunk.text else b"",
        end=end,
        error=lambda error: sse_data({"error": error.to_dict()}) + SSE_DONE,
    )


@router.post(
    "/generate",
    response_model=GenerateResponse,
    responses={**ERRORS, 200: {"content": {"text/event-stream": {}}}},
)
async def generate(
    body: GenerateRequest,
    gateway: Gateway = Depends(get_gateway),
    ctx: RequestContext = Depends(get_context),
) -> Response:
    ctx.apply_cache_control(None, body.cache)
    if not body.stream:
        return json_response(await gateway.generate(ctx, body.model_id, body.generation_fields()))
    route, params = await gateway.admitted(ctx, body.model_id, **body.generation_fields())
    stream, first = await gateway.open_stream(route, params, ctx)
    return sse_response(stream, first, native_sse(gateway, route, stream.route, ctx.request_id))


@router.post("/generate/batch", response_model=BatchGenerateResponse, responses=ERRORS)
async def generate_batch(
    body: BatchGenerateRequest,
    gateway: Gateway = Depends(get_gateway),
    ctx: RequestContext = Depends(get_context),
) -> Response:
    items = [(item.model_id, item.generation_fields(), item.cache) for item in body.requests]
    return json_response(await gateway.generate_batch(ctx, items))
