"""`/v1/responses` through the real app (fake handles), driven by the official `openai` SDK
(its `http_client` is the app's TestClient): create, stream, continue, get, delete, keys."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from fastapi.testclient import TestClient

from serve_app.access.key_store import KeySpec
from serve_app.contracts.wire import GenerationOutput, GenerationParams, ToolCall
from tests.serve_app.app_factory import COMMERCIAL_MODEL_ID, MODEL_ID, GatewayApp, build_gateway_app


@pytest.fixture
def built(tmp_path: Path) -> Iterator[tuple[GatewayApp, TestClient]]:
    app = build_gateway_app(tmp_path, auth=True)
    with TestClient(app.app) as client:
        yield app, client


def sdk(client: TestClient, key: str | None) -> openai.OpenAI:
    return openai.OpenAI(
        base_url="http://testserver/v1", api_key=key or "none", http_client=client, max_retries=0
    )


def test_create_continue_get_and_delete(built: tuple[GatewayApp, TestClient]) -> None:
    app, client = built
    oai = sdk(client, app.user_key)
    first = oai.responses.create(
        model=COMMERCIAL_MODEL_ID, input="hello there", instructions="be brief", max_output_tokens=9
    )
    # The fake answers with the upper-cased turns: the instructions came first.
    assert first.status == "completed" and first.output_text == "BE BRIEF HELLO THERE"
    assert first.usage is not None and first.usage.output_tokens == 4
    second = oai.responses.create(model=MODEL_ID, input="and again", previous_response_id=first.id)
    (call,) = app.gateway.catalog.get(MODEL_ID).handle.calls()
    sent = [(m.role, m.content) for m in call.params.messages]
    # The earlier turns continue; its instructions do not (as OpenAI's previous_response_id).
    assert sent == [
        ("user", "hello there"),
        ("assistant", "BE BRIEF HELLO THERE"),
        ("user", "and again"),
    ]
    assert oai.responses.retrieve(second.id).output_text == second.output_text
    oai.responses.delete(second.id)
    with pytest.raises(openai.NotFoundError):
        oai.responses.retrieve(second.id)
    with pytest.raises(openai.NotFoundError):
        oai.responses.create(model=MODEL_ID, input="x", previous_response_id="resp_unknown")


def test_a_response_belongs_to_its_key(built: tuple[GatewayApp, TestClient]) -> None:
    app, client = built
    assert app.keys is not None
    _, other = app.keys.store.create(KeySpec("other"))
    made = sdk(client, app.user_key).responses.create(model=MODEL_ID, input="mine")
    stranger = sdk(client, other)
    with pytest.raises(openai.NotFoundError):
        stranger.responses.retrieve(made.id)
    with pytest.raises(openai.NotFoundError):
        stranger.responses.create(model=MODEL_ID, input="x", previous_response_id=made.id)
    with pytest.raises(openai.NotFoundError):
        stranger.responses.delete(made.id)


def test_store_false_keeps_nothing(built: tuple[GatewayApp, TestClient]) -> None:
    app, client = built
    oai = sdk(client, app.user_key)
    made = oai.responses.create(model=MODEL_ID, input="forget me", store=False)
    with pytest.raises(openai.NotFoundError):
        oai.responses.retrieve(made.id)


def test_the_sdk_stream_helper_gets_text_and_the_final_response(
    built: tuple[GatewayApp, TestClient],
) -> None:
    app, client = built
    oai = sdk(client, app.user_key)
    with oai.responses.stream(model=COMMERCIAL_MODEL_ID, input="stream these words") as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds.count("response.output_text.delta") == 3
    assert kinds[-1] == "response.completed"
    assert final.output_text == "STREAM THESE WORDS"
    assert oai.responses.retrieve(final.id).output_text == "STREAM THESE WORDS"


def calls_a_tool(params: GenerationParams) -> GenerationOutput:
    assert params.tools and params.tools[0].name == "weather"
    call = ToolCall("call_1", "weather", '{"city": "Velmora"}')
    return GenerationOutput("", 5, 4, "tool_calls", "fake", tool_calls=(call,))


def test_function_tools_round_trip(built: tuple[GatewayApp, TestClient]) -> None:
    app, client = built
    app.gateway.catalog.get(COMMERCIAL_MODEL_ID).handle.behave = calls_a_tool
    oai = sdk(client, app.user_key)
    tool: Any = {
        "type": "function",
        "name": "weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
    made = oai.responses.create(model=COMMERCIAL_MODEL_ID, input="weather?", tools=[tool])
    (item,) = made.output
    assert item.type == "function_call" and item.name == "weather"
    assert item.arguments == '{"city": "Velmora"}' and item.call_id == "call_1"


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"tools": [{"type": "web_search_preview"}]}, "web_search_preview"),
        ({"tools": [{"type": "file_search", "vector_store_ids": ["v"]}]}, "file_search"),
        (
            {"tools": [{"type": "code_interpreter", "container": {"type": "auto"}}]},
            "code_interpreter",
        ),
        ({"input": [{"type": "input_image", "image_url": "x"}]}, "input_image"),
        ({"input": []}, "input"),
        ({"reasoning": {"effort": "low"}}, "reasoning"),
    ],
)
def test_what_cannot_be_honoured_is_a_400_naming_it(
    built: tuple[GatewayApp, TestClient], body: dict[str, Any], needle: str
) -> None:
    app, client = built
    payload = {"model": MODEL_ID, "input": "hi", **body}
    response = client.post(
        "/v1/responses", json=payload, headers={"Authorization": f"Bearer {app.user_key}"}
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert needle in error["message"] + str(error["param"])
