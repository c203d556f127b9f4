"""Server-sent events for any API: relay a `ChunkStream` through that API's formatter."""

from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from starlette.responses import StreamingResponse

from serve_app.contracts.errors import GatewayError
from serve_app.contracts.wire import StreamChunk
from serve_app.core.streaming import ChunkStream, StreamResult

SSE_HEADERS = {"X-Accel-Buffering": "no"}


@dataclass(frozen=True, slots=True)
class SSEFormat:
    """How one API frames a stream: its opening, each chunk (text, tool-call pieces,
    logprobs), the end, an error."""

    start: bytes
    delta: Callable[[StreamChunk], bytes]
    end: Callable[[StreamResult], bytes]
    error: Callable[[GatewayError], bytes]


class ChunkStreamResponse(StreamingResponse):
    """A StreamingResponse that closes (cancels and accounts) its chunk stream however the
    response ends, even if the client left before the body iterator ever started."""

    def __init__(self, frames: AsyncIterator[bytes], stream: ChunkStream) -> None:
        super().__init__(frames, media_type="text/event-stream", headers=SSE_HEADERS)
        self.chunk_stream = stream

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.chunk_stream.close()


def _carries(chunk: StreamChunk) -> bool:
    return bool(chunk.text or chunk.tool_calls or chunk.logprobs or chunk.index)


def sse_response(stream: ChunkStream, first: StreamChunk, fmt: SSEFormat) -> StreamingResponse:
    async def frames() -> AsyncIterator[bytes]:
        yield fmt.start + (fmt.delta(first) if _carries(first) else b"")
        try:
            async with aclosing(stream.rest()) as chunks:
                async for chunk in chunks:
                    if _carries(chunk):
                        yield fmt.delta(chunk)
        except GatewayError as error:
            yield fmt.error(error)
            return
        yield fmt.end(stream.result)

    return ChunkStreamResponse(frames(), stream)
