"""Extract the response schemas the tests validate against from OpenAI's OpenAPI description.

The full description (`openai/openai-openapi`, `openapi.json`, 3.4 MB) is not vendored: only
the component schemas below and everything they reference (`$ref` closure), into
`schemas.json`, with the commit they came from. Re-run to update:

    python tests/openai_openapi/extract.py path/to/openapi.json <commit> <date>
"""

import json
import sys
from pathlib import Path
from typing import Any

ROOTS = (
    "CreateChatCompletionResponse",
    "CreateChatCompletionStreamResponse",
    "CreateCompletionResponse",
    "ListModelsResponse",
)
PREFIX = "#/components/schemas/"


def refs(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(PREFIX):
            found.add(ref[len(PREFIX) :])
        for value in node.values():
            found |= refs(value)
    elif isinstance(node, list):
        for value in node:
            found |= refs(value)
    return found


def closure(schemas: dict[str, Any]) -> dict[str, Any]:
    todo, kept = list(ROOTS), {}
    while todo:
        name = todo.pop()
        if name not in kept:
            kept[name] = schemas[name]
            todo += sorted(refs(schemas[name]) - set(kept))
    return dict(sorted(kept.items()))


def main() -> None:
    source, commit, date = sys.argv[1:4]
    description = json.loads(Path(source).read_text())
    out = {
        "source": "https://github.com/openai/openai-openapi (openapi.json)",
        "commit": commit,
        "commit_date": date,
        "openapi": description["openapi"],
        "info_version": description["info"]["version"],
        "roots": list(ROOTS),
        "components": {"schemas": closure(description["components"]["schemas"])},
    }
    target = Path(__file__).with_name("schemas.json")
    target.write_text(json.dumps(out, indent=1, sort_keys=False) + "\n")


if __name__ == "__main__":
    main()
