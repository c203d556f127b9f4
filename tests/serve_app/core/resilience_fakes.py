"""Fakes shared by the fallback, circuit-breaker, deadline and adapter-routing tests (no Ray).

`ScriptedHandle` stands in for a model or provider deployment handle: what it answers comes
from a `behave(params)` function (a `GenerationOutput`, or an exception to raise), after an
optional delay. Every `generate` / `generate_stream` call is logged together with the handle
options it was made through; `options()` merges options like `DeploymentHandle.options`.
"""

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from serve_app.access.admission import Admission
from serve_app.accounting.ledger import Ledger, UsageRecord
from serve_app.contracts.config import GatewayConfig
from serve_app.contracts.wire import GenerationOutput, GenerationParams, StreamChunk
from serve_app.core.breakers import CircuitBreakers
from serve_app.core.gateway import Gateway
from serve_app.http.app import create_app
from serve_app.runtime.config_check import validate_args

Behaviour = Callable[[GenerationParams], GenerationOutput | BaseException]
ERROR_KEYS = {"message", "type", "param", "code"}


def answer(params: GenerationParams) -> GenerationOutput:
    """A healthy model: says which model id (and adapter) it served."""
    text = f"{params.model_id} answers" + (f" via {params.adapter}" if params.adapter else "")
    return GenerationOutput(text, 3, 2, "stop", params.model_id)


def failing(error: BaseException) -> Behaviour:
    return lambda params: error


@dataclass
class Call:
    method: str  # "generate" or "generate_stream"
    params: GenerationParams
    options: dict[str, Any]
    response: "FakeCall | FakeStream"


class FakeCall:
    """Awaitable like a `DeploymentResponse`; records cancellation."""

    def __init__(self, handle: "ScriptedHandle", params: GenerationParams) -> None:
        self.handle = handle
        self.params = params
        self.cancelled = False

    def __await__(self) -> Any:
        return self._run().__await__()

    async def _run(self) -> GenerationOutput:
        if self.handle.delay_s:
            await asyncio.sleep(self.handle.delay_s)
        result = self.handle.behave(self.params)
        if isinstance(result, BaseException):
            raise result
        return result

    def cancel(self) -> None:
        self.cancelled = True


class FakeStream:
    """A streaming `DeploymentResponseGenerator`: one chunk per word of the answer; raises
    the behaviour's error on the first chunk, or on the second when `fail_after_first`."""

    def __init__(self, handle: "ScriptedHandle", params: GenerationParams) -> None:
        self.cancelled = False
        self._chunks = self._produce(handle, params)

    @staticmethod
    async def _produce(
        handle: "ScriptedHandle", params: GenerationParams
    ) -> AsyncIterator[StreamChunk]:
        if handle.delay_s:
            await asyncio.sleep(handle.delay_s)
        result = handle.behave(params)
        if isinstance(result, BaseException):
            if handle.fail_after_first:
                yield StreamChunk("partial", None, 3, 1, params.model_id)
            raise result
        words = result.text.split(" ")
        for index, word in enumerate(words):
            last = index == len(words) - 1
            piece = word if index == 0 else " " + word
            finish = result.finish_reason if last else None
            yield StreamChunk(piece, finish, 3, index + 1, params.model_id)

    def __aiter__(self) -> "FakeStream":
        return self

    async def __anext__(self) -> StreamChunk:
        return await self._chunks.__anext__()

    def cancel(self) -> None:
        self.cancelled = True


class _Method:
    def __init__(self, handle: "ScriptedHandle", name: str) -> None:
        self.handle = handle
        self.name = name

    def remote(self, params: GenerationParams) -> FakeCall | FakeStream:
        response: FakeCall | FakeStream
        if self.name == "generate_stream":
            response = FakeStream(self.handle, params)
        else:
            response = FakeCall(self.handle, params)
        self.handle.log.append(Call(self.name, params, dict(self.handle.options_used), response))
        return response


class FakeResult:
    """An already-answered `DeploymentResponse` (for the status probes)."""

    def __init__(self, result: Any) -> None:
        self.result = result

    def __await__(self) -> Any:
        return self._run().__await__()

    async def _run(self) -> Any:
        return self.result

    def cancel(self) -> None:
        return None


class _Probe:
    def __init__(self, result: dict[str, Any]) -> None:
        self.result = result

    def remote(self) -> FakeResult:
        return FakeResult(self.result)


@dataclass
class Script:
    """What one deployment does; shared by a handle and every clone `options()` makes."""

    behave: Behaviour = answer
    delay_s: float = 0.0
    fail_after_first: bool = False  # streams: the error comes after one chunk
    log: list[Call] = field(default_factory=list)


