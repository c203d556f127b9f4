"""The soak's traffic, as pure functions: request kinds, the weighted mix, request bodies, and
what a response (JSON or server-sent events) says about the outcome.

Nothing here does I/O; `bench.soak_load` sends what these functions describe.
"""

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Api = Literal["native", "openai", "anthropic"]
KeyRole = Literal["normal", "limited"]
Mode = Literal["ok", "bad_model", "bad_max_tokens"]

API_PATHS: dict[Api, str] = {
    "native": "/api/v1/generate",
    "openai": "/v1/chat/completions",
    "anthropic": "/v1/messages",
}
UNKNOWN_MODEL = "soak-no-such-model"
TOO_MANY_TOKENS = 1_000_000


@dataclass(frozen=True, slots=True)
class KindSpec:
    """One kind of request in the mix, and the HTTP statuses it is expected to get."""

    name: str
    api: Api
    model: str
    stream: bool = False
    key: KeyRole = "normal"
    mode: Mode = "ok"
    expect: frozenset[int] = frozenset({200})

    @property
    def path(self) -> str:
        return API_PATHS[self.api]

    @property
    def expects_success(self) -> bool:
        return 200 in self.expect


@dataclass(frozen=True, slots=True)
class Models:
    """The model ids the soak uses: one local model and one per provider."""

    local: str = "demo"
    openai: str = "gpt-4o-mini"
    anthropic: str = "claude-haiku-4-5"


DEFAULT_MODELS = Models()


def default_kinds(models: Models) -> dict[str, KindSpec]:
    """Every kind of the soak: local and commercial, stream and not, invalid, rate-limited."""
    specs = [
        KindSpec("local_native", "native", models.local),
        KindSpec("local_chat", "openai", models.local),
        KindSpec("local_native_stream", "native", models.local, stream=True),
        KindSpec("local_chat_stream", "openai", models.local, stream=True),
        KindSpec("openai_chat", "openai", models.openai),
        KindSpec("openai_chat_stream", "openai", models.openai, stream=True),
        KindSpec("anthropic_messages", "anthropic", models.anthropic),
        KindSpec("anthropic_messages_stream", "anthropic", models.anthropic, stream=True),
        KindSpec(
            "invalid_model", "native", UNKNOWN_MODEL, mode="bad_model", expect=frozenset({404})
        ),
        KindSpec(
            "invalid_max_tokens",
            "openai",
            models.local,
            mode="bad_max_tokens",
            expect=frozenset({400}),
        ),
        KindSpec(
            "limited_key", "native", models.local, key="limited", expect=frozenset({200, 429})
        ),
    ]
    return {spec.name: spec for spec in specs}


DEFAULT_WEIGHTS: dict[str, int] = {
    "local_native": 3,
    "local_chat": 2,
    "local_native_stream": 1,
    "local_chat_stream": 1,
    "openai_chat": 2,
    "openai_chat_stream": 2,
    "anthropic_messages": 2,
    "anthropic_messages_stream": 2,
    "invalid_model": 1,
    "invalid_max_tokens": 1,
    "limited_key": 2,
}


def parse_weights(text: str, known: Iterable[str]) -> dict[str, int]:
    """`name=weight,...` (e.g. `local_native=3,openai_chat=1`); unknown names are errors."""
    names = set(known)
    weights: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or name.strip() not in names:
            raise ValueError(f"bad mix entry {item!r}; kinds: {', '.join(sorted(names))}")
        weights[name.strip()] = int(value)
    if not weights or any(w < 0 for w in weights.values()) or not any(weights.values()):
        raise ValueError("the mix needs non-negative weights, at least one positive")
    return {name: weight for name, weight in weights.items() if weight > 0}


class MixPlanner:
    """Smooth weighted round-robin: deterministic, and every `sum(weights)` consecutive slots
    hold each kind exactly `weight` times, spread evenly (no bursts of one kind)."""

    def __init__(self, weights: Mapping[str, int]) -> None:
        if not weights or any(w <= 0 for w in weights.values()):
            raise ValueError("weights must be positive")
        self.weights = dict(weights)
        self.total = sum(self.weights.values())
        self._current = dict.fromkeys(self.weights, 0)

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        for name, weight in self.weights.items():
            self._current[name] += weight
        best = max(self._current, key=lambda name: self._current[name])
        self._current[best] -= self.total
        return best


def plan_mix(weights: Mapping[str, int], count: int) -> list[str]:
    """The first `count` kinds of the mix."""
    planner = MixPlanner(weights)
    return [next(planner) for _ in range(count)]


