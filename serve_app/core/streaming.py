"""Streaming a generation from a deployment through a streaming `DeploymentHandle`.

`open_stream` pulls the first chunk before the HTTP response starts, so errors that happen
before any token (unknown adapter, provider down, rate limit) still get their own status
code. The rest is relayed chunk by chunk; when the client goes away the handle's generator
is cancelled, which stops the decode (local) or closes the upstream stream (commercial).
Usage is accounted once, when the stream ends, however it ends.
"""

import asyncio
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any

from serve_app.access.auth import RequestContext
from serve_app.contracts.errors import GatewayError, UpstreamTimeoutError
from serve_app.contracts.wire import (
    GenerationOutput,
    GenerationParams,
    StreamChunk,
    estimate_tokens,
)
from serve_app.core.catalog import ModelRoute
from serve_app.core.handle_calls import map_handle_error


def estimate_prompt_tokens(params: GenerationParams) -> int:
    """The prompt's tokens, estimated from its characters (at least 1)."""
    return max(1, estimate_tokens(params.prompt_chars()))


AccountFn = Callable[
    [ModelRoute, str, RequestContext, float, GenerationOutput | None, GatewayError | None],
    tuple[float, float],
]


@dataclass(slots=True)
class StreamResult:
    """What a finished (or abandoned) stream produced, for the final frame and the ledger."""

    text: list[str] = field(default_factory=list)
    finish_reason: str = "stop"
    input_tokens: int = 0
    output_tokens: int = 0
    served_model: str = ""
    latency_ms: float = 0.0
    cost_usd: float = 0.0
    first_token_ms: float | None = None
    tool_pieces: int = 0  # streamed tool-call pieces, for the estimate of an abandoned stream
    tool_chars: int = 0

    def absorb(self, chunk: StreamChunk) -> None:
        self.text.append(chunk.text)
        if chunk.tool_calls:
            self.tool_pieces += len(chunk.tool_calls)
            self.tool_chars += sum(len(p.arguments) + len(p.name or "") for p in chunk.tool_calls)
        self.input_tokens = chunk.input_tokens or self.input_tokens
        self.output_tokens = chunk.output_tokens or self.output_tokens
        self.served_model = chunk.served_model or self.served_model
        if chunk.finish_reason and not chunk.index:  # other choices finish in their chunks
            self.finish_reason = chunk.finish_reason

    def estimate_missing_counts(self, params: GenerationParams) -> None:
        """Providers report usage only at the end of a stream; for an abandoned one, estimate
        from what was relayed, text and tool-call pieces alike (about one token per chunk,
        or 4 characters per token)."""
        text = "".join(self.text)
        if not self.output_tokens and (text or self.tool_pieces):
            chunks = sum(1 for piece in self.text if piece) + self.tool_pieces
            chars = len(text) + self.tool_chars
            self.output_tokens = max(chunks, estimate_tokens(chars))
        if not self.input_tokens:
            self.input_tokens = estimate_prompt_tokens(params)

    def output(self) -> GenerationOutput:
        return GenerationOutput(
            text="".join(self.text),
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            finish_reason=self.finish_reason,
            served_model=self.served_model,
        )


class ChunkStream:
    """An opened stream: `first` is already received; iterate for the rest."""

    def __init__(
        self,
        route: ModelRoute,
        params: GenerationParams,
        ctx: RequestContext,
        response: Any,
        account: AccountFn,
    ) -> None:
        self.route = route
        self.params = params
        self.ctx = ctx
        self.response = response
        self.account = account
        self.result = StreamResult()
        self.started = time.perf_counter()
        self._accounted = False

    async def first(self, timeout_s: float) -> StreamChunk:
        """The first chunk within the deadline; raises the mapped `GatewayError` if the stream
        fails at once (504 past the deadline). A client gone meanwhile cancels the stream."""
        try:
            chunk: StreamChunk = await asyncio.wait_for(self.response.__anext__(), timeout_s)
        except StopAsyncIteration:
            chunk = StreamChunk("", "stop")
        except TimeoutError:
            self.response.cancel()
            error: GatewayError = UpstreamTimeoutError(
                f"The {self.route.deployment!r} deployment sent nothing within {timeout_s:g} s.",
                code="deadline_exceeded",
            )
            self.finish(error)
            raise error from None
        except asyncio.CancelledError:
            self.close()
            raise
        except Exception as exc:
            error = map_handle_error(exc, self.route.deployment)
            self.finish(error)
            raise error from None
        self.result.first_token_ms = (time.perf_counter() - self.started) * 1000
        self.result.absorb(chunk)
        return chunk

    async def rest(self) -> AsyncGenerator[StreamChunk, None]:
        """The remaining chunks. Mid-stream failures raise `GatewayError` (after accounting);
        a client that goes away closes this generator, which cancels the deployment's."""
        completed = False
        try:
            async for chunk in self.response:
                self.result.absorb(chunk)
                yield chunk
            completed = True
        except Exception as exc:
            error = map_handle_error(exc, self.route.deployment)
            self.finish(error)
            raise error from None
        finally:
            if completed:
                self.finish(None)
            else:
                self.close()

    def finish(self, error: GatewayError | None) -> None:
        if self._accounted:
            return
        self._accounted = True
        latency, cost = self.account(
            self.route,
            self.params.request_id,
            self.ctx,
            self.started,
            self.result.output(),
            error,
        )
        self.result.latency_ms, self.result.cost_usd = latency, cost

    def close(self) -> None:
        """Account for a stream abandoned before it completed (client disconnect): cancel the
        deployment's generator and record what was produced (estimated where the upstream
        sends its counts only at the end)."""
        if not self._accounted:
            self.response.cancel()
            self.result.finish_reason = "cancelled"
            self.result.estimate_missing_counts(self.params)
            self.finish(None)


def open_stream(
    route: ModelRoute, params: GenerationParams, ctx: RequestContext, account: AccountFn
) -> ChunkStream:
    response = route.handle.options(stream=True).generate_stream.remote(params)
    return ChunkStream(route, params, ctx, response, account)
