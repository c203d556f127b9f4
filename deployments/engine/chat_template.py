"""The default chat template: what a local model without its own template is prompted with.

A tokenizer that ships a chat template uses its own; one without gets this one (the
`<|system|>`, `<|user|>`, `<|assistant|>` markers the demo model is trained on).
`render_chat_prompt` renders exactly what the Jinja template renders with
`add_generation_prompt=True`, without Jinja.
"""

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
SYSTEM_TOKEN = "<|system|>"
USER_TOKEN = "<|user|>"
ASSISTANT_TOKEN = "<|assistant|>"
SPECIAL_TOKENS = (EOS_TOKEN, PAD_TOKEN, SYSTEM_TOKEN, USER_TOKEN, ASSISTANT_TOKEN)

DEFAULT_CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|assistant|>\\n' + message['content'] + '<|endoftext|>\\n' }}"
    "{%- else %}"
    "{{- '<|' + message['role'] + '|>\\n' + message['content'] + '\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|assistant|>\\n' }}"
    "{%- endif %}"
)


def render_chat_prompt(messages: list[dict[str, str]]) -> str:
    """Render ``messages`` exactly like the chat template with ``add_generation_prompt=True``."""
    parts: list[str] = []
    for message in messages:
        role, content = message["role"], message["content"]
        if role == "assistant":
            parts.append(f"{ASSISTANT_TOKEN}\n{content}{EOS_TOKEN}\n")
        else:
            parts.append(f"<|{role}|>\n{content}\n")
    parts.append(f"{ASSISTANT_TOKEN}\n")
    return "".join(parts)
