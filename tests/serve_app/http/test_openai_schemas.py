"""OpenAI-compatible request schemas: what they accept, what they refuse and why."""

import json
from typing import Any

import httpx2
import openai
import pytest
from pydantic import ValidationError

from serve_app.contracts.wire import ChatMessage, ImagePart, OutputFormat, ToolCall, ToolChoice
from serve_app.http.schemas.openai import ChatCompletionRequest, CompletionRequest
from serve_app.http.schemas.openai_responses import (
    ChatCompletion,
    ChatCompletionChunk,
    Completion,
    CompletionChunk,
    OpenAIErrorResponse,
    OpenAIModelList,
)

USER = [{"role": "user", "content": "hi"}]


def chat(**fields: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"model": "demo", "messages": USER, **fields})


def completion(**fields: Any) -> CompletionRequest:
    return CompletionRequest.model_validate({"model": "demo", "prompt": "Once", **fields})


def error_of(excinfo: pytest.ExceptionInfo[ValidationError]) -> dict[str, Any]:
    errors = excinfo.value.errors()
    assert len(errors) == 1, errors
    return dict(errors[0])


# -- chat --------------------------------------------------------------------------------------


def test_minimal_chat_request_and_defaults() -> None:
    request = chat()
    assert (request.n, request.stream, request.include_usage()) == (1, False, False)
    assert request.stop_list() == []
    assert request.resolved_max_tokens() is None
    assert request.chat_messages() == (ChatMessage(role="user", content="hi"),)


def test_chat_messages_flatten_parts_and_map_developer() -> None:
    messages = [
        {"role": "developer", "content": "Be brief."},
        {"role": "system", "content": [{"type": "text", "text": "Say"}], "name": "ops"},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": ""},
    ]
    assert chat(messages=messages).chat_messages() == (
        ChatMessage("system", "Be brief."),
        ChatMessage("system", "Say", name="ops"),
        ChatMessage("user", "a\nb"),
        ChatMessage("assistant", ""),
    )


def test_max_completion_tokens_wins() -> None:
    assert chat(max_tokens=5).resolved_max_tokens() == 5
    assert chat(max_completion_tokens=7).resolved_max_tokens() == 7
    assert chat(max_tokens=5, max_completion_tokens=7).resolved_max_tokens() == 7
    with pytest.raises(ValidationError):
        chat(max_completion_tokens=0)


def test_stop_forms_and_limits() -> None:
    assert chat(stop="\n").stop_list() == ["\n"]
    assert chat(stop=["a", "b", "c", "d"]).stop_list() == ["a", "b", "c", "d"]
    assert chat(stop=[]).stop_list() == []
    with pytest.raises(ValidationError, match="at most 4"):
        chat(stop=["a", "b", "c", "d", "e"])
    with pytest.raises(ValidationError, match="must not be empty"):
        chat(stop=["a", ""])
    with pytest.raises(ValidationError, match="must not be empty"):
        chat(stop="")


def test_streaming_options() -> None:
    assert chat(stream=True).include_usage() is False
    request = chat(stream=True, stream_options={"include_usage": True})
    assert request.stream and request.include_usage()
    with pytest.raises(ValidationError):
        chat(stream=True, stream_options={"include_usage": True, "bogus": 1})


def test_n_and_nulls() -> None:
    assert chat(n=3).n == 3
    with pytest.raises(ValidationError):
        chat(n=0)
    with pytest.raises(ValidationError):
        chat(n=129)
    assert chat(n=None).n == 1  # an explicit null means the default, as OpenAI
    assert chat(stream=None).stream is False


def test_unknown_fields_are_rejected() -> None:
    with pytest.raises(ValidationError) as excinfo:
        chat(reasoning_effort="high")
    assert error_of(excinfo)["type"] == "extra_forbidden"
    with pytest.raises(ValidationError):
        chat(messages=[{"role": "user", "content": "hi", "tool_call_id": "x"}])


@pytest.mark.parametrize(
    "part",
    [
        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
        {"type": "file", "file": {"file_id": "f"}},
        {"type": "video", "video": {}},
    ],
)
def test_unsupported_content_parts_are_rejected_clearly(part: dict[str, Any]) -> None:
    content = [{"type": "text", "text": "what is this?"}, part]
    with pytest.raises(ValidationError) as excinfo:
        chat(messages=[{"role": "user", "content": content}])
    error = error_of(excinfo)
    assert error["loc"] == ("messages", 0)
    assert f"content part 1 has type {part['type']!r}" in error["msg"]
    assert "takes text, image_url parts" in error["msg"]


@pytest.mark.parametrize(
    "messages",
    [
        [],
        [{"role": "tool", "content": "42", "tool_call_id": "t"}],
        [{"role": "user", "content": []}],
        [{"role": "user"}],
        [{"role": "user", "content": [{"text": "no type"}]}],
    ],
)
def test_bad_messages_are_rejected(messages: list[dict[str, Any]]) -> None:
    with pytest.raises(ValidationError):
        chat(messages=messages)


