"""Per-row sampling: one `RowSampler` per generated choice, called once per decode step.

The decode loop (static or continuous batching) owns the model and the KV cache; for each
row it hands the row's last-position logits to `RowSampler.next_token`, which applies, in
OpenAI's order: the grammar mask (structured output, forced tool calls), `logit_bias`,
presence/frequency penalties over the tokens generated so far, then temperature, `top_k`
and `top_p`, and draws from the row's own `torch.Generator` when the request has a `seed`
(the same seed gives the same text; choice `i` of `n` uses its own stream). It returns the
token and, when asked, its log probability record (chosen token plus the `top_logprobs`
most likely alternatives, with token text and UTF-8 bytes).

Log probabilities are those of the model's own distribution (`log_softmax` of the raw
logits, before bias, penalties, temperature or grammar), as vLLM reports them by default.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from serve_app.contracts.wire import GenerationParams, TokenLogprob, TopLogprob

MAX_TOP_LOGPROBS = 20
# JSON punctuation that ends a string, number, array or object (or moves to the next item).
CLOSING_BYTES = frozenset(b'"}],')


class RowConstraint(Protocol):
    """Grammar state of one row (see `deployments.engine.grammar`)."""

    def allowed(self) -> torch.Tensor:
        """Boolean mask over the tokenizer's vocabulary of the tokens allowed next."""
        ...

    def advance(self, token_id: int) -> None: ...

    @property
    def done(self) -> bool:
        """The grammar is complete: only the end of the answer may follow."""
        ...


