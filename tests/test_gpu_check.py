"""bench/gpu_check.py: the no-GPU skip (as a subprocess) and the pure helpers.

The `--allow-cpu` and GPU paths start Ray and deploy models; they are run by hand, not here.
"""

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "gpu_check.py"
# Runs the script as __main__ and reports its exit code and whether Ray was ever imported.
WRAPPER = """
import json, runpy, sys
sys.argv = [sys.argv[1]]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
    code = 0
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "ray_imported": "ray" in sys.modules}))
"""


@pytest.fixture(scope="module")
def gpu_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_check_under_test", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_skips_without_a_gpu_quickly_and_without_ray(tmp_path: Path) -> None:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "RAY_TMPDIR": str(tmp_path / "ray")}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", WRAPPER, str(SCRIPT)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=20,
    )
    elapsed = time.perf_counter() - started
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0] == "gpu_check: skipped: no CUDA GPU visible"
    assert json.loads(lines[-1]) == {"code": 0, "ray_imported": False}
    assert len(lines) == 2
    assert not (tmp_path / "ray").exists()
    assert elapsed < 20


def test_parse_size(gpu_check: ModuleType) -> None:
    assert gpu_check.parse_size("12x768") == (12, 768)
    assert gpu_check.parse_size("2X64") == (2, 64)
    for bad in ("12", "12x", "x768", "0x64", "2x64x3", "-2x64", "axb"):
        with pytest.raises(argparse.ArgumentTypeError):
            gpu_check.parse_size(bad)


def test_head_count_divides_the_width(gpu_check: ModuleType) -> None:
    assert gpu_check.head_count(768) == 12
    assert gpu_check.head_count(64) == 1
    assert gpu_check.head_count(32) == 1
    assert gpu_check.head_count(200) == 2  # 200 // 64 = 3 does not divide 200


def test_parse_args_and_defaults(gpu_check: ModuleType) -> None:
    options = gpu_check.parse_args(["--large", "4x256", "--requests", "10"])
    assert options.large == (4, 256) and options.demo_dir == Path("models/demo")
    gpu = gpu_check.apply_defaults(options, True)
    assert (gpu.requests, gpu.concurrency, gpu.max_tokens, gpu.large) == (10, 32, 64, (4, 256))
    cpu = gpu_check.apply_defaults(gpu_check.parse_args(["--allow-cpu"]), False)
    assert cpu.allow_cpu and (cpu.requests, cpu.concurrency, cpu.max_tokens) == (32, 8, 8)
    assert cpu.large == (2, 64)
    with_dir = gpu_check.apply_defaults(gpu_check.parse_args(["--large-dir", "/m"]), True)
    assert with_dir.large is None and with_dir.large_dir == Path("/m")


@pytest.mark.parametrize(
    "argv", [["--large", "12by768"], ["--large", "2x64", "--large-dir", "/m"], ["--nope"]]
)
def test_parse_args_rejects(gpu_check: ModuleType, argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        gpu_check.parse_args(argv)
    assert exc.value.code == 2


def test_percentile_nearest_rank(gpu_check: ModuleType) -> None:
    values = [float(v) for v in range(100, 0, -1)]  # unsorted on purpose
    assert gpu_check.percentile(values, 50) == 50.0
    assert gpu_check.percentile(values, 99) == 99.0
    assert gpu_check.percentile(values, 100) == 100.0
    assert gpu_check.percentile([7.0], 99) == 7.0
    assert gpu_check.percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0


def _replica(name: str, allocated: float | None) -> dict[str, object]:
    return {
        "replica": name,
        "node": "abc",
        "cuda_visible_devices": "0",
        "device": "cuda" if allocated is not None else "cpu",
        "dtype": "bfloat16" if allocated is not None else "float32",
        "parameters": 1234,
        "average_batch_size": 3.5,
        "allocated_mib": allocated,
        "max_allocated_mib": allocated,
        "reserved_mib": allocated,
        "gpu_used_mib": allocated,
    }


def test_format_tables(gpu_check: ModuleType) -> None:
    load = {"requests": 8, "rps": 4.5, "output_tokens_per_s": 36.0, "p50_ms": 10.0, "p99_ms": 20.0}
    report = {
        "gpu": None,
        "settings": {"requests": 8},
        "models": [
            {
                "model": "m-gpu",
                "load": load,
                "replicas": [_replica("r1", 12.5), _replica("r2", 13)],
            },
            {"model": "m-cpu", "load": load, "replicas": [_replica("r3", None)]},
        ],
    }
    text = gpu_check.format_tables(report)
    lines = text.splitlines()
    assert "| m-gpu | 8 | 4.5 | 36.0 | 10.0 | 20.0 |" in lines
    assert (
        "| m-gpu | r1 | abc | 0 | cuda | bfloat16 | 1234 | 3.5 | 12.5 | 12.5 | 12.5 | 12.5 |"
        in lines
    )
    assert "| m-cpu | r3 | abc | 0 | cpu | float32 | 1234 | 3.5 | — | — | — | — |" in lines
    table = [line for line in lines if line.startswith("| model | replica")]
    separator = lines[lines.index(table[0]) + 1]
    assert table[0].count("|") == separator.count("|") == lines[-1].count("|")
