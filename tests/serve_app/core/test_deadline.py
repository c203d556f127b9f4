"""The request deadline: `X-Request-Timeout` (capped by `ingress.request_timeout_s`) bounds
every handle call of a request, fallbacks included."""

import math
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from serve_app.access.admission import Admission
from serve_app.contracts.errors import InvalidRequestError, UpstreamError
from serve_app.runtime.config_check import validate_args
from tests.serve_app.core.resilience_fakes import (
    Rig,
    ScriptedHandle,
    Stopwatch,
    assert_error,
    build_rig,
    failing,
    gateway_args,
)

SLOW_S = 1.0
CHAT = {"messages": [{"role": "user", "content": "hi"}]}


def slow_handles(**delays: float) -> dict[str, ScriptedHandle]:
    return {
        name: ScriptedHandle(delay_s=delays.get(name, 0.0))
        for name in ("demo", "openai", "anthropic")
    }


@pytest.fixture
async def slow_demo() -> AsyncIterator[Rig]:
    rig = build_rig(handles=slow_handles(demo=SLOW_S))
    yield rig
    await rig.close()


async def generate(rig: Rig, limit: str | None, model: str = "demo", **body: Any) -> Any:
    headers = {} if limit is None else {"X-Request-Timeout": limit}
    return await rig.client.post(
        "/api/v1/generate", json={"prompt": "hi", "model_id": model, **body}, headers=headers
    )


async def test_a_short_deadline_is_a_fast_504(slow_demo: Rig) -> None:
    with Stopwatch() as watch:
        response = await generate(slow_demo, "0.2")
    error = assert_error(response, 504, "upstream_timeout")
    assert error["code"] == "deadline_exceeded"
    assert 0.15 < watch.elapsed < 0.7
    (call,) = slow_demo.handle("demo").calls()
    assert call.response.cancelled  # the deployment's work is cancelled too
    (row,) = slow_demo.ledger.records
    assert (row.status, row.outcome) == (504, "upstream_timeout")


async def test_without_the_header_the_slow_answer_arrives(slow_demo: Rig) -> None:
    response = await generate(slow_demo, None)
    assert response.status_code == 200 and response.json()["model_id"] == "demo"


async def test_a_streams_first_chunk_is_bound_by_the_deadline(slow_demo: Rig) -> None:
    with Stopwatch() as watch:
        response = await generate(slow_demo, "0.2", stream=True)
    assert assert_error(response, 504, "upstream_timeout")["code"] == "deadline_exceeded"
    assert watch.elapsed < 0.7
    (call,) = slow_demo.handle("demo").calls("generate_stream")
    assert call.response.cancelled


@pytest.mark.parametrize("value", ["abc", "-1", "0", "nan", "inf", "", "1e400"])
@pytest.mark.parametrize("path", ["/api/v1/generate", "/v1/chat/completions"])
async def test_an_invalid_timeout_is_a_400_naming_the_header(
    slow_demo: Rig, value: str, path: str
) -> None:
    body = (
        {"prompt": "hi", "model_id": "demo"}
        if path.startswith("/api")
        else {
            "model": "demo",
            **CHAT,
        }
    )
    response = await slow_demo.client.post(path, json=body, headers={"X-Request-Timeout": value})
    error = assert_error(response, 400, "invalid_request_error")
    assert error["param"] == "x-request-timeout"
    assert "x-request-timeout" in error["message"].lower()
    assert slow_demo.handle("demo").log == []


async def test_a_timeout_above_the_configured_limit_is_capped() -> None:
    args = gateway_args(ingress={"request_timeout_s": 0.3})
    rig = build_rig(args, handles=slow_handles(demo=SLOW_S))
    try:
        with Stopwatch() as watch:
            response = await generate(rig, "100")
        assert assert_error(response, 504, "upstream_timeout")["code"] == "deadline_exceeded"
        assert 0.25 < watch.elapsed < 0.8
    finally:
        await rig.close()


@pytest.mark.parametrize(
    ("header", "expected"), [(None, 30.0), ("12.5", 12.5), ("30", 30.0), ("45", 30.0)]
)
async def test_admission_sets_the_deadline(header: str | None, expected: float) -> None:
    config = validate_args(gateway_args(ingress={"request_timeout_s": 30}), "t", {})
    admission = Admission(config, None, None, environ={})
    headers = {} if header is None else {"x-request-timeout": header}
    assert admission.timeout_s(headers) == expected
    before = time.time()
    ctx = await admission.identify(headers, {"request_id": "r"})
    assert before + expected <= ctx.deadline <= time.time() + expected
    assert ctx.remaining_s(math.inf) == pytest.approx(expected, abs=0.5)
    with pytest.raises(InvalidRequestError):
        admission.timeout_s({"x-request-timeout": "soon"})


async def test_fallbacks_share_the_deadline() -> None:
    """The first model eats the whole deadline: no fallback is called after it passed."""
    rig = build_rig(handles=slow_handles(openai=SLOW_S))
    try:
        with Stopwatch() as watch:
            response = await generate(rig, "0.3", model="gpt-x")
        assert assert_error(response, 504, "upstream_timeout")["code"] == "deadline_exceeded"
        assert watch.elapsed < 0.8
        assert rig.handle("anthropic").log == [] and rig.handle("demo").log == []
        assert [r.served_model for r in rig.ledger.records] == ["gpt-x"]
    finally:
        await rig.close()


async def test_a_fallback_gets_only_what_is_left_of_the_deadline() -> None:
    rig = build_rig(handles=slow_handles(openai=0.2, anthropic=SLOW_S))
    rig.handle("openai").behave = failing(UpstreamError("down"))
    try:
        with Stopwatch() as watch:
            response = await generate(rig, "0.5", model="gpt-x")
        assert assert_error(response, 504, "upstream_timeout")["code"] == "deadline_exceeded"
        assert 0.4 < watch.elapsed < 0.9  # 0.5 s in all, not 0.2 s + a fresh 0.5 s
        assert len(rig.handle("anthropic").calls()) == 1
        assert rig.handle("demo").log == []
    finally:
        await rig.close()


async def test_the_deadline_travels_to_the_deployment(slow_demo: Rig) -> None:
    slow_demo.handle("demo").script.delay_s = 0.0
    before = time.time()
    response = await generate(slow_demo, "2")
    assert response.status_code == 200
    (call,) = slow_demo.handle("demo").calls()
    assert call.params.deadline is not None
    assert before + 2 <= call.params.deadline <= time.time() + 2


async def test_the_deadline_covers_the_openai_route_too(slow_demo: Rig) -> None:
    with Stopwatch() as watch:
        response = await slow_demo.client.post(
            "/v1/chat/completions",
            json={"model": "demo", **CHAT},
            headers={"X-Request-Timeout": "0.2"},
        )
    assert assert_error(response, 504, "upstream_timeout")["code"] == "deadline_exceeded"
    assert watch.elapsed < 0.7
