"""Providers that run inside each ingress replica (`commercial.<provider>.placement: ingress`).

The gateway calls every model through a handle: `handle.method.remote(...)` and
`handle.options(stream=True).method.remote(...)`. `InProcessHandle` gives an object in this
process that calling surface, so the core does not know whether a provider proxy is a Serve
deployment (an actor hop per call) or a local object (a coroutine). Errors are raised as they
are (a `GatewayError` reaches the core's one error mapping unchanged; anything else is our
bug, a logged 500).
"""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from serve_app.contracts.config import GatewayConfig


class InProcessStream:
    """What a streaming `.remote()` returns: async iteration, and `cancel()` closing the
    generator (its `finally` closes the upstream stream)."""

    def __init__(self, generator: AsyncIterator[Any]) -> None:
        self._generator = generator
        self._closing: asyncio.Task[None] | None = None

    def __aiter__(self) -> "InProcessStream":
        return self

    def __anext__(self) -> Awaitable[Any]:
        return self._generator.__anext__()

    def cancel(self) -> None:
        aclose = getattr(self._generator, "aclose", None)
        if aclose is not None and self._closing is None:
            self._closing = asyncio.ensure_future(aclose())


class InProcessMethod:
    def __init__(self, method: Callable[..., Any], stream: bool) -> None:
        self._method = method
        self._stream = stream

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        """A task (awaitable, with `cancel()`) like a `DeploymentResponse`, or a stream."""
        if self._stream:
            return InProcessStream(self._method(*args, **kwargs))
        return asyncio.ensure_future(self._method(*args, **kwargs))


class InProcessHandle:
    """A deployment handle's calling surface over an object in this process."""

    def __init__(self, target: Any, stream: bool = False) -> None:
        self._target = target
        self._stream = stream

    def options(self, *, stream: bool = False, **_: Any) -> "InProcessHandle":
        return InProcessHandle(self._target, stream)

    @property
    def target(self) -> Any:
        """The object this handle calls."""
        return self._target

    def __getattr__(self, name: str) -> InProcessMethod:
        if name.startswith("_"):
            raise AttributeError(name)
        return InProcessMethod(getattr(self._target, name), self._stream)


def in_ingress_providers(config: GatewayConfig, limiter: Any) -> dict[str, InProcessHandle]:
    """A proxy per provider placed in the ingress, built in this replica (its SDK client is
    made once, here), sharing the cluster's `RateLimiter` through `limiter`. The SDKs are
    imported only when some provider runs here."""
    placed = config.commercial.placed("ingress") if config.commercial is not None else []
    if not placed:
        return {}
    from deployments.providers.proxy import ProviderProxy

    return {
        name: InProcessHandle(
            ProviderProxy(name, provider.model_dump(mode="json"), models, limiter)
        )
        for name, provider, models in placed
    }
