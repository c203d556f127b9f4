"""Request/response translation per provider and the one SDK-error mapping."""

from typing import Any

import anthropic
import httpx2
import openai
import pytest

from deployments.providers.sdk_errors import is_retryable, map_sdk_error
from deployments.providers.translations import (
    anthropic_kwargs,
    openai_chat_kwargs,
    parse_anthropic,
    parse_openai_chat,
)
from serve_app.contracts.config import CommercialModelConfig, PriceConfig
from serve_app.contracts.wire import ChatMessage, GenerationParams
from tests.fakes.sdk_json import real_shape

MODEL = CommercialModelConfig(
    id="m",
    provider="openai",
    upstream_model="up-1",
    price=PriceConfig(),
    context_window=1000,
    max_output_tokens=100,
)


def params(**overrides: Any) -> GenerationParams:
    base: dict[str, Any] = {
        "request_id": "r",
        "model_id": "m",
        "prompt": "hi",
        "max_tokens": 7,
        "temperature": 1.5,
        "top_p": 0.5,
        "stop": ("X",),
    }
    return GenerationParams(**{**base, **overrides})


def test_openai_kwargs_map_prompt_to_one_user_message() -> None:
    assert openai_chat_kwargs(params(), MODEL) == {
        "model": "up-1",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 7,
        "temperature": 1.5,
        "top_p": 0.5,
        "stop": ["X"],
    }
    bare = openai_chat_kwargs(params(temperature=None, top_p=None, stop=()), MODEL)
    assert set(bare) == {"model", "messages", "max_tokens"}


def test_anthropic_kwargs_clamp_temperature_and_move_system() -> None:
    messages = (ChatMessage("system", "be brief"), ChatMessage("user", "hi"))
    kwargs = anthropic_kwargs(params(messages=messages), MODEL)
    assert kwargs == {
        "model": "up-1",
        "max_tokens": 7,
        "messages": [{"role": "user", "content": "hi"}],
        "system": "be brief",
        "extra_body": {"temperature": 1.0, "top_p": 0.5},
        "stop_sequences": ["X"],
    }


def test_parse_responses_into_one_shape() -> None:
    oa = real_shape(
        openai.types.chat.ChatCompletion,
        {
            "id": "c",
            "object": "chat.completion",
            "created": 1,
            "model": "up-1",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "yo"},
                    "finish_reason": "length",
                }
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        },
    )
    out = parse_openai_chat(oa, MODEL)
    assert (out.text, out.input_tokens, out.output_tokens, out.finish_reason) == (
        "yo",
        3,
        2,
        "length",
    )
    an = real_shape(
        anthropic.types.Message,
        {
            "id": "m",
            "type": "message",
            "role": "assistant",
            "model": "up-1",
            "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            "stop_reason": "stop_sequence",
            "usage": {"input_tokens": 4, "output_tokens": 1},
        },
    )
    out = parse_anthropic(an, MODEL)
    assert (out.text, out.input_tokens, out.output_tokens, out.finish_reason) == (
        "ab",
        4,
        1,
        "stop",
    )


def status_error(cls: type, status: int, body: Any, headers: dict[str, str] | None = None) -> Any:
    request = httpx2.Request("POST", "http://127.0.0.1/v1/x")
    response = httpx2.Response(status, headers=headers or {}, request=request)
    return cls("upstream said no", response=response, body=body)


@pytest.mark.parametrize(
    ("exc", "status", "error_type"),
    [
        (
            status_error(openai.AuthenticationError, 401, {"error": {"code": "invalid_api_key"}}),
            502,
            "upstream_authentication_error",
        ),
        (
            status_error(anthropic.AuthenticationError, 401, {"type": "error"}),
            502,
            "upstream_authentication_error",
        ),
        (
            status_error(openai.RateLimitError, 429, {"error": {"code": "insufficient_quota"}}),
            502,
            "upstream_quota_exceeded",
        ),
        (
            status_error(
                openai.RateLimitError, 429, {"error": {"code": "rate_limit"}}, {"retry-after": "3"}
            ),
            429,
            "upstream_rate_limit_error",
        ),
        (status_error(openai.InternalServerError, 500, None), 502, "upstream_error"),
        (
            status_error(
                anthropic.BadRequestError,
                400,
                {"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}},
            ),
            400,
            "invalid_request_error",
        ),
        (
            openai.APITimeoutError(httpx2.Request("POST", "http://127.0.0.1")),
            504,
            "upstream_timeout",
        ),
        (
            anthropic.APIConnectionError(request=httpx2.Request("POST", "http://127.0.0.1")),
            502,
            "upstream_error",
        ),
    ],
)
def test_sdk_errors_map_to_gateway_errors(exc: Exception, status: int, error_type: str) -> None:
    error = map_sdk_error(exc, "openai")
    assert (error.status_code, error.error_type) == (status, error_type)
    assert "sk-" not in error.message


def test_retry_after_is_kept_and_quota_is_not_retried() -> None:
    limited = status_error(openai.RateLimitError, 429, {}, {"retry-after": "3"})
    assert map_sdk_error(limited, "openai").retry_after_s == 3.0
    assert is_retryable(limited)
    quota = status_error(openai.RateLimitError, 429, {"error": {"code": "insufficient_quota"}})
    assert not is_retryable(quota)
    assert not is_retryable(status_error(openai.BadRequestError, 400, {}))
