"""Tool calls, logprobs and several choices in each API's response shape, read back by the
official SDKs' own stream accumulators (over a mock transport, no server)."""

import json

import anthropic
import httpx2
import openai

from serve_app.contracts.wire import (
    Choice,
    GenerationOutput,
    StreamChunk,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
    TopLogprob,
)
from serve_app.http.formats import OpenAIChatStream, openai_chat_completion
from serve_app.http.formats_anthropic import AnthropicStream, anthropic_message
from tests.openai_openapi.openapi_validator import problems, sse_json

CALL = ToolCall("toolu_01", "lookup", '{"q": "velmora"}')
PIECES = (
    StreamChunk("", tool_calls=(ToolCallDelta(0, "toolu_01", "lookup"),)),
    StreamChunk("", tool_calls=(ToolCallDelta(0, arguments='{"q": '),)),
    StreamChunk("", tool_calls=(ToolCallDelta(0, arguments='"velmora"}'),)),
)


def client_of(kind: str, body: bytes) -> object:
    transport = httpx2.MockTransport(
        lambda _: httpx2.Response(200, content=body, headers={"content-type": "text/event-stream"})
    )
    http = httpx2.Client(transport=transport)
    if kind == "openai":
        return openai.OpenAI(api_key="k", base_url="http://g/v1", http_client=http, max_retries=0)
    return anthropic.Anthropic(api_key="k", base_url="http://g", http_client=http, max_retries=0)


def test_openai_bodies_with_tool_calls_logprobs_and_choices() -> None:
    logprob = TokenLogprob("hi", -0.5, (104, 105), (TopLogprob("hi", -0.5, (104, 105)),))
    output = GenerationOutput(
        "",
        3,
        4,
        "tool_calls",
        tool_calls=(CALL,),
        more_choices=(Choice(1, "hi", "stop", logprobs=(logprob,)),),
    )
    body = openai_chat_completion(output, model="m", completion_id="c", created=1)
    assert problems("CreateChatCompletionResponse", body) == []
    first, second = body["choices"]
    assert first["message"] == {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "tool_calls": [
            {
                "id": "call_01",
                "type": "function",
                "function": {"name": "lookup", "arguments": '{"q": "velmora"}'},
            }
        ],
    }
    assert second["logprobs"]["content"][0]["bytes"] == [104, 105]


def test_openai_stream_helper_assembles_the_calls() -> None:
    fmt = OpenAIChatStream("m", "c", 1, True)
    raw = fmt.start() + b"".join(fmt.chunk(p) for p in PIECES) + fmt.finish("tool_calls", 3, 4)
    for chunk in sse_json(raw):
        assert problems("CreateChatCompletionStreamResponse", chunk) == []
    client = client_of("openai", raw)
    with client.chat.completions.stream(model="m", messages=[]) as stream:  # type: ignore[attr-defined]
        final = stream.get_final_completion()
    (call,) = final.choices[0].message.tool_calls
    assert (call.id, call.function.name, json.loads(call.function.arguments)) == (
        "call_01",
        "lookup",
        {"q": "velmora"},
    )


def test_anthropic_stream_and_body_carry_tool_use() -> None:
    fmt = AnthropicStream("m", "msg_1")
    raw = (
        fmt.start(0)
        + fmt.chunk(StreamChunk("Let me look."))
        + b"".join(fmt.chunk(p) for p in PIECES)
    )
    raw += fmt.finish("tool_calls", 4, 9)
    client = client_of("anthropic", raw)
    with client.messages.stream(model="m", max_tokens=5, messages=[]) as stream:  # type: ignore[attr-defined]
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["text", "tool_use"]
    assert (final.content[1].id, final.content[1].input) == ("toolu_01", {"q": "velmora"})
    assert (final.stop_reason, final.usage.input_tokens, final.usage.output_tokens) == (
        "tool_use",
        9,
        4,
    )
    output = GenerationOutput("", 3, 4, "tool_calls", tool_calls=(ToolCall("call_7", "f", "{}"),))
    body = anthropic_message(output, model="m", message_id="msg_2")
    assert body["content"] == [{"type": "tool_use", "id": "toolu_7", "name": "f", "input": {}}]
    anthropic.types.Message.model_validate(body)
