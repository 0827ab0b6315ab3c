"""MetaSchedule tuning (``backends/tvm/tuning.py``), ``compile(records=...)`` and ``nnxc tune``
on a tiny conv+relu model with a handful of trials."""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import tvm
import tvm_ffi
from onnx import helper
from onnxutil import make_model

import compiler
from backends.tvm import lower_graph, resolve_target
from backends.tvm.targets import TargetError
from backends.tvm.tuning import (
    MIN_TASK_TRIALS,
    RECORD_FILES,
    RecordsError,
    _share,
    fused_module,
    keep_current_schedules,
    open_records,
    schedule_with_rules,
    unscheduled,
)
from compiler import progress
from compiler.driver import import_model, optimize
from compiler.options import CompileOptions

pytest.register_assert_rewrite("models_fixture")

from models_fixture import assert_one_error_line, nnxc  # noqa: E402

TRIALS = 4


def _conv_relu() -> tuple[onnx.ModelProto, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 8, 16, 16)).astype(np.float32)
    w = (rng.standard_normal((16, 8, 3, 3)) * 0.2).astype(np.float32)
    model = make_model(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c"], ["y"]),
        ],
        [("x", x)],
        ["y"],
        [("w", w)],
    )
    return model, x


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The model tuned once with TRIALS trials: its file, records folder and reports."""
    folder = tmp_path_factory.mktemp("tuning")
    model, x = _conv_relu()
    path = folder / "conv_relu.onnx"
    onnx.save(model, path)
    records = folder / "records"
    lines: list[str] = []
    # Progress bars forced on (as on a terminal), into a string: tested on this one run.
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stderr(io.StringIO()) as err:
        mp.setattr(progress, "enabled", lambda quiet=False: not quiet)
        reports = compiler.tune(path, records=records, trials=TRIALS, progress=lines.append, seed=0)
    return {
        "path": path,
        "x": x,
        "records": records,
        "reports": reports,
        "lines": lines,
        "bars": err.getvalue(),
    }


def _record_lines(records: Path) -> int:
    return len((records / RECORD_FILES[1]).read_text().splitlines())


def _fused(path: Path) -> tuple[tvm.IRModule, tvm.target.Target]:
    graph, _ = import_model(path)
    optimize(graph, CompileOptions())
    target = resolve_target("cpu").tvm_target()
    return fused_module(lower_graph(graph), target), target


def _prim_funcs(mod: tvm.IRModule) -> dict[str, tvm.tirx.PrimFunc]:
    return {gv.name_hint: f for gv, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc)}


# -- tuning -----------------------------------------------------------------------------------
def test_tune_writes_records_with_our_schedule_first(tuned: dict) -> None:
    reports = tuned["reports"]
    assert len(reports) == 1, reports  # conv + relu fuse into one kernel
    (r,) = reports
    assert r.name.startswith("fused_conv2d")
    assert r.budget == TRIALS and r.trials == TRIALS and r.new_trials == TRIALS
    assert r.ours is not None and r.best is not None and r.best <= r.ours
    for name in RECORD_FILES:
        assert (tuned["records"] / name).is_file()
    assert _record_lines(tuned["records"]) == TRIALS + 1  # the trials and our seed
    progress = "\n".join(tuned["lines"])
    assert f"task 1/1 {r.name}: searching {TRIALS} trials" in progress
    assert f"task 1/1 {r.name}: {TRIALS} trials ({TRIALS} new), best" in progress


def test_tune_shows_trial_bars_on_a_terminal(tuned: dict) -> None:
    """The task's bar and the overall one both reach the trials run, with a rate (ETA)."""
    bars = tuned["bars"]
    assert re.search(rf"task 1/1:\s+100%.*{TRIALS}/{TRIALS} \[", bars), bars
    overall = rf"all tasks:\s+100%.*{TRIALS}/{TRIALS} \[[^]]*(trial/s|s/trial)\]"
    assert re.search(overall, bars), bars
    assert re.search(r"stages:.*\[.*tune\]", bars), bars  # the stage bar's current stage


def test_tune_again_runs_only_missing_trials(tuned: dict) -> None:
    """Same folder, budget met: no seed measured again, no trial run (through the CLI)."""
    before = _record_lines(tuned["records"])
    r = nnxc("tune", tuned["path"], "--trials", TRIALS, "--records", tuned["records"])
    assert r.returncode == 0, r.stderr
    assert "measuring our schedules" not in r.stderr
    assert "searching" not in r.stderr
    assert f"{TRIALS} trials (0 new), best" in r.stderr
    assert f"1 tasks, 0 trials run now ({TRIALS} in the records)" in r.stdout
    assert f"nnxc compile {tuned['path']} --records {tuned['records']}" in r.stdout
    assert _record_lines(tuned["records"]) == before


def test_compile_with_records_matches_reference(tuned: dict) -> None:
    from onnx.reference import ReferenceEvaluator

    x = tuned["x"]
    (expected,) = ReferenceEvaluator(onnx.load(tuned["path"])).run(None, {"x": x})
    out = compiler.compile(tuned["path"], records=tuned["records"]).run({"x": x})
    np.testing.assert_allclose(out["y"], expected, rtol=1e-4, atol=1e-4)