def request_body(spec: KindSpec, question: str) -> dict[str, Any]:
    """The JSON body of one request of `spec` asking `question`."""
    model = spec.model
    max_tokens = TOO_MANY_TOKENS if spec.mode == "bad_max_tokens" else 16
    if spec.api == "native":
        body: dict[str, Any] = {
            "prompt": f"Q: {question}\nA:",
            "model_id": model,
            "max_tokens": max_tokens,
        }
    else:
        body = {
            "model": model,
            "messages": [{"role": "user", "content": question}],
            "max_tokens": max_tokens,
        }
        if spec.api == "openai" and spec.stream:
            body["stream_options"] = {"include_usage": True}
    if spec.stream:
        body["stream"] = True
    return body


@dataclass(slots=True)
class Outcome:
    """What one response said: an error type (None: success) and the tokens it reported."""

    error_type: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None


def error_type_of(body: Any) -> str:
    """The error type in any of the gateway's error shapes (native, OpenAI, Anthropic)."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("type"), str):
            return str(error["type"])
    return "unparsed_error_body"


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def tokens_of(api: Api, body: Mapping[str, Any]) -> tuple[int | None, int | None]:
    """(input, output) tokens of a non-streamed success body."""
    if api == "native":
        metrics = body.get("metrics") or {}
        return _int(metrics.get("input_tokens")), _int(metrics.get("output_tokens"))
    usage = body.get("usage") or {}
    if api == "openai":
        return _int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens"))
    return _int(usage.get("input_tokens")), _int(usage.get("output_tokens"))


def json_outcome(api: Api, status: int, text: str) -> Outcome:
    """The outcome of a non-streamed response."""
    try:
        body = json.loads(text)
    except ValueError:
        return Outcome("unparsed_error_body" if status != 200 else "invalid_json")
    if status != 200 or (isinstance(body, dict) and "error" in body):
        return Outcome(error_type_of(body))
    if not isinstance(body, dict):
        return Outcome("invalid_json")
    return Outcome(None, *tokens_of(api, body))


@dataclass(frozen=True, slots=True)
class SSEEvent:
    event: str | None
    data: str


@dataclass(slots=True)
class SSEParser:
    """Incremental SSE parser: feed lines (without newlines), get complete events."""

    _event: str | None = None
    _data: list[str] = field(default_factory=list)

    def feed(self, line: str) -> SSEEvent | None:
        if not line:
            if not self._data and self._event is None:
                return None
            event = SSEEvent(self._event, "\n".join(self._data))
            self._event, self._data = None, []
            return event
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        return None


def parse_sse(lines: Iterable[str]) -> list[SSEEvent]:
    parser = SSEParser()
    events = [parser.feed(line) for line in [*lines, ""]]
    return [event for event in events if event is not None]


def stream_outcome(api: Api, events: Sequence[SSEEvent]) -> Outcome:
    """The outcome of a 200 stream: an error event, a stream that never reached its end
    (`stream_truncated`), or a success with the tokens the stream reported."""
    outcome, finished = Outcome(), False
    for event in events:
        if event.data == "[DONE]":
            finished = finished or api != "anthropic"
            continue
        try:
            data = json.loads(event.data)
        except ValueError:
            return Outcome("unparsed_stream_event")
        if not isinstance(data, dict):
            return Outcome("unparsed_stream_event")
        if event.event == "error" or "error" in data:
            return Outcome(error_type_of(data))
        finished = _stream_tokens(api, event.event, data, outcome) or finished
    return outcome if finished else Outcome("stream_truncated")


def _stream_tokens(api: Api, event: str | None, data: dict[str, Any], out: Outcome) -> bool:
    """Fill `out`'s tokens from one stream event; True when it is the stream's end event."""
    if api == "anthropic":
        if event == "message_start":
            out.input_tokens = _int(
                ((data.get("message") or {}).get("usage") or {}).get("input_tokens")
            )
        elif event == "message_delta":
            out.output_tokens = _int((data.get("usage") or {}).get("output_tokens"))
        return event == "message_stop"
    if api == "native" and "metrics" in data:
        out.input_tokens, out.output_tokens = tokens_of("native", data)
    elif api == "openai" and data.get("usage"):
        out.input_tokens, out.output_tokens = tokens_of("openai", data)
    return False


def is_content_event(api: Api, event: SSEEvent) -> bool:
    """Whether an event carries generated text (for the time to first token)."""
    if api == "anthropic":
        return event.event == "content_block_delta"
    if event.data == "[DONE]":
        return False
    try:
        data = json.loads(event.data)
    except ValueError:
        return False
    if not isinstance(data, dict):
        return False
    if api == "native":
        return bool(data.get("text"))
    choices = data.get("choices") or [{}]
    return bool(((choices[0] or {}).get("delta") or {}).get("content"))
