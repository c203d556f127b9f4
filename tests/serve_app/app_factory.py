"""The gateway's FastAPI app around fake deployment handles (no Ray), for fuzz and hostile tests.

`build_gateway_app` makes the real `create_app` app over a local model and one commercial
provider whose handles answer in-process: plain calls return a `GenerationOutput`, streamed
calls yield `StreamChunk`s, probes describe the model and check the "upstream". With auth on,
keys live in a throwaway SQLite store and the admin key comes from a fake environment.
"""

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

from fastapi import FastAPI

from deployments.limits.rate_limiter import RateLimiter
from serve_app.access.admission import Admission
from serve_app.access.key_cache import KeyCache
from serve_app.access.key_store import open_key_store
from serve_app.contracts.config import GatewayConfig
from serve_app.contracts.errors import UpstreamError
from serve_app.contracts.wire import GenerationOutput, GenerationParams, StreamChunk
from serve_app.core.gateway import Gateway
from serve_app.http.app import create_app
from serve_app.http.schemas.anthropic import AnthropicErrorType

ADMIN_KEY = "admin-fuzz-key-0123456789abcdef"
MAX_BODY_BYTES = 4096
MODEL_ID = "demo"
MAX_NEW_TOKENS = 64  # the cap of both models
MAX_PROMPT_CHARS = 2000
SLOW_WORD_S = 0.2  # a streamed prompt holding "slow" yields one word per this many seconds
COMMERCIAL_MODEL_ID = "gpt-fake"
ANTHROPIC_PATHS = ("/v1/messages",)
NATIVE_ERROR_KEYS = {"message", "type", "param", "code"}
ANTHROPIC_ERROR_TYPES = frozenset(get_args(AnthropicErrorType))  # as documented
# What must never reach a client: a traceback, a source path or a Python exception class.
LEAK_PATTERN = re.compile(
    r"Traceback|File \"|site-packages|\b(?:[A-Z][a-z]+)+(?:Error|Exception|Exit)\b"
)


def _text_of(params: GenerationParams) -> str:
    source = params.prompt or " ".join(m.content for m in params.messages)
    return source[:40].upper() or "OK"


class _Method:
    """`handle.<method>.remote(...)`: an awaitable with `cancel()`, like a DeploymentResponse."""

    def __init__(self, function: Any) -> None:
        self.function = function

    def remote(self, *args: Any) -> "_Call":
        return _Call(self.function, args)


class _Call:
    def __init__(self, function: Any, args: tuple[Any, ...]) -> None:
        self.function = function
        self.args = args

    def __await__(self) -> Any:
        return self._run().__await__()

    async def _run(self) -> Any:
        result = self.function(*self.args)
        if isinstance(result, BaseException):
            raise result
        return result

    def cancel(self) -> None:
        return None


class _Stream:
    """A streaming `DeploymentResponseGenerator`: async-iterable, cancellable."""

    def __init__(self, params: GenerationParams) -> None:
        self._chunks = self._produce(params)

    @staticmethod
    async def _produce(params: GenerationParams) -> AsyncIterator[StreamChunk]:
        text = _text_of(params)
        if "EXPLODE" in text:
            raise UpstreamError("replica died", code="replica_failed")
        words = text.split(" ")
        pause_s = SLOW_WORD_S if "SLOW" in text else 0.0
        for index, word in enumerate(words):
            await asyncio.sleep(pause_s)
            last = index == len(words) - 1
            piece = word if index == 0 else " " + word
            yield StreamChunk(piece, "stop" if last else None, 3, index + 1, "fake")

    def __aiter__(self) -> "_Stream":
        return self

    async def __anext__(self) -> StreamChunk:
        return await self._chunks.__anext__()

    def cancel(self) -> None:
        return None


class _StreamMethod:
    def remote(self, params: GenerationParams) -> _Stream:
        return _Stream(params)


