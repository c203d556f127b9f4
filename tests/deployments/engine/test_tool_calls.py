"""Local tool calling: prompt format, parser, streamed deltas and grammar-forced calls."""

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonschema
import pytest

from deployments.engine.requests import RequestPlanner
from deployments.engine.server import LocalModelServer, load_hf_model
from deployments.engine.tool_calls import parse_tool_calls, plain_messages
from deployments.engine.tool_stream import ToolStream
from serve_app.contracts.errors import InvalidRequestError
from serve_app.contracts.wire import (
    ChatMessage,
    GenerationParams,
    StreamChunk,
    ToolCall,
    ToolChoice,
    ToolSpec,
)

WEATHER = ToolSpec(
    "get_weather",
    {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 8}},
        "required": ["city"],
        "additionalProperties": False,
    },
    description="Weather of a city",
)
CLOCK = ToolSpec(
    "get_time",
    {
        "type": "object",
        "properties": {"zone": {"enum": ["utc", "local"]}, "hour24": {"type": "boolean"}},
        "required": ["zone", "hour24"],
        "additionalProperties": False,
    },
)
ASK = (ChatMessage("user", "Weather in Velmora?"),)
CALL_TEXT = (
    'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Velmora"}}\n'
    '</tool_call>\n<tool_call>\n{"name": "get_time", "arguments": {"zone": "utc", '
    '"hour24": true}}\n</tool_call>'
)


def params(**overrides: Any) -> GenerationParams:
    base: dict[str, Any] = {
        "request_id": "r",
        "model_id": "wide",
        "prompt": "",
        "messages": ASK,
        "max_tokens": 300,
        "temperature": 0.0,
        "tools": (WEATHER, CLOCK),
    }
    return GenerationParams(**{**base, **overrides})


def test_parser_finds_calls_of_offered_tools_with_ids() -> None:
    parsed = parse_tool_calls(CALL_TEXT, params())
    assert parsed.text == "Let me check."
    assert [(c.name, json.loads(c.arguments)) for c in parsed.calls] == [
        ("get_weather", {"city": "Velmora"}),
        ("get_time", {"zone": "utc", "hour24": True}),
    ]
    assert all(c.id.startswith("call_") and len(c.id) == 29 for c in parsed.calls)
    assert len({c.id for c in parsed.calls}) == 2
    one = parse_tool_calls(CALL_TEXT, params(tool_choice=ToolChoice("auto", parallel=False)))
    assert [c.name for c in one.calls] == ["get_weather"]
    assert parse_tool_calls(CALL_TEXT, params(tools=(CLOCK,))).calls[0].name == "get_time"
    assert parse_tool_calls(CALL_TEXT, params(tool_choice=ToolChoice("none"))).calls == ()
    assert parse_tool_calls("<tool_call>{not json}</tool_call>", params()).calls == ()


def test_stream_deltas_rebuild_the_parsed_calls() -> None:
    stream = ToolStream({"get_weather", "get_time"})
    text, deltas = "", []
    for end in range(1, len(CALL_TEXT) + 1):
        piece, found = stream.feed(CALL_TEXT[:end], final=end == len(CALL_TEXT))
        text += piece
        deltas.extend(found)
    assert text == "Let me check.\n"
    assert "<" not in text
    calls: dict[int, dict[str, str]] = {}
    for delta in deltas:
        call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
        if delta.id:
            assert not call["id"] and not call["arguments"]  # id and name come first
            call["id"], call["name"] = delta.id, delta.name or ""
        call["arguments"] += delta.arguments
    assert [c["name"] for c in calls.values()] == ["get_weather", "get_time"]
    parsed = parse_tool_calls(CALL_TEXT, params()).calls
    assert [c["arguments"] for c in calls.values()] == [c.arguments for c in parsed]
    assert len([d for d in deltas if d.arguments]) > 2  # arguments arrive in pieces


def test_default_format_renders_tools_calls_and_results() -> None:
    call = ToolCall("call_1", "get_weather", '{"city": "Velmora"}')
    conversation = (
        ChatMessage("system", "Be brief."),
        *ASK,
        ChatMessage("assistant", "", tool_calls=(call,)),
        ChatMessage("tool", "sunny", tool_call_id="call_1"),
        ChatMessage("tool", "no clock", tool_call_id="call_2", is_error=True),
    )
    rendered = plain_messages(params(messages=conversation))
    assert rendered[0]["role"] == "system" and rendered[0]["content"].startswith("Be brief.")
    assert '{"name":"get_weather","description":"Weather of a city"' in rendered[0]["content"]
    assert rendered[2]["content"] == (
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Velmora"}}\n</tool_call>'
    )
    assert rendered[3] == {
        "role": "user",
        "content": "<tool_response>\nsunny\n</tool_response>\n"
        "<tool_response>\nError: no clock\n</tool_response>",
    }
    silent = plain_messages(params(tool_choice=ToolChoice("none")))
    assert "Tools:" not in json.dumps(silent)


