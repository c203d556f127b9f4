"""The ingress class Serve deploys, importable without the gateway's HTTP, database and SDK
stacks.

Serve's build task imports the class it binds. `GatewayIngress` pulls in FastAPI,
SQLAlchemy, Alembic and the access and accounting packages (about 0.4 s on a quiet core),
in a process that only binds the graph, on the serial path of every start and redeploy.
`IngressEntry` imports it in its constructor, on the ingress replica, and hands Serve's two
hooks to it. Local models have the same kind of stand-ins (`deployments.engine.entry`).
"""

from typing import Any


class IngressEntry:
    """`serve_app.runtime.ingress.GatewayIngress`, built in the replica."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from serve_app.runtime.ingress import GatewayIngress

        self.ingress = GatewayIngress(*args, **kwargs)

    def __serve_build_asgi_app__(self) -> Any:
        """The FastAPI app (Serve calls this once the constructor has run)."""
        return self.ingress.__serve_build_asgi_app__()

    async def __del__(self) -> None:
        """Serve calls this on a clean stop (usage records flushed, SDK clients closed)."""
        ingress = self.__dict__.get("ingress")
        if ingress is not None:
            await ingress.__del__()
