"""compiler/benchmark.py and ``nnxc bench``: the timing core (counts, budget, interleaving), the
figures, benchmarking a model and an artifact, --batch, --compare onnxruntime and its
refusals, --json, the command line."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest

import compiler
from compiler.benchmark import (
    BenchReport,
    LatencyStats,
    compare_outputs,
    interleaved,
    measure,
    time_rounds,
)
from compiler.cli import main
from compiler.errors import NnxcError

pytest.register_assert_rewrite("models_fixture")

from models_fixture import tiny_expected, tiny_model  # noqa: E402

pytest_plugins = ["models_fixture"]  # fixtures: tiny_onnx, tiny_so, tiny_so_static


def assert_ordered(st: LatencyStats) -> None:
    assert 0 < st.min_ms <= st.median_ms <= st.p90_ms <= st.p99_ms <= st.max_ms
    assert st.min_ms <= st.mean_ms <= st.max_ms
    assert st.per_second > 0


# -- figures ------------------------------------------------------------------------------------
def test_latency_stats_from_known_times() -> None:
    times = [t / 1e3 for t in (5, 1, 3, 2, 4, 10, 9, 8, 7, 6)]  # 1..10 ms, shuffled
    st = LatencyStats.from_times(times, batch=4)
    assert st.runs == 10
    assert st.min_ms == pytest.approx(1) and st.max_ms == pytest.approx(10)
    assert st.median_ms == pytest.approx(5.5)
    assert st.p90_ms == pytest.approx(9.1)  # linear between the 9th and 10th
    assert st.p99_ms == pytest.approx(9.91)
    assert st.per_second == pytest.approx(10 / 0.055)
    assert st.samples_per_second == pytest.approx(4 * 10 / 0.055)
    assert LatencyStats.from_times(times).samples_per_second is None
    assert st.as_dict()["p90_ms"] == st.p90_ms
    with pytest.raises(ValueError):
        LatencyStats.from_times([])


# -- the timing core ------------------------------------------------------------------------------
def test_time_rounds_counts_warmup_and_runs() -> None:
    calls: list[str] = []
    ta, tb = time_rounds(
        [lambda: calls.append("a"), lambda: calls.append("b")], warmup=2, runs=7, block=5
    )
    assert len(ta) == len(tb) == 7
    # warm-up a b a b; round 0: a's lead-in + 5, then b's; round 1 (flipped): b's lead-in + 2, a's
    assert calls == list("abab") + ["a"] * 6 + ["b"] * 6 + ["b"] * 3 + ["a"] * 3
    assert all(t >= 0 for t in ta + tb)


def test_time_rounds_one_function_has_no_lead_in_runs() -> None:
    calls = []
    (times,) = time_rounds([lambda: calls.append(1)], warmup=3, runs=11)
    assert len(times) == 11 and len(calls) == 14


def test_time_rounds_stops_at_the_budget() -> None:
    t = time.perf_counter()
    (times,) = time_rounds([lambda: time.sleep(0.002)], warmup=0, budget_s=0.3)
    spent = time.perf_counter() - t
    assert 0.3 <= spent < 0.6
    assert 20 < len(times) < 160  # 2 ms sleeps: about 140 at most in 0.3 s
    assert min(times) >= 0.002


def test_time_rounds_runs_come_before_the_budget() -> None:
    (times,) = time_rounds([lambda: None], warmup=0, runs=4, budget_s=100)
    assert len(times) == 4


def test_interleaved_keeps_the_benchmarks_method() -> None:
    """benchmarks/cpu.py's call: ``blocks`` rounds of 5 runs, at least 3 before the budget."""
    ta, tb = interleaved(lambda: None, lambda: None, blocks=4, warmup=1, budget_s=100)
    assert len(ta) == len(tb) == 20
    ta, tb = interleaved(lambda: time.sleep(0.001), lambda: None, 50, 0, budget_s=0.0)
    assert len(ta) == len(tb) == 15


