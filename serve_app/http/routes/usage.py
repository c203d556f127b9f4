"""`GET /api/v1/usage/timeseries`: usage per hour or day, by model, provider or key.

The aggregation runs in SQL (`serve_app.accounting.timeseries`); the route validates the
window and its size against `ui.max_points`, and scopes an ordinary key to its own usage.
"""

import datetime as dt
import time

from fastapi import APIRouter, Depends, Query
from starlette.responses import Response

from serve_app.access.auth import RequestContext
from serve_app.accounting.timeseries import (
    BUCKET_SECONDS,
    Bucket,
    GroupBy,
    StatusFilter,
    TimeseriesQuery,
)
from serve_app.contracts.errors import InvalidRequestError, PermissionDeniedError
from serve_app.core.gateway import Gateway
from serve_app.http.routes.commercial import epoch
from serve_app.http.routes.native import ERRORS, get_context, get_gateway, json_response
from serve_app.http.schemas.native import TimeseriesResponse

router = APIRouter(prefix="/api/v1", tags=["admin"])
DEFAULT_SPAN_BUCKETS = 24  # without `since`: the last 24 hours, or the last 24 days


@router.get("/usage/timeseries", response_model=TimeseriesResponse, responses=ERRORS)
async def usage_timeseries(
    since: dt.datetime | None = Query(None, description="ISO-8601 start (inclusive)."),
    until: dt.datetime | None = Query(None, description="ISO-8601 end (exclusive); now."),
    bucket: Bucket = Query("hour", description="Bucket size (UTC hours or days)."),
    group_by: GroupBy = Query("model", description="One series per model, provider or key."),
    key_id: str | None = Query(None, max_length=64, description="Only this key (admin)."),
    model: str | None = Query(None, max_length=256, description="Only this requested model."),
    provider: str | None = Query(None, max_length=64, description="Only this provider."),
    status: StatusFilter | None = Query(None, description="Only successes or only errors."),
    gateway: Gateway = Depends(get_gateway),
    ctx: RequestContext = Depends(get_context),
) -> Response:
    """Requests, errors, tokens and cost per bucket and group (dense: one value per bucket),
    with the window's totals and nearest-rank p50/p95 latency of successful requests.
    At most `ui.max_points` buckets: a longer window, or a smaller bucket, gives 400.
    An ordinary key sees only its own usage; the admin sees every key's."""
    end = epoch(until) or time.time()
    start = epoch(since)
    if start is None:
        start = end - DEFAULT_SPAN_BUCKETS * BUCKET_SECONDS[bucket]
    query = TimeseriesQuery(
        start, end, bucket, group_by, _scoped_key(ctx, key_id), model, provider, status
    )
    _check_window(query, gateway.config.ui.max_points)
    return json_response(await gateway.ledger.timeseries(query))


def _scoped_key(ctx: RequestContext, key_id: str | None) -> str | None:
    if ctx.key is None:  # the admin, or auth off: any key, or all
        return key_id
    if key_id is not None and key_id != ctx.key.id:
        raise PermissionDeniedError("A key sees only its own usage.", code="admin_only")
    return ctx.key.id


def _check_window(query: TimeseriesQuery, max_points: int) -> None:
    if query.since < 0:
        raise InvalidRequestError("since must be after 1970-01-01.", param="since")
    if query.until <= query.since:
        raise InvalidRequestError("until must be later than since.", param="until")
    points = query.point_count()
    if points > max_points:
        raise InvalidRequestError(
            f"The window holds {points} {query.bucket} buckets; the limit is {max_points} "
            "(ui.max_points): shorten it or use a larger bucket.",
            param="since",
            code="too_many_points",
        )
