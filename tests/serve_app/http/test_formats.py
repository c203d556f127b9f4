"""Response bodies and SSE frames, checked against the official SDKs' own models and parsers."""

import json
from collections.abc import Callable
from typing import Any

import anthropic
import httpx2
import openai
import pytest
from pydantic import TypeAdapter

from serve_app.contracts import errors
from serve_app.contracts.wire import GenerationOutput
from serve_app.http.formats import (
    SSE_DONE,
    OpenAIChatStream,
    OpenAICompletionStream,
    json_bytes,
    openai_chat_completion,
    openai_completion,
    openai_error_body,
    openai_model_list,
)
from serve_app.http.formats_anthropic import (
    AnthropicStream,
    anthropic_error_body,
    anthropic_message,
)
from serve_app.http.schemas import anthropic as anthropic_schemas
from serve_app.http.schemas import openai_responses

PIECES = ["Hé", "llo", "", " wörld ", "🙂", "\n"]
TEXT = "".join(PIECES)
EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(anthropic.types.RawMessageStreamEvent)


def output(finish_reason: str = "stop") -> GenerationOutput:
    return GenerationOutput(text=TEXT, input_tokens=7, output_tokens=5, finish_reason=finish_reason)


def sse_frames(body: bytes) -> list[tuple[str | None, str]]:
    """(event, data) of each frame; every frame must end in a blank line."""
    assert body.endswith(b"\n\n")
    frames: list[tuple[str | None, str]] = []
    for raw in body.decode().split("\n\n")[:-1]:
        fields = dict(line.split(": ", 1) for line in raw.split("\n"))
        assert set(fields) <= {"event", "data"}, raw
        frames.append((fields.get("event"), fields["data"]))
    return frames


def openai_chunks(body: bytes) -> list[dict[str, Any]]:
    frames = sse_frames(body)
    assert frames[-1] == (None, "[DONE]") and body.endswith(SSE_DONE)
    assert all(event is None for event, _ in frames)
    return [json.loads(data) for _, data in frames[:-1]]


def chat_stream_body(include_usage: bool, finish_reason: str = "stop") -> bytes:
    stream = OpenAIChatStream("demo", "chatcmpl-1", 1_700_000_000, include_usage)
    pieces = b"".join(stream.delta(piece) for piece in PIECES)
    return stream.start() + pieces + stream.finish(finish_reason, 7, 5)


def completion_stream_body(include_usage: bool, finish_reason: str = "length") -> bytes:
    stream = OpenAICompletionStream("demo", "cmpl-1", 1_700_000_000, include_usage)
    pieces = b"".join(stream.delta(piece) for piece in PIECES)
    return stream.start() + pieces + stream.finish(finish_reason, 7, 5)


def anthropic_stream_body(finish_reason: str = "stop") -> bytes:
    stream = AnthropicStream("demo", "msg_1")
    start = stream.start(7)  # the formatter tracks its open block: frames in order
    pieces = b"".join(stream.delta(piece) for piece in PIECES)
    return start + pieces + stream.finish(finish_reason, 5)


def mock_http(body: bytes, content_type: str = "text/event-stream") -> httpx2.Client:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=body, headers={"content-type": content_type})

    return httpx2.Client(transport=httpx2.MockTransport(handler))


def openai_client(body: bytes, *, strict: bool = True, json_body: bool = False) -> openai.OpenAI:
    content_type = "application/json" if json_body else "text/event-stream"
    return openai.OpenAI(
        api_key="k",
        base_url="http://gateway/v1",
        http_client=mock_http(body, content_type),
        max_retries=0,
        _strict_response_validation=strict,
    )


def anthropic_client(body: bytes, *, json_body: bool = False) -> anthropic.Anthropic:
    content_type = "application/json" if json_body else "text/event-stream"
    return anthropic.Anthropic(
        api_key="k",
        base_url="http://gateway",
        http_client=mock_http(body, content_type),
        max_retries=0,
        _strict_response_validation=True,
    )


# -- encoding ----------------------------------------------------------------------------------


def test_json_is_compact_utf8_and_finite() -> None:
    assert json_bytes({"a": [1, "é🙂"]}) == '{"a":[1,"é🙂"]}'.encode()
    with pytest.raises(ValueError):
        json_bytes({"x": float("nan")})
    assert OpenAIChatStream("m", "c", 1, False).delta("ü").startswith(b'data: {"id":"c"')
    assert "ü".encode() in OpenAIChatStream("m", "c", 1, False).delta("ü")


