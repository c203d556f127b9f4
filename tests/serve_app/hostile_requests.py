"""The hostile-input corpus and its helpers: a valid body per route (to corrupt one field
at a time), the bad values, the route's error-shape checks, the in-process client."""

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from tests.serve_app.app_factory import MODEL_ID, GatewayApp, error_shape_problems

JSON = {"content-type": "application/json"}
FRESH_ID = re.compile(r"^[0-9a-f]{32}$")
GENERATE, CHAT, COMPLETIONS, MESSAGES = (
    "/api/v1/generate",
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/messages",
)
BATCH, ADMIN_KEYS = "/api/v1/generate/batch", "/api/v1/admin/keys"
GENERATION_ROUTES = (GENERATE, CHAT, COMPLETIONS, MESSAGES)


def valid_body(path: str, **fields: Any) -> dict[str, Any]:
    """A request the route accepts, with `fields` written over it."""
    user = [{"role": "user", "content": "hello there"}]
    bodies: dict[str, dict[str, Any]] = {
        GENERATE: {"prompt": "hello there", "model_id": MODEL_ID},
        CHAT: {"model": MODEL_ID, "messages": user},
        COMPLETIONS: {"model": MODEL_ID, "prompt": "hello there"},
        MESSAGES: {"model": MODEL_ID, "messages": user, "max_tokens": 8},
        BATCH: {"requests": [{"prompt": "hello there", "model_id": MODEL_ID}]},
        ADMIN_KEYS: {"name": "someone"},
    }
    return {**bodies[path], **fields}


def model_field(path: str) -> str:
    return "model_id" if path == GENERATE else "model"


def assert_request_id(response: httpx.Response) -> str:
    ids = response.headers.get_list("x-request-id")
    assert len(ids) == 1 and ids[0], f"X-Request-ID headers: {ids}"
    return ids[0]


def assert_error(response: httpx.Response, path: str, status: int | tuple[int, ...]) -> Any:
    """The route's error shape, a request id, no internals; returns the error object."""
    statuses = (status,) if isinstance(status, int) else status
    assert response.status_code in statuses, (response.status_code, response.text[:500])
    assert_request_id(response)
    problems = error_shape_problems(path, response.status_code, response.content)
    assert not problems, problems
    return response.json()["error"]


def assert_names(error: dict[str, Any], path: str, param: str) -> None:
    """Native/OpenAI errors name the field in `param`; Anthropic's shape has only a message."""
    if path == MESSAGES:
        assert param in error["message"], error
    else:
        assert (error["param"] or "").startswith(param), error


def nested(kind: str, depth: int) -> bytes:
    if kind == "array":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


def with_raw_field(path: str, field: str, raw: bytes) -> bytes:
    """A valid body of the route whose `field` holds the raw JSON `raw`."""
    body = valid_body(path, **{field: "__RAW__"})
    return json.dumps(body).encode().replace(b'"__RAW__"', raw)


def text_field(path: str) -> str:
    return {GENERATE: "prompt", COMPLETIONS: "prompt", BATCH: "requests"}.get(path, "messages")


@asynccontextmanager
async def serve_in_process(built: GatewayApp) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client over ASGI to the app; closes the gateway afterwards."""
    transport = httpx.ASGITransport(app=built.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        yield client
    await built.aclose()


# ---- the corpus -------------------------------------------------------------------------

INVALID_UTF8 = {
    "stray byte": b"\xff",
    "overlong slash": b"\xc0\xaf",
    "truncated sequence": b"\xe2\x82",
    "five-byte form": b"\xf8\x88\x80\x80\x80",
    "encoded surrogate": b"\xed\xa0\x80",  # Python's decoder lets it through as U+D800
}

TRICKY_IDS = {
    "fullwidth": "\uff44\uff45\uff4d\uff4f",
    "cyrillic e": "d\u0435mo",
    "zero width": "demo\u200b",
    "rtl override": "\u202edemo",
    "combining accent": "de\u0301mo",
    "upper case": "DEMO",
    "path traversal": "../demo",
    "crlf": "demo\r\nX-Injected: 1",
    "emoji": "demo\U0001f600",
}

INJECTED_IDS = {
    "crlf set-cookie": b"abc\r\nSet-Cookie: evil=1",
    "lf header": b"abc\nX-Evil: 1",
    "10k chars": b"a" * 10_000,
    "129 chars": b"b" * 129,
    "non-ascii": "requ\u00eate-\u4e2d".encode(),
    "latin-1 byte": b"id-\xe9",
    "nul": b"\x00abc",
    "markup": b"<script>alert(1)</script>",
    "space": b"id with space",
    "empty": b"",
}

WRONG_TYPES = (
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/json-patch+json",
    "application/jsonx",
    "",
)

ODD_BODIES = (b"", b"   ", b"{}", b"[]", b"[1, 2]", b'"text"', b"123", b"null", b"true", b"{")
