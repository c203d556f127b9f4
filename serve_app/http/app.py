"""Builds the FastAPI application around a `Gateway` (one per ingress replica)."""

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from serve_app import __version__
from serve_app.access.auth import parse_networks
from serve_app.core.gateway import Gateway
from serve_app.http.console import mount_console
from serve_app.http.error_handlers import install_error_handlers
from serve_app.http.middleware import RequestContextMiddleware
from serve_app.http.routes import (
    adapters,
    admin,
    anthropic_compat,
    commercial,
    embeddings,
    native,
    openai_compat,
    responses_api,
    usage,
)
from serve_app.http.tracing_middleware import TracingMiddleware


def create_app(
    gateway: Gateway,
    behind_serve_proxy: bool = False,
    body_timeout_s: float | None = None,
    behind_haproxy: bool = False,
) -> FastAPI:
    """`body_timeout_s`: how long a client may take to send a request body (then 408);
    `ingress.body_timeout_s` when not given. `behind_haproxy`: Ray's HAProxy adds no
    X-Forwarded-For and passes on the client's own, so none is believed (the client
    address is the peer's)."""
    config = gateway.config
    app = FastAPI(
        title="llm-gateway",
        version=__version__,
        description="One API in front of local fine-tuned models and commercial LLMs.",
    )
    app.state.gateway = gateway
    install_error_handlers(app)
    modules = (native, commercial, usage, admin, adapters, openai_compat, embeddings)
    for module in (*modules, responses_api, anthropic_compat):
        app.include_router(module.router)
    if config.ui.enabled:
        mount_console(app)
    if config.security.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=config.security.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=[
                "authorization",
                "x-api-key",
                "content-type",
                "x-request-id",
                "anthropic-version",
            ],
            expose_headers=[
                "x-request-id",
                "retry-after",
                "x-ratelimit-limit-requests",
                "x-ratelimit-remaining-requests",
                "x-ratelimit-reset-requests",
            ],
        )
    if gateway.tracing.enabled:  # inside RequestContextMiddleware: the request id is known
        app.add_middleware(TracingMiddleware, tracing=gateway.tracing)
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=config.ingress.max_body_bytes,
        proxy_echoes_request_id=behind_serve_proxy,
        trusted_proxies=() if behind_haproxy else parse_networks(config.security.trusted_proxies),
        hsts_max_age_s=config.security.hsts_max_age_s,
        access_log=config.logging.access_log,
        body_timeout_s=body_timeout_s or config.ingress.body_timeout_s,
    )
    return app
