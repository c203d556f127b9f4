"""Input-token counts for `/v1/messages/count_tokens` on commercial models.

Claude: Anthropic's own `POST /v1/messages/count_tokens` (exact). GPT: OpenAI has no such
endpoint, so the count is an estimate with OpenAI's BPE vocabulary for the model
(`bpe-openai`: tiktoken's encodings, bundled, so nothing is downloaded at run time) and
OpenAI's published per-message overhead; images count 85 tokens each (a low-detail tile).
"""

import json
from typing import Any

from deployments.providers.anthropic_wire import anthropic_kwargs
from serve_app.contracts.config import CommercialModelConfig
from serve_app.contracts.wire import GenerationParams

TOKENS_PER_MESSAGE = 3  # OpenAI's chat format: <|start|>role ... <|end|>
REPLY_PRIMING = 3
IMAGE_TOKENS = 85
DEFAULT_ENCODING = "o200k_base"
COUNT_FIELDS = ("model", "messages", "system", "tools", "tool_choice", "output_config")


def encoding_name(upstream_model: str) -> str:
    import bpe_openai

    try:
        return str(bpe_openai.encoding_name_for_model(upstream_model))
    except KeyError:  # an unknown model: the encoding of current OpenAI models
        return DEFAULT_ENCODING


def openai_estimate(encoding: Any, params: GenerationParams) -> int:
    """OpenAI's documented counting recipe for chat messages, plus the tool definitions."""
    count = REPLY_PRIMING
    for m in params.messages or ():
        text = m.content + "".join(c.name + c.arguments for c in m.tool_calls)
        count += TOKENS_PER_MESSAGE + len(encoding.encode(m.role)) + len(encoding.encode(text))
        count += IMAGE_TOKENS * sum(1 for p in m.parts if p.type == "image")
    if not params.messages:
        count += TOKENS_PER_MESSAGE + len(encoding.encode(params.prompt))
    if params.tools:
        tools = [[t.name, t.description, t.parameters] for t in params.tools]
        count += len(encoding.encode(json.dumps(tools, separators=(",", ":"))))
    return count


def anthropic_count_body(params: GenerationParams, model: CommercialModelConfig) -> dict[str, Any]:
    kwargs = anthropic_kwargs(params, model)
    return {name: kwargs[name] for name in COUNT_FIELDS if name in kwargs}


async def anthropic_count(client: Any, body: dict[str, Any], request_id: str) -> int:
    from anthropic._base_client import make_request_options
    from anthropic.types import MessageTokensCount

    response = await client.post(
        "/v1/messages/count_tokens",
        body=body,
        options=make_request_options(extra_headers={"X-Request-ID": request_id}),
        cast_to=MessageTokensCount,
    )
    return int(response.input_tokens)
