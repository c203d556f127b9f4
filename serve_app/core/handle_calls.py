"""Calling a deployment through its handle, with a deadline, and mapping what Ray raises.

Every failure a handle call can produce becomes a `GatewayError` here, in one place.
"""

import asyncio
import logging
from typing import Any

from ray import exceptions as ray_exceptions
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

from serve_app.contracts.errors import (
    GatewayError,
    InternalError,
    ServiceUnavailableError,
    UpstreamError,
    UpstreamTimeoutError,
)

logger = logging.getLogger("llm_gateway")


def map_handle_error(exc: BaseException, deployment: str) -> GatewayError:
    """The client-facing error for anything a handle call raised."""
    if isinstance(exc, ray_exceptions.RayTaskError) and isinstance(exc.cause, GatewayError):
        return exc.cause
    if isinstance(exc, GatewayError):
        return exc
    if isinstance(exc, BackPressureError):
        return ServiceUnavailableError(
            f"The {deployment!r} deployment is at capacity; retry shortly.",
            code="backpressure",
            retry_after_s=1,
        )
    if isinstance(exc, DeploymentUnavailableError):
        return ServiceUnavailableError(
            f"The {deployment!r} deployment is not available.", code="deployment_unavailable"
        )
    if isinstance(exc, ray_exceptions.RayActorError | ray_exceptions.ActorUnavailableError):
        return UpstreamError(
            f"A replica of {deployment!r} failed while serving the request; retry it.",
            code="replica_failed",
        )
    # Not a gateway error, not Ray's: a programming error (ours, or a deployment's). 500,
    # logged here once with its traceback; no breaker counts it and no fallback starts.
    logger.error("%s: unexpected error from a handle call", deployment, exc_info=exc)
    return InternalError("The gateway failed to serve the request.", code="internal_error")


async def call_with_deadline(response: Any, deployment: str, timeout_s: float) -> Any:
    """Await a `DeploymentResponse`; cancel it and raise 504 when the deadline passes."""
    try:
        return await asyncio.wait_for(_await(response), timeout_s)
    except asyncio.CancelledError:
        response.cancel()  # the client went away: stop the deployment's work too
        raise
    except TimeoutError:
        response.cancel()
        raise UpstreamTimeoutError(
            f"The {deployment!r} deployment did not answer within {timeout_s:g} s.",
            code="deadline_exceeded",
        ) from None
    except Exception as exc:
        mapped = map_handle_error(exc, deployment)
        if mapped is exc:
            raise
        raise mapped from None


async def _await(response: Any) -> Any:
    return await response
