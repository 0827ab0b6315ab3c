"""``benchmarks/call_overhead.py`` runs end to end with tiny counts and reports per-call times
of both runtimes (no timing is asserted: the machine running tests is not a benchmark one)."""

from __future__ import annotations

import json

import pytest

from benchmarks.call_overhead import main


def test_table_has_positive_times(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--models", "relu16,add16", "--calls", "3", "--blocks", "3", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["model"] for r in rows} == {"relu16", "add16"}
    assert "numpy" in {r["feed"] for r in rows}
    for r in rows:
        assert r["nnxc_us"] > 0 and r["ort_us"] > 0 and r["samples"] >= 3
        assert r["ratio"] == pytest.approx(r["nnxc_us"] / r["ort_us"])


def test_unknown_model_is_refused() -> None:
    with pytest.raises(SystemExit):
        main(["--models", "nope"])
