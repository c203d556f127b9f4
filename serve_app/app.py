"""Builds the FastAPI application around a `Gateway` (one per ingress replica)."""

from fastapi import FastAPI

from serve_app import __version__
from serve_app.error_handlers import install_error_handlers
from serve_app.gateway import Gateway
from serve_app.middleware import RequestContextMiddleware
from serve_app.routes import anthropic_compat, commercial, native, openai_compat


def create_app(gateway: Gateway, behind_serve_proxy: bool = False) -> FastAPI:
    app = FastAPI(
        title="llm-gateway",
        version=__version__,
        description="One API in front of local fine-tuned models and commercial LLMs.",
    )
    app.state.gateway = gateway
    install_error_handlers(app)
    app.include_router(native.router)
    app.include_router(commercial.router)
    app.include_router(openai_compat.router)
    app.include_router(anthropic_compat.router)
    app.add_middleware(
        RequestContextMiddleware,  # type: ignore[arg-type]
        max_body_bytes=gateway.config.ingress.max_body_bytes,
        proxy_echoes_request_id=behind_serve_proxy,
    )
    return app
