"""The gateway's FastAPI app around fake deployment handles (no Ray), for fuzz and hostile tests.

`build_gateway_app` makes the real `create_app` app over a local model and one commercial
provider whose handles answer in-process: plain calls return a `GenerationOutput`, streamed
calls yield `StreamChunk`s, probes describe the model and check the "upstream". With auth on,
keys live in a throwaway SQLite store and the admin key comes from a fake environment.
"""

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
from serve_app.access.key_store import KeySpec, open_key_store
from serve_app.contracts.config import GatewayConfig
from serve_app.contracts.errors import UpstreamError
from serve_app.contracts.wire import GenerationOutput, GenerationParams
from serve_app.core.gateway import Gateway
from serve_app.http.app import create_app
from serve_app.http.schemas.anthropic import AnthropicErrorType
from tests.fakes.handles import Script, ScriptedHandle

ADMIN_KEY = "admin-fuzz-key-0123456789abcdef"
MAX_BODY_BYTES = 4096
MODEL_ID = "demo"
MAX_NEW_TOKENS = 64  # the cap of both models
MAX_PROMPT_CHARS = 2000
SLOW_WORD_S = 0.2  # a streamed prompt holding "slow" yields one word per this many seconds
COMMERCIAL_MODEL_ID = "gpt-fake"
EMBED_MODEL_ID = "embedder"  # a local `task: embed` model
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


def _answer(params: GenerationParams) -> GenerationOutput | BaseException:
    """The prompt's first 40 characters upper-cased, one chunk per word when streamed; a
    prompt holding "explode" fails like a dead replica."""
    text = _text_of(params)
    if "EXPLODE" in text:
        return UpstreamError("replica died", code="replica_failed")
    return GenerationOutput(text, 3, len(text.split()), "stop", "fake")


def _word_delay_s(params: GenerationParams) -> float:
    return SLOW_WORD_S if "SLOW" in _text_of(params) else 0.0


def fake_model_handle(name: str) -> ScriptedHandle:
    """Every method the ingress calls on a model or provider deployment handle."""
    return ScriptedHandle(script=Script(_answer, word_delay_s=_word_delay_s), name=name)


def gateway_config(
    db_url: str,
    auth: bool,
    max_body_bytes: int = MAX_BODY_BYTES,
    cache: dict[str, Any] | None = None,
    ingress: Any = None,
) -> GatewayConfig:
    return GatewayConfig.model_validate(
        {
            "cache": cache or {},
            "auth": {"enabled": auth},
            "ingress": {
                "max_body_bytes": max_body_bytes,
                "max_prompt_chars": MAX_PROMPT_CHARS,
                "max_batch_items": 4,
                "request_timeout_s": 5,
                **(ingress or {}),
            },
            "models": [
                {"id": MODEL_ID, "path": "x", "max_new_tokens": MAX_NEW_TOKENS},
                {"id": EMBED_MODEL_ID, "path": "x", "task": "embed"},
            ],
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
    cache: dict[str, Any] | None = None,
    ingress: Any = None,
    **app_options: Any,
) -> GatewayApp:
    """The real app over fake handles; with `auth`, a key store in `tmp_dir` and one user key;
    `cache`: the response cache's config. `app_options` go to `create_app`. The app's
    lifespan shutdown closes the gateway."""
    db_url = f"sqlite:///{tmp_dir}/gateway.db"
    config = gateway_config(db_url, auth, max_body_bytes, cache, ingress)
    handles = {
        MODEL_ID: fake_model_handle(MODEL_ID),
        EMBED_MODEL_ID: fake_model_handle(EMBED_MODEL_ID),
        "openai": fake_model_handle("openai"),
    }
    keys, user_key = None, None
    if auth:
        store = open_key_store(db_url)
        _, user_key = store.create(KeySpec("fuzz-user"))
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
