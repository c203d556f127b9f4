"""The response cache alone: keys, the entry codec, the memory and Redis stores."""

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from serve_app.contracts.config import CacheConfig
from serve_app.contracts.wire import (
    ChatMessage,
    Choice,
    GenerationOutput,
    GenerationParams,
    OutputFormat,
    TokenLogprob,
    ToolCall,
    ToolSpec,
    TopLogprob,
)
from serve_app.core.cache import ResponseCache, cache_key
from serve_app.core.cache_codec import decode_entry, encode_entry
from serve_app.core.cache_replay import ReplayResponse, replay_chunks, text_pieces
from serve_app.core.cache_stores import MemoryCacheStore, RedisCacheStore
from tests.fakes.redis_server import free_port, redis_server


def params(**fields: object) -> GenerationParams:
    base: dict[str, object] = {
        "request_id": "r1",
        "model_id": "demo",
        "prompt": "",
        "max_tokens": 16,
        "temperature": 0.0,
        "messages": (ChatMessage("user", "hi"),),
    }
    return GenerationParams(**{**base, **fields})  # type: ignore[arg-type]


def test_the_key_ignores_request_id_deadline_user_and_metadata() -> None:
    one = params()
    other = params(request_id="r2", deadline=123.0, user="u", metadata=(("a", "b"),))
    assert cache_key(one) == cache_key(other)


@pytest.mark.parametrize(
    "change",
    [
        {"model_id": "other"},
        {"adapter": "formal"},
        {"max_tokens": 17},
        {"messages": (ChatMessage("user", "hi!"),)},
        {"stop": ("x",)},
        {"top_p": 0.5},
        {"seed": 1},
        {"n": 2},
        {"tools": (ToolSpec("f", {"type": "object"}),)},
    ],
)
def test_anything_that_changes_the_answer_changes_the_key(change: dict[str, object]) -> None:
    assert cache_key(params(**change)) != cache_key(params())


def test_json_schemas_are_compared_whatever_their_key_order() -> None:
    a = {"type": "object", "properties": {"x": {"type": "string"}, "y": {"type": "integer"}}}
    b = {"properties": {"y": {"type": "integer"}, "x": {"type": "string"}}, "type": "object"}
    assert cache_key(params(tools=(ToolSpec("f", a),))) == cache_key(
        params(tools=(ToolSpec("f", b),))
    )
    fmt_a, fmt_b = OutputFormat("json_schema", a, "s"), OutputFormat("json_schema", b, "s")
    assert cache_key(params(output_format=fmt_a)) == cache_key(params(output_format=fmt_b))


def test_only_deterministic_requests_of_listed_models_get_a_key() -> None:
    cache = ResponseCache(CacheConfig(enabled=True))
    assert cache.key_for(params()) is not None
    assert cache.key_for(params(temperature=0.7)) is None
    assert cache.key_for(params(temperature=None)) is None
    assert cache.key_for(params(temperature=0.7, seed=3)) is not None
    only = ResponseCache(CacheConfig(enabled=True, models=["gpt"]))
    assert only.key_for(params()) is None
    assert only.key_for(params(model_id="gpt")) is not None
    assert ResponseCache(CacheConfig(enabled=False)).key_for(params()) is None


def test_the_codec_keeps_tool_calls_logprobs_and_choices() -> None:
    logprobs = (TokenLogprob("a", -0.1, (97,), (TopLogprob("b", -2.0, None),)),)
    output = GenerationOutput(
        "text",
        5,
        7,
        "tool_calls",
        "gpt",
        tool_calls=(ToolCall("call_1", "f", '{"x": 1}'),),
        logprobs=logprobs,
        more_choices=(Choice(1, "other", "stop", (), None),),
    )
    assert decode_entry(encode_entry(output, "gpt-4o", 1.0)) == (output, "gpt-4o")
    assert decode_entry(b"not json") is None
    assert decode_entry(b'{"v": 99}') is None


