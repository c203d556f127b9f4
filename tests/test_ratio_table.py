"""`bench/ratio_table.py`: the `make bench` table read from the harness's summary.md."""

from bench.ratio_table import parse_summary, ratio_table

HEAD = (
    "| target | c | used | req/s | p50 ms | p50 range | p90 ms | p99 ms | errors | Δp50 ms |"
    " rps ratio | CPU ms/req | req/s/core | target CPU% | upstream CPU% | loadgen CPU% |"
    " other CPU% |\n"
    "|---|---:|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
)


def row(target: str, c: int, cpu: str, errors: str = "0/200") -> str:
    return (
        f"| {target} | {c} | 1/1 | 100.0 | 5.00 | 5.00..5.00 | 6.00 | 7.00 | {errors} | 1.00 |"
        f" 0.010 | {cpu} | 100 | 50 | 5 | 1 | 20 |\n"
    )


SUMMARY = (
    "# Gateway benchmark summary\n\n## upstream delay 0 ms\n\n"
    + HEAD
    + row("direct-openai", 1, "-")
    + row("litellm-openai", 1, "8.00")
    + row("gateway-openai", 1, "2.00")
    + row("litellm-openai", 64, "10.00")
    + row("gateway-openai", 64, "4.00", "3/1000")
    + row("gateway-anthropic", 64, "3.00")
    + "\n## memory (each service's whole process tree, MiB)\n\n"
    + "| service | processes | RSS idle | RSS peak during runs | RSS at end | PSS idle |"
    + " PSS at end |\n|---|---:|---:|---:|---:|---:|---:|\n"
    + "| litellm | 1 | 300.0 | 400.0 | 400.0 | 300.0 | 350.0 |\n"
    + "| gateway | 12 | 900.0 | 950.0 | 950.0 | 600.0 | 700.0 |\n"
)


def test_cells_and_memory_are_read() -> None:
    cells, memory = parse_summary(SUMMARY)
    assert cells[(0.0, 64, "gateway-openai")].cpu_ms == 4.0
    assert cells[(0.0, 1, "direct-openai")].cpu_ms is None
    assert memory == {"litellm": 350.0, "gateway": 700.0}


def test_ratios_pair_each_path_with_litellms_own() -> None:
    lines = ratio_table(SUMMARY).splitlines()
    assert "| OpenAI chat | 0 | 1 | 2.00 | 8.00 | 0.25 | 0/200 / 0/200 |" in lines
    assert "| OpenAI chat | 0 | 64 | 4.00 | 10.00 | 0.40 | 3/1000 / 0/200 |" in lines
    # no litellm-anthropic cell in this summary: no row rather than a wrong pairing
    assert not any(line.startswith("| Anthropic") for line in lines)
    assert "| gateway (whole process tree) | 700 | 2.00 |" in lines


def test_a_baseline_gateway_gets_its_own_columns() -> None:
    summary = SUMMARY.replace(row("gateway-anthropic", 64, "3.00"), row("base-openai", 64, "6.00"))
    lines = ratio_table(summary).splitlines()
    assert "| OpenAI chat | 0 | 64 | 4.00 | 10.00 | 0.40 | 6.00 | 0.60 | 3/1000 / 0/200 |" in lines
    assert "| OpenAI chat | 0 | 1 | 2.00 | 8.00 | 0.25 | - | - | 0/200 / 0/200 |" in lines
