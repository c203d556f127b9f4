"""Tool loops end to end through the deployed gateway, driven by the official SDKs:
(OpenAI SDK, Anthropic SDK) x (GPT, Claude) x (streamed, not), against the fake provider,
which answers tool choices and tool results as the real APIs do and records what the
gateway sent upstream."""

import json
from typing import Any

import anthropic
import jsonschema
import openai
import pytest

from tests.fakes.fake_provider import FakeProvider

pytestmark = pytest.mark.integration
GPT, CLAUDE = "gpt-4o-mini", "claude-haiku-4-5"
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "minLength": 2},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
    },
    "required": ["city", "unit", "days"],
}
TIME_SCHEMA = {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]}
QUESTION = "What is the weather in Velmora?"


def get_weather(city: str, unit: str, days: int) -> str:
    """The local Python function the loops call."""
    return f"{city}: sunny for {days} days, 21 degrees {unit}"


@pytest.fixture(autouse=True)
def clean_fake(fake_provider: FakeProvider) -> None:
    fake_provider.reset()


def openai_tools(*schemas: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"type": "function", "function": {"name": n, "description": n, "parameters": s}}
        for n, s in schemas
    ]


def anthropic_tools(*schemas: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"name": n, "description": n, "input_schema": s} for n, s in schemas]


def last_upstream(fake: FakeProvider) -> dict[str, Any]:
    generation = [r for r in fake.recorded() if r["path"].endswith(("completions", "messages"))]
    return generation[-1]["json"]


def openai_turn(client: openai.OpenAI, model: str, messages: list[Any], stream: bool) -> Any:
    """One chat turn: the stream helper's final completion, or the plain answer."""
    kwargs: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "tools": openai_tools(("get_weather", WEATHER_SCHEMA)),
    }
    if not stream:
        return client.chat.completions.create(**kwargs, tool_choice="auto")
    with client.chat.completions.stream(**kwargs, tool_choice="auto") as events:
        return events.get_final_completion()


def the_one_call(first: Any, schema: dict[str, Any]) -> tuple[Any, Any, dict[str, Any]]:
    """The answer's one `get_weather` call, checked: (choice, call, parsed arguments)."""
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.id.startswith("call_") and call.function.name == "get_weather"
    arguments = json.loads(call.function.arguments)
    jsonschema.validate(arguments, schema)
    return choice, call, arguments


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("model", [GPT, CLAUDE])
def test_openai_sdk_tool_loop(
    oai: openai.OpenAI, fake_provider: FakeProvider, model: str, stream: bool
) -> None:
    messages: list[Any] = [{"role": "user", "content": QUESTION}]
    first = openai_turn(oai, model, messages, stream)
    choice, call, arguments = the_one_call(first, WEATHER_SCHEMA)
    upstream = last_upstream(fake_provider)
    if model == CLAUDE:
        assert upstream["tools"][0]["input_schema"] == WEATHER_SCHEMA
        assert upstream["tool_choice"] == {"type": "auto"}
    else:
        assert upstream["tools"][0]["function"]["parameters"] == WEATHER_SCHEMA
    messages += [choice.message.model_dump(exclude_none=True)]
    messages += [{"role": "tool", "tool_call_id": call.id, "content": get_weather(**arguments)}]
    final = openai_turn(oai, model, messages, stream)
    assert final.choices[0].finish_reason == "stop"
    assert final.choices[0].message.content == "Tool said: " + get_weather(**arguments)
    sent = last_upstream(fake_provider)["messages"]
    if model == CLAUDE:  # the call id went back as Anthropic's toolu_ id of the same call
        (use,) = [b for b in sent[1]["content"] if b["type"] == "tool_use"]
        (result,) = sent[2]["content"]
        assert use["id"] == result["tool_use_id"] == "toolu_" + call.id.removeprefix("call_")
        assert use["input"] == arguments
    else:
        assert sent[1]["tool_calls"][0]["id"] == sent[2]["tool_call_id"] == call.id


def anthropic_turn(
    client: anthropic.Anthropic,
    model: str,
    messages: list[Any],
    stream: bool,
    schema: dict[str, Any] = WEATHER_SCHEMA,
    **extra: Any,
) -> Any:
    kwargs: dict[str, Any] = {
        "model": model,
        "max_tokens": 64,
        "messages": messages,
        "tools": anthropic_tools(("get_weather", schema)),
        **extra,
    }
    if not stream:
        return client.messages.create(**kwargs)
    with client.messages.stream(**kwargs) as events:
        return events.get_final_message()