# -- OpenAI non-streamed -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("internal", "expected"),
    [
        ("stop", "stop"),
        ("length", "length"),
        ("content_filter", "content_filter"),
        ("tool_calls", "tool_calls"),
        ("max_tokens", "length"),
        ("weird", "stop"),
    ],
)
def test_chat_completion_parses_with_the_sdk(internal: str, expected: str) -> None:
    body = openai_chat_completion(output(internal), model="demo", completion_id="c1", created=5)
    parsed = openai.types.chat.ChatCompletion.model_validate(body)
    assert parsed.choices[0].message.content == TEXT
    assert parsed.choices[0].finish_reason == expected
    assert parsed.usage is not None and parsed.usage.total_tokens == 12
    assert (parsed.id, parsed.model, parsed.created) == ("c1", "demo", 5)
    openai_responses.ChatCompletion.model_validate(body)


def test_chat_completion_through_the_sdk_client() -> None:
    body = openai_chat_completion(output(), model="demo", completion_id="c1", created=5)
    with openai_client(json.dumps(body).encode(), json_body=True) as client:
        answer = client.chat.completions.create(
            model="demo", messages=[{"role": "user", "content": "x"}]
        )
    assert answer.choices[0].message.content == TEXT


@pytest.mark.parametrize(
    ("internal", "expected"),
    [
        ("stop", "stop"),
        ("length", "length"),
        ("content_filter", "content_filter"),
        ("tool_calls", "stop"),
    ],
)
def test_completion_parses_with_the_sdk(internal: str, expected: str) -> None:
    body = openai_completion(output(internal), model="demo", completion_id="cmpl-1", created=5)
    parsed = openai.types.Completion.model_validate(body)
    assert parsed.object == "text_completion"
    assert (parsed.choices[0].text, parsed.choices[0].finish_reason) == (TEXT, expected)
    assert parsed.usage is not None and parsed.usage.prompt_tokens == 7
    openai_responses.Completion.model_validate(body)


def test_model_list_and_error_body() -> None:
    body = openai_model_list([("demo", "local"), ("gpt-4o-mini", "openai")], created=9)
    assert body["object"] == "list"
    models = [openai.types.Model.model_validate(item) for item in body["data"]]
    assert [(m.id, m.owned_by, m.created) for m in models] == [
        ("demo", "local", 9),
        ("gpt-4o-mini", "openai", 9),
    ]
    openai_responses.OpenAIModelList.model_validate(body)
    error = errors.model_not_found("nope")
    assert openai_error_body(error) == {"error": error.to_dict()}
    openai_responses.OpenAIErrorResponse.model_validate(openai_error_body(error))


# -- OpenAI streams ----------------------------------------------------------------------------


def test_chat_stream_with_usage() -> None:
    chunks = openai_chunks(chat_stream_body(include_usage=True, finish_reason="length"))
    parsed = [openai.types.chat.ChatCompletionChunk.model_validate(chunk) for chunk in chunks]
    for chunk in chunks:
        openai_responses.ChatCompletionChunk.model_validate(chunk)
    assert all(chunk["usage"] is None for chunk in chunks[:-1])
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-2]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "length",
    }
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}
    assert len(chunks) == 1 + len([p for p in PIECES if p]) + 2
    text = "".join(c.choices[0].delta.content or "" for c in parsed if c.choices)
    assert text == TEXT
    assert {(c.id, c.created, c.model) for c in parsed} == {("chatcmpl-1", 1_700_000_000, "demo")}