def test_measure_takes_any_object_with_run() -> None:
    class Sleeper:
        def __init__(self, s: float) -> None:
            self.s, self.feeds = s, []

        def run(self, feeds: dict) -> dict:
            self.feeds.append(feeds)
            time.sleep(self.s)
            return {}

    slow, fast = Sleeper(0.003), Sleeper(0.0)
    m = measure([slow, fast], {"x": 1}, warmup=1, runs=10)
    assert m.interleaved and [len(t) for t in m.times] == [10, 10]
    assert all(f == {"x": 1} for f in slow.feeds)
    assert np.median(m.times[0]) > np.median(m.times[1])
    assert min(m.times[0]) >= 0.003


def test_measure_shows_a_bar_on_a_terminal(monkeypatch, capsys) -> None:
    import compiler.progress

    monkeypatch.setattr(compiler.progress, "enabled", lambda quiet=False: not quiet)

    class Noop:
        def run(self, feeds: dict) -> dict:
            return {}

    measure([Noop()], {}, warmup=0, runs=30, quiet=False)
    assert "bench" in capsys.readouterr().err
    measure([Noop()], {}, warmup=0, runs=30, quiet=True)
    assert capsys.readouterr().err == ""


# -- outputs -------------------------------------------------------------------------------------
def test_compare_outputs() -> None:
    a = np.array([1.0, 2.0], np.float32)
    assert compare_outputs({"y": a}, {"y": a.copy()}) == (0.0, True)
    worst, agree = compare_outputs({"y": a}, {"y": a + np.float32(0.5)})
    assert worst == pytest.approx(0.5) and not agree
    assert compare_outputs({"y": a}, {"y": a[:1]}) == (float("inf"), False)
    assert compare_outputs({"y": a}, {"z": a})[1]  # other names: by position


def test_a_mismatch_prints_a_warning() -> None:
    st = LatencyStats.from_times([0.001, 0.002])
    settings = dict(
        model="m.onnx", kind="model", runs=2, budget_s=None, warmup=0, threads=1, batch=None,
        device=None, inputs=None, seed=0,
    )  # fmt: skip
    report = BenchReport(settings, {}, st, st, max_abs_error=0.5, outputs_agree=False)
    text = "\n".join(report.lines())
    assert "warning: outputs differ" in text and "0.5" in text
    assert "ratio nnxc/onnxruntime (medians): 1.000" in text


# -- models and artifacts -------------------------------------------------------------------------
def test_bench_a_model_by_count(tiny_onnx: Path) -> None:
    report = compiler.bench(str(tiny_onnx), runs=25, warmup=2, threads=1, batch=2)
    assert report.nnxc.runs == 25
    assert_ordered(report.nnxc)
    assert report.onnxruntime is None and report.ratio is None
    assert report.settings["input_shapes"] == {"x": [2, 4]}  # the batch bound at compile time
    assert report.nnxc.samples_per_second == pytest.approx(2 * report.nnxc.per_second)
    assert report.open_s > 0


def test_bench_an_artifact_by_budget(tiny_so: Path) -> None:
    t = time.perf_counter()
    report = compiler.bench(tiny_so, budget_s=0.5, batch=3, threads=1)
    spent = time.perf_counter() - t
    assert spent < 0.5 + report.open_s + 5  # a tiny model's runs take microseconds
    assert report.nnxc.runs > 10
    assert_ordered(report.nnxc)
    assert report.settings["kind"] == "artifact"
    assert report.settings["input_shapes"] == {"x": [3, 4]}


def test_bench_an_open_runtime() -> None:
    """The plug for other runtimes (a remote one): any object with ``.run`` and ``.inputs``."""
    from compiler.artifact import TensorInfo

    class Doubler:
        inputs = [TensorInfo("x", ("N", 3), "float32")]
        seen: list = []

        def run(self, feeds: dict) -> dict:
            self.seen.append(feeds["x"].shape)
            return {"y": feeds["x"] * 2}

    rt = Doubler()
    report = compiler.bench("remote:model", runtime=rt, runs=6, warmup=1, batch=5)
    assert report.nnxc.runs == 6 and set(rt.seen) == {(5, 3)} and len(rt.seen) == 1 + 1 + 6
    assert report.settings["model"] == "remote:model"
    assert report.nnxc.samples_per_second == pytest.approx(5 * report.nnxc.per_second)


