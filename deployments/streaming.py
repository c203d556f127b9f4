"""Coalescing a deployment's stream before it crosses the handle.

Every `StreamChunk` yielded by a streaming deployment method crosses to the ingress on its
own (serialised, sent, received, relayed: about a millisecond of CPU each). Upstreams
often hand several pieces over at once (one TCP read holds many SSE events), so pieces that
are ready within `window_s` of the first one held are merged into one chunk, up to
`max_pieces` of them. The first chunks of a stream, up to and including the first with
content, are never held (the time to the first token stays what it was), and only plain
text pieces of the same choice are merged: a chunk with tool call deltas, logprobs or a
finish reason is passed on as it is, after whatever was held.
"""

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator

from serve_app.contracts.wire import StreamChunk


def is_plain_text(chunk: StreamChunk) -> bool:
    return not chunk.tool_calls and chunk.logprobs is None and chunk.finish_reason is None


def merge(held: StreamChunk, chunk: StreamChunk) -> StreamChunk:
    """`held` then `chunk` (both plain text of one choice); the counts so far are the later."""
    return dataclasses.replace(
        held,
        text=held.text + chunk.text,
        input_tokens=chunk.input_tokens or held.input_tokens,
        output_tokens=chunk.output_tokens or held.output_tokens,
        served_model=chunk.served_model or held.served_model,
    )


class _Coalescer:
    """The state of one coalesced stream: what is held and the pending read, if any."""

    def __init__(self, source: AsyncIterator[StreamChunk], window_s: float, max_pieces: int):
        self.source = source
        self.window_s = window_s
        self.max_pieces = max_pieces
        self.loop = asyncio.get_running_loop()
        self.pending: asyncio.Future[StreamChunk] | None = None
        self.held: StreamChunk | None = None
        self.pieces = 0
        self.held_until = 0.0

    async def next_within(self) -> StreamChunk | None:
        """The next chunk, or None when the held piece's window ends first. Raises
        StopAsyncIteration at the end of the source."""
        if self.pending is None:
            if self.held is None:
                return await anext(self.source)
            self.pending = asyncio.ensure_future(anext(self.source))
        if self.held is not None:
            left = self.held_until - self.loop.time()
            if left <= 0:
                return None
            done, _ = await asyncio.wait({self.pending}, timeout=left)
            if not done:
                return None
        pending, self.pending = self.pending, None
        return await pending

    def hold(self, chunk: StreamChunk) -> None:
        self.held, self.pieces = chunk, 1
        self.held_until = self.loop.time() + self.window_s

    def take(self) -> StreamChunk | None:
        held, self.held, self.pieces = self.held, None, 0
        return held

    async def close(self) -> None:
        if self.pending is not None:
            self.pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.pending
        aclose = getattr(self.source, "aclose", None)
        if aclose is not None:
            await aclose()


async def coalesced(
    source: AsyncIterator[StreamChunk], window_s: float, max_pieces: int
) -> AsyncIterator[StreamChunk]:
    """`source`, with the plain text pieces that are ready together merged (see the module
    docstring). `window_s <= 0` or `max_pieces <= 1`: `source` unchanged."""
    if window_s <= 0 or max_pieces <= 1:
        async for piece in source:
            yield piece
        return
    state = _Coalescer(source, window_s, max_pieces)
    # Never held, up to and including the first piece with content (an OpenAI stream opens
    # with an empty role delta): the time to the first token does not change.
    async for first in source:
        yield first
        if first.text or not is_plain_text(first):
            break
    else:
        return
    chunk: StreamChunk | None
    try:
        while True:
            try:
                chunk = await state.next_within()
            except StopAsyncIteration:
                break
            except Exception:
                held = state.take()  # what came before the failure still goes out first
                if held is not None:
                    yield held
                raise
            for ready in _step(state, chunk):
                yield ready
        held = state.take()
        if held is not None:
            yield held
    finally:
        await state.close()


def _step(state: _Coalescer, chunk: StreamChunk | None) -> list[StreamChunk]:
    """What goes out now, given the next chunk (None: the held piece's window ended)."""
    held = state.held
    mergeable = held is not None and chunk is not None and is_plain_text(chunk)
    if mergeable and held is not None and chunk is not None and chunk.index == held.index:
        state.held = merge(held, chunk)
        state.pieces += 1
        if state.pieces < state.max_pieces:
            return []
        chunk = None
    out = [] if held is None else [state.take() or held]
    if chunk is not None:
        if is_plain_text(chunk):
            state.hold(chunk)
        else:
            out.append(chunk)
    return out
