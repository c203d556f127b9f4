"""Maps every error to the one JSON shape `{"error": {message, type, param, code}}`, once."""

import json
import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from serve_app.contracts.errors import (
    GatewayError,
    InvalidRequestError,
    MethodNotAllowedError,
    NotFoundError,
)
from serve_app.http.formats_anthropic import anthropic_error_body

logger = logging.getLogger("ray.serve")


ANTHROPIC_PATHS = ("/v1/messages",)


def error_body(error: GatewayError, path: str) -> dict[str, Any]:
    """The error in the route's own API shape: Anthropic's on /v1/messages, else ours
    (which is also OpenAI's)."""
    if path.startswith(ANTHROPIC_PATHS):
        return anthropic_error_body(error)
    return {"error": error.to_dict()}


def error_response(error: GatewayError, path: str = "") -> Response:
    """The HTTP response for a gateway error (the middleware adds X-Request-ID)."""
    headers = {}
    if error.retry_after_s is not None:
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after_s)))
    body = json.dumps(error_body(error, path), ensure_ascii=False)
    return Response(body, error.status_code, headers, media_type="application/json")


def validation_error(exc: RequestValidationError) -> GatewayError:
    """One readable message naming the first offending field (a model-level check names the
    field below the model in its context's `field`)."""
    first = exc.errors()[0] if exc.errors() else {}
    if first.get("type") == "json_invalid":
        return InvalidRequestError("The request body is not valid JSON.", code="invalid_json")
    location = [str(part) for part in first.get("loc", ()) if part != "body"]
    field = (first.get("ctx") or {}).get("field")
    if field:
        location.append(str(field))
    param = ".".join(location) or None
    message = str(first.get("msg", "Invalid request."))
    if first.get("type") == "extra_forbidden":
        message = f"Unknown field {param!r}."
    elif param:
        message = f"{param}: {message}"
    return InvalidRequestError(message, param=param, code=first.get("type"))


def body_parse_error(cause: BaseException) -> InvalidRequestError:
    """FastAPI's 400 for a body its JSON decoder raised on (other than `JSONDecodeError`)."""
    if isinstance(cause, UnicodeDecodeError):
        message = "The request body is not valid UTF-8."
    elif isinstance(cause, RecursionError):
        message = "The request body's JSON is nested too deeply."
    else:  # e.g. an integer literal past Python's digit limit
        message = "The request body is not valid JSON."
    return InvalidRequestError(message, code="invalid_json")


def http_error(exc: StarletteHTTPException) -> GatewayError:
    if isinstance(exc.__cause__, GatewayError):
        return exc.__cause__  # e.g. 413 raised while FastAPI read a chunked body
    if exc.status_code == 400 and exc.__cause__ is not None:
        return body_parse_error(exc.__cause__)
    if exc.status_code == 404:
        return NotFoundError("No route matches this path.", code="route_not_found")
    if exc.status_code == 405:
        return MethodNotAllowedError("This method is not allowed on this path.")
    error = GatewayError(str(exc.detail))
    error.status_code = exc.status_code
    error.error_type = "http_error"
    return error


def install_error_handlers(app: FastAPI) -> None:
    async def on_gateway_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, GatewayError)
        return error_response(exc, request.url.path)

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return error_response(validation_error(exc), request.url.path)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        return error_response(http_error(exc), request.url.path)

    app.add_exception_handler(GatewayError, on_gateway_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