class ScriptedHandle:
    """A deployment handle answering from its `script`, which a test may change at any time
    (the catalog's clones, made by `options()`, share it)."""

    def __init__(
        self,
        behave: Behaviour = answer,
        delay_s: float = 0.0,
        script: Script | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.script = script or Script(behave, delay_s)
        self.options_used: dict[str, Any] = options or {}
        self.generate = _Method(self, "generate")
        self.generate_stream = _Method(self, "generate_stream")
        self.describe = _Probe({"metadata": {"context_length": 512}})
        self.check_upstream = _Probe({"key_configured": True, "reachable": True})

    @property
    def behave(self) -> Behaviour:
        return self.script.behave

    @behave.setter
    def behave(self, behave: Behaviour) -> None:
        self.script.behave = behave

    @property
    def delay_s(self) -> float:
        return self.script.delay_s

    @property
    def fail_after_first(self) -> bool:
        return self.script.fail_after_first

    @property
    def log(self) -> list[Call]:
        return self.script.log

    def options(self, **options: Any) -> "ScriptedHandle":
        """Like `DeploymentHandle.options`: a new handle, the options merged over these."""
        return ScriptedHandle(script=self.script, options={**self.options_used, **options})

    def calls(self, method: str = "generate") -> list[Call]:
        return [call for call in self.log if call.method == method]


class RecordingLedger(Ledger):
    """The real ledger (SQLite in memory) that also keeps every record it was given."""

    def __init__(self, config: GatewayConfig) -> None:
        super().__init__(config.ledger)
        self.records: list[UsageRecord] = []

    def record(self, record: UsageRecord) -> None:
        self.records.append(record)
        super().record(record)


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def gpt_x(fallbacks: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "id": "gpt-x",
        "provider": "openai",
        "upstream_model": "x-upstream",
        "price": {"input_per_million_usd": 1.0, "output_per_million_usd": 2.0},
        "context_window": 4096,
        "max_output_tokens": 100,
        "fallbacks": fallbacks,
        **extra,
    }


def claude_y(**extra: Any) -> dict[str, Any]:
    return {
        "id": "claude-y",
        "provider": "anthropic",
        "upstream_model": "y-upstream",
        "price": {"input_per_million_usd": 3.0},
        "context_window": 4096,
        "max_output_tokens": 100,
        **extra,
    }


def gateway_args(**overrides: Any) -> dict[str, Any]:
    """A local `demo` (cap 16 tokens, temperature 0.3 by default), `gpt-x` (openai) falling
    back to `claude-y` (anthropic) then `demo`; no shipped catalog, auth off."""
    args: dict[str, Any] = {
        "auth": {"enabled": False},
        "logging": {"access_log": False},
        "ingress": {"request_timeout_s": 5},
        "models": [
            {
                "id": "demo",
                "path": "x",
                "max_new_tokens": 16,
                "defaults": {"temperature": 0.3, "max_tokens": 8},
            }
        ],
        "commercial": {
            "include_default_catalog": False,
            "models": [gpt_x(["claude-y", "demo"]), claude_y()],
        },
        "circuit_breaker": {"enabled": True, "failure_threshold": 3, "cooldown_s": 30},
        "ledger": {"url": "sqlite://:memory:"},
    }
    args.update(overrides)
    return args


@dataclass
class Rig:
    """A gateway over scripted handles, its app and an httpx client on the app."""

    gateway: Gateway
    handles: dict[str, ScriptedHandle]
    ledger: RecordingLedger
    clock: FakeClock
    client: httpx.AsyncClient

    def handle(self, name: str) -> ScriptedHandle:
        return self.handles[name]

    async def close(self) -> None:
        await self.client.aclose()
        await self.gateway.close()


def build_rig(
    args: dict[str, Any] | None = None,
    handles: dict[str, ScriptedHandle] | None = None,
    admission: Callable[[GatewayConfig], Admission] | None = None,
) -> Rig:
    config = validate_args(args or gateway_args(), "test", {})
    if handles is None:
        handles = {name: ScriptedHandle() for name in ("demo", "openai", "anthropic")}
    ledger = RecordingLedger(config)
    gateway = Gateway(
        config, handles, ledger=ledger, admission=admission(config) if admission else None
    )
    clock = FakeClock()
    gateway.breakers = CircuitBreakers(config.circuit_breaker, clock=clock)
    transport = httpx.ASGITransport(app=create_app(gateway))
    client = httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=10)
    return Rig(gateway, handles, ledger, clock, client)


def assert_error(response: httpx.Response, status: int, error_type: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == ERROR_KEYS, body
    assert body["error"]["type"] == error_type, body
    return dict(body["error"])


class Stopwatch:
    def __enter__(self) -> "Stopwatch":
        self.started = time.perf_counter()
        self.elapsed = 0.0
        return self

    def __exit__(self, *_: object) -> None:
        self.elapsed = time.perf_counter() - self.started
