"""Key administration (`/api/v1/admin/keys`, admin key only) and `/api/v1/usage`."""

import datetime as dt
from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import Field
from starlette.responses import Response

from serve_app.access.auth import RequestContext
from serve_app.access.key_cache import KeyCache
from serve_app.access.key_store import KeySpec
from serve_app.contracts.budgets import BudgetPeriod
from serve_app.contracts.errors import PermissionDeniedError
from serve_app.core.gateway import Gateway
from serve_app.http.routes.commercial import epoch, usage_report
from serve_app.http.routes.native import ERRORS, get_context, get_gateway, json_response
from serve_app.http.schemas.native import UsageResponse, WireModel

router = APIRouter(prefix="/api/v1", tags=["admin"])


class CreateKeyRequest(WireModel):
    name: str = Field(min_length=1, max_length=200)
    allowed_models: list[str] = Field(default_factory=list, description="Empty = all models.")
    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)
    budget_usd: float | None = Field(
        None, ge=0, allow_inf_nan=False, description="Spend limit in USD per budget_period."
    )
    budget_period: BudgetPeriod = Field(
        "total", description="total, or a UTC calendar window: daily, weekly, monthly."
    )


class BudgetRequest(WireModel):
    budget_usd: float | None = Field(
        description="Spend limit in USD per budget_period; null: no budget.",
        ge=0,
        allow_inf_nan=False,
    )
    budget_period: BudgetPeriod = Field(
        "total", description="total, or a UTC calendar window: daily, weekly, monthly."
    )


class UpdateKeyRequest(WireModel):
    """Only the fields sent change; `null` clears a limit, a budget or the model list."""

    name: str | None = Field(None, min_length=1, max_length=200)
    allowed_models: list[str] | None = Field(None, description="Empty or null = all models.")
    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)
    budget_usd: float | None = Field(None, ge=0)


def admin_keys(gateway: Gateway, ctx: RequestContext) -> KeyCache:
    ctx.require_admin()
    if gateway.admission.keys is None:
        raise PermissionDeniedError("Key management needs auth enabled.", code="auth_disabled")
    return gateway.admission.keys


@router.post("/admin/keys", responses=ERRORS, status_code=201)
async def create_key(
    body: CreateKeyRequest,
    gateway: Gateway = Depends(get_gateway),
    ctx: RequestContext = Depends(get_context),
) -> Response:
    spec = KeySpec(
        body.name, body.allowed_models, body.rpm, body.tpm, body.budget_usd, body.budget_period
    )
    record, plain = await admin_keys(gateway, ctx).create(spec)
    return json_response({**record.public(), "key": plain}, 201)


@router.get("/admin/keys", responses=ERRORS)
async def list_keys(
    gateway: Gateway = Depends(get_gateway), ctx: RequestContext = Depends(get_context)
) -> Response:
    """Every key with its spend (USD, all time), request count and last use (epoch s)."""
    cache = admin_keys(gateway, ctx)
    keys = await cache.list()
    await gateway.ledger.flush()  # this replica's buffered records count too
    usage = await cache.usage_by_key()
    unused = {"spend_usd": 0.0, "last_used_at": None, "requests": 0}
    return json_response({"keys": [{**key.public(), **usage.get(key.id, unused)} for key in keys]})


@router.patch("/admin/keys/{key_id}", responses=ERRORS)
async def update_key(
    key_id: str,
    body: UpdateKeyRequest,
    gateway: Gateway = Depends(get_gateway),
    ctx: RequestContext = Depends(get_context),
) -> Response:
    changes = body.model_dump(include=body.model_fields_set)
    return json_response((await admin_keys(gateway, ctx).update(key_id, changes)).public())


@router.get("/whoami", responses=ERRORS)
async def whoami(
    gateway: Gateway = Depends(get_gateway), ctx: RequestContext = Depends(get_context)
) -> Response:
    """Who the presented key is: `admin`, `key` (an ordinary key: its record and spend) or
    `open` (auth is off: no key needed, nothing to manage)."""
    if ctx.is_admin or ctx.key is None:
        role = "admin" if ctx.is_admin else "open"
        return json_response({"role": role, "key": None})
    spent = await gateway.admission.keys.spent(ctx.key.id) if gateway.admission.keys else 0.0
    return json_response({"role": "key", "key": {**ctx.key.public(), "spend_usd": spent}})


@router.post("/admin/keys/{key_id}/disable", responses=ERRORS)
async def disable_key(
    key_id: str,
    gateway: Gateway = Depends(get_gateway),
    ctx: RequestContext = Depends(get_context),
) -> Response:
    return json_response((await admin_keys(gateway, ctx).disable(key_id)).public())


@router.post("/admin/keys/{key_id}/budget", responses=ERRORS)
async def set_budget(
    key_id: str,
    body: BudgetRequest,
    gateway: Gateway = Depends(get_gateway),
    ctx: RequestContext = Depends(get_context),
) -> Response:
    """Change a key's budget and period (the admin view shows `budget_reset_at`)."""
    keys = admin_keys(gateway, ctx)
    return json_response(
        (await keys.set_budget(key_id, body.budget_usd, body.budget_period)).public()
    )


@router.post("/admin/keys/{key_id}/enable", responses=ERRORS)
async def enable_key(
    key_id: str,
    gateway: Gateway = Depends(get_gateway),
    ctx: RequestContext = Depends(get_context),
) -> Response:
    return json_response((await admin_keys(gateway, ctx).enable(key_id)).public())


@router.get("/usage", response_model=UsageResponse, responses=ERRORS)
async def usage(
    since: dt.datetime | None = Query(None, description="ISO-8601 start (inclusive)."),
    until: dt.datetime | None = Query(None, description="ISO-8601 end (exclusive)."),
    gateway: Gateway = Depends(get_gateway),
    ctx: RequestContext = Depends(get_context),
) -> Response:
    """A key sees its own usage; the admin (or anyone, with auth off) sees everything."""
    key_id: Any = ctx.key.id if ctx.key is not None else None
    rows = await gateway.ledger.summarize(epoch(since), epoch(until), key_id)
    return json_response(usage_report(rows, since, until))