def test_non_finite_and_out_of_range_numbers_are_rejected() -> None:
    raw = '{"model": "demo", "messages": [{"role": "user", "content": "hi"}], "temperature": NaN}'
    with pytest.raises(ValidationError) as excinfo:
        ChatCompletionRequest.model_validate_json(raw)
    assert error_of(excinfo)["type"] == "finite_number"
    for fields in (
        {"temperature": float("nan")},
        {"temperature": float("inf")},
        {"temperature": 2.5},
        {"top_p": 0},
        {"top_p": 1.5},
        {"presence_penalty": 3},
        {"frequency_penalty": -2.5},
    ):
        with pytest.raises(ValidationError):
            chat(**fields)
    accepted = chat(temperature=0, top_p=1, presence_penalty=-2, frequency_penalty=2, seed=3)
    assert accepted.temperature == 0


def test_logprobs_fields() -> None:
    request = chat(logprobs=True, top_logprobs=5)
    assert (request.options()["logprobs"], request.options()["top_logprobs"]) == (True, 5)
    assert chat(logprobs=None).options()["logprobs"] is False
    with pytest.raises(ValidationError, match="top_logprobs needs logprobs"):
        chat(top_logprobs=2)
    with pytest.raises(ValidationError):
        chat(logprobs=True, top_logprobs=21)


def _body_sent_by_sdk(call: Any) -> dict[str, Any]:
    """The JSON body the official SDK sends for `call(client)` (answered with a 400)."""
    sent: list[dict[str, Any]] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        sent.append(json.loads(request.content))
        return httpx2.Response(400, json={"error": {"message": "captured", "type": "x"}})

    http_client = httpx2.Client(transport=httpx2.MockTransport(handler))
    with (
        openai.OpenAI(
            api_key="k", base_url="http://gateway/v1", http_client=http_client, max_retries=0
        ) as client,
        pytest.raises(openai.BadRequestError),
    ):
        call(client)
    return sent[0]


def test_accepts_what_the_openai_sdk_sends() -> None:
    body = _body_sent_by_sdk(
        lambda client: client.chat.completions.create(
            model="demo",
            messages=[
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "hi"}], "name": "u1"},
            ],
            max_completion_tokens=12,
            temperature=0.2,
            top_p=0.9,
            stop=["\n\n"],
            seed=1,
            user="end-user",
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    request = ChatCompletionRequest.model_validate(body)
    assert request.resolved_max_tokens() == 12 and request.include_usage()
    legacy = _body_sent_by_sdk(
        lambda client: client.completions.create(
            model="demo", prompt="Once", max_tokens=3, stop="\n", stream=True, echo=False
        )
    )
    assert CompletionRequest.model_validate(legacy).prompt_text() == "Once"


# -- legacy completions ------------------------------------------------------------------------


def test_minimal_completion_request_defaults_to_16_tokens() -> None:
    request = completion()
    assert (request.max_tokens, request.n, request.stream, request.echo) == (16, 1, False, False)
    assert request.prompt_text() == "Once"
    assert completion(max_tokens=None).max_tokens == 16
    assert completion(prompt=["Upon"]).prompt_text() == "Upon"
    request = completion(stop="x", stream=True, stream_options={"include_usage": True})
    assert request.stop_list() == ["x"] and request.include_usage()


@pytest.mark.parametrize("prompt", [["a", "b"], [], [1, 2, 3], [[1, 2]], "", [""], 7])
def test_completion_prompt_must_be_one_string(prompt: Any) -> None:
    with pytest.raises(ValidationError) as excinfo:
        completion(prompt=prompt)
    assert error_of(excinfo)["loc"] == ("prompt",)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"n": 0}, "greater than or equal to 1"),
        ({"echo": True}, "echo is not supported"),
        ({"logprobs": 6}, "less than or equal to 5"),
        ({"logprobs": -1}, "greater than or equal to 0"),
        ({"best_of": 2}, "Extra inputs are not permitted"),
        ({"suffix": "x"}, "Extra inputs are not permitted"),
        ({"max_tokens": 0}, "greater than or equal to 1"),
        ({"temperature": float("nan")}, "finite number"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "at most 4"),
    ],
)
def test_completion_rejections(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        completion(**fields)


def test_response_models_have_openapi_schemas() -> None:
    for model in (
        ChatCompletion,
        ChatCompletionChunk,
        Completion,
        CompletionChunk,
        OpenAIModelList,
        OpenAIErrorResponse,
    ):
        assert model.model_json_schema()["type"] == "object"
    for request_model in (ChatCompletionRequest, CompletionRequest):
        assert request_model.model_json_schema()["additionalProperties"] is False


def test_tool_turns_images_and_formats_become_wire_params() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
    image = {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"},
    }
    request = chat(
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "look"}, image]},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": "ok"},
        ],
        tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        tool_choice={"type": "function", "function": {"name": "f"}},
        parallel_tool_calls=False,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "r", "schema": {"type": "object"}},
        },
        seed=3,
        logit_bias={"7": -5},
        metadata={"k": "v"},
    )
    user, assistant, tool = request.chat_messages()
    assert user.parts[1].image == ImagePart(media_type="image/png", data="AAAA", detail="low")
    assert assistant.tool_calls == (ToolCall("call_1", "f", '{"a": 1}'),)
    assert (tool.role, tool.tool_call_id, tool.content) == ("tool", "call_1", "ok")
    assert request.image_locations() == ("messages[0].content[1]",)
    options = request.options()
    assert options["tool_choice"] == ToolChoice("tool", "f", False)
    assert options["output_format"] == OutputFormat("json_schema", {"type": "object"}, "r")
    assert (options["seed"], options["logit_bias"], options["metadata"]) == (
        3,
        ((7, -5.0),),
        (("k", "v"),),
    )