def test_bench_inputs_from_npz(tiny_so: Path, tmp_path: Path) -> None:
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    path = tmp_path / "in.npz"
    with open(path, "wb") as f:
        np.savez(f, x=x)
    report = compiler.bench(tiny_so, inputs=path, runs=3, batch=2)
    assert report.settings["inputs"] == str(path) and report.settings["seed"] is None
    assert report.settings["input_shapes"] == {"x": [2, 4]}
    with pytest.raises(NnxcError, match=r"--batch 5: input 'x' from --inputs has shape \[2, 4\]"):
        compiler.bench(tiny_so, inputs=path, runs=3, batch=5)


def test_batch_errors(tiny_so: Path, tiny_so_static: Path, tmp_path: Path) -> None:
    with pytest.raises(NnxcError, match="symbolic batch dim: give --batch"):
        compiler.bench(tiny_so, runs=1)
    with pytest.raises(NnxcError, match="--batch 2: no input has a symbolic leading dim"):
        compiler.bench(tiny_so_static, runs=1, batch=2)
    static = tmp_path / "static.onnx"
    onnx.save(tiny_model(batch=3), static)
    with pytest.raises(NnxcError, match=r"--batch 2: no input has a symbolic leading dim \(x"):
        compiler.bench(str(static), runs=1, batch=2)


def test_bench_any_format(tmp_path: Path) -> None:
    """A model in another format (NNEF here) compiles in memory and runs the same way."""
    folder = tmp_path / "relu.nnef"
    folder.mkdir()
    (folder / "graph.nnef").write_text(
        "version 1.0;\ngraph G( x ) -> ( y )\n{\n"
        "  x = external<scalar>(shape = [2, 8]);\n  y = relu(x);\n}\n"
    )
    report = compiler.bench(str(folder), runs=5)
    assert report.nnxc.runs == 5 and report.settings["input_shapes"] == {"x": [2, 8]}
    with pytest.raises(NnxcError, match="ONNX models only.*NNEF"):
        compiler.bench(str(folder), runs=5, compare="onnxruntime")


def test_cuda_device_without_a_gpu_fails_before_compiling(tiny_onnx: Path, monkeypatch) -> None:
    import compiler.driver
    from compiler.devices import DeviceError, open_gpu

    try:
        open_gpu(0, ())
        pytest.skip("a GPU is usable here: this test is of machines without one")
    except DeviceError:
        pass

    def no_compile(*args, **kwargs):  # noqa: ANN002, ANN003
        raise AssertionError("compiled although the device cannot run the code")

    monkeypatch.setattr(compiler.driver, "compile", no_compile)
    with pytest.raises(NnxcError, match=f"{tiny_onnx}: cannot run on cuda:0: no NVIDIA"):
        compiler.bench(str(tiny_onnx), runs=1, batch=1, device="cuda")


# -- --compare onnxruntime -------------------------------------------------------------------------
def test_compare_onnxruntime(tiny_onnx: Path) -> None:
    report = compiler.bench(
        str(tiny_onnx), runs=30, batch=4, threads=1, compare="onnxruntime", seed=3
    )
    assert report.nnxc.runs == report.onnxruntime.runs == 30
    assert_ordered(report.nnxc)
    assert_ordered(report.onnxruntime)
    assert report.ratio == pytest.approx(report.nnxc.median_ms / report.onnxruntime.median_ms)
    assert report.outputs_agree and report.max_abs_error < 1e-5
    assert report.machine["onnxruntime_intra_op_threads"] == 1
    lines = report.lines()
    rows = [ln.split()[0] for ln in lines[3:5]]
    assert rows == ["nnxc", "onnxruntime"]
    assert any(ln.startswith("ratio nnxc/onnxruntime (medians): ") for ln in lines)
    assert any("faster" in ln for ln in lines)
    assert any(ln.startswith("outputs agree: max abs error") for ln in lines)


def test_compare_an_in_memory_model() -> None:
    report = compiler.bench(tiny_model(batch=2), runs=4, threads=1, compare="onnxruntime")
    assert report.settings["model"] == "ModelProto" and report.settings["kind"] == "model"
    assert report.nnxc.runs == report.onnxruntime.runs == 4 and report.outputs_agree