def answer_tool_use(first: Any, schema: dict[str, Any], function: Any, messages: list[Any]) -> Any:
    """Check the answer's one `get_weather` call, then append it and the function's result
    to `messages` as the next turns; the call."""
    assert first.stop_reason == "tool_use"
    (use,) = [block for block in first.content if block.type == "tool_use"]
    assert use.id.startswith("toolu_") and use.name == "get_weather"
    jsonschema.validate(use.input, schema)
    content = [b.model_dump(exclude_none=True) for b in first.content]
    messages.append({"role": "assistant", "content": content})
    result = {"type": "tool_result", "tool_use_id": use.id, "content": function(**use.input)}
    messages.append({"role": "user", "content": [result]})
    return use


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("model", [CLAUDE, GPT])
def test_anthropic_sdk_tool_loop(
    claude: anthropic.Anthropic, fake_provider: FakeProvider, model: str, stream: bool
) -> None:
    messages: list[Any] = [{"role": "user", "content": QUESTION}]
    first = anthropic_turn(claude, model, messages, stream)
    use = answer_tool_use(first, WEATHER_SCHEMA, get_weather, messages)
    final = anthropic_turn(claude, model, messages, stream)
    assert final.stop_reason == "end_turn"
    assert final.content[0].text == "Tool said: " + get_weather(**use.input)
    assert final.usage.input_tokens > 0
    sent = last_upstream(fake_provider)["messages"]
    if model == GPT:  # Anthropic's toolu_ id reached OpenAI as the call_ id of the call
        assert sent[1]["tool_calls"][0]["id"] == sent[2]["tool_call_id"]
        assert sent[2]["tool_call_id"] == "call_" + use.id.removeprefix("toolu_")
        assert json.loads(sent[1]["tool_calls"][0]["function"]["arguments"]) == use.input
    else:
        assert sent[2]["content"][0]["tool_use_id"] == use.id


def test_several_calls_in_one_turn_both_ways(
    oai: openai.OpenAI, claude: anthropic.Anthropic, fake_provider: FakeProvider
) -> None:
    tools = (("get_weather", WEATHER_SCHEMA), ("get_time", TIME_SCHEMA))
    answer = oai.chat.completions.create(
        model=CLAUDE, messages=[{"role": "user", "content": QUESTION}], tools=openai_tools(*tools)
    )
    calls = answer.choices[0].message.tool_calls
    assert [c.function.name for c in calls] == ["get_weather", "get_time"]
    assert len({c.id for c in calls}) == 2
    message = claude.messages.create(
        model=GPT,
        max_tokens=32,
        messages=[{"role": "user", "content": QUESTION}],
        tools=anthropic_tools(*tools),
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
    )
    assert [b.name for b in message.content if b.type == "tool_use"] == ["get_weather"]
    upstream = last_upstream(fake_provider)
    assert (upstream["tool_choice"], upstream["parallel_tool_calls"]) == ("required", False)


def test_named_tool_choice_is_forced(oai: openai.OpenAI, fake_provider: FakeProvider) -> None:
    tools = openai_tools(("get_weather", WEATHER_SCHEMA), ("get_time", TIME_SCHEMA))
    choice = {"type": "function", "function": {"name": "get_time"}}
    answer = oai.chat.completions.create(
        model=CLAUDE,
        messages=[{"role": "user", "content": "time?"}],
        tools=tools,
        tool_choice=choice,
    )
    assert [c.function.name for c in answer.choices[0].message.tool_calls] == ["get_time"]
    assert last_upstream(fake_provider)["tool_choice"] == {"type": "tool", "name": "get_time"}


