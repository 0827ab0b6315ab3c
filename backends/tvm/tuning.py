"""MetaSchedule tuning for CPU targets, seeded with our own schedules.

``tune`` extracts one task per fused PrimFunc after the same passes a build runs before
scheduling (``pipeline.schedule_prefix_passes``), so the records match what a build looks up.
Every task is first seeded with the schedule our dlight rules give it (or, where no rule
matches, the unscheduled function a build would keep), measured like any trial. A build with
``records`` applies the fastest record of each task (``MetaScheduleApplyDatabase``): since our
own schedule is among them, a tuned build is never slower than an untuned one, task by task,
as measured. The trials are shared by the tasks' share of the model's time (``_share``). The
records are a MetaSchedule ``JSONDatabase`` in a folder; tuning again with the same folder keeps
them and runs only the trials still missing.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tvm
import tvm_ffi

from compiler.errors import NnxcError
from compiler.progress import bar

if TYPE_CHECKING:
    from compiler.remote import Remote

from .intrinsics import tensor_intrinsics_only
from .targets import TargetError, TargetSpec

Progress = Callable[[str], None]

RECORD_FILES = ("database_workload.json", "database_tuning_record.json")

# Every task taking at least MIN_SHARE of the model's time gets MIN_TASK_TRIALS before the rest
# of the budget goes by time: MetaSchedule rarely beats our conv schedules within a budget, but
# often the generic ones of small kernels (global average pooling: 5x in 16 trials).
MIN_SHARE = 0.01
MIN_TASK_TRIALS = 8
TRIALS_PER_BATCH = 32  # candidates built and measured together
POPULATION = 256  # MetaSchedule's default 512 costs minutes per task on 2 cores
BUILD_TIMEOUT_S = 60.0
RUN_TIMEOUT_S = 30.0


class RecordsError(NnxcError):
    """A records folder that is missing or cannot be read."""


@dataclass
class TaskReport:
    """What tuning did for one task (one fused PrimFunc), times in seconds per call."""

    name: str
    weight: int  # calls per model run
    budget: int  # trials this task gets in total
    trials: int  # trials in the database now (our seed not counted)
    new_trials: int  # trials run by this call
    ours: float | None  # our schedule (None: it failed to build or run)
    best: float | None  # the fastest record, ours included


def check_records(records_dir: str | os.PathLike) -> Path:
    """``records_dir`` as a Path, or a clear error when it holds no records."""
    path = Path(records_dir)
    if not path.is_dir():
        raise RecordsError(f"{path}: no such folder of tuning records (write one with nnxc tune)")
    missing = [f for f in RECORD_FILES if not (path / f).is_file()]
    if missing:
        raise RecordsError(
            f"{path}: not a folder of tuning records (no {', '.join(missing)}); "
            "write one with nnxc tune"
        )
    return path


def open_records(records_dir: str | os.PathLike, *, create: bool = False) -> Any:
    """The MetaSchedule database in ``records_dir`` (made empty when ``create``)."""
    from tvm.s_tir import meta_schedule as ms

    path = Path(records_dir)
    if create:
        if path.exists() and not path.is_dir():
            raise RecordsError(f"{path}: not a folder")
        path.mkdir(parents=True, exist_ok=True)
    else:
        check_records(path)
    try:
        return ms.database.JSONDatabase(
            str(path / RECORD_FILES[0]),
            str(path / RECORD_FILES[1]),
            allow_missing=create,
            module_equality="structural",
        )
    except Exception as e:  # noqa: BLE001 - TVM raises several kinds
        raise RecordsError(f"{path}: cannot read the tuning records: {_first_line(e)}") from None


def keep_current_schedules(database: Any, target: tvm.target.Target) -> tvm.transform.Pass:
    """Before ``MetaScheduleApplyDatabase``: a kernel's records count only if our current
    schedule of it is among them, i.e. was measured against them. Where it is not (our rules
    changed since tuning), our rules schedule the kernel here, marked scheduled so that the
    database leaves it alone, and a warning says to tune again: stale records could be slower."""
    normalize = tvm.get_global_func("tvm.s_tir.meta_schedule.normalize_mod")

    @tvm.transform.module_pass(opt_level=0, name="nnxc.keep_current_schedules")
    def _pass(mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        stale = {}
        records = None  # read once, when a kernel has records at all
        for gv, func in mod.functions_items():
            if not isinstance(func, tvm.tirx.PrimFunc) or _is_scheduled(func):
                continue
            task = normalize(func)
            if not database.has_workload(task):
                continue
            if records is None:
                records = database.get_all_tuning_records()
            sch = schedule_with_rules(func, target)
            if _find_trace(records, database.commit_workload(task), sch.trace) is None:
                stale[gv] = sch.mod["main"].with_attr("tirx.is_scheduled", True)
        for gv, func in stale.items():
            mod[gv] = func
        if stale:
            names = ", ".join(sorted(gv.name_hint for gv in stale)[:3])
            warnings.warn(
                f"the tuning records of {len(stale)} kernel(s) ({names}, ...) were not measured "
                "against our current schedules, which are used instead; run nnxc tune again "
                "with the same folder to measure them",
                stacklevel=1,
            )
        return mod

    return _pass


def _is_scheduled(func: tvm.tirx.PrimFunc) -> bool:
    return bool(func.attrs is not None and func.attrs.get("tirx.is_scheduled", False))


def check_tunable(target: TargetSpec, trials: int) -> None:
    """Tuning measures kernels here: an LLVM target for this host, and a budget."""
    if target.kind != "llvm" or not target.is_host:
        raise TargetError(
            f"tuning measures kernels on this machine, so it needs an LLVM target for this "
            f"host, not {target} (CUDA kernels cannot be tuned yet)"
        )
    if trials < 0:
        raise NnxcError(f"the number of trials must be 0 or more, not {trials}")


def fused_module(mod: tvm.IRModule, target: tvm.target.Target) -> tvm.IRModule:
    """``mod`` after the passes a build runs before scheduling."""
    from .pipeline import schedule_prefix_passes

    with target:
        return tvm.transform.Sequential(schedule_prefix_passes(target))(mod)


def tune(
    mod: tvm.IRModule,
    target: TargetSpec,
    records_dir: str | os.PathLike,
    trials: int,
    progress: Progress | None = None,
    *,
    seed: int | None = None,
    remote: Remote | None = None,
) -> list[TaskReport]:
    """Tune the Relax module ``mod`` (from ``lower_graph``) with about ``trials`` measured
    candidates in all, writing records to ``records_dir``; one progress line per task and,
    given ``progress`` and a terminal, bars of the trials (the task's and overall, with ETA).
    ``remote``: a tracker whose servers (under its key) measure the candidates."""
    check_tunable(target, trials)
    quiet = progress is None
    # MetaSchedule's LLVM rules look up only the x86 and ARM intrinsics.
    with tensor_intrinsics_only("x86", "arm_cpu"):
        return _tune(
            mod, target, records_dir, trials, progress or (lambda _: None), seed, quiet, remote
        )


def _tune(mod, target, records_dir, trials, say, seed, quiet, remote) -> list[TaskReport]:
    from tvm.s_tir import meta_schedule as ms

    tvm_target = target.tvm_target()
    # MetaSchedule's rules and mutators want the core count in the target.
    ms_target = tvm.target.Target({**target.config, "num-cores": _physical_cores()})
    fused = fused_module(mod, tvm_target)
    tasks = [
        t
        for t in ms.relax_integration.extract_tasks(fused, tvm_target)
        if not t.mod.attrs.get("tirx.is_scheduled", False)
        # nor kernels scheduled by hand (run-time checks: lowering/checks.py)
        and not any(_is_scheduled(f) for f in t.mod.functions.values())
    ]
    database = open_records(records_dir, create=True)
    builder = ms.builder.LocalBuilder(
        max_workers=min(2, os.cpu_count() or 1),
        timeout_sec=BUILD_TIMEOUT_S,
        f_build=_build,
        f_export=None if remote is None else _export_shared_library,
    )
    runner = _runner(remote, say)

    # 1. Seeds: our schedule of every task, measured once and kept in the database.
    workloads = [database.commit_workload(t.dispatched[0]) for t in tasks]
    ours = _seed(tasks, workloads, tvm_target, database, builder, runner, say)

    # 2. The budget, by the tasks' share of the model's time under our schedules (``_share``).
    # A task whose seed failed counts as the costliest one.
    worst = max((s for s in ours if s is not None), default=1.0)
    budgets = _share(trials, [t.weight * (worst if s is None else s) for t, s in zip(tasks, ours)])

    # 3. Search, task by task, costliest first, for the trials still missing.
    order = sorted(range(len(tasks)), key=lambda k: -budgets[k])
    to_run = sum(max(0, budgets[k] - _trials_done(database, workloads[k])) for k in order)
    overall = bar(to_run, "all tasks", unit="trial", quiet=quiet)
    reports = []
    for i, k in enumerate(order):
        task, wl, our, budget = tasks[k], workloads[k], ours[k], budgets[k]
        done = _trials_done(database, wl)
        missing = max(0, budget - done)
        head = f"task {i + 1}/{len(tasks)} {task.task_name}"
        if missing:
            say(f"{head}: searching {missing} trials ({done} done before)...")
            task_bar = bar(missing, f"task {i + 1}/{len(tasks)}", unit="trial", quiet=quiet)
            counter = [] if task_bar.disable else [_trial_counter([task_bar, overall])]
            try:
                _search(
                    task,
                    ms_target,
                    str(records_dir),
                    database,
                    builder,
                    runner,
                    missing,
                    seed,
                    k,
                    counter,
                )
            except Exception as e:  # noqa: BLE001 - one task's failure spares the others
                say(f"{head}: search failed, keeping the records so far: {_first_line(e)}")
            finally:
                task_bar.close()
        best = _best(database, wl)
        report = TaskReport(
            task.task_name, int(task.weight), budget, _trials_done(database, wl), 0, our, best
        )
        report.new_trials = report.trials - done
        reports.append(report)
        say(f"{head}: {_describe(report)}")
    overall.close()
    return reports


def _trial_counter(bars: list[Any]) -> Any:
    """A MetaSchedule measure callback moving ``bars`` by each batch of measured candidates
    (MetaSchedule reports nothing per trial otherwise)."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir import meta_schedule as ms

    @derived_object
    class TrialCounter(ms.measure_callback.PyMeasureCallback):
        def apply(self, _scheduler, _task_id, _candidates, _built, results) -> None:
            for b in bars:
                b.update(len(results))

    return TrialCounter()


def _runner(remote: Remote | None, say: Progress) -> Any:
    """MetaSchedule's runner: here, or on the servers under the tracker's key, one worker
    per server."""
    from tvm.s_tir import meta_schedule as ms

    evaluator = ms.runner.EvaluatorConfig(number=3, repeat=3, min_repeat_ms=40)
    if remote is None:
        return ms.runner.LocalRunner(timeout_sec=RUN_TIMEOUT_S, evaluator_config=evaluator)
    from compiler.remote import RemoteError, server_count

    if remote.key is None:
        raise RemoteError(f"tuning measures through an RPC tracker, not {remote}")
    servers = server_count(remote)
    if not servers:
        raise RemoteError(f"{remote}: no server is registered under the key")
    say(f"measuring on {servers} server(s) of {remote}")
    config = ms.runner.RPCConfig(
        tracker_host=remote.host,
        tracker_port=remote.port,
        tracker_key=remote.key,
        session_priority=1,
        session_timeout_sec=int(RUN_TIMEOUT_S),
    )
    rpc = ms.runner.RPCRunner(config, evaluator, max_workers=servers)
    return _device_names()(rpc)


def _device_names() -> type:
    """A runner passing RunnerInputs on to ``inner`` with TVM device names: MetaSchedule's task
    scheduler names the device by the target's kind ("llvm"), which RPCRunner hands to
    ``session.device`` as is and which TVM does not know ("Unknown device: llvm")."""
    global _DeviceNames  # noqa: PLW0603 - a TVM object type: registered once, on first use
    if _DeviceNames is None:
        from tvm.ir.utils import derived_object
        from tvm.s_tir.meta_schedule.runner import PyRunner, RunnerInput

        @derived_object
        class DeviceNames(PyRunner):
            def __init__(self, inner: Any) -> None:
                super().__init__()
                self.inner = inner

            def run(self, inputs: list) -> list:
                return self.inner.run(
                    [
                        RunnerInput(
                            i.artifact_path,
                            _TVM_DEVICES.get(str(i.device_type), str(i.device_type)),
                            i.args_info,
                        )
                        for i in inputs
                    ]
                )

        _DeviceNames = DeviceNames
    return _DeviceNames


_DeviceNames: type | None = None
_TVM_DEVICES = {"llvm": "cpu"}  # target kind -> TVM device name, where they differ


def _export_shared_library(mod: Any) -> str:
    """A candidate as a shared library, which a server loads as is (MetaSchedule's default,
    a .tar of object files, needs a C compiler on the server to link it)."""
    import tempfile

    path = os.path.join(tempfile.mkdtemp(prefix="nnxc-candidate-"), "candidate.so")
    mod.export_library(path)
    return path


def _search(
    task, target, work_dir, database, builder, runner, trials, seed, index, callbacks=()
) -> None:
    """MetaSchedule's evolutionary search on one task, ``trials`` candidates more;
    ``callbacks`` run after each measured batch, besides MetaSchedule's default ones."""
    from tvm.s_tir import meta_schedule as ms

    ctx = ms.TuneContext(
        mod=task.dispatched[0],
        target=target,
        space_generator="post-order-apply",
        search_strategy=ms.search_strategy.EvolutionarySearch(
            population_size=POPULATION, init_min_unmeasured=min(50, POPULATION)
        ),
        task_name=task.task_name,
        rand_state=-1 if seed is None else seed + index,
        num_threads=_physical_cores(),
    ).clone()
    ms.tune_tasks(
        tasks=[ctx],
        task_weights=[float(task.weight)],
        work_dir=work_dir,  # unused: the database is given
        max_trials_global=trials,
        num_trials_per_iter=min(trials, TRIALS_PER_BATCH),
        builder=builder,
        runner=runner,
        database=database,
        cost_model=_cost_model(),
        measure_callbacks=[*ms.measure_callback.MeasureCallback.create("default"), *callbacks],
        task_scheduler="round-robin",
    )


def summary(reports: list[TaskReport]) -> str:
    """Model time (sum over tasks of calls x time) under our schedules and the best records."""
    known = [r for r in reports if r.ours is not None and r.best is not None]
    ours = sum(r.weight * r.ours for r in known)  # type: ignore[operator]
    best = sum(r.weight * r.best for r in known)  # type: ignore[operator]
    new = sum(r.new_trials for r in reports)
    total = sum(r.trials for r in reports)
    gain = f", {ours / best:.2f}x" if best > 0 else ""
    return (
        f"{len(reports)} tasks, {new} trials run now ({total} in the records); kernels "
        f"{best * 1e3:.3f} ms per run tuned vs {ours * 1e3:.3f} ms ours{gain}"
    )


def _describe(r: TaskReport) -> str:
    ours = "ours failed" if r.ours is None else f"ours {r.ours * 1e3:.3f} ms"
    best = "no valid record" if r.best is None else f"best {r.best * 1e3:.3f} ms"
    if r.budget == 0:
        return f"not searched (under {MIN_SHARE:.0%} of the time), {best} ({ours})"
    return f"{r.trials} trials ({r.new_trials} new), {best} ({ours})"


def schedule_with_rules(func: tvm.tirx.PrimFunc, target: tvm.target.Target) -> Any:
    """The Schedule our dlight rules give ``func`` (as ``dlight.ApplyDefaultSchedule`` would),
    or an unscheduled one where no rule matches: in both cases what a build without records
    compiles."""
    from .schedules.cpu import cpu_rules

    for rule in cpu_rules():
        space = rule.apply(func, target, False)
        if space is None:
            continue
        return space[0] if isinstance(space, list) else space
    return unscheduled(tvm.IRModule({"main": func}))


def unscheduled(mod: tvm.IRModule) -> Any:
    """A Schedule that changes nothing, with a trace of one no-op instruction: MetaSchedule's
    database never returns a record whose trace is empty."""
    from tvm.s_tir import Schedule

    sch = Schedule(mod)
    try:
        sch.get_sblock("root", "main")
    except Exception:  # noqa: BLE001 - no root block: an empty trace it is
        pass
    return sch


def _seed(tasks, workloads, target, database, builder, runner, say) -> list[float | None]:
    """Measure and record our schedule of each task, unless its record is already there."""
    from tvm.s_tir import meta_schedule as ms

    ours: list[float | None] = [None] * len(tasks)
    todo = []
    records = database.get_all_tuning_records()
    for i, (task, wl) in enumerate(zip(tasks, workloads)):
        trace = schedule_with_rules(task.dispatched[0]["main"], target).trace
        record = _find_trace(records, wl, trace)
        if record is not None:
            ours[i] = _mean(record)
        else:
            todo.append((i, trace))
    if not todo:
        return ours
    say(f"measuring our schedules of {len(todo)} of {len(tasks)} tasks...")
    inputs = []
    for i, trace in todo:  # replayed as a build will replay the record
        sch = tvm.s_tir.Schedule(tasks[i].dispatched[0])
        trace.apply_to_schedule(sch, remove_postproc=False)
        inputs.append(ms.builder.BuilderInput(sch.mod, target))
    built = builder.build(inputs)
    args = [ms.arg_info.ArgInfo.from_prim_func(tasks[i].dispatched[0]["main"]) for i, _ in todo]
    run_inputs = [
        ms.runner.RunnerInput(b.artifact_path, "cpu", a)
        for b, a in zip(built, args)
        if b.error_msg is None
    ]
    runs = runner.run(run_inputs) if run_inputs else []
    runs_iter = iter(runs)
    for (i, trace), b, a in zip(todo, built, args):
        error = b.error_msg
        secs = None
        if error is None:
            result = next(runs_iter).result()
            error = result.error_msg
            secs = None if error else [float(s) for s in result.run_secs]
        _remove_artifact(b.artifact_path)
        if error:
            say(f"  {tasks[i].task_name}: our schedule failed: {_first_line(error)}")
        database.commit_tuning_record(
            ms.database.TuningRecord(trace, workloads[i], secs, target, a)
        )
        ours[i] = sum(secs) / len(secs) if secs else None
    return ours


def _find_trace(records, workload, trace) -> Any:
    """The record among ``records`` (the database's, read once by the caller) of this
    workload with this trace, or None."""
    want = trace.as_json(False)
    for record in records:
        if record.workload.same_as(workload) and tvm_ffi.structural_equal(
            record.trace.as_json(False), want
        ):
            return record
    return None


def _trials_done(database, workload) -> int:
    """Records of this workload, less our seed's."""
    n = sum(1 for r in database.get_all_tuning_records() if r.workload.same_as(workload))
    return max(0, n - 1)


def _best(database, workload) -> float | None:
    top = database.get_top_k(workload, 1)
    return _mean(top[0]) if top else None


def _mean(record) -> float | None:
    secs = record.run_secs
    if not secs:
        return None
    values = [float(s) for s in secs]
    return None if max(values) >= 1e9 else sum(values) / len(values)


def _share(trials: int, costs: list[float]) -> list[int]:
    """Split ``trials`` over tasks of these costs (calls x time): every task with at least
    MIN_SHARE of the total gets MIN_TASK_TRIALS first, costliest first as far as the trials go;
    the rest goes in proportion to the cost (largest remainders round up)."""
    out = [0] * len(costs)
    total = sum(c for c in costs if c > 0)
    if trials <= 0 or total <= 0:
        return out
    eligible = [i for i, c in enumerate(costs) if c > 0 and c >= MIN_SHARE * total]
    eligible = sorted(
        eligible or [i for i, c in enumerate(costs) if c > 0], key=lambda i: -costs[i]
    )
    left = trials
    for i in eligible:
        out[i] = min(MIN_TASK_TRIALS, left)
        left -= out[i]
    if left:
        sub = sum(costs[i] for i in eligible)
        exact = {i: left * costs[i] / sub for i in eligible}
        extra = {i: math.floor(exact[i]) for i in eligible}
        rest = left - sum(extra.values())
        for i in sorted(eligible, key=lambda i: extra[i] - exact[i])[:rest]:
            extra[i] += 1
        for i in eligible:
            out[i] += extra[i]
    return out


def _cost_model() -> str:
    """XGBoost's model when installed, otherwise MetaSchedule's random one."""
    try:
        import xgboost  # noqa: F401
    except ImportError:
        return "random"
    return "xgb"


def _physical_cores() -> int:
    try:
        import psutil

        return psutil.cpu_count(logical=False) or os.cpu_count() or 1
    except ImportError:
        return os.cpu_count() or 1


def _build(mod: tvm.IRModule, target: tvm.target.Target, _params: Any) -> Any:
    """MetaSchedule's default build without its ``import tvm.s_tir.tensor_intrin``, which takes
    half a minute in every fresh builder process (our CPU rules use no tensor intrinsics)."""
    from tvm.driver import build
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    return build(RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod), target=target)


def _remove_artifact(path: str | None) -> None:
    if path:
        import shutil

        shutil.rmtree(os.path.dirname(path), ignore_errors=True)


def _first_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return (lines[-1] if lines else "")[:200]
