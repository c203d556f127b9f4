"""A corpus of hostile requests through the in-process app (httpx over ASGI), and slow-loris
clients against the app served by uvicorn on a loopback port.

Every error must be a 4xx in the route's own error shape with one well-formed
`X-Request-ID`, and nothing may leak Python internals or echo an injected header value.
"""

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import pytest_asyncio

from tests.serve_app.app_factory import (
    MAX_BODY_BYTES,
    MAX_NEW_TOKENS,
    MODEL_ID,
    build_gateway_app,
)
from tests.serve_app.hostile_requests import (
    ADMIN_KEYS,
    BATCH,
    CHAT,
    COMPLETIONS,
    FRESH_ID,
    GENERATE,
    GENERATION_ROUTES,
    INJECTED_IDS,
    INVALID_UTF8,
    JSON,
    MESSAGES,
    ODD_BODIES,
    TRICKY_IDS,
    WRONG_TYPES,
    assert_error,
    assert_names,
    assert_request_id,
    model_field,
    nested,
    serve_in_process,
    text_field,
    valid_body,
    with_raw_field,
)
from tests.serve_app.live_server import (
    assert_cut_off,
    open_request,
    serve,
    slow_head,
    trickle_until_answered,
)

BIG_BODY = 4 * 1024 * 1024