@dataclass(frozen=True, slots=True)
class RowSampling:
    """What one row samples with, resolved from `GenerationParams` (or built by tests)."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int | None = None
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: tuple[tuple[int, float], ...] = ()
    logprobs: bool = False
    top_logprobs: int = 0

    @classmethod
    def from_params(cls, params: GenerationParams) -> "RowSampling":
        return cls(
            temperature=params.temperature if params.temperature is not None else 1.0,
            top_p=params.top_p if params.top_p is not None else 1.0,
            top_k=params.top_k,
            seed=params.seed,
            presence_penalty=params.presence_penalty or 0.0,
            frequency_penalty=params.frequency_penalty or 0.0,
            logit_bias=params.logit_bias,
            logprobs=params.logprobs or params.top_logprobs > 0,
            top_logprobs=params.top_logprobs,
        )

    @property
    def plain(self) -> bool:
        """Only temperature/top_p: the loop may sample such rows together, vectorized."""
        return (
            self.top_k is None
            and self.seed is None
            and not self.presence_penalty
            and not self.frequency_penalty
            and not self.logit_bias
            and not self.logprobs
        )


@dataclass(frozen=True, slots=True)
class SampledToken:
    token_id: int
    logprob: TokenLogprob | None = None


class TokenTable:
    """Each token id's UTF-8 bytes and display text, built once per tokenizer.

    Byte-level BPE tokenizers (GPT-2 and most current models) map bytes to printable
    characters; the table maps them back, so a token holding half of a multi-byte
    character has its true bytes (and text with `\\xNN` escapes, as OpenAI shows it)."""

    def __init__(self, tokenizer: Any, vocab_size: int) -> None:
        pieces = tokenizer.convert_ids_to_tokens(list(range(min(vocab_size, len(tokenizer)))))
        byte_level = _is_byte_level(tokenizer)
        decoder = {char: byte for byte, char in _bytes_to_unicode().items()}
        special = set(getattr(tokenizer, "all_special_tokens", ()))
        table: list[bytes] = []
        for token_id, piece in enumerate(pieces):
            if piece is None:
                table.append(b"")
            elif byte_level and piece not in special and all(c in decoder for c in piece):
                table.append(bytes(decoder[c] for c in piece))
            else:
                table.append(tokenizer.decode([token_id]).encode("utf-8"))
        table.extend(b"" for _ in range(vocab_size - len(table)))
        self._bytes = table
        self._text = [b.decode("utf-8", errors="backslashreplace") for b in table]
        self.closing = torch.tensor(
            [bool(b) and all(c in CLOSING_BYTES for c in b) for b in table], dtype=torch.bool
        )
        eos = getattr(tokenizer, "eos_token_id", None)
        if isinstance(eos, int) and 0 <= eos < len(table):
            self.closing[eos] = True  # ending the answer closes everything the grammar let end

    def bytes_of(self, token_id: int) -> bytes:
        return self._bytes[token_id]

    def text_of(self, token_id: int) -> str:
        return self._text[token_id]

    def record(self, token_id: int, logprob: float) -> TopLogprob:
        return TopLogprob(self._text[token_id], logprob, tuple(self._bytes[token_id]))


def _is_byte_level(tokenizer: Any) -> bool:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    decoder = getattr(backend, "decoder", None)
    return decoder is not None and "ByteLevel" in type(decoder).__name__


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (as in `tokenizers`' ByteLevel)."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {byte: chr(char) for byte, char in zip(printable, chars)}


def wrap_up_window(max_tokens: int) -> int:
    """How many tokens before max_tokens a grammar row starts closing what is open."""
    return max(4, max_tokens // 4)


def row_seed(seed: int, choice_index: int) -> int:
    """The generator seed of choice `choice_index` of a seeded request (distinct per choice)."""
    return (seed * 1_000_003 + choice_index) % (2**63 - 1)


class RowSampler:
    """Samples one row's tokens; keeps the row's token counts and grammar state."""

    def __init__(
        self,
        sampling: RowSampling,
        vocab_size: int,
        device: torch.device,
        tokens: TokenTable | None = None,
        constraint: RowConstraint | None = None,
        choice_index: int = 0,
        max_tokens: int | None = None,
    ) -> None:
        self.sampling = sampling
        self.tokens = tokens
        self.constraint = constraint
        self.device = device
        self.generated = 0
        self._wrap_up_at = None if max_tokens is None else max_tokens - wrap_up_window(max_tokens)
        self._generator: torch.Generator | None = None
        if sampling.seed is not None:
            self._generator = torch.Generator(device=device)
            self._generator.manual_seed(row_seed(sampling.seed, choice_index))
        penalized = bool(sampling.presence_penalty or sampling.frequency_penalty)
        self._counts = torch.zeros(vocab_size, device=device) if penalized else None
        self._bias: torch.Tensor | None = None
        if sampling.logit_bias:
            self._bias = torch.zeros(vocab_size, device=device)
            for token_id, bias in sampling.logit_bias:
                if 0 <= token_id < vocab_size:
                    self._bias[token_id] += bias

    @property
    def plain(self) -> bool:
        """No per-row work: the loop may sample this row with the vectorized sampler."""
        return self.constraint is None and self.sampling.plain

    @property
    def done(self) -> bool:
        """The row's grammar is complete; the loop ends the row (finish reason `stop`)."""
        return self.constraint is not None and self.constraint.done

    def next_token(self, logits: torch.Tensor) -> SampledToken:
        """Pick the next token from one row's logits (shape `[vocab]`) and advance."""
        raw = logits.float()
        scores = self.processed(raw)
        token_id = self._draw(scores)
        record = self._logprob(raw, token_id) if self.sampling.logprobs else None
        self.observe(token_id)
        return SampledToken(token_id, record)

    def processed(self, raw: torch.Tensor) -> torch.Tensor:
        """Grammar mask, logit_bias and penalties applied (a new tensor)."""
        scores = raw.clone()
        if self.constraint is not None:
            allowed = self.constraint.allowed().to(scores.device)
            width = min(len(allowed), len(scores))
            scores[width:] = float("-inf")
            scores[:width].masked_fill_(~allowed[:width], float("-inf"))
            if self._wrap_up_at is not None and self.generated >= self._wrap_up_at:
                self._prefer_closing(scores, allowed[:width])
        if self._bias is not None:
            scores += self._bias
        if self._counts is not None:
            scores -= self._counts * self.sampling.frequency_penalty
            scores -= (self._counts > 0).float() * self.sampling.presence_penalty
        return scores

    def _prefer_closing(self, scores: torch.Tensor, allowed: torch.Tensor) -> None:
        """Near the end of the row's budget, keep only closing punctuation where the grammar
        allows any, so that open strings, numbers and containers end before max_tokens."""
        if self.tokens is None:
            return
        closing = self.tokens.closing[: len(allowed)].to(allowed.device) & allowed
        if bool(closing.any()):
            scores[: len(closing)].masked_fill_(~closing, float("-inf"))

    def observe(self, token_id: int) -> None:
        """Count a generated token and advance the grammar (also for tokens chosen elsewhere)."""
        self.generated += 1
        if self._counts is not None and 0 <= token_id < len(self._counts):
            self._counts[token_id] += 1
        if self.constraint is not None:
            self.constraint.advance(token_id)

    def _draw(self, scores: torch.Tensor) -> int:
        sampling = self.sampling
        if sampling.temperature <= 0:
            return int(scores.argmax())
        scores = scores / max(sampling.temperature, 1e-5)
        if sampling.top_k is not None and 0 < sampling.top_k < len(scores):
            kth = torch.topk(scores, sampling.top_k).values[-1]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        probs = torch.softmax(scores, dim=-1)
        if sampling.top_p < 1.0:
            sorted_probs, order = probs.sort(descending=True)
            outside = (sorted_probs.cumsum(-1) - sorted_probs) >= sampling.top_p
            probs = torch.zeros_like(probs).scatter(0, order, sorted_probs.masked_fill(outside, 0))
        return int(torch.multinomial(probs, 1, generator=self._generator))

    def _logprob(self, raw: torch.Tensor, token_id: int) -> TokenLogprob:
        table = self.tokens
        if table is None:
            raise RuntimeError("logprobs need the tokenizer's TokenTable")
        logprobs = torch.log_softmax(raw, dim=-1)
        top: tuple[TopLogprob, ...] = ()
        count = min(self.sampling.top_logprobs, MAX_TOP_LOGPROBS)
        if count > 0:
            values, ids = torch.topk(logprobs, count)
            top = tuple(table.record(int(i), float(v)) for v, i in zip(values, ids))
        chosen = float(logprobs[token_id])
        return TokenLogprob(
            token=table.text_of(token_id),
            logprob=chosen,
            bytes=tuple(table.bytes_of(token_id)),
            top=top,
        )


