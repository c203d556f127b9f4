"""The event-loop side of continuous batching: a request becomes `n` sequences (one per
choice, each with its own sampler) that the engine decodes side by side; their rows are
turned into the wire types on the engine thread and handed to the event loop."""

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from deployments.engine.continuous import BASE, ContinuousEngine, Delivery, Sequence
from deployments.engine.decoding import RowState, SamplingParams
from deployments.engine.requests import ChoiceStreams, to_output
from serve_app.contracts.errors import GatewayError
from serve_app.contracts.wire import GenerationOutput, GenerationParams, StreamChunk

# Run once per request on the engine thread: (prompt ids, one sampler per choice) or an error.
Prepare = Callable[[], tuple[list[int], list[Any]] | GatewayError]


@dataclass(eq=False)
class ContinuousRequest:
    params: GenerationParams
    sampling: SamplingParams
    prepare: Prepare
    served_model: str
    tools: bool
    sequences: list[Sequence] = field(default_factory=list)
    _prepared: Any = None

    def _prepare_choice(self, index: int) -> list[int] | GatewayError:
        if self._prepared is None:
            self._prepared = self.prepare()
        if isinstance(self._prepared, GatewayError):
            return self._prepared
        ids, samplers = self._prepared
        self.sequences[index].sampler = samplers[index]
        return list(ids)

    def build(self, deliver: Callable[[Delivery], None], stream: bool) -> list[Sequence]:
        for index in range(max(1, self.params.n)):
            self.sequences.append(
                Sequence(
                    prepare=lambda index=index: self._prepare_choice(index),  # type: ignore[misc]
                    sampling=self.sampling,
                    deliver=deliver,
                    adapter=self.params.adapter or BASE,
                    deadline=self.params.deadline,
                    stream=stream,
                )
            )
        return self.sequences

    def rows(self) -> list[RowState] | None:
        rows = [s.row for s in self.sequences]
        return None if any(row is None for row in rows) else rows  # type: ignore[return-value]

    def cancel(self) -> None:
        for sequence in self.sequences:
            sequence.cancelled = True


def _post(loop: asyncio.AbstractEventLoop, queue: "asyncio.Queue[Any]", item: Any) -> None:
    if item is not None:
        loop.call_soon_threadsafe(queue.put_nowait, item)


async def run_to_end(engine: ContinuousEngine, request: ContinuousRequest) -> GenerationOutput:
    """The whole answer once every choice has ended (or the first error)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()

    def deliver(item: Delivery) -> None:  # engine thread: called when a row ends
        if isinstance(item, GatewayError):
            _post(loop, queue, item)
            return
        rows = request.rows()
        if rows is not None and all(row.finished for row in rows):
            _post(loop, queue, to_output(request.params, rows, request.served_model, request.tools))

    engine.submit_all(request.build(deliver, stream=False))
    try:
        result = await queue.get()
    finally:
        request.cancel()  # a no-op once finished; frees the slots if we were cancelled
    if isinstance(result, GatewayError):
        raise result
    output: GenerationOutput = result
    return output


async def stream_chunks(
    engine: ContinuousEngine, request: ContinuousRequest
) -> AsyncIterator[StreamChunk]:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    streams = ChoiceStreams(request.params, request.served_model, request.tools)

    def deliver(item: Delivery) -> None:  # engine thread: after every step of a row
        if isinstance(item, GatewayError):
            _post(loop, queue, item)
            return
        rows = request.rows()  # all choices admitted: their pieces go out together
        if rows is not None:
            _post(loop, queue, streams.step(rows, False) or None)

    engine.submit_all(request.build(deliver, stream=True))
    choices = max(1, request.params.n)
    finished: set[int] = set()
    try:
        while len(finished) < choices:
            item = await queue.get()
            if isinstance(item, GatewayError):
                raise item
            for chunk in item:
                if chunk.finish_reason is not None:
                    finished.add(chunk.index)
                yield chunk
    finally:
        request.cancel()  # the client went away: the rows leave at the next step
