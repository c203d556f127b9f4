"""The one place where OpenAI and Anthropic SDK errors become gateway errors.

Messages never include the API key: they are built from the status and the provider's own
error message, which providers already redact.
"""

import json
import logging
import sys
from typing import Any

import httpx2

from serve_app.contracts.errors import (
    GatewayError,
    InternalError,
    InvalidRequestError,
    UpstreamAuthenticationError,
    UpstreamError,
    UpstreamQuotaExceededError,
    UpstreamRateLimitError,
    UpstreamTimeoutError,
)

logger = logging.getLogger("ray.serve")
SDKS = ("openai", "anthropic")
SDK_BASE_ERRORS = {"openai": "OpenAIError", "anthropic": "AnthropicError"}


def sdk_errors(name: str) -> tuple[type[Any], ...]:
    """The SDKs' exception class `name`, from the SDKs this process has imported: a replica
    loads only its own provider's SDK, and an exception can only come from a loaded one."""
    loaded = (sys.modules.get(sdk) for sdk in SDKS)
    return tuple(getattr(module, name) for module in loaded if module is not None)


def sdk_base_errors() -> tuple[type[Any], ...]:
    """The root exception class of each SDK this process has imported."""
    loaded = ((sdk, sys.modules.get(sdk)) for sdk in SDKS)
    return tuple(getattr(module, SDK_BASE_ERRORS[sdk]) for sdk, module in loaded if module)


QUOTA_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached", "billing_error"})
RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})


def _error_fields(body: Any) -> tuple[str | None, str | None]:
    """(type, code) from an OpenAI `{"error": {...}}` or Anthropic `{"type":"error",...}` body."""
    if not isinstance(body, dict):
        return None, None
    error = body.get("error", body)
    if not isinstance(error, dict):
        return None, None
    return error.get("type"), error.get("code")


def retry_after_seconds(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    value = headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, sdk_errors("APIStatusError")):
        error_type, code = _error_fields(exc.body)
        if error_type in QUOTA_CODES or code in QUOTA_CODES:
            return False
        return exc.status_code in RETRYABLE_STATUSES
    return isinstance(exc, sdk_errors("APIConnectionError"))


def transport_errors() -> tuple[type[BaseException], ...]:
    """The SDKs' HTTP stack (httpx2), and aiohttp's when the `aiohttp` transport is loaded:
    a stream that breaks mid-way raises these unwrapped."""
    aiohttp = sys.modules.get("aiohttp")
    return (httpx2.HTTPError, *((aiohttp.ClientError,) if aiohttp is not None else ()))


def is_sdk_error(exc: BaseException) -> bool:
    """Raised by the SDK or its transport (or a broken JSON body the SDK read)?"""
    return isinstance(exc, (*sdk_base_errors(), *transport_errors(), json.JSONDecodeError))


def refused_not_timed_out(exc: BaseException) -> bool:
    """An SDK timeout that is really a failed connection. The SDKs' aiohttp transport maps
    every aiohttp connection error (refused, reset, closed) to httpx2's `ConnectTimeout`;
    the aiohttp error it came from says whether time ran out."""
    aiohttp = sys.modules.get("aiohttp")
    cause = exc.__cause__
    while aiohttp is not None and cause is not None:
        if isinstance(cause, aiohttp.ClientConnectionError):
            return not isinstance(cause, TimeoutError)
        cause = cause.__cause__
    return False


def map_sdk_error(exc: BaseException, provider: str) -> GatewayError:
    """The client-facing error for an SDK exception (after the retries are spent). Anything
    else is our own bug: 500 internal_error, logged here once with its traceback."""
    if isinstance(exc, GatewayError):
        return exc
    if not is_sdk_error(exc):
        logger.error("%s call failed with a programming error", provider, exc_info=exc)
        return InternalError("Internal error.", code="internal_error")
    if isinstance(exc, sdk_errors("APITimeoutError")) and not refused_not_timed_out(exc):
        return UpstreamTimeoutError(f"{provider} did not answer in time.", code="upstream_timeout")
    if isinstance(exc, sdk_errors("APIConnectionError")):
        return UpstreamError(f"Could not connect to {provider}.", code="upstream_unreachable")
    if isinstance(exc, (*sdk_errors("APIResponseValidationError"), json.JSONDecodeError)):
        # The SDKs raise a bare JSONDecodeError (a ValueError) on a broken JSON body.
        return UpstreamError(f"{provider} sent a malformed response.", code="upstream_malformed")
    if isinstance(exc, sdk_errors("APIStatusError")):
        return _map_status_error(exc, provider)
    return UpstreamError(f"{provider} call failed.", code="upstream_error")


def _map_status_error(exc: Any, provider: str) -> GatewayError:
    status = int(exc.status_code)
    error_type, code = _error_fields(exc.body)
    detail = f"{provider} answered {status}"
    if error_type in QUOTA_CODES or code in QUOTA_CODES:
        return UpstreamQuotaExceededError(
            f"{detail}: the provider account's quota or credit is exhausted.",
            code=code or error_type,
        )
    if status in (401, 403):
        return UpstreamAuthenticationError(
            f"{detail}: the gateway's {provider} API key was rejected.",
            code="upstream_authentication_error",
        )
    if status == 429:
        return UpstreamRateLimitError(
            f"{detail}: rate limited by the provider.",
            code="upstream_rate_limited",
            retry_after_s=retry_after_seconds(exc) or 1.0,
        )
    if status in (400, 404, 413, 422):
        return InvalidRequestError(
            f"{detail}: {_provider_message(exc.body) or 'the request was rejected.'}",
            code=code or error_type or "upstream_bad_request",
        )
    return UpstreamError(f"{detail}.", code="upstream_server_error")


def _provider_message(body: Any) -> str | None:
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])[:500]
    return None
