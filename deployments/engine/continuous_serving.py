"""The event-loop side of continuous batching: submit a `Sequence`, await what it delivers."""

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from deployments.engine.continuous import ContinuousEngine, Delivery, Sequence, loop_delivery
from deployments.engine.decoding import RowState
from serve_app.contracts.errors import GatewayError
from serve_app.contracts.wire import GenerationOutput, StreamChunk

SequenceFactory = Callable[[Callable[[Delivery], None], bool], Sequence]


def output_snapshot(served_model: str) -> Callable[[Delivery], Any]:
    def snapshot(item: Delivery) -> GenerationOutput | GatewayError:
        if isinstance(item, GatewayError):
            return item
        return GenerationOutput(
            text=item.text,
            input_tokens=item.input_tokens,
            output_tokens=len(item.token_ids),
            finish_reason=item.finish_reason or "length",
            served_model=served_model,
        )

    return snapshot


def chunk_snapshot(served_model: str) -> Callable[[Delivery], Any]:
    def snapshot(item: Delivery) -> StreamChunk | GatewayError:
        if isinstance(item, GatewayError):
            return item
        row: RowState = item
        return StreamChunk(
            text=row.take_delta(),
            finish_reason=row.finish_reason,
            input_tokens=row.input_tokens,
            output_tokens=len(row.token_ids),
            served_model=served_model,
        )

    return snapshot


async def run_to_end(
    engine: ContinuousEngine, make: SequenceFactory, served_model: str
) -> GenerationOutput:
    queue: asyncio.Queue[Any] = asyncio.Queue()
    deliver = loop_delivery(asyncio.get_running_loop(), queue, output_snapshot(served_model))
    sequence = make(deliver, False)
    engine.submit(sequence)
    try:
        result = await queue.get()
    finally:
        sequence.cancelled = True  # a no-op once it finished; frees the slot if we were cancelled
    if isinstance(result, GatewayError):
        raise result
    output: GenerationOutput = result
    return output


async def stream_chunks(
    engine: ContinuousEngine, make: SequenceFactory, served_model: str
) -> AsyncIterator[StreamChunk]:
    queue: asyncio.Queue[Any] = asyncio.Queue()
    deliver = loop_delivery(asyncio.get_running_loop(), queue, chunk_snapshot(served_model))
    sequence = make(deliver, True)
    engine.submit(sequence)
    try:
        while True:
            item = await queue.get()
            if isinstance(item, GatewayError):
                raise item
            if item.text or item.finish_reason is not None:
                yield item
            if item.finish_reason is not None:
                return
    finally:
        sequence.cancelled = True  # the client went away: the row leaves at the next step
