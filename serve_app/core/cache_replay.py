"""A cached answer replayed as a stream: the same `StreamChunk`s a deployment would send
(text word by word, then each tool call, then the finish reason and the token counts),
behind the interface of a streaming handle's response (async iteration and `cancel()`), so
the ordinary `ChunkStream` relays and accounts for it."""

import re
from collections.abc import Iterator

from serve_app.contracts.wire import GenerationOutput, StreamChunk, ToolCall, ToolCallDelta

_WORD = re.compile(r"\s*\S+\s*")


def text_pieces(text: str) -> list[str]:
    """One piece per word with its surrounding whitespace; they join back to `text`."""
    pieces = _WORD.findall(text)
    leftover = text[len("".join(pieces)) :]
    if leftover:
        pieces.append(leftover)
    return pieces


def _choice_chunks(
    index: int, text: str, tool_calls: tuple[ToolCall, ...], served: str
) -> Iterator[StreamChunk]:
    for piece in text_pieces(text):
        yield StreamChunk(piece, served_model=served, index=index)
    for position, call in enumerate(tool_calls):
        delta = ToolCallDelta(position, call.id, call.name, call.arguments)
        yield StreamChunk("", served_model=served, index=index, tool_calls=(delta,))


def replay_chunks(output: GenerationOutput, served: str) -> list[StreamChunk]:
    chunks = list(_choice_chunks(0, output.text, output.tool_calls, served))
    for choice in output.more_choices:
        chunks += _choice_chunks(choice.index, choice.text, choice.tool_calls, served)
        last = StreamChunk("", choice.finish_reason, served_model=served, index=choice.index)
        chunks.append(last)
    chunks.append(
        StreamChunk(
            "",
            output.finish_reason,
            input_tokens=output.input_tokens,
            output_tokens=output.output_tokens,
            served_model=served,
        )
    )
    return chunks


class ReplayResponse:
    """What `handle.options(stream=True).generate_stream.remote()` returns, from memory."""

    def __init__(self, chunks: list[StreamChunk]) -> None:
        self._chunks = iter(chunks)
        self.cancelled = False

    def __aiter__(self) -> "ReplayResponse":
        return self

    async def __anext__(self) -> StreamChunk:
        if self.cancelled:
            raise StopAsyncIteration
        try:
            return next(self._chunks)
        except StopIteration:
            raise StopAsyncIteration from None

    def cancel(self) -> None:
        self.cancelled = True
