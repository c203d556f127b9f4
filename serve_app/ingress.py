"""The ingress deployment: a plain class that builds its FastAPI app at replica start.

`serve_app.builder` wraps it with `serve.ingress()` and `serve.deployment` at build time.
"""

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI

from serve_app.app import create_app
from serve_app.config import GatewayConfig
from serve_app.gateway import Gateway


class GatewayIngress:
    def __init__(self, config: dict[str, Any], handles: Mapping[str, Any]) -> None:
        self.gateway = Gateway(GatewayConfig.model_validate(config), handles)

    def __serve_build_asgi_app__(self) -> FastAPI:
        return create_app(self.gateway, behind_serve_proxy=True)

    async def __del__(self) -> None:
        """Serve calls this on a clean stop: flush every buffered usage record."""
        await self.gateway.close()
