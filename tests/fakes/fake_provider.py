"""A scriptable fake LLM provider speaking the OpenAI and Anthropic wire formats.

`FakeProvider` serves an aiohttp app on loopback from a background thread with its own event loop,
so synchronous tests, async tests and other processes (Ray workers) reach it over real HTTP; the
official SDKs use their own HTTP stack, so they cannot be mocked in-process.

Routes: ``POST /v1/chat/completions``, ``POST /v1/completions``, ``GET /v1/models`` (one body
both SDKs accept), ``POST /v1/messages`` and ``POST /v1/messages/count_tokens`` (Anthropic),
all generation routes also streaming (SSE), and ``POST /v1/embeddings`` (deterministic unit
vectors, 16 floats unless ``dimensions``). Tools, structured output, images, logprobs and
`n` behave as `fake_features` describes.

Replies are deterministic: ``reply_text`` if given, else ``"Hello from fake <provider> model
<model>."``. Tokens are whitespace-separated words (`FakeProvider.count_tokens`); input tokens are
the words of every text in ``system``, ``messages[*].content`` (strings or text parts) and
``prompt``. ``max_tokens`` / ``max_completion_tokens`` cut the reply to that many words, and a
``stop`` / ``stop_sequences`` string found in the reply cuts it just before the string.

Standalone: ``python -m tests.fakes.fake_provider --port N`` serves until killed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import signal
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import Any, Literal, Self

from aiohttp import web

from tests.fakes import fake_features

Provider = Literal["openai", "anthropic"]
Kind = Literal["chat", "completion", "messages"]
Finish = Literal["stop", "length", "stop_sequence"]

DEFAULT_MODELS = ("fake-gpt", "fake-claude")
MALFORMED_JSON = b'{"id": "fake-broken", "choices": [{"index": 0, "message": '
MODEL_CREATED = 1_700_000_000
MODEL_CREATED_AT = "2023-11-14T22:13:20Z"


@dataclass(frozen=True)
class Failure:
    """One scripted error answer."""

    status: int
    retry_after: float | None = None
    error_type: str | None = None
    error_code: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class Generation:
    """What the fake "model" produced for one request."""

    text: str
    finish: Finish
    stop_sequence: str | None
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class Meta:
    """Identity fields shared by a response and all of its stream chunks."""

    ident: str
    model: str
    created: int

    def openai(self, obj: str) -> dict[str, Any]:
        return {
            "id": self.ident,
            "object": obj,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": "fp_fake",
        }


# ---------------------------------------------------------------------------------------------
# Pure helpers: token counting and text generation


def count_tokens(text: str) -> int:
    """The fake's token rule: the number of whitespace-separated words."""
    return len(text.split())


def _content_texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        ]
    return []


def input_texts(body: Mapping[str, Any]) -> list[str]:
    """Every prompt text of a request: system, message contents and prompt."""
    texts = _content_texts(body.get("system"))
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        texts.append(prompt)
    elif isinstance(prompt, list):
        texts.extend(item for item in prompt if isinstance(item, str))
    for message in body.get("messages") or []:
        if isinstance(message, dict):
            texts.extend(_content_texts(message.get("content")))
    return texts


def _stop_strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str) and item]
    return []


def _apply_stop(text: str, stops: Iterable[str]) -> tuple[str, str | None]:
    best: tuple[int, str] | None = None
    for stop in stops:
        index = text.find(stop)
        if index >= 0 and (best is None or index < best[0]):
            best = (index, stop)
    return (text, None) if best is None else (text[: best[0]], best[1])


