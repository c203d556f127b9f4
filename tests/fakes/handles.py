"""Stand-ins for Ray Serve `DeploymentHandle`s, for ingress tests without a cluster."""

import asyncio
from collections.abc import Callable
from typing import Any


class FakeResponse:
    """Awaitable like a `DeploymentResponse`; records cancellation."""

    def __init__(self, coroutine: Any) -> None:
        self._coroutine = coroutine
        self.cancelled = False

    def __await__(self) -> Any:
        return self._coroutine.__await__()

    def cancel(self) -> None:
        self.cancelled = True


class FakeMethod:
    def __init__(self, function: Callable[..., Any], delay_s: float = 0.0) -> None:
        self.function = function
        self.delay_s = delay_s
        self.calls: list[tuple[Any, ...]] = []

    def remote(self, *args: Any) -> FakeResponse:
        self.calls.append(args)

        async def run() -> Any:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            result = self.function(*args)
            if isinstance(result, BaseException):
                raise result
            return result

        return FakeResponse(run())


class FakeHandle:
    """A handle whose methods are plain functions of the call's arguments."""

    def __init__(self, **methods: Callable[..., Any]) -> None:
        for name, function in methods.items():
            setattr(self, name, FakeMethod(function))

    def options(self, **options: Any) -> "FakeHandle":
        """Like `DeploymentHandle.options`: the same methods, the options recorded."""
        clone = FakeHandle()
        clone.__dict__.update(self.__dict__)
        clone.options_used = options  # type: ignore[attr-defined]
        return clone