def test_build_applies_the_fastest_record(tuned: dict, tmp_path: Path) -> None:
    """A record beats our rules: give the unscheduled kernel an unbeatable time, and the
    kernel a build schedules is that one (marked scheduled, so dlight left it alone)."""
    from tvm.s_tir import meta_schedule as ms

    records = tmp_path / "records"
    shutil.copytree(tuned["records"], records)
    fused, target = _fused(tuned["path"])
    ((name, func),) = _prim_funcs(fused).items()
    db = open_records(records)
    task = ms.relax_integration.extract_tasks(fused, target)[0].dispatched[0]
    plain = unscheduled(task)
    db.commit_tuning_record(
        ms.database.TuningRecord(
            plain.trace,
            db.commit_workload(task),
            [1e-9],
            target,
            ms.arg_info.ArgInfo.from_prim_func(task["main"]),
        )
    )
    scheduled = _prim_funcs(_schedule_as_a_build(fused, target, open_records(records)))[name]
    assert scheduled.attrs["tirx.is_scheduled"]
    tvm.ir.assert_structural_equal(scheduled.body, func.body, map_free_vars=True)

    x = tuned["x"]
    out = compiler.compile(tuned["path"], records=records).run({"x": x})
    ref = compiler.compile(tuned["path"]).run({"x": x})
    np.testing.assert_allclose(out["y"], ref["y"], rtol=1e-4, atol=1e-4)


def _schedule_as_a_build(fused: tvm.IRModule, target: tvm.target.Target, db) -> tvm.IRModule:
    """The scheduling passes of ``pipeline.pipeline_for`` with records."""
    from tvm import relax
    from tvm.s_tir.dlight import ApplyDefaultSchedule

    from backends.tvm.schedules.cpu import cpu_rules

    with target, db:
        mod = keep_current_schedules(db, target)(fused)
        mod = relax.transform.MetaScheduleApplyDatabase()(mod)
        return ApplyDefaultSchedule(*cpu_rules())(mod)


def test_records_not_measured_against_our_schedule_are_not_used(
    tuned: dict, tmp_path: Path
) -> None:
    """Records without our current schedule (our rules changed since tuning) could be slower
    than it: the build keeps our schedule and warns."""
    from tvm.s_tir import meta_schedule as ms

    fused, target = _fused(tuned["path"])
    ((name, func),) = _prim_funcs(fused).items()
    ours = schedule_with_rules(func, target)
    old = open_records(tuned["records"])
    records = tmp_path / "records"
    db = open_records(records, create=True)
    for r in old.get_all_tuning_records():  # all but our schedule's record
        if not tvm_ffi.structural_equal(r.trace.as_json(False), ours.trace.as_json(False)):
            wl = db.commit_workload(r.workload.mod)
            db.commit_tuning_record(
                ms.database.TuningRecord(r.trace, wl, r.run_secs, target, r.args_info)
            )
    assert len(db.get_all_tuning_records()) == TRIALS
    with pytest.warns(UserWarning, match="not measured against our current schedules"):
        mod = _schedule_as_a_build(fused, target, open_records(records))
    scheduled = _prim_funcs(mod)[name]
    tvm.ir.assert_structural_equal(scheduled.body, ours.mod["main"].body, map_free_vars=True)
    with pytest.warns(UserWarning, match="run nnxc tune again"):
        out = compiler.compile(tuned["path"], records=records).run({"x": tuned["x"]})
    assert out["y"].shape == (1, 16, 16, 16)


def test_records_of_the_tuned_kernel_are_found(tuned: dict) -> None:
    """Tasks are extracted after the build's own passes, so a build finds their records."""
    fused, target = _fused(tuned["path"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # our schedule is among the records: no warning
        mod = _schedule_as_a_build(fused, target, open_records(tuned["records"]))
    assert all(f.attrs.get("tirx.is_scheduled", False) for f in _prim_funcs(mod).values())


# -- errors -----------------------------------------------------------------------------------
def test_compile_with_bad_records_folder(tuned: dict, tmp_path: Path) -> None:
    with pytest.raises(RecordsError, match="no such folder of tuning records"):
        compiler.compile(tuned["path"], records=tmp_path / "missing")
    with pytest.raises(RecordsError, match="not a folder of tuning records"):
        compiler.compile(tuned["path"], records=tmp_path)
    for name in RECORD_FILES:
        (tmp_path / name).write_text("{ not json\n")
    with pytest.raises(RecordsError, match="cannot read the tuning records"):
        compiler.compile(tuned["path"], records=tmp_path)


def test_cli_compile_with_missing_records(tuned: dict, tmp_path: Path) -> None:
    r = nnxc("compile", tuned["path"], "-o", tmp_path / "m.so", "--records", tmp_path / "nope")
    assert_one_error_line(r, "no such folder of tuning records", "nnxc tune")


def test_tune_refuses_targets_it_cannot_measure(tuned: dict, tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="LLVM target for this host"):
        compiler.tune(tuned["path"], records=tmp_path, trials=TRIALS, target="aarch64")
    r = nnxc("tune", tuned["path"], "--trials", 4, "--records", tmp_path, "--target", "aarch64")
    assert_one_error_line(r, "LLVM target for this host")


def test_tune_help() -> None:
    r = nnxc("tune", "--help")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: nnxc tune")
    for flag in ("--trials", "--records", "--target", "--input-shape", "--seed", "--quiet"):
        assert flag in r.stdout
    assert "tune" in nnxc("--help").stdout


# -- the budget -------------------------------------------------------------------------------
def test_share_gives_a_floor_then_follows_cost() -> None:
    assert _share(100, [3.0, 1.0]) == [8 + 63, 8 + 21]
    assert sum(_share(101, [1.0, 1.0, 1.0])) == 101
    assert _share(100, [1.0, 1000.0, 1000.0]) == [0, 50, 50]  # under MIN_SHARE: none
    assert _share(4, [1.0, 2.0, 3.0]) == [0, 0, 4]  # the costliest first
    assert _share(0, [1.0]) == [0] and _share(10, []) == [] and _share(10, [0.0]) == [0]
    shares = _share(1000, [1.0] * 20 + [50.0])
    assert sum(shares) == 1000 and min(shares) >= MIN_TASK_TRIALS
