"""LoRA adapters registered at run time (`/api/v1/admin/adapters`, admin key only)."""

from fastapi import APIRouter, Depends
from pydantic import Field
from starlette.responses import Response

from serve_app.access.auth import RequestContext
from serve_app.contracts.config import PriceConfig
from serve_app.core.adapter_admin import AdapterRequest
from serve_app.core.gateway import Gateway
from serve_app.http.routes.native import ERRORS, get_context, get_gateway, json_response
from serve_app.http.schemas.native import WireModel

router = APIRouter(prefix="/api/v1", tags=["admin"])
ADAPTER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"  # no ':' (that is `<base>:<id>`)
ADAPTER_ERRORS = {**ERRORS, 409: {"description": "The id is taken"}}


class RegisterAdapterRequest(WireModel):
    id: str = Field(pattern=ADAPTER_ID_PATTERN, description="Model id the fine-tune answers to.")
    base: str = Field(
        min_length=1, max_length=128, description="The local model it was trained on."
    )
    path: str = Field(
        min_length=1, max_length=4096, description="PEFT directory under adapters.allowed_roots."
    )
    description: str = Field("", max_length=1000)
    price: PriceConfig | None = Field(None, description="Defaults to the base model's price.")
    fallbacks: list[str] = Field(default_factory=list, max_length=16)


@router.post("/admin/adapters", responses=ADAPTER_ERRORS, status_code=201)
async def register_adapter(
    body: RegisterAdapterRequest,
    gateway: Gateway = Depends(get_gateway),
    ctx: RequestContext = Depends(get_context),
) -> Response:
    ctx.require_admin()
    request = AdapterRequest(
        id=body.id,
        base=body.base,
        path=body.path,
        description=body.description,
        price=body.price.model_dump(mode="json") if body.price else None,
        fallbacks=tuple(body.fallbacks),
    )
    record = await gateway.adapters.register(request)
    return json_response(record.public(), 201)


@router.get("/admin/adapters", responses=ERRORS)
async def list_adapters(
    gateway: Gateway = Depends(get_gateway), ctx: RequestContext = Depends(get_context)
) -> Response:
    ctx.require_admin()
    return json_response({"adapters": await gateway.adapters.list()})


@router.delete("/admin/adapters/{adapter_id}", responses=ADAPTER_ERRORS)
async def delete_adapter(
    adapter_id: str,
    gateway: Gateway = Depends(get_gateway),
    ctx: RequestContext = Depends(get_context),
) -> Response:
    """New requests get 404 at once here and within `auth.cache_ttl_s` on other replicas;
    requests already running finish, then the model replicas unload the adapter."""
    ctx.require_admin()
    await gateway.adapters.delete(adapter_id)
    return json_response({"id": adapter_id, "deleted": True})