def sample_plain(
    logits: torch.Tensor, temperatures: torch.Tensor, top_ps: torch.Tensor
) -> torch.Tensor:
    """One token per row for plain rows: greedy where temperature is 0, else nucleus."""
    greedy = logits.argmax(dim=-1)
    sampled_rows = temperatures > 0
    if not bool(sampled_rows.any()):
        return greedy
    scaled = logits.float() / temperatures.clamp(min=1e-5).unsqueeze(-1)
    probs = torch.softmax(scaled, dim=-1)
    sorted_probs, sorted_idx = probs.sort(dim=-1, descending=True)
    cumulative = sorted_probs.cumsum(dim=-1)
    outside_nucleus = (cumulative - sorted_probs) >= top_ps.unsqueeze(-1)
    sorted_probs = sorted_probs.masked_fill(outside_nucleus, 0.0)
    choice = torch.multinomial(sorted_probs, num_samples=1)
    sampled = sorted_idx.gather(-1, choice).squeeze(-1)
    return torch.where(sampled_rows, sampled, greedy)


def sample_rows(
    logits: torch.Tensor, samplers: Sequence[RowSampler], active: Sequence[bool] | None = None
) -> list[SampledToken]:
    """Next token of every row of a batch (`logits`: `[rows, vocab]`): plain rows together,
    the others through their own sampler. Inactive rows (finished) get a dummy token 0."""
    rows = len(samplers)
    live = list(active) if active is not None else [True] * rows
    out: list[SampledToken] = [SampledToken(0)] * rows
    plain = [i for i in range(rows) if live[i] and samplers[i].plain]
    if plain:
        device = logits.device
        temps = torch.tensor([samplers[i].sampling.temperature for i in plain], device=device)
        tops = torch.tensor([samplers[i].sampling.top_p for i in plain], device=device)
        chosen = logits if len(plain) == rows else logits[plain]
        for i, token in zip(plain, sample_plain(chosen, temps, tops).tolist()):
            out[i] = SampledToken(int(token))
    for i in range(rows):
        if live[i] and not samplers[i].plain:
            out[i] = samplers[i].next_token(logits[i])
    return out
