"""Deployment calls inside an OpenTelemetry span (only when tracing is on: the gateway calls
these instead of its plain methods, so a gateway without tracing pays nothing).

One CLIENT span per deployment call, named `{operation} {model}` as the GenAI conventions
ask, child of the request's server span; a fallback is a second sibling span. The span's
`traceparent` travels in `GenerationParams`, so the provider proxy's attempt spans are its
children. A stream's span ends when the stream is accounted (completed, failed, cancelled).
"""

import dataclasses
from typing import Any, Protocol

from opentelemetry.trace import Span, SpanKind

from serve_app.access.auth import RequestContext
from serve_app.contracts.errors import GatewayError
from serve_app.contracts.tracing import (
    Tracing,
    input_messages,
    operation_name,
    output_messages,
    record_error,
    request_attributes,
    response_attributes,
)
from serve_app.contracts.wire import GenerationOutput, GenerationParams, StreamChunk
from serve_app.core.catalog import ModelRoute
from serve_app.core.streaming import ChunkStream


class Calls(Protocol):
    tracing: Tracing

    async def untraced_call_model(
        self,
        route: ModelRoute,
        params: GenerationParams,
        ctx: RequestContext,
        requested: str | None,
    ) -> tuple[GenerationOutput, float, float]: ...

    async def untraced_open_stream_once(
        self, route: ModelRoute, params: GenerationParams, ctx: RequestContext, requested: str
    ) -> tuple[ChunkStream, StreamChunk]: ...


def start_call_span(
    tracing: Tracing, route: ModelRoute, params: GenerationParams, requested: str | None
) -> tuple[Span, GenerationParams]:
    attributes = request_attributes(params, route.provider, route.upstream_model or route.model_id)
    attributes["llm_gateway.model_id"] = route.model_id
    if requested and requested != route.model_id:
        attributes["llm_gateway.fallback_for"] = requested
    if tracing.capture_content:
        attributes["gen_ai.input.messages"] = input_messages(params)
    span = tracing.start_span(
        f"{operation_name(params)} {route.model_id}", SpanKind.CLIENT, attributes
    )
    return span, dataclasses.replace(params, traceparent=tracing.traceparent(span))


def end_call_span(
    tracing: Tracing,
    span: Span,
    route: ModelRoute,
    output: GenerationOutput | None,
    error: GatewayError | None,
) -> None:
    if error is not None:
        record_error(span, error, error.error_type)
    elif output is not None:
        span.set_attributes(response_attributes(output, route.upstream_model or route.model_id))
        if output.finish_reason == "cancelled":
            span.set_attribute("error.type", "cancelled")
        if tracing.capture_content:
            span.set_attribute("gen_ai.output.messages", output_messages(output))
    span.end()


async def traced_call_model(
    gateway: Calls,
    route: ModelRoute,
    params: GenerationParams,
    ctx: RequestContext,
    requested: str | None,
) -> tuple[GenerationOutput, float, float]:
    span, params = start_call_span(gateway.tracing, route, params, requested)
    try:
        result = await gateway.untraced_call_model(route, params, ctx, requested)
    except GatewayError as error:
        end_call_span(gateway.tracing, span, route, None, error)
        raise
    except BaseException:  # cancelled: the client went away
        span.set_attribute("error.type", "cancelled")
        span.end()
        raise
    end_call_span(gateway.tracing, span, route, result[0], None)
    return result


async def traced_open_stream_once(
    gateway: Calls,
    route: ModelRoute,
    params: GenerationParams,
    ctx: RequestContext,
    requested: str,
) -> tuple[ChunkStream, StreamChunk]:
    span, params = start_call_span(gateway.tracing, route, params, requested)
    try:
        stream, first = await gateway.untraced_open_stream_once(route, params, ctx, requested)
    except GatewayError as error:
        end_call_span(gateway.tracing, span, route, None, error)
        raise
    except BaseException:
        span.set_attribute("error.type", "cancelled")
        span.end()
        raise
    stream.account = _ending(stream.account, gateway.tracing, span)
    return stream, first


def _ending(account: Any, tracing: Tracing, span: Span) -> Any:
    """The stream's accounting, which also ends its span with the usage."""

    def account_and_end(
        route: ModelRoute,
        request_id: str,
        ctx: RequestContext,
        started: float,
        output: GenerationOutput | None,
        error: GatewayError | None,
    ) -> tuple[float, float]:
        result: tuple[float, float] = account(route, request_id, ctx, started, output, error)
        end_call_span(tracing, span, route, output, error)
        return result

    return account_and_end
