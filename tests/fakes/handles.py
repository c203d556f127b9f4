"""Stand-ins for Ray Serve `DeploymentHandle`s, for ingress tests without a cluster.

* `FakeHandle(**methods)`: each method a plain function of the call's arguments.
* `ScriptedHandle`: a model or provider deployment (`generate`, `generate_stream`,
  `describe`, `check_upstream`) answering from a `behave(params)` function (a
  `GenerationOutput`, or an exception to raise) after an optional delay; streams yield one
  chunk per word. Every call is logged with the handle options it was made through, and
  `options()` merges options like `DeploymentHandle.options`.
"""

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from serve_app.contracts.wire import (
    EmbeddingOutput,
    EmbeddingParams,
    GenerationOutput,
    GenerationParams,
    StreamChunk,
)

Behaviour = Callable[[GenerationParams], GenerationOutput | BaseException]


class FakeResponse:
    """Awaitable like a `DeploymentResponse`; records cancellation."""

    def __init__(self, coroutine: Any) -> None:
        self._coroutine = coroutine
        self.cancelled = False

    def __await__(self) -> Any:
        return self._coroutine.__await__()

    def cancel(self) -> None:
        self.cancelled = True


class FakeMethod:
    def __init__(self, function: Callable[..., Any], delay_s: float = 0.0) -> None:
        self.function = function
        self.delay_s = delay_s
        self.calls: list[tuple[Any, ...]] = []

    def remote(self, *args: Any) -> FakeResponse:
        self.calls.append(args)

        async def run() -> Any:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            result = self.function(*args)
            if isinstance(result, BaseException):
                raise result
            return result

        return FakeResponse(run())


class FakeHandle:
    """A handle whose methods are plain functions of the call's arguments."""

    def __init__(self, **methods: Callable[..., Any]) -> None:
        for name, function in methods.items():
            setattr(self, name, FakeMethod(function))

    def options(self, **options: Any) -> "FakeHandle":
        """Like `DeploymentHandle.options`: the same methods, the options recorded."""
        clone = FakeHandle()
        clone.__dict__.update(self.__dict__)
        clone.options_used = options  # type: ignore[attr-defined]
        return clone


def answer(params: GenerationParams) -> GenerationOutput:
    """A healthy model: says which model id (and adapter) it served."""
    text = f"{params.model_id} answers" + (f" via {params.adapter}" if params.adapter else "")
    return GenerationOutput(text, 3, 2, "stop", params.model_id)


def failing(error: BaseException) -> Behaviour:
    return lambda params: error


@dataclass
class Call:
    method: str  # "generate" or "generate_stream"
    params: GenerationParams
    options: dict[str, Any]
    response: "FakeCall | FakeStream"


class FakeCall:
    """Awaitable like a `DeploymentResponse`; records cancellation."""

    def __init__(self, handle: "ScriptedHandle", params: GenerationParams) -> None:
        self.handle = handle
        self.params = params
        self.cancelled = False

    def __await__(self) -> Any:
        return self._run().__await__()

    async def _run(self) -> GenerationOutput:
        if self.handle.delay_s:
            await asyncio.sleep(self.handle.delay_s)
        result = self.handle.behave(self.params)
        if isinstance(result, BaseException):
            raise result
        return result

    def cancel(self) -> None:
        self.cancelled = True


class FakeStream:
    """A streaming `DeploymentResponseGenerator`: one chunk per word of the answer; raises
    the behaviour's error on the first chunk, or on the second when `fail_after_first`."""

    def __init__(self, handle: "ScriptedHandle", params: GenerationParams) -> None:
        self.cancelled = False
        self._chunks = self._produce(handle, params)

    @staticmethod
    async def _produce(
        handle: "ScriptedHandle", params: GenerationParams
    ) -> AsyncIterator[StreamChunk]:
        if handle.delay_s:
            await asyncio.sleep(handle.delay_s)
        result = handle.behave(params)
        if isinstance(result, BaseException):
            if handle.fail_after_first:
                yield StreamChunk("partial", None, 3, 1, params.model_id)
            raise result
        words = result.text.split(" ")
        pause_s = handle.script.word_delay_s(params)
        for index, word in enumerate(words):
            if pause_s:
                await asyncio.sleep(pause_s)
            last = index == len(words) - 1
            piece = word if index == 0 else " " + word
            finish = result.finish_reason if last else None
            yield StreamChunk(piece, finish, 3, index + 1, result.served_model)

    def __aiter__(self) -> "FakeStream":
        return self

    async def __anext__(self) -> StreamChunk:
        return await self._chunks.__anext__()

    def cancel(self) -> None:
        self.cancelled = True


