"""benchmarks/memory.py on a tiny model: the compile and load children report their peaks,
the per-stage resident sizes and the budget; the JSON holds the same fields."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

pytest.register_assert_rewrite("models_fixture")

from models_fixture import TINY_W, tiny_model  # noqa: E402

from benchmarks.memory import MB, OVERHEAD, main, weight_bytes  # noqa: E402


def test_memory_benchmark_on_a_tiny_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "tiny.onnx"
    onnx.save(tiny_model(), model)
    assert weight_bytes(model) == TINY_W.nbytes
    out = tmp_path / "memory.json"
    rc = main(["--model-file", str(model), "--workdir", str(tmp_path), "--json", str(out)])
    (r,) = json.loads(out.read_text())
    assert r["weight_bytes"] == TINY_W.nbytes
    assert r["budget_bytes"] == 3 * TINY_W.nbytes + OVERHEAD
    assert list(r["stages"]) == ["import", "optimize", "lower", "build", "export"]
    peaks = [s["peak"] for s in r["stages"].values()]
    assert peaks == sorted(peaks)  # a high-water mark never falls
    assert all(0 < s["rss"] <= s["peak"] for s in r["stages"].values())
    assert 10 * MB < r["compile_peak_bytes"] < 8000 * MB
    assert r["compile_peak_bytes"] >= peaks[-1]
    assert r["compile_ok"] == (r["compile_peak_bytes"] <= r["budget_bytes"])
    assert rc == (0 if r["compile_ok"] else 1)
    assert r["artifact_bytes"] == (tmp_path / "memory" / "tiny.so").stat().st_size
    load = r["load"]
    assert 0 < load["before_load"] < load["after_load"] <= load["peak"]
    assert load["after_run"] <= load["peak"] == r["load_peak_bytes"]
    assert "tiny.onnx: weights 0 MB; compile peak" in capsys.readouterr().out
