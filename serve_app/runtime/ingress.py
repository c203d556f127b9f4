"""The ingress deployment: a plain class that builds its FastAPI app at replica start.

`serve_app.runtime.builder` wraps it with `serve.ingress()` and `serve.deployment` at build time.
"""

import logging
import os
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI

from serve_app.access.adapter_store import AdapterStore
from serve_app.access.admission import Admission, HandleLimiter, Limiter
from serve_app.access.key_cache import KeyCache
from serve_app.access.key_store import open_key_store
from serve_app.contracts.config import GatewayConfig
from serve_app.core.gateway import Gateway
from serve_app.core.runtime_adapters import RuntimeAdapters
from serve_app.http.app import create_app

logger = logging.getLogger("ray.serve")


def make_limiter(config: GatewayConfig, limiter_handle: Any) -> Limiter | None:
    if config.rate_limits.backend == "redis":
        from deployments.limits.redis_limiter import RedisSlidingWindowLimiter

        assert config.rate_limits.redis_url is not None
        return RedisSlidingWindowLimiter(config.rate_limits.redis_url)
    return HandleLimiter(limiter_handle) if limiter_handle is not None else None


def route_gateway_logs(level: str) -> None:
    """The gateway's loggers (access log included) write where Serve's replica logs go: Ray
    gives workers no root handler, so they would otherwise be dropped."""
    gateway_logger = logging.getLogger("llm_gateway")
    gateway_logger.setLevel(level)
    for handler in logging.getLogger("ray.serve").handlers:
        if handler not in gateway_logger.handlers:
            gateway_logger.addHandler(handler)
    gateway_logger.propagate = False


def make_metrics() -> Any:
    from serve_app.core.metrics import GatewayMetrics

    return GatewayMetrics()


def runtime_adapters(config: GatewayConfig) -> RuntimeAdapters | None:
    """The registry of run-time adapters; none while `adapters.allowed_roots` is empty."""
    if not config.adapters.allowed_roots:
        return None
    return RuntimeAdapters(AdapterStore(config.adapter_store_url()), config.auth.cache_ttl_s)


class GatewayIngress:
    def __init__(
        self, config: dict[str, Any], handles: Mapping[str, Any], limiter: Any = None
    ) -> None:
        gateway_config = GatewayConfig.model_validate(config)
        route_gateway_logs(gateway_config.logging.level)
        # Set (before Ray started) by serve_app.runtime.launch when the fast HTTP path is on.
        self.behind_haproxy = os.environ.get("RAY_SERVE_ENABLE_HA_PROXY") == "1"
        keys = None
        if gateway_config.auth.enabled:
            url = gateway_config.auth.key_store_url or gateway_config.ledger.url
            keys = KeyCache(open_key_store(url), ttl_s=gateway_config.auth.cache_ttl_s)
        else:
            logger.warning("auth is disabled: every caller may use every model (demo only)")
        metrics = make_metrics()
        admission = Admission(
            gateway_config, keys, make_limiter(gateway_config, limiter), metrics=metrics
        )
        self.gateway = Gateway(
            gateway_config,
            handles,
            admission=admission,
            metrics=metrics,
            runtime_adapters=runtime_adapters(gateway_config),
        )

    def __serve_build_asgi_app__(self) -> FastAPI:
        return create_app(self.gateway, behind_serve_proxy=True, behind_haproxy=self.behind_haproxy)

    async def __del__(self) -> None:
        """Serve calls this on a clean stop: flush every buffered usage record."""
        await self.gateway.close()
