"""Tool-call ids as each API expects them: OpenAI's `call_…`, Anthropic's `toolu_…`.

The mapping only swaps the prefix, so it is its own inverse: a Claude id `toolu_X` reaches an
OpenAI client as `call_X`, which comes back as `call_X` and goes upstream again as `toolu_X`;
an id with neither prefix (a local model's, a client's own) passes unchanged.
"""

OPENAI_PREFIX = "call_"
ANTHROPIC_PREFIX = "toolu_"


def openai_tool_id(tool_id: str) -> str:
    if tool_id.startswith(ANTHROPIC_PREFIX):
        return OPENAI_PREFIX + tool_id[len(ANTHROPIC_PREFIX) :]
    return tool_id


def anthropic_tool_id(tool_id: str) -> str:
    if tool_id.startswith(OPENAI_PREFIX):
        return ANTHROPIC_PREFIX + tool_id[len(OPENAI_PREFIX) :]
    return tool_id
