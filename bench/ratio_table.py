"""Our gateway against LiteLLM, CPU ms per request, from the peer harness's `summary.md`.

    .venv/bin/python -m bench.ratio_table /tmp/peerbench/results-.../summary.md

Prints one Markdown table: per path, upstream delay and concurrency, our CPU ms/req,
LiteLLM's, and the ratio (ours / LiteLLM; lower is better), plus the errors of both and the
memory (PSS at the end) of both process trees. Both come from the same interleaved run.
"""

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

# (label, our target, LiteLLM's target) in the order of the table
PATHS = (
    ("OpenAI chat", "gateway-openai", "litellm-openai"),
    ("native generate (vs LiteLLM chat)", "gateway-native", "litellm-openai"),
    ("Anthropic messages", "gateway-anthropic", "litellm-anthropic"),
    ("OpenAI chat, streamed", "gateway-openai-stream", "litellm-openai-stream"),
)


@dataclass(frozen=True)
class Cell:
    cpu_ms: float | None
    errors: str
    p50_ms: float | None


def _number(text: str) -> float | None:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def _rows(lines: list[str], start: int) -> tuple[list[str], list[list[str]]]:
    """The header and the rows of the Markdown table that starts at `start`."""
    header = [part.strip() for part in lines[start].strip().strip("|").split("|")]
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([part.strip() for part in line.strip().strip("|").split("|")])
    return header, rows


def parse_summary(text: str) -> tuple[dict[tuple[float, int, str], Cell], dict[str, float]]:
    """(cells by (delay, c, target), PSS MiB at the end by service)."""
    lines = text.splitlines()
    cells: dict[tuple[float, int, str], Cell] = {}
    memory: dict[str, float] = {}
    delay: float | None = None
    for number, line in enumerate(lines):
        if line.startswith("## upstream delay"):
            delay = float(line.split()[3])
        elif line.startswith("| target |") and delay is not None:
            header, rows = _rows(lines, number)
            for row in rows:
                field = dict(zip(header, row))
                key = (delay, int(field["c"]), field["target"])
                cpu = _number(field["CPU ms/req"])
                cells[key] = Cell(cpu, field["errors"], _number(field["p50 ms"]))
        elif line.startswith("| service |"):
            header, rows = _rows(lines, number)
            for row in rows:
                field = dict(zip(header, row))
                pss = _number(field.get("PSS at end", "-"))
                if pss is not None:
                    memory[field["service"]] = pss
    return cells, memory


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def ratio_table(text: str) -> str:
    """Ours against LiteLLM per path and concurrency; with a baseline gateway in the same
    run (`BASELINE_REPO`, targets `base-*`), its figures and ratio too."""
    cells, memory = parse_summary(text)
    baseline = any(target.startswith("base-") for _, _, target in cells)
    head = "| path | delay ms | c | ours CPU ms/req | LiteLLM CPU ms/req | ratio "
    rule = "|---|---:|---:|---:|---:|---:|"
    if baseline:
        head += "| baseline CPU ms/req | baseline ratio "
        rule += "---:|---:|"
    out = [head + "| errors ours / LiteLLM |", rule + "---|"]
    keys = sorted({(d, c) for d, c, _ in cells})
    for label, ours, theirs in PATHS:
        for delay, c in keys:
            mine, peer = cells.get((delay, c, ours)), cells.get((delay, c, theirs))
            if mine is None or peer is None:
                continue
            row = f"| {label} | {delay:g} | {c} | {_fmt(mine.cpu_ms)} | {_fmt(peer.cpu_ms)} | "
            row += f"{_fmt(_ratio(mine.cpu_ms, peer.cpu_ms))} | "
            if baseline:
                base = cells.get((delay, c, ours.replace("gateway-", "base-")))
                base_cpu = base.cpu_ms if base else None
                row += f"{_fmt(base_cpu)} | {_fmt(_ratio(base_cpu, peer.cpu_ms))} | "
            out.append(row + f"{mine.errors} / {peer.errors} |")
    return "\n".join(out + _memory_rows(memory))


def _ratio(mine: float | None, theirs: float | None) -> float | None:
    return mine / theirs if mine and theirs else None


def _memory_rows(memory: dict[str, float]) -> list[str]:
    if "gateway" not in memory or "litellm" not in memory:
        return []
    rows = [
        "",
        "| memory, PSS at end | MiB | ratio to LiteLLM |",
        "|---|---:|---:|",
    ]
    for name in ("gateway", "gateway-base", "litellm"):
        if name in memory:
            ratio = _ratio(memory[name], memory["litellm"])
            rows.append(f"| {name} (whole process tree) | {memory[name]:.0f} | {_fmt(ratio)} |")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("summary", type=Path, help="summary.md of a bench/run_peer.sh run")
    options = parser.parse_args(argv)
    table = ratio_table(options.summary.read_text())
    if table.count("\n") < 2:
        print(f"no gateway/LiteLLM pairs in {options.summary}", file=sys.stderr)
        return 1
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
