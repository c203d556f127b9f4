"""Server-sent events for any API: relay a `ChunkStream` through that API's formatter."""

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from starlette.responses import StreamingResponse

from serve_app.errors import GatewayError
from serve_app.schemas.internal import StreamChunk
from serve_app.streaming import ChunkStream, StreamResult

SSE_HEADERS = {"X-Accel-Buffering": "no"}


@dataclass(frozen=True, slots=True)
class SSEFormat:
    """How one API frames a stream: its opening, each text delta, the end, an error."""

    start: bytes
    delta: Callable[[str], bytes]
    end: Callable[[StreamResult], bytes]
    error: Callable[[GatewayError], bytes]


def sse_response(stream: ChunkStream, first: StreamChunk, fmt: SSEFormat) -> StreamingResponse:
    async def frames() -> AsyncIterator[bytes]:
        yield fmt.start + (fmt.delta(first.text) if first.text else b"")
        try:
            async for chunk in stream.rest():
                if chunk.text:
                    yield fmt.delta(chunk.text)
        except GatewayError as error:
            yield fmt.error(error)
            return
        yield fmt.end(stream.result)

    return StreamingResponse(frames(), media_type="text/event-stream", headers=SSE_HEADERS)
