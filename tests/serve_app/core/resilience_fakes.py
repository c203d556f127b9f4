"""The rig shared by the fallback, circuit-breaker, deadline and adapter-routing tests (no
Ray): a gateway over `ScriptedHandle`s (tests/fakes/handles.py), a recording ledger, a
fake clock and helpers for the configs and answers."""

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from serve_app.access.admission import Admission
from serve_app.accounting.ledger import Ledger, UsageRecord
from serve_app.contracts.config import GatewayConfig
from serve_app.core.breakers import CircuitBreakers
from serve_app.core.gateway import Gateway
from serve_app.http.app import create_app
from serve_app.runtime.config_check import validate_args
from tests.fakes.handles import Behaviour, ScriptedHandle, answer, failing  # noqa: F401

ERROR_KEYS = {"message", "type", "param", "code"}


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
