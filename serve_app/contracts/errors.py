"""The one exception tree of the gateway: each class carries an HTTP status and an error type.

Deployments raise these too (they cross a `DeploymentHandle` by pickling), so this module
imports nothing from FastAPI or the rest of the project. The HTTP mapping lives in
`serve_app.http.error_handlers`.
"""

from typing import Any


class GatewayError(Exception):
    """Base of every error the gateway reports to a client."""

    status_code: int = 500
    error_type: str = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.retry_after_s = retry_after_s

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only arguments do not survive the default exception pickling.
        return (
            _rebuild_error,
            (type(self), self.message, self.param, self.code, self.retry_after_s),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "message": self.message,
            "type": self.error_type,
            "param": self.param,
            "code": self.code,
        }


def _rebuild_error(
    cls: type[GatewayError],
    message: str,
    param: str | None,
    code: str | None,
    retry_after_s: float | None,
) -> GatewayError:
    return cls(message, param=param, code=code, retry_after_s=retry_after_s)


class InvalidRequestError(GatewayError):
    status_code = 400
    error_type = "invalid_request_error"


class AuthenticationError(GatewayError):
    status_code = 401
    error_type = "authentication_error"


class BudgetExceededError(GatewayError):
    status_code = 402
    error_type = "budget_exceeded"


class PermissionDeniedError(GatewayError):
    status_code = 403
    error_type = "permission_error"


class NotFoundError(GatewayError):
    status_code = 404
    error_type = "not_found_error"


class ConflictError(GatewayError):
    status_code = 409
    error_type = "conflict_error"


class MethodNotAllowedError(GatewayError):
    status_code = 405
    error_type = "method_not_allowed"


class PayloadTooLargeError(GatewayError):
    status_code = 413
    error_type = "request_too_large"


class UnsupportedMediaTypeError(GatewayError):
    status_code = 415
    error_type = "unsupported_media_type"


class RateLimitError(GatewayError):
    status_code = 429
    error_type = "rate_limit_error"


class InternalError(GatewayError):
    status_code = 500
    error_type = "internal_error"


class UpstreamError(GatewayError):
    """The provider (or a local model replica) failed; not the client's fault."""

    status_code = 502
    error_type = "upstream_error"


class UpstreamAuthenticationError(UpstreamError):
    error_type = "upstream_authentication_error"


class UpstreamQuotaExceededError(UpstreamError):
    error_type = "upstream_quota_exceeded"


class UpstreamRateLimitError(RateLimitError):
    error_type = "upstream_rate_limit_error"


class ServiceUnavailableError(GatewayError):
    status_code = 503
    error_type = "service_unavailable"


class RequestTimeoutError(GatewayError):
    """The client did not send the whole request body in time."""

    status_code = 408
    error_type = "request_timeout"


class UpstreamTimeoutError(GatewayError):
    status_code = 504
    error_type = "upstream_timeout"


def model_not_found(model_id: str) -> NotFoundError:
    return NotFoundError(
        f"The model {model_id!r} does not exist or is not served by this gateway.",
        param="model_id",
        code="model_not_found",
    )
