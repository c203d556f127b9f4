"""The ingress deployment: a plain class that builds its FastAPI app at replica start.

`serve_app.runtime.builder` wraps it with `serve.ingress()` and `serve.deployment` at build time.
"""

import logging
import os
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI
from sqlalchemy import Engine

from serve_app.access.adapter_store import AdapterStore
from serve_app.access.admission import Admission, HandleLimiter, Limiter
from serve_app.access.key_cache import KeyCache
from serve_app.access.key_store import KeyStore
from serve_app.accounting.ledger import Ledger
from serve_app.accounting.usage_store import UsageStore, open_engine
from serve_app.contracts.config import GatewayConfig, MetricsConfig
from serve_app.contracts.tracing import tracing_from_env
from serve_app.core.gateway import Gateway
from serve_app.core.runtime_adapters import RuntimeAdapters
from serve_app.http.app import create_app
from serve_app.runtime.in_process import in_ingress_providers

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


def make_metrics(config: MetricsConfig) -> Any:
    from serve_app.core.metrics import GatewayMetrics

    return GatewayMetrics(config.enabled, flush_interval_s=config.flush_interval_s)


def runtime_adapters(config: GatewayConfig, engine: Engine) -> RuntimeAdapters | None:
    """The registry of run-time adapters (in the ledger's database, `engine`, unless
    `adapters.store_url` names another); none while `adapters.allowed_roots` is empty."""
    if not config.adapters.allowed_roots:
        return None
    url = config.adapter_store_url()
    if url != config.ledger.url:
        engine = open_engine(url, config.auto_migrate())
    return RuntimeAdapters(AdapterStore(engine), config.auth.cache_ttl_s)


class GatewayIngress:
    def __init__(
        self,
        config: dict[str, Any],
        handles: Mapping[str, Any],
        limiter: Any = None,
        provider_limiter: Any = None,
    ) -> None:
        """`limiter`: the shared RateLimiter for keys and client addresses (backend `ray`);
        `provider_limiter`: the same RateLimiter, for the providers placed in the ingress."""
        gateway_config = GatewayConfig.model_validate(config)
        local = in_ingress_providers(gateway_config, provider_limiter)
        self.local_providers = [handle.target for handle in local.values()]
        handles = {**handles, **local}
        route_gateway_logs(gateway_config.logging.level)
        # Set (before Ray started) by serve_app.runtime.launch when the fast HTTP path is on.
        self.behind_haproxy = os.environ.get("RAY_SERVE_ENABLE_HA_PROXY") == "1"
        # One pooled engine: keys, usage and running spend share the database. Its schema is
        # checked (and upgraded when ledger.auto_migrate) before the replica serves.
        engine = open_engine(gateway_config.ledger.url, gateway_config.auto_migrate())
        ledger = Ledger(gateway_config.ledger, UsageStore(engine))
        keys = None
        if gateway_config.auth.enabled:
            keys = KeyCache(KeyStore(engine), ttl_s=gateway_config.auth.cache_ttl_s)
            ledger.on_written = keys.written
        else:
            logger.warning("auth is disabled: every caller may use every model (demo only)")
        metrics = make_metrics(gateway_config.metrics)
        admission = Admission(
            gateway_config, keys, make_limiter(gateway_config, limiter), metrics=metrics
        )
        # Checked once per replica: without OTEL_EXPORTER_OTLP_ENDPOINT no span is ever made.
        tracing = tracing_from_env(
            os.environ, gateway_config.tracing.service_name, gateway_config.tracing.capture_content
        )
        self.gateway = Gateway(
            gateway_config,
            handles,
            ledger=ledger,
            admission=admission,
            metrics=metrics,
            tracing=tracing,
            runtime_adapters=runtime_adapters(gateway_config, engine),
        )

    def __serve_build_asgi_app__(self) -> FastAPI:
        return create_app(self.gateway, behind_serve_proxy=True, behind_haproxy=self.behind_haproxy)

    async def __del__(self) -> None:
        """Serve calls this on a clean stop: flush every buffered usage record, then close
        the SDK clients of the providers held here."""
        await self.gateway.close()
        for provider in self.local_providers:
            await provider.close()