class _Method:
    def __init__(self, handle: "ScriptedHandle", name: str) -> None:
        self.handle = handle
        self.name = name

    def remote(self, params: GenerationParams) -> FakeCall | FakeStream:
        response: FakeCall | FakeStream
        if self.name == "generate_stream":
            response = FakeStream(self.handle, params)
        else:
            response = FakeCall(self.handle, params)
        self.handle.log.append(Call(self.name, params, dict(self.handle.options_used), response))
        return response


class FakeResult:
    """An already-answered `DeploymentResponse` (for the status probes)."""

    def __init__(self, result: Any) -> None:
        self.result = result

    def __await__(self) -> Any:
        return self._run().__await__()

    async def _run(self) -> Any:
        return self.result

    def cancel(self) -> None:
        return None


class _Embed:
    """`embed`: a unit-ish vector per input (`dimensions` long, else 4), 2 tokens each."""

    def remote(self, params: EmbeddingParams) -> FakeResult:
        size = params.dimensions or 4
        rows = [[1.0] + [0.0] * (size - 1) for _ in params.inputs]
        return FakeResult(EmbeddingOutput(rows, 2 * len(params.inputs), params.model_id))


class _Counter:
    """`count_tokens`: the words of the prompt and messages (the fuzz app's tokenizer)."""

    def remote(self, params: GenerationParams) -> FakeResult:
        source = params.prompt or " ".join(m.content for m in params.messages)
        return FakeResult(len(source[:40].split()))


class _Probe:
    def __init__(self, result: dict[str, Any]) -> None:
        self.result = result

    def remote(self) -> FakeResult:
        return FakeResult(self.result)


@dataclass
class Script:
    """What one deployment does; shared by a handle and every clone `options()` makes."""

    behave: Behaviour = answer
    delay_s: float = 0.0
    fail_after_first: bool = False  # streams: the error comes after one chunk
    log: list[Call] = field(default_factory=list)
    word_delay_s: Callable[[GenerationParams], float] = lambda params: 0.0  # streams


class ScriptedHandle:
    """A deployment handle answering from its `script`, which a test may change at any time
    (the catalog's clones, made by `options()`, share it)."""

    def __init__(
        self,
        behave: Behaviour = answer,
        delay_s: float = 0.0,
        script: Script | None = None,
        options: dict[str, Any] | None = None,
        name: str | None = None,
    ) -> None:
        self.script = script or Script(behave, delay_s)
        self.name = name
        self.options_used: dict[str, Any] = options or {}
        self.generate = _Method(self, "generate")
        self.generate_stream = _Method(self, "generate_stream")
        self.embed = _Embed()
        self.count_tokens = _Counter()
        self.describe = _Probe({"metadata": {"context_length": 512}})
        upstream = {"provider": name} if name else {}
        self.check_upstream = _Probe({**upstream, "key_configured": True, "reachable": True})

    @property
    def behave(self) -> Behaviour:
        return self.script.behave

    @behave.setter
    def behave(self, behave: Behaviour) -> None:
        self.script.behave = behave

    @property
    def delay_s(self) -> float:
        return self.script.delay_s

    @property
    def fail_after_first(self) -> bool:
        return self.script.fail_after_first

    @property
    def log(self) -> list[Call]:
        return self.script.log

    def options(self, **options: Any) -> "ScriptedHandle":
        """Like `DeploymentHandle.options`: a new handle, the options merged over these."""
        merged = {**self.options_used, **options}
        return ScriptedHandle(script=self.script, options=merged, name=self.name)

    def calls(self, method: str = "generate") -> list[Call]:
        return [call for call in self.log if call.method == method]
