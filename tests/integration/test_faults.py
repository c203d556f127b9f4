"""Fault injection on a gateway of its own: a provider that hangs, answers garbage, drops a
stream or is gone; fallbacks and the circuit breaker; a full model queue; the usage store
(PostgreSQL) stopped and restarted; a clean stop flushing every buffered record."""

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import free_port
from tests.fakes.fake_provider import FakeProvider
from tests.fakes.postgres_server import PostgresServer, postgres_server

pytestmark = pytest.mark.integration
APP = "faults"
BREAKER = {"failure_threshold": 2, "cooldown_s": 30}


def commercial_model(model_id: str, provider: str, fallbacks: list[str]) -> dict[str, Any]:
    return {
        "id": model_id,
        "provider": provider,
        "upstream_model": "fake-model",
        "price": {"input_per_million_usd": 1.0, "output_per_million_usd": 1.0},
        "context_window": 1000,
        "max_output_tokens": 50,
        "fallbacks": fallbacks,
    }


def fault_args(fake: FakeProvider, random_dir: Path, ledger_url: str) -> dict[str, Any]:
    provider = {"rpm": 10_000, "rate_limit_wait_s": 0}
    # openai: its own deployment; anthropic: in the ingress (the default placement).
    separate = {"placement": "deployment", "num_cpus": 0.05, "autoscaling": None}
    return {
        "auth": {"enabled": False},
        "circuit_breaker": BREAKER,
        "ingress": {"num_cpus": 0.05, "request_timeout_s": 30},
        "models": [
            {
                "id": "tiny",
                "path": str(random_dir),
                "num_cpus": 0.05,
                "max_new_tokens": 64,
                "defaults": {"temperature": 0.0, "max_tokens": 2},
                "batching": {"max_batch_size": 1, "batch_wait_timeout_s": 0},
                "max_ongoing_requests": 1,
                "max_queued_requests": 1,
            }
        ],
        "commercial": {
            "include_default_catalog": False,
            "openai": {
                **provider,
                **separate,
                "base_url": fake.openai_base_url,
                "timeout_s": 1,
                "max_retries": 0,
            },
            "anthropic": {**provider, "base_url": fake.anthropic_base_url, "max_retries": 0},
            "models": [
                commercial_model("primary", "openai", ["backup", "tiny"]),
                commercial_model("backup", "anthropic", ["tiny"]),
                commercial_model("lonely", "anthropic", []),
            ],
        },
        "ledger": {"url": ledger_url, "flush_interval_s": 0.2},
    }


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    with postgres_server(tmp_path_factory.mktemp("faults-pg")) as server:
        yield server


@pytest.fixture(scope="module")
def faults(
    gateway: str, random_model_dir: Path, store: PostgresServer
) -> Iterator[tuple[str, FakeProvider]]:
    from ray import serve

    from serve_app.runtime.builder import build_app

    with FakeProvider(port=free_port()) as fake:  # a fixed port: it is stopped and restarted
        args = fault_args(fake, random_model_dir, store.url)
        serve.run(build_app(args), name=APP, route_prefix=f"/{APP}")
        yield f"{gateway}/{APP}", fake
        serve.delete(APP)


def generate(base: str, model: str, **extra: Any) -> httpx.Response:
    body = {"prompt": "hello there", "model_id": model, "max_tokens": 3, **extra}
    return httpx.post(f"{base}/api/v1/generate", json=body, timeout=60)


def ledger_rows(store: PostgresServer, where: str = "TRUE") -> list[tuple[Any, ...]]:
    with psycopg.connect(store.url) as connection:
        query = f"SELECT request_id, model_id, served_model, status FROM usage WHERE {where}"
        return list(connection.execute(query).fetchall())


def test_garbage_from_the_provider_falls_back(faults: tuple[str, FakeProvider]) -> None:
    base, fake = faults
    fake.set_malformed(1)
    response = generate(base, "primary")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_id"] == "backup"
    assert body["metadata"]["requested_model"] == "primary"
    assert body["metadata"]["fallback_used"] is True


def test_garbage_without_a_fallback_is_a_clean_502(faults: tuple[str, FakeProvider]) -> None:
    base, fake = faults
    fake.set_malformed(1)
    response = generate(base, "lonely")
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_malformed"
    assert response.headers["x-request-id"]


def test_a_stream_dropped_midway_ends_with_an_error_event_not_a_hang(
    faults: tuple[str, FakeProvider],
) -> None:
    base, fake = faults
    fake.set_reply_text("one two three four five six seven eight")
    fake.set_drop_mid_stream(1)
    try:
        body = {"model": "lonely", "max_tokens": 20, "stream": True}
        body["messages"] = [{"role": "user", "content": "hi"}]
        started = time.monotonic()
        with httpx.stream("POST", f"{base}/v1/messages", json=body, timeout=30) as response:
            text = "".join(response.iter_text())
        assert time.monotonic() - started < 20
        assert "event: error" in text
        assert "message_stop" not in text
    finally:
        fake.set_reply_text(None)


