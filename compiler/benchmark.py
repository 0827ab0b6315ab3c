"""Latency of a compiled model, alone or against onnxruntime: ``nnxc bench`` and
``compiler.bench``.

Three steps, kept apart so that each can be swapped: ``open_runtime`` compiles a model in
memory or loads an artifact (a remote runtime can take its place later), ``measure`` times
any object with ``.run(feeds)``, and ``LatencyStats`` turns times into figures.

The timing core, ``time_rounds``, is also what ``benchmarks/cpu.py`` and the other benchmark
scripts use (through ``interleaved``): warm-up runs, then rounds of timed runs, and with two
runtimes alternating blocks whose order flips every round. Nothing heavy is imported at the
top: ``import compiler`` imports this module.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from compiler.errors import ArtifactError, NnxcError

DEFAULT_BUDGET_S = 10.0
DEFAULT_WARMUP = 3
COMPARE_BLOCK = 5  # timed runs per block when two runtimes alternate
COMPARE_RTOL, COMPARE_ATOL = 1e-3, 1e-4  # those of benchmarks/cpu.py: a warning, not a verdict
COMPARE_CHOICES = ("onnxruntime",)


# -- the timing core ----------------------------------------------------------------------------
def time_rounds(
    fns: Sequence[Callable[[], Any]],
    warmup: int,
    runs: int | None = None,
    budget_s: float | None = None,
    block: int = 1,
    min_rounds: int = 1,
    on_round: Callable[[int, float], None] | None = None,
) -> list[list[float]]:
    """Seconds of each timed run of each function, in ``fns`` order.

    ``warmup`` untimed runs of each first; then rounds, each one block of ``block`` timed runs
    of every function (with several, one untimed run before each block, and the order flipped
    every round). Stops once each has ``runs`` timed runs (the last block cut short), or once
    ``budget_s`` seconds of timing have passed, after ``min_rounds`` rounds at least.
    ``on_round(n, elapsed_s)`` follows each round with its ``n`` runs per function and the
    seconds of timing so far.

    Why blocks, not single alternating runs: runtimes' worker threads spin for a while after a
    run, and on a 2-core machine strict alternation makes each one's spinning workers steal
    the cores from the other (measured here: MobileNet 7.8x in strict alternation, 2.0x in
    blocks, onnxruntime's own time moving too). A block measures what a serving loop sees,
    back-to-back runs of one model; alternating blocks still exposes all to the same drift of
    the machine."""
    if runs is None and budget_s is None:
        raise ValueError("time_rounds needs runs or budget_s")
    if runs is not None and runs < 1:
        raise NnxcError(f"runs must be at least 1, not {runs}")
    for _ in range(warmup):
        for f in fns:
            f()
    times: list[list[float]] = [[] for _ in fns]
    several = len(fns) > 1
    start = time.perf_counter()
    i = 0
    while runs is None or len(times[0]) < runs:
        n = block if runs is None else min(block, runs - len(times[0]))
        order = range(len(fns)) if i % 2 == 0 else range(len(fns) - 1, -1, -1)
        for k in order:
            f, out = fns[k], times[k]
            if several:
                f()
            for _ in range(n):
                t = time.perf_counter()
                f()
                out.append(time.perf_counter() - t)
        i += 1
        elapsed = time.perf_counter() - start
        if on_round is not None:
            on_round(n, elapsed)
        if budget_s is not None and i >= min_rounds and elapsed > budget_s:
            break
    return times


def interleaved(
    fa: Callable[[], Any],
    fb: Callable[[], Any],
    blocks: int,
    warmup: int,
    budget_s: float,
    block: int = COMPARE_BLOCK,
) -> tuple[list[float], list[float]]:
    """Time ``fa`` and ``fb`` in ``blocks`` rounds of alternating blocks (see
    ``time_rounds``), stopping early, after 3 rounds, once ``budget_s`` has passed."""
    ta, tb = time_rounds(
        [fa, fb], warmup, runs=blocks * block, budget_s=budget_s, block=block, min_rounds=3
    )
    return ta, tb


# -- figures -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class LatencyStats:
    """Latency figures of one runtime (milliseconds) and its throughput.

    ``per_second`` is inferences per second over the timed runs (runs / their summed time),
    ``samples_per_second`` that times the batch when one was given."""

    runs: int
    min_ms: float
    median_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    per_second: float
    samples_per_second: float | None = None

    @classmethod
    def from_times(cls, times: Sequence[float], batch: int | None = None) -> LatencyStats:
        if not times:
            raise ValueError("no timed runs")
        ms = np.asarray(times, dtype=np.float64) * 1e3
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        per_second = len(ms) / (ms.sum() / 1e3)
        return cls(
            runs=len(ms),
            min_ms=float(ms.min()),
            median_ms=float(p50),
            p90_ms=float(p90),
            p99_ms=float(p99),
            max_ms=float(ms.max()),
            mean_ms=float(ms.mean()),
            per_second=float(per_second),
            samples_per_second=None if batch is None else float(per_second * batch),
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- runtimes ----------------------------------------------------------------------------------
def available_cores() -> int:
    """Cores this process may run on (the default thread count of both runtimes)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def open_runtime(
    model_or_artifact: Any,
    threads: int | None = None,
    device: str | None = None,
    batch: int | None = None,
    progress: Callable[[str], None] | None = None,
    **compile_options: Any,
) -> Any:
    """An object with ``.run(feeds)`` and ``.inputs``: the artifact loaded, or the model
    compiled in memory (``compile_options`` as ``compiler.compile``'s; ``batch`` binds every
    input's symbolic leading dim). CUDA code is exported to a temporary file and loaded on
    ``device``, CPU code runs from memory."""
    from compiler.runtime import _set_threads, load

    if _is_artifact(model_or_artifact):
        if compile_options:
            names = ", ".join(sorted(compile_options))
            raise NnxcError(f"compile options ({names}) apply to models, not to an artifact")
        return load(model_or_artifact, threads=threads, device=device)

    from compiler.devices import CPU, CUDA, parse_device
    from compiler.driver import compile as compile_model
    from compiler.runtime import Runtime

    options = dict(compile_options)
    shapes = dict(options.pop("input_shapes", None) or {})
    if batch is not None:
        shapes = bind_batch(model_or_artifact, shapes, batch, options.get("function"))
    dev = parse_device(device, CPU) if device is not None else None
    if dev is not None and dev.kind == CUDA and options.get("target") is None:
        options["target"] = CUDA
    target = options.pop("target", None) or "cpu"
    if dev is not None and dev.kind == CUDA:
        _check_gpu(model_or_artifact, dev)  # before a compile that could not run
    _set_threads(threads)
    compiled = compile_model(model_or_artifact, target, shapes, progress=progress, **options)
    if compiled.target.kind == CUDA:
        with tempfile.TemporaryDirectory(prefix="nnxc-bench-") as tmp:
            path = Path(tmp) / "model.so"
            compiled.export(path)
            try:
                return load(path, threads=threads, device=device or CUDA)
            except ArtifactError as e:  # name the model, not the temporary file
                raise ArtifactError(str(e).replace(str(path), str(model_or_artifact))) from None
    if not compiled.target.is_host:
        raise NnxcError(f"code for {compiled.target} cannot run on this machine")
    if dev is not None and dev.kind != CPU:
        raise NnxcError(f"the model is compiled for {target}: it cannot run on {dev}")
    return Runtime.from_executable(compiled.executable, compiled.metadata)


def _check_gpu(model: Any, dev: Any) -> None:
    """An error naming the model and the device when ``dev`` cannot run CUDA code here."""
    from compiler.devices import DeviceError, open_gpu

    try:
        open_gpu(dev.index, ())
    except DeviceError as e:
        raise ArtifactError(f"{model}: cannot run on {dev}: {e}") from None


def bind_batch(model: Any, shapes: dict[str, Any], batch: int, function: str | None) -> dict:
    """``shapes`` plus, for each input whose leading dim is symbolic, that dim bound to
    ``batch`` (its other dims as they are); an error when no input has one."""
    from compiler.driver import import_model
    from compiler.ir.types import TensorType

    if batch < 1:
        raise NnxcError(f"--batch must be at least 1, not {batch}")
    graph, _ = import_model(model, shapes or None, None, function)
    out = dict(shapes)
    for v in graph.inputs:
        if isinstance(v.type, TensorType) and v.shape and isinstance(v.shape[0], str):
            out[v.name] = [batch, *v.shape[1:]]
    if out == shapes:
        sig = ", ".join(f"{v.name}{list(v.shape)}" for v in graph.inputs)
        raise NnxcError(f"--batch {batch}: no input has a symbolic leading dim ({sig})")
    return out


class OrtRuntime:
    """An onnxruntime session (CPU, ``threads`` intra-op threads, sequential) behind the same
    ``.run(feeds) -> {name: array}`` as nnxc's runtimes."""

    def __init__(self, model: Any, threads: int) -> None:
        self.session = ort_session(model, threads)
        self._names = [o.name for o in self.session.get_outputs()]

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self._names, self.session.run(None, dict(feeds))))


