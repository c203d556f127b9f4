"""What each kind of model can honour, and the ingress limits on tools, schemas and images.

Checked once at the ingress, before anything reaches a deployment: a field the chosen model
cannot honour is a 400 naming the field and the model (never silently dropped), and a
fallback that could not honour the request is skipped.
"""

import json
from collections.abc import Iterator

from serve_app.contracts.config import IngressConfig
from serve_app.contracts.errors import InvalidRequestError, PayloadTooLargeError
from serve_app.contracts.wire import GenerationParams
from serve_app.core.catalog import ModelRoute

# Service tiers each kind takes ("default"/"standard_only" are the same tier, translated).
TIERS = {
    "openai": {"auto", "default", "flex", "scale", "priority", "standard_only"},
    "anthropic": {"auto", "default", "standard_only"},
    "local": {"auto", "default", "standard_only"},
}


def has_images(params: GenerationParams) -> bool:
    return any(part.type == "image" for m in params.messages for part in m.parts)


def _anthropic_refusals(params: GenerationParams) -> Iterator[str]:
    if params.logprobs:
        yield "logprobs"
    if params.top_logprobs:
        yield "top_logprobs"
    if params.n != 1:
        yield "n"
    for name in ("seed", "presence_penalty", "frequency_penalty"):
        if getattr(params, name) is not None:
            yield name
    if params.logit_bias:
        yield "logit_bias"
    if params.metadata:
        yield "metadata"


def refused_fields(route: ModelRoute, params: GenerationParams) -> list[str]:
    """The request's fields that `route`'s model cannot honour (empty: it can serve it)."""
    refused = list(_anthropic_refusals(params)) if route.provider == "anthropic" else []
    if route.provider == "openai" and params.top_k is not None:
        refused.append("top_k")
    tiers = TIERS.get(route.provider, TIERS["local"])
    if params.service_tier is not None and params.service_tier not in tiers:
        refused.append("service_tier")
    return refused


def can_serve(route: ModelRoute, params: GenerationParams) -> bool:
    """Whether a fallback could take the request as it is."""
    return not refused_fields(route, params) and (route.vision or not has_images(params))


def check_capabilities(
    route: ModelRoute, params: GenerationParams, image_at: tuple[str, ...] = ()
) -> None:
    refused = refused_fields(route, params)
    if refused:
        raise InvalidRequestError(
            f"Model {route.model_id!r} does not support {refused[0]!r} "
            f"(refused: {', '.join(refused)}).",
            param=refused[0],
            code="unsupported_parameter",
        )
    if not route.vision and has_images(params):
        where = image_at[0] if image_at else "messages"
        raise InvalidRequestError(
            f"Model {route.model_id!r} does not take images; {where} is an image.",
            param=where,
            code="unsupported_content",
        )


def _schema_bytes(schema: object) -> int:
    return len(json.dumps(schema, separators=(",", ":"), ensure_ascii=False).encode())


def check_limits(
    limits: IngressConfig, params: GenerationParams, image_at: tuple[str, ...] = ()
) -> None:
    """`max_tools`, `max_schema_bytes` (400) and `max_image_bytes` (413)."""
    if len(params.tools) > limits.max_tools:
        raise InvalidRequestError(
            f"A request declares at most {limits.max_tools} tools; got {len(params.tools)}.",
            param="tools",
        )
    schemas = [(f"tools[{i}]", tool.parameters) for i, tool in enumerate(params.tools)]
    if params.output_format is not None and params.output_format.schema is not None:
        schemas.append(("response_format", params.output_format.schema))
    for where, schema in schemas:
        size = _schema_bytes(schema)
        if size > limits.max_schema_bytes:
            raise InvalidRequestError(
                f"The schema of {where} is {size} bytes; the limit is {limits.max_schema_bytes}.",
                param=where,
                code="schema_too_large",
            )
    _check_image_sizes(limits.max_image_bytes, params, image_at)


def _check_image_sizes(limit: int, params: GenerationParams, image_at: tuple[str, ...]) -> None:
    images = [p.image for m in params.messages for p in m.parts if p.image is not None]
    for index, image in enumerate(images):
        size = len(image.data) * 3 // 4 if image.data else 0
        if size > limit:
            where = image_at[index] if index < len(image_at) else "messages"
            raise PayloadTooLargeError(
                f"The image at {where} is about {size} bytes; the limit is {limit}.",
                param=where,
                code="image_too_large",
            )
