"""The fake provider's tools, structured output and checks behave as the real APIs do."""

import json
from typing import Any

import jsonschema
import pytest

from tests.fakes.fake_features import schema_instance, tool_calls, tool_problem

SCHEMAS: list[dict[str, Any]] = [
    {"type": "object", "properties": {"a": {"type": "string", "minLength": 3}}, "required": ["a"]},
    {"type": "object", "properties": {"n": {"type": "integer", "minimum": 5, "maximum": 9}}},
    {"type": "object", "properties": {"x": {"type": "number", "exclusiveMinimum": 0}}},
    {"type": "object", "properties": {"e": {"enum": ["red", "green"]}, "b": {"type": "boolean"}}},
    {
        "type": "array",
        "items": {"type": "object", "properties": {"k": {"type": ["string", "null"]}}},
        "minItems": 2,
    },
    {"type": "object", "properties": {"o": {"anyOf": [{"type": "integer"}, {"type": "null"}]}}},
]
TOOLS = [
    {"type": "function", "function": {"name": "a", "parameters": SCHEMAS[0]}},
    {"type": "function", "function": {"name": "b", "parameters": SCHEMAS[1]}},
]


@pytest.mark.parametrize("schema", SCHEMAS)
def test_schema_instances_validate(schema: dict[str, Any]) -> None:
    jsonschema.validate(schema_instance(schema), schema)


def test_tool_choice_decides_the_calls() -> None:
    ask = [{"role": "user", "content": "go"}]
    assert [c[1] for c in tool_calls("chat", {"messages": ask, "tools": TOOLS}, 1)] == ["a", "b"]
    single = {"messages": ask, "tools": TOOLS, "parallel_tool_calls": False}
    assert [c[1] for c in tool_calls("chat", single, 1)] == ["a"]
    named = {
        "messages": ask,
        "tools": TOOLS,
        "tool_choice": {"type": "function", "function": {"name": "b"}},
    }
    (call,) = tool_calls("chat", named, 7)
    assert call[0].startswith("call_") and json.loads(call[2]) == {"n": 5}
    assert tool_calls("chat", {"messages": ask, "tools": TOOLS, "tool_choice": "none"}, 1) == []
    answered = [
        *ask,
        {"role": "assistant", "tool_calls": [{"id": "call_1", "function": {"name": "a"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "ok"},
    ]
    assert tool_calls("chat", {"messages": answered, "tools": TOOLS}, 1) == []
    assert tool_problem("chat", {"messages": answered}) is None
    assert "no preceding tool call" in str(tool_problem("chat", {"messages": ask + answered[2:]}))
    claude = {
        "messages": ask,
        "tools": [{"name": "a", "input_schema": SCHEMAS[0]}],
        "tool_choice": {"type": "any"},
    }
    assert tool_calls("messages", claude, 1)[0][0].startswith("toolu_")
    twice = {"messages": ask + ask}
    assert "alternate" in str(tool_problem("messages", twice))
