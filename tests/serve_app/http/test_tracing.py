"""OpenTelemetry traces exported over OTLP/HTTP to a real receiver on loopback: the ingress
app, a real `ProviderProxy` (official SDK) talking to the fake provider, one span tree."""

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from opentelemetry.trace import SpanKind

from deployments.providers.proxy import ProviderProxy
from serve_app.contracts.limits import Decision
from serve_app.contracts.tracing import Tracing, tracing_from_env
from serve_app.contracts.wire import GenerationParams
from serve_app.core.gateway import Gateway
from serve_app.http.app import create_app
from serve_app.http.tracing_middleware import TracingMiddleware
from tests.fakes.fake_provider import FakeProvider
from tests.fakes.handles import FakeHandle, FakeResponse
from tests.fakes.otlp_receiver import OTLPReceiver, ReceivedSpan, otlp_receiver
from tests.serve_app.app_factory import (
    COMMERCIAL_MODEL_ID,
    EMBED_MODEL_ID,
    MODEL_ID,
    fake_model_handle,
    gateway_config,
)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
SECRET_PROMPT = "my secret prompt words"


class InProcessHandle:
    """A deployment handle over a deployment object in this process."""

    def __init__(self, target: Any) -> None:
        self.target = target
        self.generate = self

    def remote(self, params: GenerationParams) -> FakeResponse:
        return FakeResponse(self.target.generate(params))

    def options(self, **_: Any) -> "InProcessHandle":
        return self


def allow(*_: Any) -> Decision:
    return Decision(True, 0.0, None, None, 0.0)


@pytest.fixture(scope="module")
def receiver() -> Iterator[OTLPReceiver]:
    with otlp_receiver() as running:
        yield running


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    with FakeProvider() as provider:
        yield provider


def traced_client(
    tmp_path: Path, receiver: OTLPReceiver, fake: FakeProvider, capture: bool = False
) -> tuple[TestClient, Gateway, ProviderProxy]:
    config = gateway_config(f"sqlite:///{tmp_path}/gw.db", auth=False)
    config = config.model_copy(
        update={"tracing": config.tracing.model_copy(update={"capture_content": capture})}
    )
    assert config.commercial is not None
    models = [m.model_dump(mode="json") for m in config.commercial.models if m.provider == "openai"]
    provider_config = {
        "api_key_env": "OPENAI_API_KEY",
        "base_url": fake.openai_base_url,
        "max_retries": 2,
        "rpm": 600,  # below lease_min_free: every call asks the (fake) limiter
    }
    proxy = ProviderProxy("openai", provider_config, models, FakeHandle(acquire=allow))
    environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url}
    tracing = tracing_from_env(environ, "llm-gateway-test", capture)
    handles = {
        MODEL_ID: fake_model_handle(MODEL_ID),
        EMBED_MODEL_ID: fake_model_handle(EMBED_MODEL_ID),
        "openai": InProcessHandle(proxy),
    }
    gateway = Gateway(config, handles, tracing=tracing)
    return TestClient(create_app(gateway)), gateway, proxy


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, receiver: OTLPReceiver) -> None:
    """What a provider replica sees: its key and the OTLP endpoint."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    receiver.clear()


def spans_of(receiver: OTLPReceiver, *tracers: Tracing) -> list[ReceivedSpan]:
    for tracing in tracers:
        assert tracing.flush()
    return [span for span in receiver.received() if span.trace_id == TRACE_ID]


def one(spans: list[ReceivedSpan], name: str) -> ReceivedSpan:
    (found,) = [span for span in spans if span.name == name]
    return found


def test_one_trace_per_request_with_deployment_and_provider_attempt_spans(
    tmp_path: Path, receiver: OTLPReceiver, fake: FakeProvider, env: None
) -> None:
    fake.reset()
    fake.script(500, 1)  # the first attempt fails upstream, the retry succeeds
    client, gateway, proxy = traced_client(tmp_path, receiver, fake)
    with client:
        response = client.post(
            "/v1/chat/completions",
            json={
                "model": COMMERCIAL_MODEL_ID,
                "messages": [{"role": "user", "content": SECRET_PROMPT}],
                "max_tokens": 5,
                "temperature": 0.5,
            },
            headers={"traceparent": TRACEPARENT},
        )
        assert response.status_code == 200, response.text
        assert client.portal is not None  # the client's event loop, inside `with`
        client.portal.call(proxy.close)  # as the ingress does on a clean stop
    spans = spans_of(receiver, gateway.tracing, proxy.tracing)
    server = one(spans, "POST /v1/chat/completions")
    assert server.kind == SpanKind.SERVER.value + 1  # OTLP numbers kinds from 1
    assert server.parent_span_id == PARENT_ID  # the caller's trace is continued
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["llm_gateway.request_id"] == response.headers["x-request-id"]
    call = one(spans, f"chat {COMMERCIAL_MODEL_ID}")
    assert call.parent_span_id == server.span_id
    usage = response.json()["usage"]
    assert call.attributes["gen_ai.operation.name"] == "chat"
    assert call.attributes["gen_ai.provider.name"] == "openai"
    assert call.attributes["gen_ai.request.model"] == "fake"
    assert call.attributes["gen_ai.request.max_tokens"] == 5
    assert call.attributes["gen_ai.request.temperature"] == 0.5
    assert call.attributes["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert call.attributes["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    assert call.attributes["gen_ai.response.finish_reasons"] == ["length"]
    attempts = sorted(
        (s for s in spans if s.name == "chat fake"),
        key=lambda s: s.attributes["llm_gateway.attempt"],
    )
    assert [s.parent_span_id for s in attempts] == [call.span_id, call.span_id]
    assert attempts[0].attributes["error.type"] == "upstream_error"
    assert attempts[0].status_code == 2 and attempts[1].status_code != 2  # ERROR, then not
    assert all(SECRET_PROMPT not in str(s.attributes) for s in spans)  # no content by default


def test_content_only_with_capture_content_and_streams_end_their_span(
    tmp_path: Path, receiver: OTLPReceiver, fake: FakeProvider, env: None
) -> None:
    client, gateway, proxy = traced_client(tmp_path, receiver, fake, capture=True)
    with client:
        response = client.post(
            "/api/v1/generate",
            json={"prompt": SECRET_PROMPT, "model_id": MODEL_ID, "stream": True},
            headers={"traceparent": TRACEPARENT},
        )
        assert response.status_code == 200
    spans = spans_of(receiver, gateway.tracing, proxy.tracing)
    server = one(spans, "POST /api/v1/generate")
    call = one(spans, f"text_completion {MODEL_ID}")
    assert call.parent_span_id == server.span_id
    assert SECRET_PROMPT in call.attributes["gen_ai.input.messages"]
    assert SECRET_PROMPT.upper() in call.attributes["gen_ai.output.messages"]
    assert call.attributes["gen_ai.usage.output_tokens"] == len(SECRET_PROMPT.split())


def test_without_an_endpoint_nothing_is_traced(tmp_path: Path) -> None:
    tracing = tracing_from_env({}, "llm-gateway")
    assert not tracing.enabled and tracing.provider is None
    gateway = Gateway(
        gateway_config(f"sqlite:///{tmp_path}/gw.db", auth=False),
        {
            MODEL_ID: fake_model_handle(MODEL_ID),
            EMBED_MODEL_ID: fake_model_handle(EMBED_MODEL_ID),
            "openai": fake_model_handle("openai"),
        },
    )
    app = create_app(gateway)
    assert not gateway.tracing.enabled
    assert all(m.cls is not TracingMiddleware for m in app.user_middleware)
    asyncio.run(gateway.close())
