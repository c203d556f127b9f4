"""Circuit breakers (per deployment, injected clock) and the rule of what is worth a fallback."""

import asyncio
import math
import time

import pytest

from serve_app.access.auth import RequestContext
from serve_app.contracts.config import CircuitBreakerConfig
from serve_app.contracts.errors import (
    AuthenticationError,
    BudgetExceededError,
    GatewayError,
    InternalError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
    UpstreamError,
    UpstreamRateLimitError,
    UpstreamTimeoutError,
)
from serve_app.core.breakers import CircuitBreakers, worth_a_fallback
from serve_app.http.error_handlers import error_response
from tests.serve_app.core.resilience_fakes import FakeClock, ScriptedHandle, build_rig, failing

THRESHOLD = 3
COOLDOWN_S = 30.0
UPSTREAM_FAILURES = [
    UpstreamError("bad gateway"),
    UpstreamTimeoutError("slow"),
]


def breakers(enabled: bool = True) -> tuple[CircuitBreakers, FakeClock]:
    clock = FakeClock()
    config = CircuitBreakerConfig(
        enabled=enabled, failure_threshold=THRESHOLD, cooldown_s=COOLDOWN_S
    )
    return CircuitBreakers(config, clock=clock), clock


def fail(subject: CircuitBreakers, times: int, error: GatewayError | None = None) -> None:
    for _ in range(times):
        subject.record("openai", error or UpstreamError("down"))


def is_open(subject: CircuitBreakers, deployment: str = "openai") -> bool:
    try:
        subject.check(deployment)
    except ServiceUnavailableError as error:
        assert error.code == "circuit_open"
        return True
    return False


def state(subject: CircuitBreakers, deployment: str = "openai") -> str:
    return str(subject.snapshot()[deployment]["state"])


@pytest.mark.parametrize("error", UPSTREAM_FAILURES, ids=lambda e: str(e.status_code))
def test_opens_after_threshold_consecutive_upstream_failures(error: GatewayError) -> None:
    subject, _ = breakers()
    fail(subject, THRESHOLD - 1, error)
    assert not is_open(subject)
    assert subject.snapshot()["openai"] == {"state": "closed", "consecutive_failures": 2}
    fail(subject, 1, error)
    assert is_open(subject) and state(subject) == "open"


@pytest.mark.parametrize(
    "alive",
    [UpstreamRateLimitError("busy"), RateLimitError("busy"), InvalidRequestError("bad")],
    ids=["upstream-429", "429", "400"],
)
def test_answers_that_prove_the_upstream_alive_reset_the_count(alive: GatewayError) -> None:
    subject, _ = breakers()
    for _ in range(10):  # many 429s / 400s in a row never open it
        subject.record("openai", alive)
    assert not is_open(subject)
    fail(subject, THRESHOLD - 1)
    subject.record("openai", alive)
    assert subject.snapshot()["openai"]["consecutive_failures"] == 0
    fail(subject, THRESHOLD - 1)
    assert not is_open(subject)
    fail(subject, 1)
    assert is_open(subject)


def test_a_success_resets_the_count() -> None:
    subject, _ = breakers()
    for _ in range(5):
        fail(subject, THRESHOLD - 1)
        subject.record("openai", None)
    assert not is_open(subject)


def test_open_circuit_fails_fast_with_503_and_retry_after() -> None:
    subject, clock = breakers()
    fail(subject, THRESHOLD)
    clock.advance(10)
    with pytest.raises(ServiceUnavailableError) as raised:
        subject.check("openai")
    error = raised.value
    assert (error.status_code, error.code) == (503, "circuit_open")
    assert error.retry_after_s == pytest.approx(COOLDOWN_S - 10)
    assert "openai" in error.message
    response = error_response(error, "/api/v1/generate")
    assert response.status_code == 503 and response.headers["retry-after"] == "20"
    clock.advance(COOLDOWN_S - 10 - 0.5)  # still open just before the cooldown ends
    assert is_open(subject)


def test_half_open_lets_exactly_one_trial_through() -> None:
    subject, clock = breakers()
    fail(subject, THRESHOLD)
    clock.advance(COOLDOWN_S)
    subject.check("openai")  # the trial
    assert state(subject) == "half_open"
    assert all(is_open(subject) for _ in range(5))  # everyone else still waits
    clock.advance(COOLDOWN_S * 0.9)  # while the trial may still report back
    assert is_open(subject)


def test_trial_success_closes_the_circuit() -> None:
    subject, clock = breakers()
    fail(subject, THRESHOLD)
    clock.advance(COOLDOWN_S)
    subject.check("openai")
    subject.record("openai", None)
    assert state(subject) == "closed"
    assert not any(is_open(subject) for _ in range(5))
    fail(subject, THRESHOLD - 1)  # the count starts again from zero
    assert not is_open(subject)


