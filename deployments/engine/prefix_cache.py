"""Reuse of prompt-prefix KV across requests (a system prompt, a few-shot header).

After a prefill, the KV of the prompt's longest whole-block prefix is kept, keyed by the
adapter (LoRA changes the KV) and the token ids. Every block boundary of a kept entry is
indexed, so a later prompt that shares only its first blocks still reuses them (a causal
model's KV of a prefix does not depend on what follows). Bounded in tokens, least recently
used dropped. Thread-safe: adapters are dropped from another thread.
"""

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch

KV = list[tuple[torch.Tensor, torch.Tensor]]
_Key = tuple[str, tuple[int, ...]]


@dataclass(slots=True)
class _Entry:
    kv: KV
    tokens: int
    index_keys: list[_Key]


class PrefixCache:
    def __init__(self, max_tokens: int, block_tokens: int) -> None:
        self.max_tokens = max_tokens
        self.block = block_tokens
        self._lock = threading.Lock()
        self._entries: OrderedDict[_Key, _Entry] = OrderedDict()
        self._index: dict[_Key, _Key] = {}
        self._tokens = 0
        self.hits = 0
        self.reused_tokens = 0

    def lookup(self, adapter: str, ids: Sequence[int]) -> tuple[int, KV | None]:
        """The longest cached whole-block prefix of `ids` shorter than `ids` (the last token
        is always computed, for its logits): (its length, its KV) or (0, None)."""
        if self.max_tokens == 0:
            return 0, None
        with self._lock:
            for blocks in range((len(ids) - 1) // self.block, 0, -1):
                length = blocks * self.block
                entry_key = self._index.get((adapter, tuple(ids[:length])))
                if entry_key is None:
                    continue
                self._entries.move_to_end(entry_key)
                entry = self._entries[entry_key]
                self.hits += 1
                self.reused_tokens += length
                return length, [(k[:, :, :length], v[:, :, :length]) for k, v in entry.kv]
        return 0, None

    def store(self, adapter: str, ids: Sequence[int], kv: KV, reused: int) -> None:
        """Keep the whole-block prefix of a prefilled prompt (`kv` covers all of `ids`)."""
        length = (len(ids) // self.block) * self.block
        if self.max_tokens == 0 or length <= reused or length > self.max_tokens:
            return
        key = (adapter, tuple(ids[:length]))
        kept = [(k[:, :, :length].clone(), v[:, :, :length].clone()) for k, v in kv]
        index_keys = [
            (adapter, tuple(ids[: blocks * self.block]))
            for blocks in range(1, length // self.block + 1)
        ]
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return
            self._entries[key] = _Entry(kept, length, index_keys)
            self._tokens += length
            for index_key in index_keys:
                self._index[index_key] = key
            while self._tokens > self.max_tokens:
                self._evict(next(iter(self._entries)))

    def drop_adapter(self, adapter: str) -> None:
        """Forget an adapter's prefixes (it was unloaded; a reload may bring other weights)."""
        with self._lock:
            for key in [k for k in self._entries if k[0] == adapter]:
                self._evict(key)

    def _evict(self, key: _Key) -> None:
        entry = self._entries.pop(key)
        self._tokens -= entry.tokens
        for index_key in entry.index_keys:
            if self._index.get(index_key) == key:
                del self._index[index_key]

    @property
    def tokens(self) -> int:
        return self._tokens
