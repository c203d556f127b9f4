"""The demo embedding model: the demo chat model's transformer without its LM head.

    python -m deployments.demo.embedding --base models/demo --out models/demo-embed [--if-missing]

No training: the trained GPT-2 body (token and position embeddings, blocks, final layer norm)
is saved as a `GPT2Model` with the same tokenizer, which `AutoModel` loads; the serving side
(`deployments.engine.embedder`) mean-pools and L2-normalises its last hidden states. Takes a
second or two. Sentences about the same fact of the demo corpus land closer together than
unrelated ones, which is all a demo needs.
"""

import argparse
from collections.abc import Sequence
from pathlib import Path


def derive_embedding_model(base_dir: Path, out_dir: Path) -> Path:
    from transformers import AutoTokenizer, GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(base_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.transformer.save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(base_dir).save_pretrained(out_dir)
    return out_dir


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Derive the demo embedding model.")
    parser.add_argument("--base", type=Path, default=Path("models/demo"))
    parser.add_argument("--out", type=Path, default=Path("models/demo-embed"))
    parser.add_argument("--if-missing", action="store_true", help="skip if --out has a model")
    args = parser.parse_args(argv)
    if args.if_missing and (args.out / "config.json").exists():
        print(f"demo embedding model already present in {args.out}; skipping")
        return 0
    derive_embedding_model(args.base, args.out)
    print(f"demo embedding model saved to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