def ort_session(model: Any, threads: int) -> Any:
    """An onnxruntime CPU session over a model path (or bytes, or an ``onnx.ModelProto``)
    with ``threads`` intra-op threads, one inter-op thread, run sequentially: the settings
    nnxc is compared under."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if hasattr(model, "SerializeToString"):
        model = model.SerializeToString()
    elif not isinstance(model, bytes):
        model = str(model)
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def check_compare(model: Any, compare: str | None) -> None:
    """Refuse ``compare`` before any compiling: an unknown runtime, an artifact, a model not
    in ONNX, or onnxruntime missing, each with what to do instead."""
    if compare is None:
        return
    if compare not in COMPARE_CHOICES:
        raise NnxcError(f"--compare {compare!r}: known: {', '.join(COMPARE_CHOICES)}")
    from compiler.frontends.base import frontend_for

    if _is_artifact(model):
        raise NnxcError(
            f"--compare onnxruntime: {model} is an nnxc artifact; onnxruntime needs the ONNX "
            "model: pass the .onnx file it was compiled from"
        )
    frontend = frontend_for(model)
    if frontend.name != "onnx":
        raise NnxcError(
            f"--compare onnxruntime runs ONNX models only; {model} is a {frontend.title} model"
        )
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise NnxcError(
            "--compare onnxruntime: onnxruntime is not installed (pip install onnxruntime)"
        ) from None


# -- measuring -----------------------------------------------------------------------------------
@dataclass
class Measurement:
    """Timed runs of one runtime, or of two interleaved (``times[0]`` is nnxc's)."""

    times: list[list[float]]
    interleaved: bool


def measure(
    runtimes: Sequence[Any],
    feeds: Mapping[str, Any],
    warmup: int = DEFAULT_WARMUP,
    runs: int | None = None,
    budget_s: float | None = None,
    quiet: bool = True,
) -> Measurement:
    """Time ``runtime.run(feeds)`` for each runtime (any object with ``.run``): one alone run
    after run, several interleaved in blocks. A progress bar follows the timed runs."""
    from compiler.progress import bar

    if runs is None and budget_s is None:
        budget_s = DEFAULT_BUDGET_S
    fns = [(lambda rt=rt: rt.run(feeds)) for rt in runtimes]
    several = len(fns) > 1
    by_count = runs is not None
    total = runs * len(fns) if by_count else budget_s
    # a budget bar counts seconds of timing: shown as 4.2/10 s, not as a rate
    style = (
        {} if by_count else {"bar_format": "{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:g} s"}
    )
    with bar(total, "bench", unit="run" if by_count else "s", quiet=quiet, **style) as progress:

        def on_round(n: int, elapsed: float) -> None:
            progress.update(n * len(fns) if by_count else min(elapsed, total) - progress.n)

        times = time_rounds(
            fns,
            warmup,
            runs=runs,
            budget_s=budget_s,
            block=COMPARE_BLOCK if several else 1,
            min_rounds=3 if several else 1,
            on_round=on_round,
        )
    return Measurement(times, several)


def compare_outputs(
    got: Mapping[str, np.ndarray], expected: Mapping[str, np.ndarray]
) -> tuple[float, bool]:
    """The largest absolute difference over all outputs (matched by name, else by position)
    and whether all are close (``COMPARE_RTOL``/``COMPARE_ATOL``, same shapes)."""
    pairs = (
        [(got[k], expected[k]) for k in expected]
        if got.keys() == expected.keys()
        else list(zip(got.values(), expected.values()))
    )
    agree = len(got) == len(expected)
    worst = 0.0
    for g, e in pairs:
        g, e = np.asarray(g), np.asarray(e)
        if g.shape != e.shape:
            agree, worst = False, float("inf")
            continue
        if g.size == 0:
            continue
        g64, e64 = g.astype(np.float64), e.astype(np.float64)
        diff = np.abs(g64 - e64)
        worst = max(worst, float(np.nanmax(diff)) if not np.isnan(diff).all() else 0.0)
        agree = agree and bool(np.allclose(g64, e64, rtol=COMPARE_RTOL, atol=COMPARE_ATOL))
    return worst, agree


# -- the whole command ------------------------------------------------------------------------
@dataclass
class BenchReport:
    """What ``bench`` measured, with its settings and the machine, printable and JSON-able."""

    settings: dict[str, Any]
    machine: dict[str, Any]
    nnxc: LatencyStats
    onnxruntime: LatencyStats | None = None
    open_s: float = 0.0  # compile (a model) or load (an artifact) time
    max_abs_error: float | None = None  # nnxc against onnxruntime
    outputs_agree: bool | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        """nnxc's median latency over onnxruntime's (below 1: nnxc faster)."""
        if self.onnxruntime is None:
            return None
        return self.nnxc.median_ms / self.onnxruntime.median_ms

    def as_dict(self) -> dict[str, Any]:
        return {
            "settings": self.settings,
            "machine": self.machine,
            "open_s": self.open_s,
            "nnxc": self.nnxc.as_dict(),
            "onnxruntime": None if self.onnxruntime is None else self.onnxruntime.as_dict(),
            "ratio_nnxc_over_onnxruntime": self.ratio,
            "max_abs_error": self.max_abs_error,
            "outputs_agree": self.outputs_agree,
            "notes": self.notes,
        }

    def lines(self) -> list[str]:
        """The table: one row per runtime, then the ratio and the agreement of outputs."""
        s = self.settings
        samples = s["batch"] is not None
        head = (
            f"{'':<12} {'runs':>6} {'min':>9} {'median':>9} {'p90':>9} {'p99':>9} {'max':>9}"
            f" {'inf/s':>9}" + (f" {'samples/s':>10}" if samples else "")
        )
        batch = s["batch"] if samples else "as compiled"
        inputs = f"inputs {s['inputs']}" if s["inputs"] else f"random inputs (seed {s['seed']})"
        opened = "loaded" if s["kind"] == "artifact" else "compiled"
        timing = (
            f"interleaved blocks of {COMPARE_BLOCK}"
            if self.onnxruntime is not None
            else "runs one after another"
        )
        limit = f"{s['runs']} runs" if s["runs"] is not None else f"budget {s['budget_s']:g} s"
        out = [
            f"nnxc bench {s['model']} ({opened} in {self.open_s:.1f} s, imports included): "
            f"{s['threads']} thread(s), batch {batch}, device {s['device'] or 'default'}, {inputs}",
            f"warm-up {s['warmup']} run(s), then {timing}, {limit}; latency in ms",
            head,
        ]
        rows = [("nnxc", self.nnxc)]
        if self.onnxruntime is not None:
            rows.append(("onnxruntime", self.onnxruntime))
        for name, st in rows:
            out.append(
                f"{name:<12} {st.runs:>6} {st.min_ms:>9.3f} {st.median_ms:>9.3f} "
                f"{st.p90_ms:>9.3f} {st.p99_ms:>9.3f} {st.max_ms:>9.3f} {st.per_second:>9.1f}"
                + (f" {st.samples_per_second:>10.1f}" if samples else "")
            )
        ratio = self.ratio
        if ratio is not None:
            faster = "nnxc" if ratio < 1 else "onnxruntime"
            factor = 1 / ratio if ratio < 1 else ratio
            out.append(
                f"ratio nnxc/onnxruntime (medians): {ratio:.3f} ({faster} {factor:.2f}x faster)"
            )
            if self.outputs_agree:
                out.append(f"outputs agree: max abs error {self.max_abs_error:.3g}")
            else:
                out.append(
                    f"warning: outputs differ from onnxruntime's: max abs error "
                    f"{self.max_abs_error:.3g} (beyond atol {COMPARE_ATOL} + rtol "
                    f"{COMPARE_RTOL}; nnxc verify tells where)"
                )
        out.extend(f"note: {n}" for n in self.notes)
        return out


def machine_facts() -> dict[str, Any]:
    """What a figure depends on besides the model: the machine and the software versions."""
    import tvm

    from compiler import __version__

    facts: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "available_cores": available_cores(),
        "machine": platform.machine(),
        "cpu": _cpu_name(),
        "system": platform.platform(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "nnxc": __version__,
        "tvm": tvm.__version__,
        "tvm_pool_threads": int(tvm.get_global_func("runtime.NumThreads")()),
    }
    try:
        import onnxruntime

        facts["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        facts["onnxruntime"] = None
    return facts


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def bench(
    model: Any,
    *,
    runs: int | None = None,
    budget_s: float | None = None,
    warmup: int = DEFAULT_WARMUP,
    threads: int | None = None,
    batch: int | None = None,
    inputs: Mapping[str, np.ndarray] | str | os.PathLike | None = None,
    seed: int = 0,
    device: str | None = None,
    compare: str | None = None,
    quiet: bool = True,
    progress: Callable[[str], None] | None = None,
    runtime: Any = None,
    **compile_options: Any,
) -> BenchReport:
    """Benchmark a model (compiled in memory first; any format) or an artifact (loaded).

    Timed runs stop after ``runs``, or after ``budget_s`` seconds (default 10 when neither is
    given). ``inputs``: arrays by name or an .npz path (default: random, ``seed``). ``batch``
    binds a symbolic leading dim. ``compare="onnxruntime"`` times onnxruntime on the same
    inputs, interleaved, with the same thread count (ONNX models only). ``runtime``: one
    already open (any object with ``.run(feeds)`` and ``.inputs``, a remote one for example),
    timed instead of opening ``model``, which then only names it (and is what onnxruntime
    runs)."""
    from compiler.feeds import load_npz, random_feeds

    if warmup < 0:
        raise NnxcError(f"warm-up must be 0 or more runs, not {warmup}")
    if budget_s is not None and budget_s <= 0:
        raise NnxcError(f"budget must be positive, not {budget_s}")
    if threads is not None and threads < 1:
        raise NnxcError(f"threads must be at least 1, not {threads}")
    if batch is not None and batch < 1:
        raise NnxcError(f"batch must be at least 1, not {batch}")
    if runs is not None and runs < 1:
        raise NnxcError(f"runs must be at least 1, not {runs}")
    check_compare(model, compare)
    if runs is None and budget_s is None:
        budget_s = DEFAULT_BUDGET_S
    inputs_name = None
    if isinstance(inputs, str | os.PathLike):
        inputs_name, inputs = str(inputs), load_npz(inputs)

    t = time.perf_counter()
    if runtime is None:
        rt = open_runtime(model, threads, device, batch, progress, **compile_options)
    else:
        rt = runtime
    open_s = time.perf_counter() - t
    if inputs is None:
        bound = runtime is None and not _is_artifact(model)  # open_runtime bound the batch
        _check_symbolic_batch(rt.inputs, batch, bound)
        feeds = random_feeds(rt.inputs, seed, batch)
    else:
        feeds = dict(inputs)
        _check_batch_matches(feeds, batch)
    runtimes = [rt]
    ort_threads = threads or available_cores()
    if compare is not None:
        runtimes.append(OrtRuntime(model, ort_threads))

    first = [r.run(feeds) for r in runtimes]  # also the first warm-up: errors show before timing
    m = measure(runtimes, feeds, warmup, runs, budget_s, quiet)
    settings = {
        "model": str(model) if isinstance(model, str | os.PathLike) else type(model).__name__,
        "kind": "artifact" if _is_artifact(model) else "model",
        "runs": runs,
        "budget_s": budget_s,
        "warmup": warmup,
        "threads": threads or available_cores(),
        "batch": batch,
        "device": device,
        "remote": str(getattr(rt, "remote", None) or "") or None,
        "inputs": inputs_name,
        "seed": None if inputs is not None else seed,
        "compare": compare,
        "compile_options": {k: _jsonable(v) for k, v in compile_options.items()},
        "input_shapes": {k: list(np.shape(v)) for k, v in feeds.items()},
    }
    report = BenchReport(
        settings=settings,
        machine=machine_facts(),
        nnxc=LatencyStats.from_times(m.times[0], batch),
        open_s=open_s,
    )
    if compare is not None:
        report.onnxruntime = LatencyStats.from_times(m.times[1], batch)
        report.max_abs_error, report.outputs_agree = compare_outputs(first[0], first[1])
        report.machine["onnxruntime_intra_op_threads"] = ort_threads
    pool = report.machine["tvm_pool_threads"]
    if runtime is None and _runs_on_cpu(rt) and threads is not None and pool != threads:
        report.notes.append(
            f"TVM's thread pool runs {pool} threads, not {threads}: it was started earlier "
            "in this process"
        )
    return report


def _runs_on_cpu(rt: Any) -> bool:
    device = getattr(rt, "device", None)
    return device is None or str(device).startswith("cpu")


def _is_artifact(model: Any) -> bool:
    """Whether ``model`` is a path to an nnxc artifact (in-memory models never are)."""
    from compiler.artifact import is_artifact

    return isinstance(model, str | os.PathLike) and is_artifact(model)


def _jsonable(value: Any) -> Any:
    if isinstance(value, str | int | float | bool | type(None)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return str(value)


def _check_symbolic_batch(inputs: Sequence[Any], batch: int | None, bound: bool) -> None:
    """Random inputs need every dim known: point at --batch for a symbolic leading one, and
    refuse --batch for a runtime without one (unless compiling ``bound`` it already)."""
    if batch is not None:
        if bound:
            return
        if not any(t.shape and isinstance(t.shape[0], str) for t in inputs):
            sig = ", ".join(str(t) for t in inputs)
            raise NnxcError(f"--batch {batch}: no input has a symbolic leading dim ({sig})")
        return
    for t in inputs:
        if t.shape and isinstance(t.shape[0], str):
            raise NnxcError(
                f"input {t} has a symbolic batch dim: give --batch B, --inputs FILE.npz, or "
                "compile with --input-shape"
            )


def _check_batch_matches(feeds: Mapping[str, Any], batch: int | None) -> None:
    if batch is None:
        return
    for name, x in feeds.items():
        shape = np.shape(x)
        if not shape or shape[0] != batch:
            raise NnxcError(
                f"--batch {batch}: input {name!r} from --inputs has shape {list(shape)}"
            )
