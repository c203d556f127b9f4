"""Providers placed in the ingress: the handle surface over a local object, and the graph."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from serve_app.contracts.errors import GatewayError, UpstreamTimeoutError
from serve_app.core.handle_calls import call_with_deadline
from serve_app.runtime.builder import bind_graph, providers_in_ingress
from serve_app.runtime.config_check import validate_args
from serve_app.runtime.in_process import InProcessHandle, in_ingress_providers


class Target:
    """A provider-proxy-shaped object that records what happened to its calls."""

    def __init__(self) -> None:
        self.events: list[str] = []

    async def generate(self, text: str) -> str:
        return text.upper()

    async def fail(self) -> None:
        raise UpstreamTimeoutError("slow upstream", code="upstream_timeout")

    async def hang(self) -> None:
        try:
            await asyncio.sleep(60)
        finally:
            self.events.append("hang cancelled")

    async def generate_stream(self, count: int) -> AsyncIterator[int]:
        try:
            for index in range(count):
                yield index
                await asyncio.sleep(0)
        finally:
            self.events.append("stream closed")


def test_calls_results_and_errors_are_the_targets_own() -> None:
    target = Target()
    handle = InProcessHandle(target)

    async def run() -> tuple[str, GatewayError]:
        answer = await call_with_deadline(handle.generate.remote("hi"), "p", 5)
        with pytest.raises(GatewayError) as error:
            await call_with_deadline(handle.fail.remote(), "p", 5)
        return answer, error.value

    answer, error = asyncio.run(run())
    assert answer == "HI" and error.code == "upstream_timeout"


def test_a_deadline_cancels_the_call_in_the_target() -> None:
    target = Target()

    async def run() -> None:
        with pytest.raises(UpstreamTimeoutError):
            await call_with_deadline(InProcessHandle(target).hang.remote(), "p", 0.05)
        await asyncio.sleep(0)

    asyncio.run(run())
    assert target.events == ["hang cancelled"]


def test_streams_iterate_and_cancel_closes_the_generator() -> None:
    target = Target()
    handle = InProcessHandle(target).options(stream=True)

    async def run() -> tuple[list[int], list[int]]:
        whole = [item async for item in handle.generate_stream.remote(3)]
        stream = handle.generate_stream.remote(100)
        first = [await stream.__anext__(), await stream.__anext__()]
        stream.cancel()
        await asyncio.sleep(0.01)
        return whole, first

    whole, first = asyncio.run(run())
    assert whole == [0, 1, 2] and first == [0, 1]
    assert target.events == ["stream closed", "stream closed"]


def test_private_names_are_not_forwarded() -> None:
    with pytest.raises(AttributeError):
        _ = InProcessHandle(Target())._secret


def commercial(**openai: Any) -> dict[str, Any]:
    return {"commercial": {"openai": openai, "anthropic": {"placement": "deployment"}}}


def test_the_ingress_builds_the_providers_placed_in_it() -> None:
    config = validate_args(commercial())
    handles = in_ingress_providers(config, limiter=None)
    assert set(handles) == {"openai"}
    assert type(handles["openai"]._target).__name__ == "ProviderProxy"
    assert providers_in_ingress(config)
    assert not providers_in_ingress(validate_args(commercial(placement="deployment")))


def test_the_graph_has_a_proxy_deployment_only_for_placement_deployment() -> None:
    app = bind_graph(validate_args(commercial()))
    ingress = app._bound_deployment
    _, handles, _, provider_limiter = ingress.init_args
    assert "openai" not in handles and "anthropic" in handles
    assert provider_limiter is not None  # the shared RateLimiter, for the in-ingress proxy