def test_hanging_provider_opens_the_circuit_and_fallbacks_answer_fast(
    faults: tuple[str, FakeProvider], store: PostgresServer
) -> None:
    base, fake = faults
    fake.set_delay(5)  # beyond the openai proxy's 1 s timeout; anthropic waits it out
    try:
        request_ids = []
        for _ in range(BREAKER["failure_threshold"]):
            response = generate(base, "primary", max_tokens=2)
            assert response.status_code == 200, response.text
            request_ids.append(response.headers["x-request-id"])
        status = httpx.get(f"{base}/api/v1/status", timeout=30).json()
        assert status["circuit_breakers"]["openai"]["state"] == "open"
        fake.set_delay(0)
        started = time.monotonic()
        response = generate(base, "primary")
        assert response.status_code == 200
        assert response.json()["model_id"] == "backup"
        assert time.monotonic() - started < 1.0  # no openai timeout paid any more
    finally:
        fake.set_delay(0)
    time.sleep(1)
    rows = ledger_rows(store, f"request_id = '{request_ids[0]}'")
    assert sorted((r[1], r[2], r[3]) for r in rows) == [
        ("primary", "backup", 200),
        ("primary", "primary", 504),
    ]


def test_provider_gone_the_chain_ends_on_the_local_model(
    faults: tuple[str, FakeProvider],
) -> None:
    base, fake = faults
    fake.stop()
    try:
        response = generate(base, "backup")
        assert response.status_code == 200, response.text
        assert response.json()["model_id"] == "tiny"
        lonely = generate(base, "lonely")
        assert lonely.status_code == 502 and lonely.json()["error"]["type"]
    finally:
        fake.start()


async def _burst(base: str, count: int) -> list[tuple[int, float, httpx.Headers]]:
    body = {"prompt": "hello", "model_id": "tiny", "max_tokens": 48}

    async def one(client: httpx.AsyncClient) -> tuple[int, float, httpx.Headers]:
        started = time.monotonic()
        response = await client.post("/api/v1/generate", json=body)
        return response.status_code, time.monotonic() - started, response.headers

    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        return list(await asyncio.gather(*(one(client) for _ in range(count))))


def test_a_full_model_queue_is_a_fast_503_with_retry_after(
    faults: tuple[str, FakeProvider],
) -> None:
    base, _ = faults
    results = asyncio.run(_burst(base, 8))
    rejected = [r for r in results if r[0] == 503]
    assert rejected, [r[0] for r in results]
    assert {r[0] for r in results} <= {200, 503}
    for _, seconds, headers in rejected:
        assert seconds < 2.0 and int(headers["retry-after"]) >= 1


def test_usage_store_outage_is_reported_and_loses_nothing(
    faults: tuple[str, FakeProvider], store: PostgresServer
) -> None:
    base, _ = faults
    store.stop()
    ids = []
    try:
        for _ in range(5):
            response = generate(base, "tiny")  # (anthropic's circuit is open by now)
            assert response.status_code == 200, response.text  # served while the store is down
            ids.append(response.headers["x-request-id"])
        deadline = time.monotonic() + 15
        ledger: dict[str, Any] = {}
        while time.monotonic() < deadline and not ledger.get("degraded"):
            ledger = httpx.get(f"{base}/api/v1/status", timeout=30).json()["ledger"]
            time.sleep(0.3)
        assert ledger["degraded"] and ledger["pending_records"] >= 5, ledger
    finally:
        store.start()
    deadline = time.monotonic() + 30
    quoted = ", ".join(f"'{rid}'" for rid in ids)
    while time.monotonic() < deadline:
        # The store is still starting, or the gateway has not written its table yet.
        with contextlib.suppress(psycopg.OperationalError, psycopg.errors.UndefinedTable):
            if len(ledger_rows(store, f"request_id IN ({quoted})")) == len(ids):
                break
        time.sleep(0.5)
    assert len(ledger_rows(store, f"request_id IN ({quoted})")) == len(ids)
    status = httpx.get(f"{base}/api/v1/status", timeout=30).json()["ledger"]
    assert not status["degraded"]


def test_a_clean_stop_flushes_every_buffered_record(
    gateway: str, fake_provider: FakeProvider, tmp_path: Path
) -> None:
    """A ledger that would flush only once a minute: a clean stop writes all of it."""
    import sqlite3

    from ray import serve

    from serve_app.runtime.builder import build_app

    db = tmp_path / "usage.db"
    args = fault_args(fake_provider, Path("unused"), f"sqlite:///{db}")
    args.update(models=[], ledger={"url": f"sqlite:///{db}", "flush_interval_s": 60})
    args["commercial"]["models"] = [commercial_model("lonely", "anthropic", [])]
    serve.run(build_app(args), name="flushing", route_prefix="/flushing")
    ids = [generate(f"{gateway}/flushing", "lonely").headers["x-request-id"] for _ in range(6)]
    serve.delete("flushing")
    with sqlite3.connect(db) as connection:
        stored = {row[0] for row in connection.execute("SELECT request_id FROM usage")}
    assert stored == set(ids)
