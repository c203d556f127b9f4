"""Incremental detokenization: each new token costs a decode of a few tokens, not of the
whole output (the cost per token does not grow with the output length).

The usual read/prefix-offset scheme: decode the tokens since `prefix_offset` with and without
the newest ones and append the difference, once it no longer ends in a partial character.
A few prompt tokens seed the window, so tokenizers that drop a leading space at the start of
a decode (SentencePiece) still give the right text.
"""

from collections.abc import Sequence
from typing import Any

REPLACEMENT_CHAR = "\ufffd"
_PROMPT_CONTEXT_TOKENS = 5


class IncrementalDetokenizer:
    __slots__ = ("_ids", "_prefix_offset", "_read_offset", "_tokenizer")

    def __init__(self, tokenizer: Any, prompt_ids: Sequence[int] = ()) -> None:
        self._tokenizer = tokenizer
        self._ids: list[int] = list(prompt_ids[-_PROMPT_CONTEXT_TOKENS:])
        self._prefix_offset = 0
        self._read_offset = len(self._ids)

    def _decode(self, ids: list[int]) -> str:
        return str(self._tokenizer.decode(ids, skip_special_tokens=True))

    def add(self, token_id: int) -> str:
        """Append one token; return the text it completes ("" while a character is partial)."""
        self._ids.append(token_id)
        prefix = self._decode(self._ids[self._prefix_offset : self._read_offset])
        full = self._decode(self._ids[self._prefix_offset :])
        if len(full) <= len(prefix) or full.endswith(REPLACEMENT_CHAR):
            return ""
        self._prefix_offset = self._read_offset
        self._read_offset = len(self._ids)
        # Keep only the window: the list must not grow with the output either.
        if self._prefix_offset > 64:
            del self._ids[: self._prefix_offset]
            self._read_offset -= self._prefix_offset
            self._prefix_offset = 0
        return full[len(prefix) :]

    def flush(self) -> str:
        """Text still held back at the end (a partial character shows as U+FFFD)."""
        prefix = self._decode(self._ids[self._prefix_offset : self._read_offset])
        full = self._decode(self._ids[self._prefix_offset :])
        self._prefix_offset = self._read_offset = len(self._ids)
        return full[len(prefix) :] if len(full) > len(prefix) else ""
