"""ProviderProxy without Ray: key handling, degradation, retries and the limiter loop."""

import asyncio
from typing import Any

import pytest

from deployments.providers.proxy import ProviderProxy
from serve_app.contracts.errors import RateLimitError, ServiceUnavailableError
from serve_app.contracts.limits import Decision
from serve_app.contracts.wire import GenerationParams
from tests.fakes.fake_provider import FakeProvider
from tests.fakes.handles import FakeHandle

MODEL = {
    "id": "mini",
    "provider": "openai",
    "upstream_model": "fake-gpt",
    "price": {"input_per_million_usd": 1, "output_per_million_usd": 1},
    "context_window": 100,
    "max_output_tokens": 10,
}
PARAMS = GenerationParams(request_id="r1", model_id="mini", prompt="a b c", max_tokens=10)


def allow(*_: Any) -> Decision:
    return Decision(True, 0.0, None, None, 0.0)


def proxy(base_url: str | None, key_env: str, limiter: FakeHandle, **extra: Any) -> ProviderProxy:
    config = {"api_key_env": key_env, "rpm": 60, "base_url": base_url, **extra}
    return ProviderProxy("openai", config, [MODEL], limiter)


def test_missing_key_degrades_to_503_with_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GW_TEST_MISSING_KEY", raising=False)
    unavailable = proxy(None, "GW_TEST_MISSING_KEY", FakeHandle(acquire=allow))
    described = asyncio.run(unavailable.describe())
    assert described["status"] == "unavailable"
    assert "GW_TEST_MISSING_KEY" in described["unavailable_reason"]
    with pytest.raises(ServiceUnavailableError):
        asyncio.run(unavailable.generate(PARAMS))
    check = asyncio.run(unavailable.check_upstream())
    assert check["key_configured"] is False and check["reachable"] is False


def test_generate_through_sdk_and_waits_for_limiter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GW_TEST_KEY", "sk-unit")
    answers = iter([Decision(False, 0.2, 0, None, 0.2), Decision(True, 0, 0, None, 1)])
    limiter = FakeHandle(acquire=lambda *_: next(answers))
    with FakeProvider() as fake:
        live = proxy(fake.openai_base_url, "GW_TEST_KEY", limiter, rate_limit_wait_s=1)
        output = asyncio.run(live.generate(PARAMS))
        assert output.text == fake.reply_for("openai", "fake-gpt")
        assert (output.input_tokens, output.output_tokens) == (3, 6)
        assert len(limiter.acquire.calls) == 2  # type: ignore[attr-defined]


def test_over_limit_without_wait_budget_is_429(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GW_TEST_KEY", "sk-unit")
    limiter = FakeHandle(acquire=lambda *_: Decision(False, 30.0, 0, None, 30.0))
    with FakeProvider() as fake:
        live = proxy(fake.openai_base_url, "GW_TEST_KEY", limiter, rate_limit_wait_s=1)
        with pytest.raises(RateLimitError) as raised:
            asyncio.run(live.generate(PARAMS))
        assert raised.value.retry_after_s == 30.0
        assert fake.recorded() == []


def test_the_request_deadline_bounds_the_upstream_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hanging upstream is abandoned at the request's deadline, not at timeout_s, and no
    retry starts that could not finish in time."""
    import dataclasses
    import time

    from serve_app.contracts.errors import UpstreamTimeoutError

    monkeypatch.setenv("GW_TEST_KEY", "sk-unit")
    with FakeProvider() as fake:
        fake.set_delay(3)
        live = proxy(fake.openai_base_url, "GW_TEST_KEY", FakeHandle(acquire=allow), timeout_s=30)
        params = dataclasses.replace(PARAMS, deadline=time.time() + 0.5)
        started = time.monotonic()
        with pytest.raises(UpstreamTimeoutError):
            asyncio.run(live.generate(params))
        assert time.monotonic() - started < 2.0
        assert len(fake.recorded()) == 1  # no retry after the deadline


@pytest.mark.parametrize("failure", ["hangs", "dead"])
def test_a_limiter_that_hangs_or_is_dead_refuses_the_call(
    monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    """Every limiter call has `limiter_timeout_ms`; without a permit the provider is never
    called: 503 rate_limiter_unavailable with Retry-After."""
    from ray.exceptions import RayActorError

    def dead(*_: Any) -> Decision:
        raise RayActorError()

    monkeypatch.setenv("GW_TEST_KEY", "sk-unit")
    limiter = FakeHandle(acquire=allow if failure == "hangs" else dead)
    limiter.acquire.delay_s = 5.0 if failure == "hangs" else 0.0  # type: ignore[attr-defined]
    with FakeProvider() as fake:
        live = proxy(fake.openai_base_url, "GW_TEST_KEY", limiter, limiter_timeout_ms=50)
        with pytest.raises(ServiceUnavailableError) as raised:
            asyncio.run(live.generate(PARAMS))
        assert raised.value.code == "rate_limiter_unavailable"
        assert raised.value.retry_after_s and raised.value.retry_after_s > 0
        assert fake.recorded() == []


def test_close_closes_the_sdk_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ingress (and a `placement: deployment` replica) closes its SDK clients on a clean
    stop: with the aiohttp transport an unclosed session is left behind otherwise."""

    class Client:
        closed = False

        async def close(self) -> None:
            self.closed = True

    monkeypatch.setenv("GW_TEST_KEY", "sk-unit")
    config = {"api_key_env": "GW_TEST_KEY", "rpm": 60}
    live = ProviderProxy(
        "openai", config, [MODEL], FakeHandle(acquire=allow), client_factory=lambda *_: Client()
    )
    asyncio.run(live.close())
    assert isinstance(live.client, Client) and live.client.closed
    monkeypatch.delenv("GW_TEST_KEY")
    asyncio.run(ProviderProxy("openai", config, [MODEL], FakeHandle(acquire=allow)).close())
