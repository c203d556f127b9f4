"""From one `GenerationParams` to its rows and back: prompt, samplers, answer, stream chunks.

`RequestPlanner` (one per replica) renders the prompt (chat template, tools), refuses what
this engine cannot honour (400 naming the field and the model), and builds one
`RowSampler` per choice (`n` rows of one batch). `to_output` and `ChoiceStreams` turn the
decoded rows back into a `GenerationOutput` or `StreamChunk`s: choice 0 is the output
itself, choices 1..n-1 go to `more_choices`, token counts cover every choice.
"""

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from deployments.engine.chat_template import render_chat_prompt
from deployments.engine.decoding import RowState, SamplingParams
from deployments.engine.grammar import Grammars
from deployments.engine.sampling import (
    MAX_TOP_LOGPROBS,
    RowSampler,
    RowSampling,
    TokenTable,
)
from deployments.engine.tool_calls import (
    forced_call_grammar,
    openai_messages,
    parse_tool_calls,
    plain_messages,
    tool_schema,
    tools_offered,
)
from deployments.engine.tool_stream import ToolStream
from serve_app.contracts.errors import InvalidRequestError
from serve_app.contracts.wire import Choice, GenerationOutput, GenerationParams, StreamChunk


@dataclass(slots=True)
class BatchRows:
    """The rows of a batch's runnable requests, `n` per request, in request order."""

    prompt_ids: list[list[int]] = field(default_factory=list)
    sampling: list[SamplingParams] = field(default_factory=list)
    samplers: list[RowSampler] = field(default_factory=list)
    item_of_row: list[int] = field(default_factory=list)

    def add(
        self,
        index: int,
        prompt_ids: list[int],
        sampling: SamplingParams,
        samplers: list[RowSampler],
    ) -> None:
        for sampler in samplers:
            self.prompt_ids.append(prompt_ids)
            self.sampling.append(sampling)
            self.samplers.append(sampler)
            self.item_of_row.append(index)

    def of_item(self, rows: list[RowState], index: int) -> list[RowState]:
        return [row for row, owner in zip(rows, self.item_of_row) if owner == index]


class RequestPlanner:
    """Per-replica helpers shared by every request of one model (thread-safe)."""

    def __init__(self, engine: Any, model_id: str, grammar_cache_size: int = 64) -> None:
        self.engine = engine
        self.model_id = model_id
        self.grammar_cache_size = grammar_cache_size
        tokenizer = engine.tokenizer
        template = getattr(tokenizer, "chat_template", None)
        self.has_chat_template = isinstance(template, str) and bool(template)
        self.template_takes_tools = self.has_chat_template and "tools" in str(template)
        config = getattr(engine.model, "config", None)
        self.vocab_size = int(getattr(config, "vocab_size", 0) or len(tokenizer))
        self.tokens = TokenTable(tokenizer, self.vocab_size)
        self._grammars: Grammars | None = None
        self._lock = threading.Lock()

    @property
    def grammars(self) -> Grammars:
        with self._lock:
            if self._grammars is None:
                self._grammars = Grammars(
                    self.engine.tokenizer, self.model_id, self.grammar_cache_size
                )
            return self._grammars

    def check(self, params: GenerationParams) -> None:
        """Refuse what this engine cannot honour (400 naming the field and the model)."""
        for m_index, message in enumerate(params.messages):
            for p_index, part in enumerate(message.parts):
                if part.type == "image":
                    raise InvalidRequestError(
                        f"Model {self.model_id!r} takes no images "
                        f"(messages[{m_index}].content[{p_index}]).",
                        param=f"messages[{m_index}].content[{p_index}]",
                        code="unsupported_content",
                    )
        if params.top_logprobs > MAX_TOP_LOGPROBS:
            raise InvalidRequestError(
                f"top_logprobs is at most {MAX_TOP_LOGPROBS}.", param="top_logprobs"
            )
        for token_id, _ in params.logit_bias:
            if not 0 <= token_id < self.vocab_size:
                raise InvalidRequestError(
                    f"logit_bias names token {token_id}, outside model {self.model_id!r}'s "
                    f"vocabulary of {self.vocab_size} tokens.",
                    param="logit_bias",
                )
        choice = params.tool_choice
        names = {t.name for t in params.tools}
        if choice is not None and choice.mode == "tool" and choice.name not in names:
            raise InvalidRequestError(
                f"tool_choice names {choice.name!r}, which is not among the tools.",
                param="tool_choice",
            )
        forced = choice is not None and choice.mode in ("required", "tool")
        strict = [t.name for t in params.tools if t.strict]
        if strict and not forced and (choice is None or choice.mode != "none"):
            # A call the model may or may not make is parsed, not decoded under a grammar:
            # its arguments could not be guaranteed to fit a strict schema.
            raise InvalidRequestError(
                f"Model {self.model_id!r} enforces strict tools ({', '.join(strict)}) only "
                "when a call is forced: use tool_choice 'required' or a named tool, or drop "
                "strict.",
                param="tools",
            )

    def prompt_text(self, params: GenerationParams) -> str:
        if not params.messages:
            return params.prompt
        tokenizer = self.engine.tokenizer
        tools = tools_offered(params)
        if self.template_takes_tools:
            kwargs = {"tools": [tool_schema(t) for t in tools]} if tools else {}
            rendered = tokenizer.apply_chat_template(
                openai_messages(params), add_generation_prompt=True, tokenize=False, **kwargs
            )
            return str(rendered)
        messages = plain_messages(params)
        if self.has_chat_template:
            rendered = tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=False
            )
            return str(rendered)
        return render_chat_prompt(messages)

    def samplers(self, params: GenerationParams) -> list[RowSampler]:
        """One sampler per choice; compiles (or takes from the cache) the grammar."""
        sampling = RowSampling.from_params(params)
        grammar = self._grammar(params)
        samplers = []
        for index in range(max(1, params.n)):
            constraint = grammar() if grammar is not None else None
            samplers.append(
                RowSampler(
                    sampling,
                    self.vocab_size,
                    self.engine.device,
                    self.tokens,
                    constraint=constraint,
                    choice_index=index,
                    max_tokens=params.max_tokens,
                )
            )
        return samplers

    def _grammar(self, params: GenerationParams) -> Any:
        forced = forced_call_grammar(params)
        if forced is not None:
            self.grammars.for_lark(forced, param="tools")  # compile now: errors are 400s
            return lambda: self.grammars.for_lark(forced, param="tools")
        if params.output_format is not None:
            output_format = params.output_format
            self.grammars.for_output(output_format)
            return lambda: self.grammars.for_output(output_format)
        return None

    def parses_tools(self, params: GenerationParams) -> bool:
        return bool(tools_offered(params))


