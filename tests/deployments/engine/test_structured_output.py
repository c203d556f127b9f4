"""Structured output on the demo model: decoding under llguidance grammars always validates."""

import asyncio
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from deployments.demo.corpus import build_facts, native_prompt
from deployments.engine.server import LocalModelServer, load_hf_model
from serve_app.contracts.errors import InvalidRequestError
from serve_app.contracts.wire import GenerationParams, OutputFormat

SCHEMAS: dict[str, dict[str, Any]] = {
    "nested": {
        "type": "object",
        "properties": {
            "place": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "maxLength": 12},
                    "country": {"type": "string", "maxLength": 12},
                },
                "required": ["city", "country"],
                "additionalProperties": False,
            },
            "known": {"type": "boolean"},
        },
        "required": ["place", "known"],
        "additionalProperties": False,
    },
    "enum": {
        "type": "object",
        "properties": {
            "kind": {"enum": ["capital", "animal", "gadget"]},
            "confidence": {"type": "string", "enum": ["low", "medium", "high"]},
        },
        "required": ["kind", "confidence"],
        "additionalProperties": False,
    },
    "array": {
        "type": "object",
        "properties": {
            "names": {
                "type": "array",
                "items": {"type": "string", "maxLength": 10},
                "minItems": 1,
                "maxItems": 3,
            },
        },
        "required": ["names"],
        "additionalProperties": False,
    },
    "bounded_numbers": {
        "type": "object",
        "properties": {
            "population": {"type": "integer", "minimum": 1000, "maximum": 99999},
            "ratio": {"type": "number", "minimum": 0, "maximum": 1},
            "rank": {"type": "integer", "exclusiveMinimum": 0, "maximum": 9},
        },
        "required": ["population", "ratio", "rank"],
        "additionalProperties": False,
    },
    "required_and_optional": {
        "type": "object",
        "properties": {
            "answer": {"type": "string", "maxLength": 16},
            "note": {"type": ["string", "null"], "maxLength": 8},
            "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 2},
        },
        "required": ["answer", "note"],
        "additionalProperties": False,
    },
    "list_of_objects": {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {"id": {"type": "integer", "minimum": 0, "maximum": 99}},
            "required": ["id"],
            "additionalProperties": False,
        },
        "minItems": 1,
        "maxItems": 2,
    },
}


def params(prompt: str, output_format: OutputFormat | None, **extra: Any) -> GenerationParams:
    return GenerationParams(
        request_id="r",
        model_id="demo",
        prompt=prompt,
        max_tokens=160,
        temperature=0.0,
        output_format=output_format,
        **extra,
    )


@pytest.fixture(scope="module")
def server(demo_model_dir: Path, engine_runner: asyncio.Runner) -> LocalModelServer:
    config = {
        "id": "demo",
        "path": str(demo_model_dir),
        "batching": {"max_batch_size": 8, "batch_wait_timeout_s": 0.05},
    }
    return LocalModelServer(config, loader=load_hf_model)


@pytest.fixture(scope="module")
def runner(engine_runner: asyncio.Runner) -> asyncio.Runner:
    return engine_runner


def test_fifty_prompts_over_six_schemas_all_validate(
    server: LocalModelServer, runner: asyncio.Runner
) -> None:
    facts = build_facts()
    names = list(SCHEMAS)
    cases = [
        (names[i % len(names)], native_prompt(facts[i * 2 % len(facts)].question))
        for i in range(50)
    ]

    async def scenario() -> list[Any]:
        calls = [
            server.generate(params(prompt, OutputFormat("json_schema", SCHEMAS[name], name)))
            for name, prompt in cases
        ]
        return list(await asyncio.gather(*calls))

    outputs = runner.run(scenario())
    for (name, _), output in zip(cases, outputs):
        assert output.finish_reason == "stop", (name, output.text)
        jsonschema.validate(json.loads(output.text), SCHEMAS[name])
    assert server.planner.grammars.compiled == len(SCHEMAS)  # one compile per schema
    described = server.describe()  # static: requests per batch; continuous: rows per step
    assert described["batched_requests"] > described["batches"]  # grammar rows batch


def test_json_object_gives_an_object_where_free_text_is_not_json(
    server: LocalModelServer, runner: asyncio.Runner
) -> None:
    prompt = native_prompt("What is the capital of Zorbia?")
    free = runner.run(server.generate(params(prompt, None)))
    with pytest.raises(ValueError):
        json.loads(free.text)
    constrained = runner.run(server.generate(params(prompt, OutputFormat("json_object"))))
    assert isinstance(json.loads(constrained.text), dict)


def test_streamed_structured_output_equals_the_non_streamed_one(
    server: LocalModelServer, runner: asyncio.Runner
) -> None:
    fmt = OutputFormat("json_schema", SCHEMAS["enum"], "enum")
    p = params(native_prompt("What is the capital of Zorbia?"), fmt)

    async def stream() -> str:
        return "".join([chunk.text async for chunk in server.generate_stream(p)])

    assert runner.run(stream()) == runner.run(server.generate(p)).text


@pytest.mark.parametrize(
    ("schema", "named"),
    [
        ({"type": "string", "format": "ipv9"}, "ipv9"),
        ({"type": "object", "dependentSchemas": {"a": {}}}, "dependentSchemas"),
    ],
)
def test_a_schema_feature_the_grammar_cannot_enforce_is_a_400_naming_it(
    server: LocalModelServer, runner: asyncio.Runner, schema: dict[str, Any], named: str
) -> None:
    p = params("Q: x\nA:", OutputFormat("json_schema", schema, "bad"))
    with pytest.raises(InvalidRequestError) as caught:
        runner.run(server.generate(p))
    assert named in caught.value.message and "'demo'" in caught.value.message
    assert caught.value.param == "response_format"