def test_chat_stream_without_usage_has_no_usage_key() -> None:
    chunks = openai_chunks(chat_stream_body(include_usage=False))
    assert all("usage" not in chunk for chunk in chunks)
    assert all(len(chunk["choices"]) == 1 for chunk in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    for chunk in chunks:
        openai.types.chat.ChatCompletionChunk.model_validate(chunk)


def test_empty_deltas_are_empty_bytes() -> None:
    assert OpenAIChatStream("m", "c", 1, True).delta("") == b""
    assert OpenAICompletionStream("m", "c", 1, True).delta("") == b""
    assert OpenAICompletionStream("m", "c", 1, True).start() == b""
    assert AnthropicStream("m", "msg").delta("") == b""


@pytest.mark.parametrize("include_usage", [True, False])
def test_chat_stream_through_the_sdk_client(include_usage: bool) -> None:
    messages: Any = [{"role": "user", "content": "x"}]
    body = chat_stream_body(include_usage)
    with openai_client(body) as client:
        chunks = list(client.chat.completions.create(model="demo", messages=messages, stream=True))
        with client.chat.completions.stream(model="demo", messages=messages) as stream:
            final = stream.get_final_completion()
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == TEXT
    assert (chunks[-1].usage is not None) is include_usage
    assert final.choices[0].message.content == TEXT
    assert final.choices[0].finish_reason == "stop"
    assert (final.usage is not None) is include_usage


def test_completion_stream_chunks() -> None:
    chunks = openai_chunks(completion_stream_body(include_usage=True))
    assert all(chunk["object"] == "text_completion" for chunk in chunks)
    assert all(chunk["usage"] is None for chunk in chunks[:-1])
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 12
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert "".join(c["choices"][0]["text"] for c in chunks[:-1]) == TEXT
    for chunk in chunks:
        openai_responses.CompletionChunk.model_validate(chunk)
        # OpenAI sends `finish_reason: null` before the last chunk, as we do, but the SDK's
        # `CompletionChoice.finish_reason` is not nullable: check the rest of the shape.
        choices = [{**c, "finish_reason": c["finish_reason"] or "stop"} for c in chunk["choices"]]
        openai.types.Completion.model_validate({**chunk, "choices": choices})
    no_usage = openai_chunks(completion_stream_body(include_usage=False))
    assert all("usage" not in chunk for chunk in no_usage)
    assert no_usage[-1]["choices"][0]["finish_reason"] == "length"


def test_completion_stream_through_the_sdk_client() -> None:
    # Non-strict (the SDK's default): strict validation refuses OpenAI's own null finish_reason.
    with openai_client(completion_stream_body(include_usage=True), strict=False) as client:
        chunks = list(client.completions.create(model="demo", prompt="x", stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == TEXT
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5


def test_openai_stream_error_is_raised_by_the_sdk() -> None:
    stream = OpenAIChatStream("demo", "c1", 1, include_usage=True)
    error = errors.UpstreamTimeoutError("provider timed out", code="timeout")
    frame = stream.error(error)
    assert openai_chunks(frame) == [{"error": error.to_dict()}]
    received: list[str] = []
    with openai_client(stream.start() + stream.delta("par") + frame) as client:
        response = client.chat.completions.create(
            model="demo", messages=[{"role": "user", "content": "x"}], stream=True
        )
        with pytest.raises(openai.APIError, match="provider timed out") as excinfo:
            for chunk in response:
                received.append(chunk.choices[0].delta.content or "")
    assert received == ["", "par"]
    assert excinfo.value.body == error.to_dict()
    assert OpenAICompletionStream("m", "c", 1, False).error(error) == frame


# -- Anthropic ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("internal", "expected"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("content_filter", "refusal"),
        ("tool_calls", "tool_use"),
        ("other", "end_turn"),
    ],
)
def test_anthropic_message_parses_with_the_sdk(internal: str, expected: str) -> None:
    body = anthropic_message(output(internal), model="demo", message_id="msg_1")
    parsed = anthropic.types.Message.model_validate(body)
    assert parsed.stop_reason == expected and parsed.stop_sequence is None
    assert [block.type for block in parsed.content] == ["text"]
    assert parsed.content[0].text == TEXT  # type: ignore[union-attr]
    assert (parsed.usage.input_tokens, parsed.usage.output_tokens) == (7, 5)
    anthropic_schemas.AnthropicMessage.model_validate(body)


def test_anthropic_message_through_the_sdk_client() -> None:
    body = json_bytes(anthropic_message(output(), model="demo", message_id="msg_1"))
    with anthropic_client(body, json_body=True) as client:
        answer = client.messages.create(
            model="demo", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert answer.id == "msg_1" and answer.content[0].text == TEXT  # type: ignore[union-attr]


def test_anthropic_stream_events_parse_with_the_sdk() -> None:
    frames = sse_frames(anthropic_stream_body("length"))
    bodies = [json.loads(data) for _, data in frames]
    assert [event for event, _ in frames] == [body["type"] for body in bodies]
    names = [body["type"] for body in bodies]
    deltas = names.count("content_block_delta")
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * deltas,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    events = [EVENT_ADAPTER.validate_python(body) for body in bodies if body["type"] != "ping"]
    start = events[0].message
    assert (start.content, start.stop_reason, start.usage.input_tokens) == ([], None, 7)
    text = "".join(e.delta.text for e in events if e.type == "content_block_delta")
    assert text == TEXT
    assert events[-2].delta.stop_reason == "max_tokens"
    assert events[-2].delta.stop_sequence is None
    assert events[-2].usage.output_tokens == 5


def test_anthropic_stream_through_the_sdk_client() -> None:
    with (
        anthropic_client(anthropic_stream_body()) as client,
        client.messages.stream(
            model="demo", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        ) as stream,
    ):
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert pieces == [piece for piece in PIECES if piece]
    assert final.content[0].text == TEXT  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (7, 5)


def test_anthropic_stream_error_is_raised_by_the_sdk() -> None:
    stream = AnthropicStream("demo", "msg_1")
    error = errors.ServiceUnavailableError("all replicas busy")
    frame = stream.error(error)
    assert sse_frames(frame) == [
        ("error", json.dumps(anthropic_error_body(error), separators=(",", ":")))
    ]
    body = stream.start(3) + stream.delta("par") + frame
    with anthropic_client(body) as client:
        messages: Any = [{"role": "user", "content": "x"}]
        with (
            pytest.raises(anthropic.APIStatusError, match="all replicas busy") as excinfo,
            client.messages.stream(model="demo", max_tokens=5, messages=messages) as events,
        ):
            list(events.text_stream)
    assert excinfo.value.body == anthropic_error_body(error)


ANTHROPIC_ERROR_TYPES: list[tuple[Callable[[str], errors.GatewayError], str]] = [
    (errors.InvalidRequestError, "invalid_request_error"),
    (errors.AuthenticationError, "authentication_error"),
    (errors.BudgetExceededError, "billing_error"),
    (errors.PermissionDeniedError, "permission_error"),
    (errors.NotFoundError, "not_found_error"),
    (errors.MethodNotAllowedError, "invalid_request_error"),
    (errors.PayloadTooLargeError, "invalid_request_error"),
    (errors.UnsupportedMediaTypeError, "invalid_request_error"),
    (errors.RateLimitError, "rate_limit_error"),
    (errors.UpstreamRateLimitError, "rate_limit_error"),
    (errors.InternalError, "api_error"),
    (errors.UpstreamError, "api_error"),
    (errors.UpstreamAuthenticationError, "api_error"),
    (errors.UpstreamQuotaExceededError, "api_error"),
    (errors.ServiceUnavailableError, "overloaded_error"),
    (errors.UpstreamTimeoutError, "timeout_error"),
]


@pytest.mark.parametrize(("error_class", "expected"), ANTHROPIC_ERROR_TYPES)
def test_anthropic_error_bodies(
    error_class: Callable[[str], errors.GatewayError], expected: str
) -> None:
    body = anthropic_error_body(error_class("went wrong"))
    assert body == {"type": "error", "error": {"type": expected, "message": "went wrong"}}
    parsed = anthropic.types.ErrorResponse.model_validate(body)
    assert parsed.error.type == expected
    anthropic_schemas.AnthropicErrorResponse.model_validate(body)
    assert anthropic_error_body(errors.model_not_found("x"))["error"]["type"] == "not_found_error"


@pytest.mark.parametrize(
    "stream",
    [
        OpenAIChatStream("mü", "chatcmpl-1", 1, True),
        OpenAICompletionStream("m", "cmpl-1", 1, False),
    ],
)
def test_delta_templates_give_the_frames_built_from_dicts(stream: Any) -> None:
    for text in ('say "hi"\n', "ü\u2028\t\\/", "<\x00\x1f>", "🙂", "\x00delta"):
        assert stream.delta(text) == stream._delta_frame(text)
    assert b'"\\ud800"' in stream.delta("\ud800")  # a lone surrogate is escaped, not a 500
