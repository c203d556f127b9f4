"""Validate response bodies and stream chunks against OpenAI's published schemas.

`schemas.json` holds the component schemas (OpenAPI 3.1, i.e. JSON Schema 2020-12) that
`extract.py` took from `openai/openai-openapi`. A few of them still carry the 3.0 keyword
`nullable: true`, which JSON Schema ignores; it is read as the API behaves: `null` is also
a valid value (added to `type`, and to `enum` when there is one; a nullable `$ref` becomes
`anyOf: [the ref, null]`, as the streamed `usage: null` needs).
"""

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

BASE = "urn:openai-openapi"
SCHEMAS = Path(__file__).with_name("schemas.json")


def read_nullable(node: Any) -> Any:
    if isinstance(node, list):
        return [read_nullable(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: read_nullable(value) for key, value in node.items()}
    if node.pop("nullable", False) is True:
        kind = node.get("type")
        if isinstance(kind, str):
            node["type"] = [kind, "null"]
        elif kind is None:  # e.g. a nullable `$ref`: either it or null
            return {"anyOf": [node, {"type": "null"}]}
        if isinstance(node.get("enum"), list) and None not in node["enum"]:
            node["enum"] = [*node["enum"], None]
    return node


@cache
def _registry() -> Registry:
    document = json.loads(SCHEMAS.read_text())
    contents = {"$id": BASE, "components": read_nullable(copy.deepcopy(document["components"]))}
    resource = Resource.from_contents(contents, default_specification=DRAFT202012)
    return Registry().with_resource(BASE, resource)


@cache
def validator(name: str) -> Draft202012Validator:
    schema = {"$ref": f"{BASE}#/components/schemas/{name}"}
    return Draft202012Validator(schema, registry=_registry())


def problems(name: str, body: Any) -> list[str]:
    """Every violation of OpenAI's `name` schema by `body` (empty: valid)."""
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"
        for error in validator(name).iter_errors(body)
    ]


def sse_json(raw: bytes) -> list[Any]:
    """The JSON of each `data:` frame of an OpenAI stream, [DONE] left out."""
    frames = []
    for block in raw.decode().split("\n\n"):
        for line in block.splitlines():
            if line.startswith("data: ") and line != "data: [DONE]":
                frames.append(json.loads(line[len("data: ") :]))
    return frames
