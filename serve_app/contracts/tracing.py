"""OpenTelemetry traces, exported with OTLP (HTTP/protobuf) when `OTEL_EXPORTER_OTLP_ENDPOINT`
(or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set in a replica's environment.

Each replica decides once, at start (`tracing_from_env`): without an endpoint it holds a
`Tracing` whose `enabled` is False and the callers skip every span (no span objects, no
attribute dicts, no context look-ups on the request path). With one, it holds its own
`TracerProvider` (not the process-global one) with a batching exporter.

The trace crosses deployment handles as a W3C `traceparent` string in `GenerationParams`.
Attribute names follow the OpenTelemetry GenAI semantic conventions (`gen_ai.*`).
"""

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from serve_app.contracts.wire import (
    ChatMessage,
    EmbeddingParams,
    GenerationOutput,
    GenerationParams,
)

ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"
TRACES_ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
SERVICE_NAME_ENV = "OTEL_SERVICE_NAME"
INSTRUMENTATION = "llm-gateway"
PROPAGATOR = TraceContextTextMapPropagator()


class Tracing:
    """A replica's tracer, or nothing (`enabled` False) when no OTLP endpoint is set."""

    def __init__(
        self,
        tracer: trace.Tracer | None = None,
        provider: Any = None,
        capture_content: bool = False,
    ) -> None:
        self.tracer = tracer
        self.provider = provider
        self.capture_content = capture_content

    @property
    def enabled(self) -> bool:
        return self.tracer is not None

    @contextmanager
    def span(
        self,
        name: str,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Mapping[str, Any] | None = None,
        carrier: Mapping[str, str] | None = None,
    ) -> Iterator[Span]:
        """A span, current for the block, child of the current span or of the W3C
        `traceparent` in `carrier` (headers, or `{"traceparent": ...}` from a handle call).
        An exception escaping the block is recorded and sets the status to ERROR."""
        assert self.tracer is not None
        with self.tracer.start_as_current_span(
            name, context=parent_context(carrier), kind=kind, attributes=attributes
        ) as current:
            yield current

    def start_span(
        self, name: str, kind: SpanKind, attributes: Mapping[str, Any] | None = None
    ) -> Span:
        """A span child of the current one that the caller ends (a stream's, ended when the
        stream is accounted)."""
        assert self.tracer is not None
        return self.tracer.start_span(name, kind=kind, attributes=attributes)

    @staticmethod
    def traceparent(span: Span | None = None) -> str | None:
        """The W3C `traceparent` of `span` (else the current span), for a handle call."""
        carrier: dict[str, str] = {}
        context = trace.set_span_in_context(span) if span is not None else None
        PROPAGATOR.inject(carrier, context=context)
        return carrier.get("traceparent")

    def flush(self, timeout_ms: int = 5000) -> bool:
        return bool(self.provider.force_flush(timeout_ms)) if self.provider is not None else True

    def shutdown(self) -> None:
        if self.provider is not None:
            self.provider.shutdown()


def parent_context(carrier: Mapping[str, str] | None) -> Context | None:
    if not carrier or "traceparent" not in carrier:
        return None
    return PROPAGATOR.extract(dict(carrier))


def traces_endpoint(environ: Mapping[str, str]) -> str | None:
    """OTLP/HTTP's traces URL: the signal-specific variable as given, else the base
    endpoint with `/v1/traces` appended (as the OpenTelemetry SDKs do)."""
    if environ.get(TRACES_ENDPOINT_ENV):
        return environ[TRACES_ENDPOINT_ENV]
    base = environ.get(ENDPOINT_ENV)
    return base.rstrip("/") + "/v1/traces" if base else None


def tracing_from_env(
    environ: Mapping[str, str], service_name: str, capture_content: bool = False
) -> Tracing:
    """Checked once per replica: tracing on only when an OTLP endpoint is configured."""
    endpoint = traces_endpoint(environ)
    if endpoint is None:
        return Tracing(capture_content=capture_content)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    name = environ.get(SERVICE_NAME_ENV) or service_name
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return Tracing(provider.get_tracer(INSTRUMENTATION), provider, capture_content)


# -- GenAI semantic-convention attributes ---------------------------------------------------


def operation_name(params: GenerationParams) -> str:
    return "chat" if params.messages else "text_completion"


def request_attributes(params: GenerationParams, provider: str, model: str) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": operation_name(params),
        "gen_ai.provider.name": provider,
        "gen_ai.request.model": model,
        "gen_ai.request.max_tokens": params.max_tokens,
        "llm_gateway.request_id": params.request_id,
    }
    optional = {
        "gen_ai.request.temperature": params.temperature,
        "gen_ai.request.top_p": params.top_p,
        "gen_ai.request.seed": params.seed,
        "gen_ai.request.stop_sequences": list(params.stop) or None,
        "gen_ai.request.choice.count": params.n if params.n != 1 else None,
    }
    attributes.update({key: value for key, value in optional.items() if value is not None})
    return attributes


def embedding_attributes(params: EmbeddingParams, provider: str, model: str) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "embeddings",
        "gen_ai.provider.name": provider,
        "gen_ai.request.model": model,
        "llm_gateway.request_id": params.request_id,
        "llm_gateway.inputs": len(params.inputs),
    }
    if params.dimensions is not None:
        attributes["gen_ai.embeddings.dimension.count"] = params.dimensions
    return attributes


def response_attributes(output: GenerationOutput, model: str) -> dict[str, Any]:
    reasons = [output.finish_reason, *(choice.finish_reason for choice in output.more_choices)]
    return {
        "gen_ai.response.model": output.served_model or model,
        "gen_ai.response.finish_reasons": reasons,
        "gen_ai.usage.input_tokens": output.input_tokens,
        "gen_ai.usage.output_tokens": output.output_tokens,
    }


def _message_parts(message: ChatMessage) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"type": "text", "content": message.content}]
    parts += [
        {"type": "tool_call", "id": c.id, "name": c.name, "arguments": c.arguments}
        for c in message.tool_calls
    ]
    return {"role": message.role, "parts": parts}


def input_messages(params: GenerationParams) -> str:
    """`gen_ai.input.messages` (only with `tracing.capture_content`)."""
    messages: Sequence[ChatMessage] = params.messages or (ChatMessage("user", params.prompt),)
    return json.dumps([_message_parts(m) for m in messages], ensure_ascii=False)


def output_messages(output: GenerationOutput) -> str:
    """`gen_ai.output.messages` (only with `tracing.capture_content`)."""
    message = ChatMessage("assistant", output.text, tool_calls=output.tool_calls)
    body = {**_message_parts(message), "finish_reason": output.finish_reason}
    return json.dumps([body], ensure_ascii=False)


def record_error(span: Span, error: BaseException, error_type: str) -> None:
    span.set_attribute("error.type", error_type)
    span.set_status(Status(StatusCode.ERROR, str(error)[:200]))