def test_a_template_that_takes_tools_gets_them(demo_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(demo_model_dir)
    tokenizer.chat_template = (
        "{% for t in tools %}[{{ t.function.name }}]{% endfor %}"
        "{% for m in messages %}{{ m.role }}:{{ m.content }}"
        "{% for c in m.tool_calls or [] %}<{{ c.function.name }}>{% endfor %};{% endfor %}"
    )
    engine = SimpleNamespace(
        tokenizer=tokenizer, model=SimpleNamespace(config=SimpleNamespace(vocab_size=8))
    )
    planner = RequestPlanner(engine, "wide")
    call = ToolCall("call_1", "get_time", "{}")
    messages = (*ASK, ChatMessage("assistant", "", tool_calls=(call,)))
    assert planner.prompt_text(params(messages=messages)) == (
        "[get_weather][get_time]user:Weather in Velmora?;assistant:<get_time>;"
    )


@pytest.fixture(scope="module")
def wide_model_dir(demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained GPT-2 over the demo tokenizer with a 1024-token context: the demo
    tokenizer spends about a token per character on JSON, too many for the demo's 256."""
    from deployments.demo.model import save_untrained_model

    out = tmp_path_factory.mktemp("models") / "wide"
    return save_untrained_model(demo_model_dir, out, n_positions=1024)


@pytest.fixture(scope="module")
def server(wide_model_dir: Path, engine_runner: asyncio.Runner) -> LocalModelServer:
    config = {"id": "wide", "path": str(wide_model_dir), "max_new_tokens": 512}
    return LocalModelServer(config, loader=load_hf_model)


@pytest.fixture(scope="module")
def runner(engine_runner: asyncio.Runner) -> asyncio.Runner:
    return engine_runner


def schema_of(name: str) -> dict[str, Any]:
    return {WEATHER.name: WEATHER.parameters, CLOCK.name: CLOCK.parameters}[name]


def test_required_tool_choice_forces_valid_calls(
    server: LocalModelServer, runner: asyncio.Runner
) -> None:
    free = runner.run(server.generate(params(tool_choice=ToolChoice("auto"))))
    assert free.tool_calls == () and free.finish_reason == "length"  # a random model
    forced = runner.run(server.generate(params(tool_choice=ToolChoice("required"))))
    assert forced.finish_reason == "tool_calls" and forced.text == ""
    assert forced.tool_calls
    for call in forced.tool_calls:
        jsonschema.validate(json.loads(call.arguments), schema_of(call.name))
    named = params(tool_choice=ToolChoice("tool", name="get_time", parallel=False))
    (only,) = runner.run(server.generate(named)).tool_calls
    assert only.name == "get_time"
    jsonschema.validate(json.loads(only.arguments), CLOCK.parameters)


def test_streamed_forced_call_equals_the_non_streamed_one(
    server: LocalModelServer, runner: asyncio.Runner
) -> None:
    p = params(tool_choice=ToolChoice("tool", name="get_weather"))

    async def collect() -> list[StreamChunk]:
        return [chunk async for chunk in server.generate_stream(p)]

    chunks = runner.run(collect())
    deltas = [d for c in chunks for d in c.tool_calls]
    assert deltas[0].id and deltas[0].id.startswith("call_") and deltas[0].name == "get_weather"
    expected = runner.run(server.generate(p)).tool_calls
    assert {d.index for d in deltas} == set(range(len(expected)))
    for index, call in enumerate(expected):
        named = [d.name for d in deltas if d.index == index and d.name]
        assert named == [call.name]
        assert "".join(d.arguments for d in deltas if d.index == index) == call.arguments
    assert chunks[-1].finish_reason == "tool_calls"
    assert "".join(c.text for c in chunks) == ""


def test_tool_choice_naming_an_unknown_tool_is_a_400(
    server: LocalModelServer, runner: asyncio.Runner
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        runner.run(server.generate(params(tool_choice=ToolChoice("tool", name="nope"))))
    assert caught.value.param == "tool_choice"


def test_a_strict_tool_needs_a_forced_call(demo_model_dir: Path) -> None:
    """A call under `auto` is parsed, not grammar-decoded: a strict tool is refused there."""
    import dataclasses

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(demo_model_dir)
    engine = SimpleNamespace(
        tokenizer=tokenizer, model=SimpleNamespace(config=SimpleNamespace(vocab_size=8))
    )
    planner = RequestPlanner(engine, "wide")
    strict = dataclasses.replace(CLOCK, strict=True)
    with pytest.raises(InvalidRequestError) as refused:
        planner.check(params(tools=(WEATHER, strict)))
    assert refused.value.param == "tools" and "get_time" in refused.value.message
    planner.check(params(tools=(WEATHER, strict), tool_choice=ToolChoice("required")))
    planner.check(params(tools=(WEATHER, strict), tool_choice=ToolChoice("none")))
