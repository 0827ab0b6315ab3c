"""benchmarks/coreml_vs_onnx.py runs end to end on a small model and reports sane rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="the benchmark's models are converted from PyTorch")

from benchmarks.coreml_vs_onnx import main  # noqa: E402


@pytest.mark.slow
def test_small_lstm_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "rows.json"
    args = ["--models", "lstm", "--small", "--blocks", "2", "--workdir", str(tmp_path)]
    assert main([*args, "--json", str(out)]) == 0
    (row,) = json.loads(out.read_text())
    for flavour in ("onnx", "mlmodel", "mlpackage"):
        assert row[f"{flavour}_compile_s"] > 0
        assert row[f"{flavour}_rel_err"] < 1e-4
    assert row["mlmodel_over_onnx"] > 0 and row["onnx_over_ort"] > 0
    assert "mlpackage" in capsys.readouterr().out
