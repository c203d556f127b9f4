"""Commercial catalog, provider checks and usage (`/api/v1/commercial/...`)."""

import datetime as dt

from fastapi import APIRouter, Depends, Query
from starlette.responses import Response

from serve_app.access.auth import RequestContext
from serve_app.core.gateway import Gateway
from serve_app.http.routes.native import ERRORS, get_context, get_gateway, json_response
from serve_app.http.schemas.native import (
    CommercialModelList,
    ProviderCheckList,
    UsageResponse,
)

router = APIRouter(prefix="/api/v1/commercial", tags=["commercial"])


def epoch(value: dt.datetime | None) -> float | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.timestamp()


def require_operator(gateway: Gateway, ctx: RequestContext) -> None:
    """Provider checks and organisation-wide spend: the admin's, unless auth is off."""
    if gateway.config.auth.enabled:
        ctx.require_admin()


@router.get("/models", response_model=CommercialModelList)
async def commercial_models(
    gateway: Gateway = Depends(get_gateway), _: RequestContext = Depends(get_context)
) -> Response:
    return json_response({"models": await gateway.probe.list_models("commercial")})


@router.get("/test", response_model=ProviderCheckList)
async def test_providers(
    gateway: Gateway = Depends(get_gateway), ctx: RequestContext = Depends(get_context)
) -> Response:
    require_operator(gateway, ctx)
    return json_response({"providers": await gateway.probe.test_providers()})


@router.get("/usage", response_model=UsageResponse, responses=ERRORS)
async def commercial_usage(
    since: dt.datetime | None = Query(None, description="ISO-8601 start (inclusive)."),
    until: dt.datetime | None = Query(None, description="ISO-8601 end (exclusive)."),
    gateway: Gateway = Depends(get_gateway),
    ctx: RequestContext = Depends(get_context),
) -> Response:
    require_operator(gateway, ctx)
    rows = await gateway.ledger.summarize(epoch(since), epoch(until))
    rows = [row for row in rows if row["provider"] != "local"]
    return json_response(usage_report(rows, since, until))


def usage_report(rows: list[dict], since: dt.datetime | None, until: dt.datetime | None) -> dict:
    providers: dict[str, dict] = {}
    for row in rows:
        total = providers.setdefault(
            row["provider"],
            {"requests": 0, "errors": 0, "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0},
        )
        for field in ("requests", "errors", "input_tokens", "output_tokens", "cost_usd"):
            total[field] += row[field]
    for total in providers.values():
        total["cost_usd"] = round(total["cost_usd"], 9)
    return {
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "providers": providers,
        "models": rows,
    }