def split_pieces(text: str) -> list[str]:
    """One piece per word, keeping the whitespace so the pieces concatenate back to `text`."""
    pieces: list[str] = re.findall(r"\s*\S+", text)
    tail = text[len("".join(pieces)) :]
    if tail and pieces:
        pieces[-1] += tail
    return pieces


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def generate(reply: str, body: Mapping[str, Any]) -> Generation:
    """Cut `reply` by the request's stop strings and token limit."""
    stops = _stop_strings(body.get("stop")) + _stop_strings(body.get("stop_sequences"))
    limit = _int_or_none(body.get("max_completion_tokens"))
    if limit is None:
        limit = _int_or_none(body.get("max_tokens"))
    text, matched = _apply_stop(reply, stops)
    finish: Finish = "stop_sequence" if matched is not None else "stop"
    if limit is not None and count_tokens(text) > limit:
        text, finish, matched = "".join(split_pieces(text)[: max(limit, 0)]), "length", None
    inputs = sum(count_tokens(item) for item in input_texts(body))
    return Generation(text, finish, matched, inputs, count_tokens(text))


# ---------------------------------------------------------------------------------------------
# Pure helpers: wire formats


def sse(data: Mapping[str, Any] | str, event: str | None = None) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {payload}\n\n".encode()


def _openai_usage(gen: Generation) -> dict[str, int]:
    total = gen.input_tokens + gen.output_tokens
    return {
        "prompt_tokens": gen.input_tokens,
        "completion_tokens": gen.output_tokens,
        "total_tokens": total,
    }


def _openai_finish(gen: Generation) -> str:
    return "length" if gen.finish == "length" else "stop"


def chat_body(gen: Generation, meta: Meta) -> dict[str, Any]:
    message = {"role": "assistant", "content": gen.text, "refusal": None}
    finish = _openai_finish(gen)
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
    return {**meta.openai("chat.completion"), "choices": [choice], "usage": _openai_usage(gen)}


def chat_events(gen: Generation, meta: Meta, include_usage: bool) -> list[bytes]:
    extra: dict[str, Any] = {"usage": None} if include_usage else {}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return sse({**meta.openai("chat.completion.chunk"), "choices": [choice], **extra})

    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": piece}) for piece in split_pieces(gen.text)]
    events.append(chunk({}, _openai_finish(gen)))
    if include_usage:
        usage = {"choices": [], "usage": _openai_usage(gen)}
        events.append(sse({**meta.openai("chat.completion.chunk"), **usage}))
    return [*events, sse("[DONE]")]


def completion_body(gen: Generation, meta: Meta) -> dict[str, Any]:
    choice = {"index": 0, "text": gen.text, "logprobs": None, "finish_reason": _openai_finish(gen)}
    return {**meta.openai("text_completion"), "choices": [choice], "usage": _openai_usage(gen)}


def completion_events(gen: Generation, meta: Meta, include_usage: bool) -> list[bytes]:
    extra: dict[str, Any] = {"usage": None} if include_usage else {}

    def chunk(text: str, finish: str | None = None) -> bytes:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
        return sse({**meta.openai("text_completion"), "choices": [choice], **extra})

    events = [chunk(piece) for piece in split_pieces(gen.text)]
    events.append(chunk("", _openai_finish(gen)))
    if include_usage:
        usage = {"choices": [], "usage": _openai_usage(gen)}
        events.append(sse({**meta.openai("text_completion"), **usage}))
    return [*events, sse("[DONE]")]


def _anthropic_stop(gen: Generation) -> str:
    return {"stop": "end_turn", "length": "max_tokens"}.get(gen.finish, "stop_sequence")


def message_body(gen: Generation, meta: Meta) -> dict[str, Any]:
    return {
        "id": meta.ident,
        "type": "message",
        "role": "assistant",
        "model": meta.model,
        "content": [{"type": "text", "text": gen.text}],
        "stop_reason": _anthropic_stop(gen),
        "stop_sequence": gen.stop_sequence,
        "usage": {"input_tokens": gen.input_tokens, "output_tokens": gen.output_tokens},
    }


def message_events(gen: Generation, meta: Meta) -> list[bytes]:
    start = {**message_body(gen, meta), "content": [], "stop_reason": None, "stop_sequence": None}
    start["usage"] = {"input_tokens": gen.input_tokens, "output_tokens": 0}
    text_block = {"type": "text", "text": ""}
    block = {"type": "content_block_start", "index": 0, "content_block": text_block}
    events: list[dict[str, Any]] = [{"type": "message_start", "message": start}, block]
    events.append({"type": "ping"})
    events += [
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}
        for piece in split_pieces(gen.text)
    ]
    events.append({"type": "content_block_stop", "index": 0})
    delta = {"stop_reason": _anthropic_stop(gen), "stop_sequence": gen.stop_sequence}
    usage = {"output_tokens": gen.output_tokens}
    events.append({"type": "message_delta", "delta": delta, "usage": usage})
    events.append({"type": "message_stop"})
    return [sse(event, event["type"]) for event in events]