def _finish(row: RowState, has_calls: bool) -> str:
    reason = row.finish_reason or "length"
    return "tool_calls" if has_calls and reason == "stop" else reason


def to_output(
    params: GenerationParams, rows: Sequence[RowState], served_model: str, tools: bool
) -> GenerationOutput:
    choices = []
    for index, row in enumerate(rows):
        parsed = parse_tool_calls(row.text, params) if tools else None
        text = parsed.text if parsed else row.text
        calls = parsed.calls if parsed else ()
        logprobs = tuple(row.logprobs) if params.logprobs or params.top_logprobs else None
        choices.append(Choice(index, text, _finish(row, bool(calls)), calls, logprobs))
    first = choices[0]
    return GenerationOutput(
        text=first.text,
        input_tokens=rows[0].input_tokens,
        output_tokens=sum(len(row.token_ids) for row in rows),
        finish_reason=first.finish_reason,
        served_model=served_model,
        tool_calls=first.tool_calls,
        logprobs=first.logprobs,
        more_choices=tuple(choices[1:]),
    )


class ChoiceStreams:
    """The stream chunks of one request's rows, step by step."""

    def __init__(self, params: GenerationParams, served_model: str, tools: bool) -> None:
        self.params = params
        self.served_model = served_model
        self.logprobs = params.logprobs or params.top_logprobs > 0
        names = {t.name for t in tools_offered(params)}
        parallel = params.tool_choice.parallel if params.tool_choice else True
        self.tool_streams = [
            ToolStream(names, parallel) if tools else None for _ in range(max(1, params.n))
        ]
        self.done = [False] * len(self.tool_streams)

    def step(self, rows: Sequence[RowState], cancelled: bool) -> list[StreamChunk]:
        total = sum(len(row.token_ids) for row in rows)
        chunks = []
        for index, row in enumerate(rows):
            if self.done[index]:
                continue
            if cancelled and not row.finished:
                row.finish_reason = "cancelled"
            chunk = self._chunk(index, row, total)
            if chunk is not None:
                chunks.append(chunk)
        return chunks

    def _chunk(self, index: int, row: RowState, total: int) -> StreamChunk | None:
        text = row.take_delta()
        tool_stream = self.tool_streams[index]
        deltas: tuple[Any, ...] = ()
        if tool_stream is not None:
            text, found = tool_stream.feed(row.text[: row.emitted], final=row.finished)
            deltas = tuple(found)
        if tool_stream is not None and tool_stream.calls and row.finish_reason == "stop":
            row.finish_reason = "tool_calls"
        logprobs = tuple(row.take_logprobs()) if self.logprobs else None
        if row.finished:
            self.done[index] = True
        elif not text and not deltas and not logprobs:
            return None
        return StreamChunk(
            text=text,
            finish_reason=row.finish_reason,
            input_tokens=row.input_tokens,
            output_tokens=total,
            served_model=self.served_model,
            index=index,
            tool_calls=deltas,
            logprobs=logprobs,
        )