def test_a_replay_yields_words_tool_calls_then_the_counts() -> None:
    assert "".join(text_pieces(" Hello  big world. ")) == " Hello  big world. "
    output = GenerationOutput(
        "Hi there", 4, 2, "tool_calls", "m", tool_calls=(ToolCall("c", "f", "{}"),)
    )
    chunks = replay_chunks(output, "m")
    assert [c.text for c in chunks] == ["Hi ", "there", "", ""]
    assert chunks[2].tool_calls[0].name == "f" and chunks[2].tool_calls[0].arguments == "{}"
    last = chunks[-1]
    assert (last.finish_reason, last.input_tokens, last.output_tokens) == ("tool_calls", 4, 2)

    async def drain(response: ReplayResponse) -> list[str]:
        return [chunk.text async for chunk in response]

    assert asyncio.run(drain(ReplayResponse(chunks)))[:2] == ["Hi ", "there"]
    stopped = ReplayResponse(chunks)
    stopped.cancel()
    assert asyncio.run(drain(stopped)) == []


async def test_memory_store_evicts_the_least_recently_used_by_count_and_bytes() -> None:
    store = MemoryCacheStore(ttl_s=60, max_entries=2, max_bytes=10_000)
    await store.put("a", b"1")
    await store.put("b", b"2")
    assert await store.get("a") == b"1"  # a is now the most recently used
    await store.put("c", b"3")
    assert await store.get("b") is None and await store.get("a") == b"1"
    by_bytes = MemoryCacheStore(ttl_s=60, max_entries=100, max_bytes=10)
    await by_bytes.put("x", b"123456")
    await by_bytes.put("y", b"123456")
    assert await by_bytes.get("x") is None and by_bytes.size()["bytes"] == 6


async def test_memory_entries_expire_after_the_ttl() -> None:
    store = MemoryCacheStore(ttl_s=0.05, max_entries=10, max_bytes=10_000)
    await store.put("a", b"1")
    await asyncio.sleep(0.08)
    assert await store.get("a") is None
    assert store.size()["entries"] == 0


async def test_the_cache_counts_hits_and_misses_and_skips_large_answers() -> None:
    cache = ResponseCache(CacheConfig(enabled=True, max_entry_bytes=300))
    key = cache.key_for(params())
    assert key is not None
    assert await cache.lookup(key) is None
    await cache.save(key, GenerationOutput("hello", 1, 1, "stop", "demo"), "demo")
    hit = await cache.lookup(key)
    assert hit is not None and hit.output.text == "hello" and hit.served_model == "demo"
    await cache.save("big", GenerationOutput("x" * 1000, 1, 1, "stop", "demo"), "demo")
    assert await cache.lookup("big") is None
    stats = cache.stats()
    assert (stats["hits"], stats["misses"], stats["hit_rate"]) == (1, 2, 0.3333)
    assert stats["backend"] == "memory" and stats["entries"] == 1


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


async def test_redis_store_shares_entries_with_a_ttl_and_an_entry_cap(
    redis_url: str, tmp_path: Path
) -> None:
    namespace = f"t:{tmp_path.name}:"
    writer = RedisCacheStore(redis_url, namespace, ttl_s=60, max_entries=2)
    reader = RedisCacheStore(redis_url, namespace, ttl_s=60, max_entries=2)
    try:
        for key in ("a", "b", "c"):
            await writer.put(key, key.encode())
            await asyncio.sleep(0.002)  # distinct store times (ms)
        assert await reader.get("a") is None  # the oldest went beyond max_entries
        assert await reader.get("c") == b"c"
        ttl_ms = await reader._redis.pttl(namespace + "c")
        assert 0 < ttl_ms <= 60_000
    finally:
        await writer.close()
        await reader.close()


async def test_a_redis_cache_that_is_down_is_a_miss_not_an_error() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    cache = ResponseCache(CacheConfig(enabled=True, backend="redis", redis_url=url))
    try:
        key = cache.key_for(params())
        assert key is not None
        assert await cache.lookup(key) is None
        await cache.save(key, GenerationOutput("x", 1, 1, "stop", "demo"), "demo")
        assert cache.stats()["errors"] == 2 and cache.stats()["misses"] == 1
    finally:
        await cache.close()
