"""Generation calls through the official SDK clients, without their per-call body transform.

`chat.completions.create` / `messages.create` first run the body through the SDK's TypedDict
transform (`async_maybe_transform`), which walks every key against the type annotations:
about a third of a proxy replica's CPU per request in the profile (`bench/profile_path.sh`).
The gateway's bodies are plain JSON already (strings, numbers, lists of role/content
dicts), for which that transform is the identity, so the same request is sent through the
same client's `post` (auth, base_url, retries off, timeouts and error mapping unchanged).

Answers and stream events come back as the JSON the SDK read (`cast_to=object`), not as SDK
models: building a `ChatCompletion` or a chunk model cost about 70 µs per object, once per
stream chunk, for fields the wire modules then read back one by one.
"""

from typing import Any


def _split(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(JSON body, request options) from `create(**kwargs)`-style arguments."""
    body = dict(kwargs)
    options = {
        "extra_headers": body.pop("extra_headers", None),
        "extra_body": body.pop("extra_body", None),
    }
    if "timeout" in body:
        options["timeout"] = body.pop("timeout")
    return body, options


async def openai_chat_create(client: Any, kwargs: dict[str, Any]) -> Any:
    from openai import AsyncStream
    from openai._base_client import make_request_options

    body, options = _split(kwargs)
    return await client.post(
        "/chat/completions",
        body=body,
        options=make_request_options(**options, security={"bearer_auth": True}),
        cast_to=object,
        stream=bool(body.get("stream")),
        stream_cls=AsyncStream[object],
    )


async def anthropic_messages_create(client: Any, kwargs: dict[str, Any]) -> Any:
    from anthropic import AsyncStream
    from anthropic._base_client import make_request_options

    body, options = _split(kwargs)
    return await client.post(
        "/v1/messages",
        body=body,
        options=make_request_options(**options),
        cast_to=object,
        stream=bool(body.get("stream")),
        stream_cls=AsyncStream[object],
    )


async def openai_embeddings_create(client: Any, kwargs: dict[str, Any]) -> Any:
    from openai._base_client import make_request_options
    from openai.types import CreateEmbeddingResponse

    body, options = _split(kwargs)
    return await client.post(
        "/embeddings",
        body=body,
        options=make_request_options(**options, security={"bearer_auth": True}),
        cast_to=CreateEmbeddingResponse,
    )
