"""benchmarks/cpu.py after its timing core moved into the package: it still starts, and it
times with the same functions as ``nnxc bench --compare onnxruntime``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from benchmarks import cpu
from compiler.benchmark import interleaved, ort_session

REPO = Path(__file__).resolve().parents[2]


def test_cpu_benchmark_uses_the_package_timing_core() -> None:
    assert cpu.interleaved is interleaved
    assert cpu.ort_session is ort_session


def test_cpu_benchmark_help() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "benchmarks.cpu", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert "--blocks" in r.stdout and "--budget" in r.stdout
