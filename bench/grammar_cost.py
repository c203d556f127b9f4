"""Cost per generated token of grammar-constrained decoding on the demo model, per library.

    .venv/bin/python -m bench.grammar_cost --model models/demo [--prompts 20]

For each prompt (demo facts) and each JSON schema below, in one interleaved run: greedy
decoding of one row under llguidance, xgrammar and outlines-core (those installed: the
last two come with the `grammar-bench` extra), and free decoding of the same prompt for
the same number of tokens (EOS ignored). Reports ms per token (forward pass, mask, draw)
and the mask's share, plus each library's one-off compile time per schema. Every
constrained answer is checked to parse and validate. The engine uses llguidance.
"""

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import jsonschema
import torch

from deployments.demo.corpus import build_facts, native_prompt
from deployments.engine.sampling import TokenTable

SCHEMAS: list[dict[str, Any]] = [
    {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 12},
            "population": {"type": "integer", "minimum": 0, "maximum": 99999},
            "kind": {"enum": ["capital", "animal", "gadget"]},
        },
        "required": ["city", "population", "kind"],
        "additionalProperties": False,
    },
    {
        "type": "object",
        "properties": {
            "names": {"type": "array", "items": {"type": "string", "maxLength": 8}, "maxItems": 3},
            "place": {
                "type": "object",
                "properties": {"ok": {"type": "boolean"}, "n": {"type": "integer"}},
                "required": ["ok", "n"],
                "additionalProperties": False,
            },
        },
        "required": ["names", "place"],
        "additionalProperties": False,
    },
]
# Per library: schema -> (compile time s, factory of a per-row matcher with
# mask(logits) -> None (in place), accept(token) -> None, done() -> bool).
Matcher = tuple[Callable[[torch.Tensor], None], Callable[[int], None], Callable[[], bool]]


def llguidance_backend(tokenizer: Any, vocab: int) -> Callable[[dict], tuple[float, Callable]]:
    import llguidance
    import llguidance.hf

    lltok = llguidance.hf.from_tokenizer(tokenizer)

    def compile_schema(schema: dict) -> tuple[float, Callable[[], Matcher]]:
        started = time.perf_counter()
        grammar = llguidance.LLMatcher.grammar_from_json_schema(
            json.dumps(schema), overrides={"whitespace_flexible": False}
        )
        template = llguidance.LLMatcher(lltok, grammar, log_level=0)
        elapsed = time.perf_counter() - started

        def row() -> Matcher:
            m = template.deep_copy()

            def mask(logits: torch.Tensor) -> None:
                bias = torch.frombuffer(bytearray(m.compute_logit_bias()), dtype=torch.uint8)
                logits[: len(bias)].masked_fill_(bias == 0, float("-inf"))
                logits[len(bias) :] = float("-inf")

            return mask, m.consume_token, m.is_stopped

        return elapsed, row

    return compile_schema


def xgrammar_backend(tokenizer: Any, vocab: int) -> Callable[[dict], tuple[float, Callable]]:
    import xgrammar as xgr

    info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab)
    compiler = xgr.GrammarCompiler(info)

    def compile_schema(schema: dict) -> tuple[float, Callable[[], Matcher]]:
        started = time.perf_counter()
        compiled = compiler.compile_json_schema(json.dumps(schema), any_whitespace=False)
        elapsed = time.perf_counter() - started

        def row() -> Matcher:
            m = xgr.GrammarMatcher(compiled)
            bitmask = xgr.allocate_token_bitmask(1, vocab)

            def mask(logits: torch.Tensor) -> None:
                m.fill_next_token_bitmask(bitmask)
                xgr.apply_token_bitmask_inplace(logits.unsqueeze(0), bitmask)

            return mask, m.accept_token, m.is_terminated

        return elapsed, row

    return compile_schema