def test_bad_tool_conversations_never_reach_a_provider(
    oai: openai.OpenAI, claude: anthropic.Anthropic, fake_provider: FakeProvider
) -> None:
    orphan = [
        {"role": "user", "content": "hi"},
        {"role": "tool", "tool_call_id": "call_nope", "content": "42"},
    ]
    with pytest.raises(openai.BadRequestError, match="answers no tool call"):
        oai.chat.completions.create(model=GPT, messages=orphan)
    duplicate = openai_tools(("f", TIME_SCHEMA), ("f", TIME_SCHEMA))
    with pytest.raises(openai.BadRequestError, match="unique"):
        oai.chat.completions.create(model=GPT, messages=orphan[:1], tools=duplicate)
    with pytest.raises(anthropic.BadRequestError, match="type 'object'"):
        claude.messages.create(
            model=CLAUDE,
            max_tokens=8,
            messages=[{"role": "user", "content": "hi"}],
            tools=[{"name": "f", "input_schema": {"type": "string"}}],
        )
    assert fake_provider.stats() == {}


# The local model of the session gateway: an untrained GPT-2 with a 1024-token context that
# never ends on its own. A forced call (grammar) with bounded arguments ends when the call
# does; a free answer runs to max_tokens.
LOCAL = "random"
LOCAL_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 8},
        "unit": {"enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}


def local_weather(city: str, unit: str) -> str:
    return f"{city}: sunny, 21 degrees {unit}"


def local_openai_turn(
    client: openai.OpenAI, messages: list[Any], stream: bool, **choice: Any
) -> Any:
    kwargs: dict[str, Any] = {
        "model": LOCAL,
        "messages": messages,
        "tools": openai_tools(("get_weather", LOCAL_SCHEMA)),
        "max_tokens": 200,  # the forced call ends well before
        **choice,
    }
    if not stream:
        return client.chat.completions.create(**kwargs)
    kwargs["stream_options"] = {"include_usage": True}
    with client.chat.completions.stream(**kwargs) as events:
        try:
            return events.get_final_completion()
        except openai.LengthFinishReasonError as exc:  # the helper's answer to "length"
            return exc.completion


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_openai_sdk_tool_loop_on_a_local_model(oai: openai.OpenAI, stream: bool) -> None:
    """Call (grammar-forced), result, answer: the call comes back in OpenAI's shape, and the
    next turn renders the call and its result into the local model's prompt."""
    messages: list[Any] = [{"role": "user", "content": QUESTION}]
    first = local_openai_turn(
        oai, messages, stream, tool_choice="required", parallel_tool_calls=False
    )
    choice, call, arguments = the_one_call(first, LOCAL_SCHEMA)
    messages += [choice.message.model_dump(exclude_none=True)]
    messages += [{"role": "tool", "tool_call_id": call.id, "content": local_weather(**arguments)}]
    final = local_openai_turn(oai, messages, stream, tool_choice="auto", max_tokens=8)
    answer = final.choices[0]
    assert answer.finish_reason == "length" and not answer.message.tool_calls
    assert isinstance(answer.message.content, str) and answer.message.content
    # The second prompt holds the first one, the call and the result.
    result_chars = len(local_weather(**arguments))
    assert final.usage.prompt_tokens > first.usage.prompt_tokens + result_chars // 4


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_anthropic_sdk_tool_loop_on_a_local_model(
    claude: anthropic.Anthropic, stream: bool
) -> None:
    messages: list[Any] = [{"role": "user", "content": QUESTION}]
    forced = {"type": "any", "disable_parallel_tool_use": True}
    first = anthropic_turn(
        claude, LOCAL, messages, stream, LOCAL_SCHEMA, tool_choice=forced, max_tokens=200
    )
    answer_tool_use(first, LOCAL_SCHEMA, local_weather, messages)
    auto = {"type": "auto"}
    final = anthropic_turn(
        claude, LOCAL, messages, stream, LOCAL_SCHEMA, tool_choice=auto, max_tokens=8
    )
    assert final.stop_reason == "max_tokens"
    assert [block.type for block in final.content] == ["text"]
    assert final.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens


def test_tools_that_overflow_a_local_models_context_are_a_400_naming_both_sizes(
    oai: openai.OpenAI,
) -> None:
    """The demo model's 256-token context cannot hold the rendered tool definitions."""
    with pytest.raises(openai.BadRequestError, match=r"The prompt has \d+ tokens.*context is 256"):
        oai.chat.completions.create(
            model="demo",
            messages=[{"role": "user", "content": QUESTION}],
            tools=openai_tools(("get_weather", WEATHER_SCHEMA)),
        )