# One app of each kind for the whole module (building one per test would dominate the run),
# so the tests using them run on the module's event loop.
module_loop = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def small(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[httpx.AsyncClient]:
    """The app with a 4 KiB body limit."""
    built = build_gateway_app(tmp_path_factory.mktemp("small"), auth=False)
    async with serve_in_process(built) as client:
        yield client


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def big(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[httpx.AsyncClient]:
    """The app with a 4 MiB body limit, for what must fail on content rather than size."""
    built = build_gateway_app(tmp_path_factory.mktemp("big"), auth=False, max_body_bytes=BIG_BODY)
    async with serve_in_process(built) as client:
        yield client


# ---- size ---------------------------------------------------------------------------------

SIZED_ROUTES = (GENERATE, BATCH, CHAT, COMPLETIONS, MESSAGES, ADMIN_KEYS)


def oversized(path: str) -> bytes:
    filler = "x" * (MAX_BODY_BYTES + 10)
    body = valid_body(path, name=filler) if path == ADMIN_KEYS else valid_body(path)
    return json.dumps(body).replace("hello there", filler).encode()


@module_loop
@pytest.mark.parametrize("path", SIZED_ROUTES)
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_body_over_the_limit_is_413(
    small: httpx.AsyncClient, path: str, chunked: bool
) -> None:
    body = oversized(path)
    assert len(body) > MAX_BODY_BYTES

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    content: Any = chunks() if chunked else body
    response = await small.post(path, content=content, headers=JSON)
    assert_error(response, path, 413)


# ---- nesting and encoding ----------------------------------------------------------------


@module_loop
@pytest.mark.parametrize("path", (GENERATE, BATCH, CHAT, MESSAGES))
@pytest.mark.parametrize("kind", ["array", "object"])
@pytest.mark.parametrize("depth", [500, 100_000])
@pytest.mark.parametrize("where", ["body", "field"])
async def test_deeply_nested_json_is_a_clean_400(
    big: httpx.AsyncClient, path: str, kind: str, depth: int, where: str
) -> None:
    raw = nested(kind, depth)
    body = raw if where == "body" else with_raw_field(path, text_field(path), raw)
    error = assert_error(await big.post(path, content=body, headers=JSON), path, 400)
    if depth > 1000 and path != MESSAGES:  # past the decoder's recursion limit
        assert error["code"] == "invalid_json" and "nested" in error["message"]


@module_loop
@pytest.mark.parametrize("path", (GENERATE, CHAT, MESSAGES))
@pytest.mark.parametrize("raw", INVALID_UTF8.values(), ids=INVALID_UTF8.keys())
async def test_invalid_utf8_is_400(small: httpx.AsyncClient, path: str, raw: bytes) -> None:
    body = json.dumps(valid_body(path)).encode().replace(b"hello there", b"hello " + raw)
    error = assert_error(await small.post(path, content=body, headers=JSON), path, 400)
    if path != MESSAGES:
        assert error["code"] in ("invalid_json", "string_unicode"), error


SURROGATE_FIELDS = {
    GENERATE: ("prompt", "stop", "model_id"),
    CHAT: ("messages", "stop", "model"),
    COMPLETIONS: ("prompt", "stop", "model"),
    MESSAGES: ("messages", "stop_sequences", "system"),
}


@module_loop
@pytest.mark.parametrize(
    ("path", "field"), [(p, f) for p, fields in SURROGATE_FIELDS.items() for f in fields]
)
@pytest.mark.parametrize("escape", [b"\\ud800", b"\\udfff", b"a\\ud83d"])
async def test_lone_surrogates_are_400_naming_the_field(
    small: httpx.AsyncClient, path: str, field: str, escape: bytes
) -> None:
    """JSON can escape a lone surrogate; it is not text, and used to reach the model (or the
    response encoder: a 500)."""
    text = b'"' + escape + b'"'
    value = b'[{"role": "user", "content": ' + text + b"}]" if field == "messages" else text
    response = await small.post(path, content=with_raw_field(path, field, value), headers=JSON)
    error = assert_error(response, path, 400)
    assert_names(error, path, field)


@module_loop
@pytest.mark.parametrize("path", (GENERATE, CHAT, MESSAGES))
async def test_a_lone_surrogate_in_a_key_is_400(small: httpx.AsyncClient, path: str) -> None:
    body = json.dumps(valid_body(path)).encode()[:-1] + b', "\\udc00x": 1}'
    assert_error(await small.post(path, content=body, headers=JSON), path, 400)


@module_loop
async def test_a_surrogate_pair_is_text(small: httpx.AsyncClient) -> None:
    body = with_raw_field(GENERATE, "prompt", b'"smile \\ud83d\\ude00"')
    response = await small.post(GENERATE, content=body, headers=JSON)
    assert response.status_code == 200 and response.json()["text"] == "SMILE \U0001f600"


@module_loop
@pytest.mark.parametrize("path", GENERATION_ROUTES)
async def test_null_bytes(small: httpx.AsyncClient, path: str) -> None:
    """Escaped NULs are text (passed on); in a model id they match nothing; a raw NUL byte
    inside a JSON string is invalid JSON."""
    text = json.dumps(valid_body(path)).replace("hello there", "hel\\u0000lo")
    assert (await small.post(path, content=text, headers=JSON)).status_code == 200
    field = model_field(path)
    error = assert_error(
        await small.post(path, json=valid_body(path, **{field: "de\0mo"})), path, 404
    )
    assert_names(error, path, "model")
    raw = text.replace("\\u0000", "\0").encode()
    assert_error(await small.post(path, content=raw, headers=JSON), path, 400)


@module_loop
@pytest.mark.parametrize("path", GENERATION_ROUTES)
async def test_ten_thousand_stop_strings_are_400_naming_stop(
    big: httpx.AsyncClient, path: str
) -> None:
    field = "stop_sequences" if path == MESSAGES else "stop"
    stops = [f"s{i}" for i in range(10_000)]
    error = assert_error(await big.post(path, json=valid_body(path, **{field: stops})), path, 400)
    assert_names(error, path, "stop")


# ---- numbers -----------------------------------------------------------------------------

NUMBERS: tuple[bytes, ...] = (b"-1", b"0", b"0.5", b"NaN", b"Infinity", b"-Infinity")
NUMBERS += (b"1e308", b"-1e308", b"1e999", b"1" + b"0" * 30)
VALID_NUMBERS = {("temperature", b"0"), ("temperature", b"0.5"), ("top_p", b"0.5")}


@module_loop
@pytest.mark.parametrize("path", GENERATION_ROUTES)
@pytest.mark.parametrize("field", ["max_tokens", "temperature", "top_p"])
@pytest.mark.parametrize("raw", NUMBERS, ids=[n.decode()[:8] for n in NUMBERS])
async def test_out_of_range_and_non_finite_numbers_are_400_naming_the_field(
    small: httpx.AsyncClient, path: str, field: str, raw: bytes
) -> None:
    """Python's JSON decoder takes NaN, Infinity and 1e999 (= inf); none may get further."""
    response = await small.post(path, content=with_raw_field(path, field, raw), headers=JSON)
    if (field, raw) in VALID_NUMBERS:
        assert response.status_code == 200, response.text
    else:
        assert_names(assert_error(response, path, 400), path, field)


@module_loop
async def test_max_tokens_at_the_cap_is_served(small: httpx.AsyncClient) -> None:
    body = valid_body(GENERATE, max_tokens=MAX_NEW_TOKENS)
    assert (await small.post(GENERATE, json=body)).status_code == 200
    body = valid_body(GENERATE, max_tokens=MAX_NEW_TOKENS + 1)
    assert_names(
        assert_error(await small.post(GENERATE, json=body), GENERATE, 400), GENERATE, "max_tokens"
    )


# ---- model ids ---------------------------------------------------------------------------


@module_loop
@pytest.mark.parametrize("path", GENERATION_ROUTES)
@pytest.mark.parametrize("model", TRICKY_IDS.values(), ids=TRICKY_IDS.keys())
async def test_lookalike_model_ids_match_nothing(
    small: httpx.AsyncClient, path: str, model: str
) -> None:
    response = await small.post(path, json=valid_body(path, **{model_field(path): model}))
    assert_names(assert_error(response, path, 404), path, "model")
    assert "x-injected" not in response.headers


@module_loop
@pytest.mark.parametrize("path", GENERATION_ROUTES)
async def test_a_very_long_model_id_is_400(big: httpx.AsyncClient, path: str) -> None:
    body = valid_body(path, **{model_field(path): "m" * 100_000})
    assert_names(assert_error(await big.post(path, json=body), path, 400), path, "model")
    assert "m" * 300 not in (await big.post(path, json=body)).text


@module_loop
@pytest.mark.parametrize("model", ["m" * 5000, *TRICKY_IDS.values()])
async def test_model_lookup_by_path_matches_nothing(small: httpx.AsyncClient, model: str) -> None:
    response = await small.get("/api/v1/models/" + quote(model, safe=""))
    assert_error(response, "/api/v1/models/", 404)


# ---- X-Request-ID ------------------------------------------------------------------------


REQUEST_ID_ROUTES = (("GET", "/api/v1/health"), ("POST", GENERATE), ("POST", MESSAGES))


@module_loop
@pytest.mark.parametrize(("method", "path"), REQUEST_ID_ROUTES)
@pytest.mark.parametrize("value", INJECTED_IDS.values(), ids=INJECTED_IDS.keys())
async def test_a_malformed_request_id_is_replaced_never_echoed(
    small: httpx.AsyncClient, method: str, path: str, value: bytes
) -> None:
    headers = [(b"x-request-id", value), (b"content-type", b"application/json")]
    body = b'{"model": "none", "model_id": "none"}' if method == "POST" else None
    response = await small.request(method, path, headers=headers, content=body)
    request_id = assert_request_id(response)
    assert FRESH_ID.match(request_id), request_id
    assert "set-cookie" not in response.headers and "x-evil" not in response.headers
    echoed = value.decode("latin-1")
    for name, header in response.headers.items():
        assert not echoed or echoed not in header, (name, header)
    assert not echoed or echoed not in response.text
    if response.status_code >= 400:
        assert_error(response, path, response.status_code)


@module_loop
async def test_a_well_formed_request_id_is_kept(small: httpx.AsyncClient) -> None:
    own = "c" * 128
    response = await small.post(GENERATE, json=valid_body(GENERATE), headers={"X-Request-ID": own})
    assert assert_request_id(response) == own
    assert response.json()["metadata"]["request_id"] == own


# ---- content types, empty and odd bodies -------------------------------------------------


@module_loop
@pytest.mark.parametrize("path", (GENERATE, MESSAGES, ADMIN_KEYS))
@pytest.mark.parametrize("content_type", WRONG_TYPES)
async def test_a_body_that_is_not_declared_json_is_415(
    small: httpx.AsyncClient, path: str, content_type: str
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    body = json.dumps(valid_body(path)).encode()
    assert_error(await small.post(path, content=body, headers=headers), path, 415)


@module_loop
@pytest.mark.parametrize("content_type", ["APPLICATION/JSON", "application/json; charset=utf-8"])
async def test_json_content_type_variants_are_accepted(
    small: httpx.AsyncClient, content_type: str
) -> None:
    body = json.dumps(valid_body(GENERATE)).encode()
    response = await small.post(GENERATE, content=body, headers={"content-type": content_type})
    assert response.status_code == 200


@module_loop
@pytest.mark.parametrize("path", (GENERATE, BATCH, CHAT, COMPLETIONS, MESSAGES))
@pytest.mark.parametrize("body", ODD_BODIES, ids=[b.decode() or "empty" for b in ODD_BODIES])
async def test_empty_and_non_object_bodies_are_400(
    small: httpx.AsyncClient, path: str, body: bytes
) -> None:
    assert_error(await small.post(path, content=body, headers=JSON), path, 400)


@module_loop
async def test_duplicate_keys_take_the_last_value(small: httpx.AsyncClient) -> None:
    """As Python's decoder does (and most others): the last of duplicate keys wins."""
    last_served = b'{"prompt": "a", "model_id": "nope", "model_id": "demo"}'
    response = await small.post(GENERATE, content=last_served, headers=JSON)
    assert response.status_code == 200 and response.json()["model_id"] == MODEL_ID
    last_unknown = b'{"prompt": "a", "model_id": "demo", "model_id": "nope"}'
    assert_error(await small.post(GENERATE, content=last_unknown, headers=JSON), GENERATE, 404)


# ---- slow clients ------------------------------------------------------------------------

BODY_TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def live_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The app behind uvicorn on a loopback port, with a 1 s body deadline."""
    built = build_gateway_app(
        tmp_path_factory.mktemp("live"), auth=False, body_timeout_s=BODY_TIMEOUT_S
    )
    with serve(built.app) as port:
        yield port


def test_slow_and_stalled_bodies_are_cut_off_while_others_are_served(live_port: int) -> None:
    """Slow-loris: one client trickles its body a byte at a time, four stop half-way. Other
    clients are served meanwhile; each slow one gets 408 at the body deadline and is
    disconnected."""
    stalled = [open_request(live_port, slow_head(f"stalled-{i}")) for i in range(4)]
    trickler, started = open_request(live_port, slow_head("trickler"))
    try:
        assert trickle_until_answered(trickler, started, b"a", 0.1, BODY_TIMEOUT_S / 2) is None
        health = httpx.get(f"http://127.0.0.1:{live_port}/api/v1/health", timeout=5)
        assert health.status_code == 200
        limit = BODY_TIMEOUT_S + 5
        trickled = trickle_until_answered(trickler, started, b"a", 0.1, limit)
        assert_cut_off(trickled, "trickler")
        assert trickled is not None and BODY_TIMEOUT_S * 0.9 < trickled.elapsed_s < limit
        for index, (sock, sent) in enumerate(stalled):
            assert_cut_off(trickle_until_answered(sock, sent, b"", 0.1, limit), f"stalled-{index}")
        after = httpx.post(
            f"http://127.0.0.1:{live_port}{GENERATE}", json=valid_body(GENERATE), timeout=5
        )
        assert after.status_code == 200
    finally:
        for sock, _ in [*stalled, (trickler, started)]:
            sock.close()


async def test_a_stream_may_outlast_the_body_deadline(tmp_path: Path) -> None:
    """The deadline covers the request body only: once it is in, the app may wait on
    `receive` (for the disconnect) as long as the response lasts."""
    built = build_gateway_app(tmp_path, auth=False, body_timeout_s=0.3)
    words = "slow " + " ".join(["word"] * 4)  # 5 words, SLOW_WORD_S apart: about 1 s
    async with serve_in_process(built) as client:
        response = await client.post(GENERATE, json=valid_body(GENERATE, prompt=words, stream=True))
    assert response.status_code == 200, response.text
    assert response.text.endswith("data: [DONE]\n\n") and response.text.count('"text"') >= 5
    assert "error" not in response.text