def outlines_backend(tokenizer: Any, vocab: int) -> Callable[[dict], tuple[float, Callable]]:
    from outlines_core import Guide, Index, Vocabulary
    from outlines_core.json_schema import build_regex_from_schema

    table = TokenTable(tokenizer, vocab)
    eos = tokenizer.eos_token_id
    tokens: dict[bytes, list[int]] = {}
    for token_id in range(len(tokenizer)):
        data = table.bytes_of(token_id)
        if token_id != eos and data and token_id not in tokenizer.all_special_ids:
            tokens.setdefault(data, []).append(token_id)
    vocabulary = Vocabulary(eos, tokens)

    def compile_schema(schema: dict) -> tuple[float, Callable[[], Matcher]]:
        started = time.perf_counter()
        index = Index(
            build_regex_from_schema(json.dumps(schema), whitespace_pattern=""), vocabulary
        )
        elapsed = time.perf_counter() - started

        def row() -> Matcher:
            guide = Guide(index)

            def mask(logits: torch.Tensor) -> None:
                allowed = torch.tensor(guide.get_tokens(), dtype=torch.long)
                keep = logits[allowed].clone()
                logits.fill_(float("-inf"))
                logits[allowed] = keep

            def accept(token: int) -> None:
                if not guide.is_finished():
                    guide.advance(token)

            return mask, accept, guide.is_finished

        return elapsed, row

    return compile_schema


BACKENDS = {
    "llguidance": llguidance_backend,
    "xgrammar": xgrammar_backend,
    "outlines-core": outlines_backend,
}


class Decoder:
    def __init__(self, model: Any, tokenizer: Any) -> None:
        self.model, self.tokenizer = model, tokenizer

    @torch.inference_mode()
    def run(
        self, prompt: str, steps: int, matcher: Matcher | None
    ) -> tuple[list[int], float, float]:
        """Greedy decode; returns tokens, total seconds, seconds spent in the mask."""
        ids = torch.tensor([self.tokenizer(prompt, add_special_tokens=False)["input_ids"]])
        past, out_ids, mask_s = None, [], 0.0
        started = time.perf_counter()
        for _ in range(steps):
            out = self.model(input_ids=ids, past_key_values=past, use_cache=True)
            past, logits = out.past_key_values, out.logits[0, -1].float()
            if matcher is not None:
                t = time.perf_counter()
                matcher[0](logits)
                mask_s += time.perf_counter() - t
            else:
                logits[self.tokenizer.eos_token_id] = float("-inf")
            token = int(logits.argmax())
            if matcher is not None:
                t = time.perf_counter()
                matcher[1](token)
                mask_s += time.perf_counter() - t
                if token == self.tokenizer.eos_token_id:
                    break
            out_ids.append(token)
            if matcher is not None and matcher[2]():
                break
            ids = torch.tensor([[token]])
        return out_ids, time.perf_counter() - started, mask_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="models/demo")
    parser.add_argument("--prompts", type=int, default=20)
    parser.add_argument("--max-tokens", type=int, default=120)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(args.threads)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model).eval()
    vocab = int(model.config.vocab_size)
    decoder = Decoder(model, tokenizer)
    backends, compiled = {}, {}
    for name, make in BACKENDS.items():
        try:
            backends[name] = make(tokenizer, vocab)
        except ImportError as exc:
            print(f"{name}: not installed ({exc.name}); skipped")
    for name, compile_schema in backends.items():
        compiled[name] = [compile_schema(schema) for schema in SCHEMAS]
    prompts = [native_prompt(f.question) for f in build_facts()[: args.prompts]]
    totals = {name: [0, 0.0, 0.0] for name in [*backends, "free"]}
    for prompt in prompts:
        for index, schema in enumerate(SCHEMAS):
            lengths = []
            for name in backends:
                tokens, seconds, mask_s = decoder.run(
                    prompt, args.max_tokens, compiled[name][index][1]()
                )
                jsonschema.validate(json.loads(tokenizer.decode(tokens)), schema)
                totals[name][0] += len(tokens)
                totals[name][1] += seconds
                totals[name][2] += mask_s
                lengths.append(len(tokens))
            tokens, seconds, _ = decoder.run(prompt, max(lengths), None)
            totals["free"][0] += len(tokens)
            totals["free"][1] += seconds
    print(
        f"model {args.model}, {len(prompts)} prompts x {len(SCHEMAS)} schemas, greedy, 1 row, "
        f"{args.threads} thread(s); every constrained answer validated"
    )
    print(f"{'decoding':<14}{'tokens':>8}{'ms/token':>10}{'mask ms/token':>15}{'compile ms':>12}")
    for name, (count, seconds, mask_s) in totals.items():
        compile_ms = statistics.mean(c[0] for c in compiled[name]) * 1000 if name in compiled else 0
        print(
            f"{name:<14}{count:>8}{seconds / count * 1000:>10.3f}{mask_s / count * 1000:>15.3f}"
            f"{compile_ms:>12.1f}"
        )


if __name__ == "__main__":
    main()