class FakeModelHandle:
    """Every method the ingress calls on a model or provider deployment handle."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.generate = _Method(self._generate)
        self.describe = _Method(lambda: {"metadata": {"context_length": 512}})
        self.check_upstream = _Method(
            lambda: {"provider": name, "key_configured": True, "reachable": True}
        )
        self.generate_stream = _StreamMethod()
        self.count_tokens = _Method(lambda params: len(_text_of(params).split()))

    @staticmethod
    def _generate(params: GenerationParams) -> GenerationOutput | BaseException:
        text = _text_of(params)
        if "EXPLODE" in text:
            return UpstreamError("replica died", code="replica_failed")
        return GenerationOutput(text, 3, len(text.split()), "stop", "fake")

    def options(self, **_: Any) -> "FakeModelHandle":
        return self


def gateway_config(
    db_url: str, auth: bool, max_body_bytes: int = MAX_BODY_BYTES, ingress: Any = None
) -> GatewayConfig:
    return GatewayConfig.model_validate(
        {
            "auth": {"enabled": auth},
            "ingress": {
                "max_body_bytes": max_body_bytes,
                "max_prompt_chars": MAX_PROMPT_CHARS,
                "max_batch_items": 4,
                "request_timeout_s": 5,
                **(ingress or {}),
            },
            "models": [{"id": MODEL_ID, "path": "x", "max_new_tokens": MAX_NEW_TOKENS}],
            "commercial": {
                "models": [
                    {
                        "id": COMMERCIAL_MODEL_ID,
                        "provider": "openai",
                        "upstream_model": "fake",
                        "price": {"input_per_million_usd": 1.0},
                        "context_window": 4096,
                        "max_output_tokens": MAX_NEW_TOKENS,
                        "vision": True,
                    }
                ]
            },
            "ledger": {"url": db_url},
            "logging": {"access_log": False},
        }
    )


@dataclass
class GatewayApp:
    app: FastAPI
    gateway: Gateway
    keys: KeyCache | None
    user_key: str | None  # a valid, enabled key (auth on only)

    async def aclose(self) -> None:
        """Flush the ledger and stop its task (on the loop that served the app)."""
        await self.gateway.close()
        if self.keys is not None:
            self.keys.store.close()


def build_gateway_app(
    tmp_dir: Path,
    auth: bool,
    max_body_bytes: int = MAX_BODY_BYTES,
    ingress: Any = None,
    **app_options: Any,
) -> GatewayApp:
    """The real app over fake handles; with `auth`, a key store in `tmp_dir` and one user key.
    `app_options` go to `create_app`. The app's lifespan shutdown closes the gateway."""
    db_url = f"sqlite:///{tmp_dir}/gateway.db"
    config = gateway_config(db_url, auth, max_body_bytes, ingress)
    handles = {MODEL_ID: FakeModelHandle(MODEL_ID), "openai": FakeModelHandle("openai")}
    keys, user_key = None, None
    if auth:
        store = open_key_store(db_url)
        _, user_key = store.create("fuzz-user")
        keys = KeyCache(store, ttl_s=5)
    admission = Admission(
        config, keys, RateLimiter(), environ={config.auth.admin_key_env: ADMIN_KEY}
    )
    gateway = Gateway(config, handles, admission=admission)
    built = GatewayApp(create_app(gateway, **app_options), gateway, keys, user_key)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await built.aclose()

    built.app.router.lifespan_context = lifespan
    return built


def error_shape_problems(path: str, status: int, body: bytes) -> list[str]:
    """Why an error response (status >= 400) is not in the route's own error shape."""
    try:
        payload = json.loads(body)
    except ValueError:
        return [f"{status} body is not JSON: {body[:200]!r}"]
    problems = []
    text = body.decode("utf-8", "replace")
    leak = LEAK_PATTERN.search(text)
    if leak:
        problems.append(f"body leaks {leak.group()!r}: {text[:300]}")
    if path.startswith(ANTHROPIC_PATHS):
        if not (isinstance(payload, dict) and set(payload) == {"type", "error"}):
            return [*problems, f"not Anthropic's error shape: {payload!r}"]
        error = payload["error"]
        if payload["type"] != "error" or not isinstance(error, dict):
            return [*problems, f"not Anthropic's error shape: {payload!r}"]
        if set(error) != {"type", "message"} or error["type"] not in ANTHROPIC_ERROR_TYPES:
            problems.append(f"bad Anthropic error body: {error!r}")
        return problems
    if not (isinstance(payload, dict) and set(payload) == {"error"}):
        return [*problems, f"not the native/OpenAI error shape: {payload!r}"]
    error = payload["error"]
    if not isinstance(error, dict) or set(error) != NATIVE_ERROR_KEYS:
        return [*problems, f"bad error body keys: {error!r}"]
    if not (isinstance(error["message"], str) and error["message"]):
        problems.append("error.message is empty")
    if not (isinstance(error["type"], str) and error["type"]):
        problems.append("error.type is empty")
    return problems
