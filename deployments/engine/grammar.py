"""Grammar-constrained decoding with llguidance: structured output and forced tool calls.

`Grammars` (one per deployment replica) compiles a JSON Schema or a Lark grammar once per
distinct text and keeps the compiled matcher in an LRU; each row gets a cheap `deep_copy`
of it (`GrammarRow`), which the row's `RowSampler` asks for the allowed-token mask before
each draw and advances with the chosen token. JSON is generated compact (no whitespace
between tokens), keys in the schema's order.

A schema that llguidance cannot enforce (an unknown `format`, an unimplemented keyword
such as `dependentSchemas`, an invalid regex `pattern`) is refused with a 400 naming what
it reported, never decoded unchecked.
"""

import json
import logging
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import llguidance
import llguidance.hf
import torch

from serve_app.contracts.errors import InvalidRequestError
from serve_app.contracts.wire import OutputFormat

if TYPE_CHECKING:
    from llguidance._lib import JsonCompileOptions

logger = logging.getLogger("ray.serve")
JSON_OPTIONS: "JsonCompileOptions" = {"whitespace_flexible": False}
ANY_JSON_OBJECT: dict[str, Any] = {"type": "object"}


class GrammarRow:
    """One row's grammar state (a `RowConstraint` for `deployments.engine.sampling`)."""

    def __init__(self, matcher: Any) -> None:
        self._matcher = matcher

    def allowed(self) -> torch.Tensor:
        bias = self._matcher.compute_logit_bias()
        return torch.frombuffer(bytearray(bias), dtype=torch.uint8) > 0

    def advance(self, token_id: int) -> None:
        if not self._matcher.consume_token(token_id):
            # Only a masked-out token gets here (a bug of ours); the row ends.
            logger.error("grammar rejected token %d: %s", token_id, self._matcher.get_error())

    @property
    def done(self) -> bool:
        return bool(self._matcher.is_stopped())


class Grammars:
    """Compiled grammars of one tokenizer, cached by grammar text (thread-safe)."""

    def __init__(self, tokenizer: Any, model_id: str, cache_size: int = 64) -> None:
        self.model_id = model_id
        self.cache_size = cache_size
        self._tokenizer = llguidance.hf.from_tokenizer(tokenizer)
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.compiled = 0

    def for_output(self, output_format: OutputFormat) -> GrammarRow:
        """The grammar of a `response_format`: any JSON object, or the schema's JSON."""
        schema = output_format.schema if output_format.type == "json_schema" else None
        if output_format.type == "json_schema" and not isinstance(schema, dict):
            raise InvalidRequestError(
                "response_format json_schema needs a schema object.", param="response_format"
            )
        try:
            grammar = llguidance.LLMatcher.grammar_from_json_schema(
                json.dumps(schema or ANY_JSON_OBJECT), overrides=JSON_OPTIONS
            )
        except ValueError as exc:
            raise InvalidRequestError(
                f"Model {self.model_id!r} cannot use this schema: {exc}", param="response_format"
            ) from None
        return self.row(grammar, param="response_format")

    def for_lark(self, lark: str, param: str) -> GrammarRow:
        return self.row(lark, param=param)

    def row(self, grammar: str, param: str) -> GrammarRow:
        """A fresh matcher for `grammar` (compiled once, then copied)."""
        with self._lock:
            template = self._cache.get(grammar)
            if template is not None:
                self._cache.move_to_end(grammar)
                return GrammarRow(template.deep_copy())
        template = self._compile(grammar, param)
        with self._lock:
            self._cache[grammar] = template
            self.compiled += 1
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return GrammarRow(template.deep_copy())

    def _compile(self, grammar: str, param: str) -> Any:
        is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(
            grammar, self._tokenizer
        )
        if is_error:
            raise InvalidRequestError(
                f"Model {self.model_id!r} cannot enforce this schema: {messages[0]}",
                param=param,
                code="unsupported_schema",
            )
        matcher = llguidance.LLMatcher(self._tokenizer, grammar, log_level=0)
        if matcher.is_error():
            raise InvalidRequestError(
                f"Model {self.model_id!r} cannot enforce this schema: {matcher.get_error()}",
                param=param,
                code="unsupported_schema",
            )
        return matcher