def models_body(models: Sequence[str]) -> dict[str, Any]:
    """One list body that both `openai` and `anthropic` `models.list()` parse."""
    items = [
        {
            "id": model,
            "object": "model",
            "created": MODEL_CREATED,
            "owned_by": "fake-provider",
            "type": "model",
            "display_name": f"Fake {model}",
            "created_at": MODEL_CREATED_AT,
            "lifecycle": "active",
        }
        for model in models
    ]
    first = items[0]["id"] if items else None
    last = items[-1]["id"] if items else None
    return {"object": "list", "data": items, "has_more": False, "first_id": first, "last_id": last}


def _openai_defaults(status: int, code: str | None) -> tuple[str, str | None]:
    if code == "insufficient_quota":
        return "insufficient_quota", code
    if status == 401:
        return "invalid_request_error", code or "invalid_api_key"
    if status == 429:
        return "requests", code or "rate_limit_exceeded"
    return ("server_error" if status >= 500 else "invalid_request_error"), code


def _anthropic_default_type(status: int) -> str:
    types = {
        400: "invalid_request_error",
        401: "authentication_error",
        402: "billing_error",
        403: "permission_error",
        404: "not_found_error",
        413: "request_too_large",
        429: "rate_limit_error",
        504: "timeout_error",
        529: "overloaded_error",
    }
    return types.get(status, "api_error" if status >= 500 else "invalid_request_error")


def error_body(provider: Provider, failure: Failure) -> dict[str, Any]:
    """The error body of `provider` for `failure`."""
    message = failure.message or f"Fake provider error (HTTP {failure.status})."
    if provider == "openai":
        default_type, code = _openai_defaults(failure.status, failure.error_code)
        error = {"message": message, "type": failure.error_type or default_type}
        return {"error": {**error, "param": None, "code": code}}
    detail: dict[str, Any] = {
        "type": failure.error_type or _anthropic_default_type(failure.status),
        "message": message,
    }
    if failure.error_code:
        detail["details"] = {"error_code": failure.error_code}
    return {"type": "error", "error": detail, "request_id": "req_fake"}


