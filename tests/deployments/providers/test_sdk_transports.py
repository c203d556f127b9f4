"""Both SDK transports (`commercial.<provider>.http_client`) against real sockets that fail:
each failure maps to the same gateway error, whichever transport carried the call."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from deployments.providers.sdk_calls import anthropic_messages_create, openai_chat_create
from deployments.providers.sdk_errors import is_sdk_error, map_sdk_error
from deployments.providers.translations import make_client
from serve_app.contracts.config import ProviderConfig

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
)
FIRST_CHUNK = b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
FIRST_CHUNK += b'"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}\n\n'


async def never_answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(100)
    await asyncio.sleep(5)


async def closes_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(100)
    writer.close()


async def breaks_mid_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(65536)
    writer.write(STREAM_HEAD + f"{len(FIRST_CHUNK):x}\r\n".encode() + FIRST_CHUNK + b"\r\n")
    await writer.drain()
    writer.close()


@asynccontextmanager
async def server(handler: Handler | None) -> AsyncIterator[int]:
    """A port with `handler` behind it; None: a port nobody listens on."""
    listening = await asyncio.start_server(handler or closes_at_once, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    if handler is None:
        listening.close()
        await listening.wait_closed()
    try:
        yield port
    finally:
        listening.close()


def client(provider: str, port: int, transport: str) -> Any:
    base = f"http://127.0.0.1:{port}" + ("/v1" if provider == "openai" else "")
    config = ProviderConfig(
        api_key_env="UNUSED", rpm=60, base_url=base, timeout_s=0.5, http_client=transport
    )
    return make_client(provider, config, "sk-test")


async def failure(provider: str, handler: Handler | None, transport: str) -> BaseException:
    create = openai_chat_create if provider == "openai" else anthropic_messages_create
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    async with server(handler) as port:
        sdk = client(provider, port, transport)
        try:
            await create(sdk, body)
        except Exception as exc:  # the one under test
            return exc
        finally:
            await sdk.close()
    raise AssertionError("the call did not fail")


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize(
    ("handler", "code"),
    [
        (None, "upstream_unreachable"),
        (closes_at_once, "upstream_unreachable"),
        (never_answers, "upstream_timeout"),
    ],
    ids=["refused", "closed", "silent"],
)
def test_failures_map_alike_on_both_transports(
    transport: str, provider: str, handler: Handler | None, code: str
) -> None:
    exc = asyncio.run(failure(provider, handler, transport))
    assert map_sdk_error(exc, provider).code == code


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
def test_a_stream_that_breaks_is_an_upstream_error_not_our_bug(transport: str) -> None:
    async def read() -> BaseException:
        async with server(breaks_mid_stream) as port:
            sdk = client("openai", port, transport)
            body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]}
            stream = await openai_chat_create(sdk, body)
            try:
                async for _ in stream:
                    pass
            except Exception as exc:  # the one under test
                return exc
            finally:
                await sdk.close()
        raise AssertionError("the stream did not break")

    exc = asyncio.run(read())
    assert is_sdk_error(exc)
    assert map_sdk_error(exc, "openai").code in ("upstream_unreachable", "upstream_error")
