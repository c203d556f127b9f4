"""OpenAI-compatible `POST /v1/embeddings` (local `task: embed` models and OpenAI's)."""

import base64
import struct
from typing import Any

from fastapi import APIRouter, Depends
from starlette.responses import Response

from serve_app.access.auth import RequestContext
from serve_app.contracts.wire import EmbeddingOutput
from serve_app.core.embeddings import embed
from serve_app.core.gateway import Gateway
from serve_app.http.routes.native import ERRORS, get_context, get_gateway, json_response
from serve_app.http.schemas.embeddings import EmbeddingRequest, EmbeddingResponse

router = APIRouter(prefix="/v1", tags=["openai"])


def encode_vector(vector: list[float]) -> str:
    """Little-endian float32, base64: what OpenAI sends for `encoding_format: base64`."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def embedding_body(model: str, output: EmbeddingOutput, as_base64: bool) -> dict[str, Any]:
    data = [
        {
            "object": "embedding",
            "index": index,
            "embedding": encode_vector(vector) if as_base64 else vector,
        }
        for index, vector in enumerate(output.vectors)
    ]
    usage = {"prompt_tokens": output.input_tokens, "total_tokens": output.input_tokens}
    return {"object": "list", "data": data, "model": model, "usage": usage}


@router.post("/embeddings", response_model=EmbeddingResponse, responses=ERRORS)
async def embeddings(
    body: EmbeddingRequest,
    gateway: Gateway = Depends(get_gateway),
    ctx: RequestContext = Depends(get_context),
) -> Response:
    route, output = await embed(gateway, ctx, body.model, body.inputs(), body.dimensions)
    as_base64 = body.encoding_format == "base64"
    return json_response(embedding_body(route.model_id, output, as_base64))
