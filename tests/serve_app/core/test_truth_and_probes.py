"""Errors that tell the truth (our bugs are 500 internal_error: no breaker, no fallback),
probes that cost nothing (a flood of /ready makes a handful of describe calls), records
never lost (close() during a slow write), and cancelled commercial calls billed."""

import asyncio
import contextvars
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from deployments.providers.sdk_errors import map_sdk_error
from serve_app.accounting.ledger import Ledger, UsageRecord
from serve_app.accounting.usage_store import UsageStore, open_engine
from serve_app.contracts.config import LedgerConfig
from serve_app.contracts.errors import InternalError, UpstreamTimeoutError
from serve_app.core.usage import cancelled
from tests.fakes.handles import FakeResult
from tests.serve_app.core.resilience_fakes import assert_error, build_rig, failing, gateway_args


def test_a_programming_error_in_the_provider_call_is_an_internal_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    nothing: Any = None
    try:
        nothing + 1  # the injected bug
    except TypeError as exc:
        with caplog.at_level(logging.ERROR, logger="ray.serve"):
            error = map_sdk_error(exc, "openai")
    assert isinstance(error, InternalError) and error.status_code == 500
    assert error.error_type == "internal_error"
    assert len(caplog.records) == 1 and caplog.records[0].exc_info is not None  # traceback


async def test_internal_errors_trip_no_breaker_and_start_no_fallback() -> None:
    rig = build_rig()
    try:
        rig.handle("openai").behave = failing(InternalError("Internal error."))
        for _ in range(8):  # more than circuit_breaker.failure_threshold (5)
            response = await rig.client.post(
                "/api/v1/generate", json={"prompt": "hi", "model_id": "gpt-x"}
            )
            body = assert_error(response, 500, "internal_error")
            assert response.headers["x-request-id"] and body["message"]
        assert rig.handle("anthropic").calls() == [] and rig.handle("demo").calls() == []
        assert rig.gateway.breakers.snapshot()["openai"]["state"] == "closed"
    finally:
        await rig.close()


class CountingProbe:
    def __init__(self) -> None:
        self.calls = 0

    def remote(self) -> FakeResult:
        self.calls += 1
        return FakeResult({"metadata": {}})


async def test_500_concurrent_ready_calls_make_a_handful_of_describes() -> None:
    rig = build_rig()
    probes = {name: CountingProbe() for name in rig.handles}
    for name, handle in rig.handles.items():
        handle.describe = probes[name]  # type: ignore[assignment]
    try:
        responses = await asyncio.gather(*(rig.client.get("/api/v1/ready") for _ in range(500)))
        assert all(r.status_code == 200 for r in responses)
        describes = sum(probe.calls for probe in probes.values())
        print(f"\n500 concurrent /ready: {describes} describe calls")
        assert describes <= 2 * len(probes)  # one round (two if a refresh came due)
        assert all(handle.calls() == [] for handle in rig.handles.values())  # no model slot
    finally:
        await rig.close()


class CancelledOnceProbe:
    """`describe` whose first call is cancelled from within (as Serve does to a handle call
    to a deployment still starting), then answers."""

    def __init__(self) -> None:
        self.calls = 0

    def remote(self) -> Any:
        self.calls += 1
        if self.calls == 1:
            return CancelledResult()
        return FakeResult({"metadata": {}})


class CancelledResult(FakeResult):
    def __init__(self) -> None:
        super().__init__(None)

    async def _run(self) -> Any:
        raise asyncio.CancelledError


async def test_a_probe_round_cancelled_from_within_does_not_stop_probing() -> None:
    """Seen with `make run`: Serve cancelled the first round's handle calls along with the
    /ready request that started the refresher (its client timed out), the refresher ended,
    and every later /ready waited forever for a snapshot."""
    rig = build_rig(gateway_args(ingress={"probe_interval_s": 0.1}))
    rig.handles["demo"].describe = CancelledOnceProbe()  # type: ignore[assignment]
    try:
        first = await asyncio.wait_for(rig.client.get("/api/v1/ready"), 5)
        assert first.status_code in (200, 503)
        await asyncio.sleep(0.3)  # the next rounds answer
        ready = await asyncio.wait_for(rig.client.get("/api/v1/ready"), 5)
        assert ready.status_code == 200, ready.text
    finally:
        await rig.close()