def api_key_of(request: web.Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.headers.get("x-api-key")


def _kind_of(path: str) -> Kind:
    if path.endswith("/chat/completions"):
        return "chat"
    return "messages" if path.endswith("/messages") else "completion"


def validate(kind: Kind, body: Mapping[str, Any]) -> str | None:
    """A 400 message for a request the real API would refuse, else None."""
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model: Field required"
    if kind == "completion":
        return None if "prompt" in body else "prompt: Field required"
    if not isinstance(body.get("messages"), list):
        return "messages: Field required"
    if kind == "messages" and _int_or_none(body.get("max_tokens")) is None:
        return "max_tokens: Field required"
    return None


FAKE_EMBEDDING_DIMENSIONS = 16


def fake_embedding(item: str | list[int], dimensions: int) -> list[float]:
    """A deterministic unit vector for one input (from its SHA-256), `dimensions` long."""
    import hashlib
    import math

    seed = hashlib.sha256(json.dumps(item).encode()).digest()
    raw = [(seed[i % len(seed)] - 127.5) / 127.5 + i / 1000 for i in range(dimensions)]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [x / norm for x in raw]


def embeddings_body(body: Mapping[str, Any]) -> dict[str, Any] | str:
    """OpenAI's embeddings response (floats, or base64 float32), or a 400 message."""
    import base64
    import struct

    items = body.get("input")
    if isinstance(items, str) or (isinstance(items, list) and items and isinstance(items[0], int)):
        items = [items]
    if not isinstance(items, list) or not items:
        return "input: Field required"
    dimensions = _int_or_none(body.get("dimensions")) or FAKE_EMBEDDING_DIMENSIONS
    data = []
    for index, item in enumerate(items):
        vector: Any = fake_embedding(item, dimensions)
        if body.get("encoding_format") == "base64":
            vector = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": vector})
    tokens = sum(count_tokens(i) if isinstance(i, str) else len(i) for i in items)
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return {"object": "list", "data": data, "model": body.get("model"), "usage": usage}


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


# ---------------------------------------------------------------------------------------------
# The server


class FakeProvider:
    """A fake OpenAI + Anthropic server on loopback, served from its own thread and event loop.

    Every scripting method is thread-safe and may be called from any thread while it serves.
    """

    count_tokens = staticmethod(count_tokens)

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        reply_text: str | None = None,
        valid_keys: Iterable[str] | None = None,
        models: Sequence[str] = DEFAULT_MODELS,
    ) -> None:
        self.host = host
        self._requested_port = port
        self._port: int | None = None
        self._models = tuple(models)
        self._lock = threading.Lock()
        self._reply_text = reply_text
        self._valid_keys = None if valid_keys is None else frozenset(valid_keys)
        self._failures: deque[Failure] = deque()
        self._counters: Counter[str] = Counter()
        self._delay = 0.0
        self._ids = 0
        self._path_counts: Counter[str] = Counter()
        self.requests: list[dict[str, Any]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Bind the port and serve from a background thread; returns once it accepts requests."""
        if self._thread is not None:
            raise RuntimeError("FakeProvider already started")
        sock = _bind(self.host, self._requested_port)
        loop = asyncio.new_event_loop()
        thread = threading.Thread(
            target=self._run_loop, args=(loop,), name="fake-provider", daemon=True
        )
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            asyncio.run_coroutine_threadsafe(self._serve(sock), loop).result(timeout=10)
        except BaseException:
            self.stop()
            sock.close()
            raise
        self._port = int(sock.getsockname()[1])

    def stop(self) -> None:
        """Stop serving (in-flight handlers get a short grace period) and join the thread."""
        loop, thread, runner = self._loop, self._thread, self._runner
        if loop is None or thread is None:
            return
        if runner is not None:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._loop = self._thread = self._runner = None
        self._port = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @staticmethod
    def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self, sock: socket.socket) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle_generation)
        app.router.add_post("/v1/completions", self._handle_generation)
        app.router.add_post("/v1/messages", self._handle_generation)
        app.router.add_post("/v1/messages/count_tokens", self._handle_count_tokens)
        app.router.add_get("/v1/models", self._handle_models)
        app.router.add_post("/v1/embeddings", self._handle_embeddings)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.25)
        await runner.setup()
        self._runner = runner
        await web.SockSite(runner, sock).start()

    # -- addresses ------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FakeProvider is not running; call start() first")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.url

    # -- scripting ------------------------------------------------------------------------------

    def script(
        self,
        fail_status: int,
        count: int = 1,
        *,
        retry_after: float | None = None,
        error_type: str | None = None,
        error_code: str | None = None,
        message: str | None = None,
    ) -> None:
        """Answer the next `count` generation requests with `fail_status` (queued after others)."""
        failure = Failure(fail_status, retry_after, error_type, error_code, message)
        with self._lock:
            self._failures.extend([failure] * count)

    def set_delay(self, seconds: float) -> None:
        """Wait `seconds` before answering every generation request (0 turns it off)."""
        with self._lock:
            self._delay = max(0.0, float(seconds))

    def set_malformed(self, count: int = 1) -> None:
        """Answer the next `count` generation requests 200 with a body that is not valid JSON."""
        with self._lock:
            self._counters["malformed"] = count

    def set_drop_mid_stream(self, count: int = 1) -> None:
        """Abort the next `count` streaming responses after their first content chunk."""
        with self._lock:
            self._counters["drop"] = count

    def set_reply_text(self, text: str | None) -> None:
        """Reply with `text` from now on (None: the default per-provider greeting)."""
        with self._lock:
            self._reply_text = text

    def set_valid_keys(self, keys: Iterable[str] | None) -> None:
        """Accept only these API keys from now on (None: accept any key)."""
        with self._lock:
            self._valid_keys = None if keys is None else frozenset(keys)

    def reset(self, *, keep_requests: bool = False) -> None:
        """Clear every script and the delay; also the recorded requests unless `keep_requests`."""
        with self._lock:
            self._failures.clear()
            self._counters.clear()
            self._delay = 0.0
            if not keep_requests:
                self.requests.clear()
                self._path_counts.clear()

    # -- inspection -----------------------------------------------------------------------------

    def recorded(self) -> list[dict[str, Any]]:
        """A copy of the recorded requests: method, path, query, headers, json, api_key, time."""
        with self._lock:
            return [dict(entry) for entry in self.requests]

    def stats(self) -> dict[str, int]:
        """How many requests each path received."""
        with self._lock:
            return dict(self._path_counts)

    def reply_for(self, provider: Provider, model: str) -> str:
        """The full (uncut) reply this fake gives `provider`'s `model` now."""
        with self._lock:
            text = self._reply_text
        return text if text is not None else f"Hello from fake {provider} model {model}."

    @staticmethod
    def count_input_tokens(body: Mapping[str, Any]) -> int:
        """Prompt tokens the fake reports for a request body."""
        return sum(count_tokens(text) for text in input_texts(body))

    # -- internals ------------------------------------------------------------------------------

    def _record(self, request: web.Request, body: Any, key: str | None) -> None:
        entry = {
            "method": request.method,
            "path": request.path,
            "query": dict(request.query),
            "headers": {name.lower(): value for name, value in request.headers.items()},
            "json": body,
            "api_key": key,
            "time": time.time(),
        }
        with self._lock:
            self.requests.append(entry)
            self._path_counts[request.path] += 1

    def _key_ok(self, key: str | None) -> bool:
        with self._lock:
            return self._valid_keys is None or key in self._valid_keys

    def _take(self, name: str) -> bool:
        with self._lock:
            if self._counters[name] <= 0:
                return False
            self._counters[name] -= 1
            return True

    def _next_failure(self) -> Failure | None:
        with self._lock:
            return self._failures.popleft() if self._failures else None

    def _next_meta(self, kind: Kind, model: str) -> Meta:
        with self._lock:
            self._ids += 1
            number = self._ids
        prefixes = {"chat": "chatcmpl-fake-", "completion": "cmpl-fake-", "messages": "msg_fake_"}
        prefix = prefixes[kind]
        return Meta(f"{prefix}{number:06d}", model, int(time.time()))

    @staticmethod
    def _error(provider: Provider, failure: Failure) -> web.Response:
        headers = {}
        if failure.retry_after is not None:
            value = failure.retry_after
            headers["retry-after"] = str(int(value)) if float(value).is_integer() else str(value)
        return web.json_response(
            error_body(provider, failure), status=failure.status, headers=headers
        )

    def _auth_error(self, provider: Provider, key: str | None) -> web.Response:
        if provider == "openai":
            message = f"Incorrect API key provided: {key}."
        else:
            message = "invalid x-api-key"
        return self._error(provider, Failure(401, message=message))

    async def _handle_models(self, request: web.Request) -> web.StreamResponse:
        key = api_key_of(request)
        self._record(request, None, key)
        anthropic = "anthropic-version" in request.headers
        provider: Provider = "anthropic" if anthropic else "openai"
        if not self._key_ok(key):
            return self._auth_error(provider, key)
        return web.json_response(models_body(self._models))

    async def _prelude(
        self, request: web.Request, provider: Provider
    ) -> tuple[dict[str, Any], web.StreamResponse | None]:
        """Record, delay, then any auth error or scripted answer that replaces the real one."""
        try:
            body = await request.json()
        except ValueError:
            body = None
        key = api_key_of(request)
        self._record(request, body, key)
        if not isinstance(body, dict):
            return {}, self._error(provider, Failure(400, message="Request body is not JSON."))
        with self._lock:
            delay = self._delay
        if delay > 0:
            await asyncio.sleep(delay)
        if not self._key_ok(key):
            return body, self._auth_error(provider, key)
        failure = self._next_failure()
        if failure is not None:
            return body, self._error(provider, failure)
        if self._take("malformed"):
            return body, _malformed(provider, stream=body.get("stream") is True)
        return body, None

    async def _handle_count_tokens(self, request: web.Request) -> web.StreamResponse:
        """Anthropic's token counting: the input tokens the request would be billed."""
        body, early = await self._prelude(request, "anthropic")
        if early is not None:
            return early
        tokens = self.count_input_tokens(body)
        tokens += fake_features.IMAGE_TOKENS * fake_features.image_count(body)
        return web.json_response({"input_tokens": tokens})

    async def _handle_embeddings(self, request: web.Request) -> web.StreamResponse:
        body, early = await self._prelude(request, "openai")
        if early is not None:
            return early
        answer = embeddings_body(body)
        if isinstance(answer, str):
            return self._error("openai", Failure(400, message=answer))
        return web.json_response(answer)

    async def _handle_generation(self, request: web.Request) -> web.StreamResponse:
        kind = _kind_of(request.path)
        provider: Provider = "anthropic" if kind == "messages" else "openai"
        body, early = await self._prelude(request, provider)
        if early is not None:
            return early
        problem = validate(kind, body) or fake_features.tool_problem(kind, body)
        if problem is not None:
            return self._error(provider, Failure(400, message=problem))
        gen = generate(self.reply_for(provider, body["model"]), body)
        gen = fake_features.adjust(kind, body, gen)
        meta = self._next_meta(kind, body["model"])
        from tests.fakes.fake_rich import rich_answer  # it builds on this module's helpers

        rich = rich_answer(kind, body, gen, meta, self._ids)
        if isinstance(rich, dict):
            return web.json_response(rich)
        if rich is not None:
            return await _stream(request, rich, None)
        if body.get("stream") is not True:
            builders = {"chat": chat_body, "completion": completion_body, "messages": message_body}
            return web.json_response(builders[kind](gen, meta))
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        if kind == "messages":
            events, drop_after = message_events(gen, meta), 4
        elif kind == "chat":
            events, drop_after = chat_events(gen, meta, include_usage), 2
        else:
            events, drop_after = completion_events(gen, meta, include_usage), 1
        return await _stream(request, events, drop_after if self._take("drop") else None)


def _malformed(provider: Provider, *, stream: bool) -> web.Response:
    if not stream:
        return web.Response(status=200, body=MALFORMED_JSON, content_type="application/json")
    event = "event: message_start\n" if provider == "anthropic" else ""
    text = f"{event}data: {MALFORMED_JSON.decode()}\n\n"
    if provider == "openai":
        text += "data: [DONE]\n\n"
    return web.Response(status=200, text=text, content_type="text/event-stream")


async def _stream(
    request: web.Request, events: Sequence[bytes], drop_after: int | None
) -> web.StreamResponse:
    """Write SSE `events`; with `drop_after`, abort the connection after that many events."""
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    response.headers["cache-control"] = "no-cache"
    await response.prepare(request)
    try:
        for index, event in enumerate(events):
            if drop_after is not None and index == drop_after:
                await asyncio.sleep(0.05)  # let the sent chunks reach the client first
                if request.transport is not None:
                    request.transport.abort()
                return response
            await response.write(event)
        await response.write_eof()
    except (ConnectionError, RuntimeError):
        pass  # the client went away
    return response


# ---------------------------------------------------------------------------------------------
# Standalone process


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--reply-text", default=None)
    parser.add_argument("--valid-key", action="append", default=None, dest="valid_keys")
    args = parser.parse_args(argv)
    provider = FakeProvider(
        host=args.host, port=args.port, reply_text=args.reply_text, valid_keys=args.valid_keys
    )
    stopped = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with provider:
        print(f"fake provider listening on {provider.url}", flush=True)
        while not stopped.wait(timeout=1.0):
            pass


if __name__ == "__main__":
    main()