def test_missing_model(tmp_path: Path) -> None:
    with pytest.raises(NnxcError, match="no such file"):
        compiler.bench(str(tmp_path / "absent.onnx"), runs=1, compare="onnxruntime")


def test_compare_refuses_an_artifact(tiny_so: Path) -> None:
    with pytest.raises(NnxcError, match="is an nnxc artifact.*pass the .onnx file"):
        compiler.bench(tiny_so, runs=1, compare="onnxruntime")


def test_compare_without_onnxruntime(tiny_onnx: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    with pytest.raises(NnxcError, match="onnxruntime is not installed"):
        compiler.bench(str(tiny_onnx), runs=1, batch=1, compare="onnxruntime")


def test_bad_settings_fail_before_compiling(tiny_onnx: Path) -> None:
    for kwargs, needle in (
        ({"runs": 0}, "runs must be at least 1"),
        ({"budget_s": 0}, "budget must be positive"),
        ({"threads": 0}, "threads must be at least 1"),
        ({"batch": 0}, "batch must be at least 1"),
        ({"warmup": -1}, "warm-up must be 0 or more"),
        ({"compare": "tensorrt"}, "known: onnxruntime"),
    ):
        with pytest.raises(NnxcError, match=needle):
            compiler.bench(str(tiny_onnx), **kwargs)


# -- the command line ------------------------------------------------------------------------------
def test_cli_help(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["bench", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for flag in (
        "--runs", "--budget", "--warmup", "--threads", "--batch", "--inputs", "--seed",
        "--device", "--compare", "--json", "--quiet", "--input-shape", "--target",
    ):  # fmt: skip
        assert flag in out


def test_cli_bench_writes_json(tiny_onnx: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "new" / "bench.json"  # its folder is made
    argv = ["bench", str(tiny_onnx), "--runs", "12", "--batch", "2", "--threads", "1"]
    assert main([*argv, "--compare", "onnxruntime", "--json", str(out), "-q"]) == 0
    printed = capsys.readouterr()
    assert printed.err == ""  # -q: no progress lines
    assert "ratio nnxc/onnxruntime (medians)" in printed.out and f"wrote {out}" in printed.out
    data = json.loads(out.read_text())
    settings = data["settings"]
    assert settings["runs"] == 12 and settings["batch"] == 2 and settings["threads"] == 1
    assert settings["compare"] == "onnxruntime" and settings["seed"] == 0
    assert data["nnxc"]["runs"] == data["onnxruntime"]["runs"] == 12
    for key in ("min_ms", "median_ms", "p90_ms", "p99_ms", "max_ms", "per_second"):
        assert data["nnxc"][key] > 0 and data["onnxruntime"][key] > 0
    assert data["ratio_nnxc_over_onnxruntime"] == pytest.approx(
        data["nnxc"]["median_ms"] / data["onnxruntime"]["median_ms"]
    )
    machine = data["machine"]
    assert machine["cpu_count"] >= 1 and machine["nnxc"] == compiler.__version__
    assert machine["tvm"] and machine["onnxruntime"]
    assert not list(out.parent.glob("*.tmp"))


def test_cli_errors_are_one_line(tiny_so: Path, capsys) -> None:
    assert main(["bench", str(tiny_so), "--compare", "onnxruntime", "--runs", "1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("nnxc: error: --compare onnxruntime:") and "artifact" in err[-1]
    assert main(["bench", str(tiny_so), "--batch", "2", "--target", "cuda"]) == 1
    assert "compile options (target) apply to models" in capsys.readouterr().err


def test_run_still_uses_the_same_random_inputs(tiny_so: Path) -> None:
    """nnxc run and nnxc bench draw their random inputs from one function."""
    from compiler.feeds import random_feeds

    rt = compiler.load(tiny_so, threads=1)
    with pytest.raises(NnxcError, match="symbolic dims"):
        random_feeds(rt.inputs, 0)
    x = random_feeds(rt.inputs, 0, batch=2)["x"]
    assert x.shape == (2, 4) and x.dtype == np.float32
    np.testing.assert_array_equal(random_feeds(rt.inputs, 0, batch=2)["x"], x)
    np.testing.assert_allclose(rt.run({"x": x})["y"], tiny_expected(x), rtol=1e-5, atol=1e-6)