def test_trial_failure_reopens_for_a_full_cooldown() -> None:
    subject, clock = breakers()
    fail(subject, THRESHOLD)
    clock.advance(COOLDOWN_S + 5)
    subject.check("openai")
    fail(subject, 1)  # one failure is enough in half-open
    assert state(subject) == "open"
    with pytest.raises(ServiceUnavailableError) as raised:
        subject.check("openai")
    assert raised.value.retry_after_s == pytest.approx(COOLDOWN_S)
    clock.advance(COOLDOWN_S - 1)
    assert is_open(subject)
    clock.advance(1)
    assert not is_open(subject)  # the next trial


def test_disabled_breakers_never_open() -> None:
    subject, _ = breakers(enabled=False)
    fail(subject, THRESHOLD * 10)
    assert not is_open(subject)
    assert subject.snapshot() == {}


def test_breakers_are_per_deployment() -> None:
    subject, _ = breakers()
    fail(subject, THRESHOLD)
    assert is_open(subject, "openai")
    assert not is_open(subject, "anthropic") and not is_open(subject, "demo")
    assert state(subject, "anthropic") == "closed"


@pytest.mark.parametrize(
    ("error", "worth"),
    [
        (RateLimitError("x"), True),
        (UpstreamRateLimitError("x"), True),
        (InternalError("x"), False),  # our own bug: another model would not help
        (UpstreamError("x"), True),
        (ServiceUnavailableError("x", code="circuit_open"), True),
        (UpstreamTimeoutError("x"), True),
        (InvalidRequestError("x"), False),
        (AuthenticationError("x"), False),
        (BudgetExceededError("x"), False),
        (PermissionDeniedError("x"), False),
        (NotFoundError("x"), False),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, GatewayError) else str(value),
)
def test_worth_a_fallback(error: GatewayError, worth: bool) -> None:
    assert worth_a_fallback(error) is worth


# ---- the breaker as the gateway drives it --------------------------------------------------


def context(timeout_s: float = math.inf, shortened: bool = True) -> RequestContext:
    """As `Admission.identify` makes it: `shortened` when the client asked for less time
    (X-Request-Timeout) than the configured deadline."""
    return RequestContext(
        "req",
        "127.0.0.1",
        deadline=time.time() + timeout_s,
        deadline_shortened=shortened and math.isfinite(timeout_s),
    )


async def test_a_cancelled_half_open_trial_does_not_wedge_the_breaker() -> None:
    rig = build_rig()
    openai = rig.handle("openai")
    openai.behave = failing(UpstreamError("down"))
    try:
        route, params = rig.gateway.prepare("gpt-x", "req", prompt="hi")
        for _ in range(THRESHOLD):
            with pytest.raises(UpstreamError):
                await rig.gateway.call_model(route, params, context())
        rig.clock.advance(COOLDOWN_S)
        openai.script.delay_s = 5.0  # the trial hangs ...
        trial = asyncio.create_task(rig.gateway.call_model(route, params, context()))
        await asyncio.sleep(0.05)
        trial.cancel()  # ... and its client goes away
        with pytest.raises(asyncio.CancelledError):
            await trial
        assert len(openai.calls()) == THRESHOLD + 1
        rig.clock.advance(COOLDOWN_S * 10)  # long after: another trial must be allowed
        rig.gateway.breakers.check("openai")
    finally:
        await rig.close()


async def test_a_clients_short_deadline_does_not_open_the_circuit() -> None:
    handles = {name: ScriptedHandle() for name in ("demo", "openai", "anthropic")}
    handles["openai"].script.delay_s = 0.2  # healthy, answers in 200 ms
    rig = build_rig(handles=handles)
    try:
        route, params = rig.gateway.prepare("gpt-x", "req", prompt="hi")
        for _ in range(THRESHOLD):
            with pytest.raises(UpstreamTimeoutError):
                await rig.gateway.call_model(route, params, context(timeout_s=0.02))
        output, _, _ = await rig.gateway.call_model(route, params, context(timeout_s=5))
        assert output.served_model == "gpt-x"
    finally:
        await rig.close()


async def test_the_gateways_own_deadline_does_count_against_the_circuit() -> None:
    handles = {name: ScriptedHandle() for name in ("demo", "openai", "anthropic")}
    handles["openai"].script.delay_s = 0.5  # hangs past the configured deadline
    rig = build_rig(handles=handles)
    try:
        route, params = rig.gateway.prepare("gpt-x", "req", prompt="hi")
        for _ in range(THRESHOLD):
            with pytest.raises(UpstreamTimeoutError):
                await rig.gateway.call_model(
                    route, params, context(timeout_s=0.02, shortened=False)
                )
        assert rig.gateway.breakers.snapshot()["openai"]["state"] == "open"
    finally:
        await rig.close()


def test_our_own_bugs_never_open_a_circuit() -> None:
    subject, _ = breakers()
    fail(subject, THRESHOLD * 3, InternalError("a TypeError in our code"))
    assert not is_open(subject) and state(subject) == "closed"
