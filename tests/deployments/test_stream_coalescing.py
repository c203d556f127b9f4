"""`deployments.streaming.coalesced`: ready text pieces cross the handle together."""

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest

from deployments.streaming import coalesced
from serve_app.contracts.wire import StreamChunk, TokenLogprob, ToolCallDelta

WINDOW_S = 0.05


async def source(
    chunks: Sequence[StreamChunk | float | Exception], closed: list[bool] | None = None
) -> AsyncIterator[StreamChunk]:
    """Yields the chunks; a float sleeps that long, an exception is raised."""
    try:
        for item in chunks:
            if isinstance(item, float):
                await asyncio.sleep(item)
            elif isinstance(item, Exception):
                raise item
            else:
                yield item
    finally:
        if closed is not None:
            closed.append(True)


async def collect(stream: AsyncIterator[StreamChunk]) -> list[StreamChunk]:
    return [chunk async for chunk in stream]


def texts(chunks: list[StreamChunk]) -> list[str]:
    return [chunk.text for chunk in chunks]


async def test_ready_pieces_merge_but_the_first_goes_alone() -> None:
    pieces = [StreamChunk(t, output_tokens=n) for n, t in enumerate("abcde", 1)]
    final = StreamChunk("", "stop", 3, 5, "gpt")
    out = await collect(coalesced(source([*pieces, final]), WINDOW_S, 16))
    assert texts(out) == ["a", "bcde", ""]
    assert out[1].output_tokens == 5 and out[1].finish_reason is None
    assert out[2] == final


async def test_the_first_chunk_is_never_held() -> None:
    gate = asyncio.Event()

    async def slow() -> AsyncIterator[StreamChunk]:
        yield StreamChunk("first")
        await gate.wait()
        yield StreamChunk("second")

    stream = coalesced(slow(), 10.0, 16)
    first = await asyncio.wait_for(anext(stream), 1.0)  # not after the 10 s window
    assert first.text == "first"
    gate.set()
    assert texts(await collect(stream)) == ["second"]


async def test_empty_opening_chunks_and_the_first_content_are_never_held() -> None:
    """An OpenAI stream opens with an empty role delta: the first token goes out at once
    too, and only what follows it is coalesced."""
    gate = asyncio.Event()

    async def slow() -> AsyncIterator[StreamChunk]:
        yield StreamChunk("")
        yield StreamChunk("Hello")
        await gate.wait()
        yield StreamChunk(" world")
        yield StreamChunk("!")

    stream = coalesced(slow(), 10.0, 16)
    opening = [await asyncio.wait_for(anext(stream), 1.0) for _ in range(2)]
    assert texts(opening) == ["", "Hello"]  # neither waited for the 10 s window
    gate.set()
    assert "".join(texts(await collect(stream))) == " world!"


async def test_pieces_further_apart_than_the_window_go_on_their_own() -> None:
    items = [StreamChunk("a"), StreamChunk("b"), WINDOW_S * 3, StreamChunk("c")]
    out = await collect(coalesced(source(items), WINDOW_S, 16))
    assert texts(out) == ["a", "b", "c"]


async def test_at_most_max_pieces_per_chunk() -> None:
    items = [StreamChunk(t) for t in "abcdefgh"]
    out = await collect(coalesced(source(items), WINDOW_S, 3))
    assert texts(out) == ["a", "bcd", "efg", "h"]


async def test_tool_calls_logprobs_other_choices_and_finish_are_never_merged() -> None:
    tool = StreamChunk("", tool_calls=(ToolCallDelta(0, "call_1", "f", "{"),))
    scored = StreamChunk("x", logprobs=(TokenLogprob("x", -0.1),))
    items = [
        StreamChunk("a"),
        StreamChunk("b"),
        StreamChunk("c"),
        tool,
        StreamChunk("d"),
        StreamChunk("e", index=1),
        StreamChunk("f", index=1),
        scored,
        StreamChunk("g"),
        StreamChunk("", "stop", 1, 2),
        StreamChunk("late"),
    ]
    out = await collect(coalesced(source(items), WINDOW_S, 16))
    assert texts(out) == ["a", "bc", "", "d", "ef", "x", "g", "", "late"]
    assert out[2] is tool and out[5] is scored and out[7].finish_reason == "stop"
    assert [chunk.index for chunk in out] == [0, 0, 0, 0, 1, 0, 0, 0, 0]


async def test_a_failure_comes_after_what_was_held() -> None:
    items = [StreamChunk("a"), StreamChunk("b"), StreamChunk("c"), RuntimeError("upstream")]
    stream = coalesced(source(items), WINDOW_S, 16)
    seen = []
    with pytest.raises(RuntimeError, match="upstream"):
        async for chunk in stream:
            seen.append(chunk.text)
    assert seen == ["a", "bc"]


async def test_closing_the_stream_closes_the_source() -> None:
    closed: list[bool] = []
    items = [StreamChunk("a"), StreamChunk("b"), 5.0, StreamChunk("c")]
    stream = coalesced(source(items, closed), WINDOW_S, 16)
    assert (await anext(stream)).text == "a"
    assert (await anext(stream)).text == "b"  # its window ended while the source slept
    await stream.aclose()  # the client left: the pending read is cancelled
    assert closed == [True]


async def test_a_zero_window_passes_the_source_through() -> None:
    items = [StreamChunk(t) for t in "abc"]
    assert texts(await collect(coalesced(source(items), 0.0, 16))) == ["a", "b", "c"]
    assert await collect(coalesced(source([]), WINDOW_S, 16)) == []