REQUEST_CONTEXT: contextvars.ContextVar[str] = contextvars.ContextVar("request_context")


class ContextRecordingProbe:
    """`describe` that records the request context it was called in (Serve cancels a
    request's handle calls with the request)."""

    def __init__(self) -> None:
        self.seen: list[str | None] = []

    def remote(self) -> Any:
        self.seen.append(REQUEST_CONTEXT.get(None))
        return FakeResult({"metadata": {}})


async def test_the_refresher_does_not_run_in_the_context_of_the_request_that_started_it() -> None:
    rig = build_rig()
    probe = ContextRecordingProbe()
    rig.handles["demo"].describe = probe  # type: ignore[assignment]

    async def in_a_request() -> dict[str, Any]:
        REQUEST_CONTEXT.set("request-1")
        return await rig.gateway.probe.snapshot()

    try:
        await asyncio.create_task(in_a_request())
        assert probe.seen and set(probe.seen) == {None}
    finally:
        await rig.close()


class RaisingResult(FakeResult):
    def __init__(self, error: BaseException) -> None:
        super().__init__(None)
        self.error = error

    async def _run(self) -> Any:
        raise self.error


class UnavailableOnceProbe(CancelledOnceProbe):
    """`describe` that fails on its first call (a model still loading), then answers."""

    def remote(self) -> Any:
        self.calls += 1
        if self.calls == 1:
            return RaisingResult(UpstreamTimeoutError("loading", code="deadline_exceeded"))
        return FakeResult({"metadata": {}})


async def test_ready_follows_a_loading_model_at_the_start_up_interval() -> None:
    ingress = {"probe_interval_s": 30, "probe_startup_interval_s": 0.1}
    rig = build_rig(gateway_args(ingress=ingress))
    rig.handles["demo"].describe = UnavailableOnceProbe()  # type: ignore[assignment]
    try:
        first = await rig.client.get("/api/v1/ready")
        assert first.status_code == 503
        await asyncio.sleep(0.4)  # not the 30 s of probe_interval_s
        assert (await rig.client.get("/api/v1/ready")).status_code == 200
    finally:
        await rig.close()


async def test_status_needs_the_admin_key_unless_public() -> None:

    for public, expected in ((False, 401), (True, 200)):
        args = gateway_args()
        args["auth"] = {"enabled": True}
        args["security"] = {"public_status": public}
        rig = build_rig(args)
        try:
            assert (await rig.client.get("/api/v1/status")).status_code == expected
        finally:
            await rig.close()


class SlowStore(UsageStore):
    def write(self, rows: Any) -> None:
        time.sleep(0.5)
        super().write(rows)


def usage(index: int) -> UsageRecord:
    return UsageRecord(time.time(), f"r{index}", "k", "m", "p", "m", 1, 1, 0.1, 1.0, "ok", 200)


async def test_close_during_a_slow_write_loses_no_record(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/usage.db"
    ledger = Ledger(LedgerConfig(url=url, flush_interval_s=0.05), SlowStore(open_engine(url)))
    for index in range(50):
        ledger.record(usage(index))
    await asyncio.sleep(0.2)  # the background flush is now inside its slow write
    assert ledger.writing == 50
    for index in range(50, 60):
        ledger.record(usage(index))
    closing = asyncio.create_task(ledger.close())
    await asyncio.sleep(0.05)
    closing.cancel()  # the replica's stop deadline: close() is shielded
    with pytest.raises(asyncio.CancelledError):
        await closing
    await asyncio.sleep(1.5)
    reader = UsageStore(open_engine(url))
    assert reader.summarize(None, None)[0]["requests"] == 60


def test_a_cancelled_commercial_call_is_billed_with_the_prompt_estimate() -> None:
    rig = build_rig()
    route = rig.gateway.catalog.get("gpt-x")
    _, params = rig.gateway.prepare("gpt-x", "r1", prompt="x" * 400)
    output = cancelled(route, params)
    assert output.input_tokens == 100 and output.finish_reason == "cancelled"
    demo = rig.gateway.catalog.get("demo")
    assert cancelled(demo, params).input_tokens == 0  # a local model costs nothing
