"""Which model honours which field, the ingress limits, and the estimate of an abandoned
streamed tool call."""

from typing import Any

import pytest

from serve_app.contracts.config import IngressConfig, PriceConfig
from serve_app.contracts.errors import InvalidRequestError, PayloadTooLargeError
from serve_app.contracts.wire import (
    ChatMessage,
    ContentPart,
    GenerationParams,
    ImagePart,
    StreamChunk,
    ToolCallDelta,
    ToolSpec,
)
from serve_app.core.capabilities import can_serve, check_capabilities, check_limits, refused_fields
from serve_app.core.catalog import ModelRoute
from serve_app.core.streaming import StreamResult

IMAGE = ContentPart("image", image=ImagePart(media_type="image/png", data="A" * 4000))
WITH_IMAGE = (ChatMessage("user", "look", parts=(ContentPart("text", text="look"), IMAGE)),)


def route(provider: str, vision: bool = False) -> ModelRoute:
    return ModelRoute(
        model_id=f"{provider}-model",
        model_type="commercial",
        provider=provider,
        deployment=provider,
        handle=None,
        max_tokens_cap=10,
        defaults=None,
        price=PriceConfig(),
        description="",
        vision=vision,
    )


def params(**fields: Any) -> GenerationParams:
    return GenerationParams(
        **{"request_id": "r", "model_id": "m", "prompt": "p", "max_tokens": 5, **fields}
    )


def test_claude_refuses_what_it_cannot_honour_by_name() -> None:
    asked = params(seed=1, logprobs=True, n=2, logit_bias=((1, 2.0),), metadata=(("a", "b"),))
    assert refused_fields(route("anthropic"), asked) == [
        "logprobs",
        "n",
        "seed",
        "logit_bias",
        "metadata",
    ]
    assert refused_fields(route("openai"), asked) == []
    with pytest.raises(
        InvalidRequestError, match="'anthropic-model' does not support 'logprobs'"
    ) as refused:
        check_capabilities(route("anthropic"), asked)
    assert (refused.value.param, refused.value.code) == ("logprobs", "unsupported_parameter")
    assert refused_fields(route("openai"), params(top_k=3)) == ["top_k"]
    assert refused_fields(route("local"), params(service_tier="flex")) == ["service_tier"]
    assert refused_fields(route("local"), params(seed=1, top_k=3, n=4, logprobs=True)) == []


def test_images_go_only_to_vision_models() -> None:
    asked = params(messages=WITH_IMAGE)
    with pytest.raises(InvalidRequestError) as refused:
        check_capabilities(route("local"), asked, ("messages[0].content[1]",))
    assert (refused.value.param, refused.value.code) == (
        "messages[0].content[1]",
        "unsupported_content",
    )
    check_capabilities(route("openai", vision=True), asked)
    assert not can_serve(route("openai"), asked) and can_serve(route("openai", vision=True), asked)


def test_ingress_limits() -> None:
    limits = IngressConfig(max_tools=2, max_schema_bytes=256, max_image_bytes=2048)
    tool = ToolSpec("f", {"type": "object"})
    with pytest.raises(InvalidRequestError, match="at most 2 tools"):
        check_limits(limits, params(tools=(tool, tool, tool)))
    big = ToolSpec("g", {"type": "object", "description": "x" * 300})
    with pytest.raises(InvalidRequestError) as too_big:
        check_limits(limits, params(tools=(tool, big)))
    assert too_big.value.param == "tools[1]"
    with pytest.raises(PayloadTooLargeError) as image:
        check_limits(limits, params(messages=WITH_IMAGE), ("messages[0].content[1]",))
    assert image.value.param == "messages[0].content[1]"
    check_limits(IngressConfig(), params(messages=WITH_IMAGE, tools=(tool, big)))


def test_an_abandoned_tool_call_stream_is_estimated_from_its_pieces() -> None:
    result = StreamResult()
    result.absorb(StreamChunk("", tool_calls=(ToolCallDelta(0, "call_1", "lookup"),)))
    result.absorb(StreamChunk("", tool_calls=(ToolCallDelta(0, arguments='{"query": "velmora"}'),)))
    result.estimate_missing_counts(params())
    assert result.output_tokens == 6  # (6 + 20 characters) / 4, more than the 2 pieces
    assert result.input_tokens == 1
