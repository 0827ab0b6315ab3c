"""The whole pipeline, and the only module that knows it: load -> frontend -> passes ->
backend -> artifact."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from compiler.artifact import Metadata, TensorInfo, write_artifact
from compiler.errors import NnxcError
from compiler.frontends.base import Source, frontend_for
from compiler.ir.graph import Graph
from compiler.ir.resources import check_memory
from compiler.ir.types import TensorType
from compiler.limits import memory_limit
from compiler.options import CompileOptions
from compiler.progress import bar

Progress = Callable[[str], None]


def import_model(
    model: Any,
    input_shapes: dict | None = None,
    input_values: dict | None = None,
    function: str | None = None,
) -> tuple[Graph, Source]:
    """Model (path or in-memory, of any registered format) -> IR graph, before any pass;
    ``function`` picks one function of a multi-function model (Core ML ML Programs)."""
    frontend = frontend_for(model)
    if function is None:
        return frontend.import_model(model, input_shapes, input_values)
    if not frontend.functions:
        raise NnxcError(f"--function: {frontend.title} models have no functions to choose from")
    return frontend.import_model(model, input_shapes, input_values, function=function)


EXTRA_METADATA = ("labels", "dim_bounds", "input_shape_choices", "precision", "mil_function")
"""Graph metadata the artifact keeps (``Metadata.extra``); JSON text where structured."""


def _extra(graph: Graph) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    for key in EXTRA_METADATA:
        if key in graph.metadata:
            text = graph.metadata[key]
            extra[key] = json.loads(text) if text[:1] in "[{" else text
    return extra


def optimize(graph: Graph, options: CompileOptions, out: Any = None, quiet: bool = True) -> Graph:
    """Run the pass pipeline the options name (the standard one by default); unless
    ``quiet``, a bar on a terminal counts the passes (big models spend seconds in some)."""
    from passes import default_pipeline, get_pass, run_passes

    after = options.print_ir_after
    names = options.passes if options.passes is not None else default_pipeline()
    pipeline = [get_pass(p) if isinstance(p, str) else p for p in names]
    with bar(len(pipeline), "optimize", unit="pass", quiet=quiet) as passes_bar:
        if not passes_bar.disable:
            pipeline = [_CountedPass(p, passes_bar) for p in pipeline]
        run_passes(
            graph,
            pipeline,
            verify_each=options.verify_each,
            print_after="all" if "all" in after else set(after),
            time_passes=options.time_passes,
            out=out,
        )
    return graph


class _CountedPass:
    """A pass that moves a progress bar when it is done; the manager sees the same name (for
    --print-ir-after, timings and errors)."""

    def __init__(self, inner: Any, progress_bar: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.description = inner.description
        self.bar = progress_bar

    def run(self, graph: Graph) -> bool:
        self.bar.set_postfix_str(self.name)
        changed = self.inner.run(graph)
        self.bar.update(1)
        return changed


def signature(graph: Graph) -> tuple[list[TensorInfo], list[TensorInfo]]:
    """The artifact's inputs and outputs; they must be tensors (sequences and optionals may
    flow inside the model, not across its boundary)."""
    for what, values, names in (
        ("input", graph.inputs, [v.name for v in graph.inputs]),
        ("output", graph.outputs, graph.output_names),
    ):
        for v, name in zip(values, names):
            if not isinstance(v.type, TensorType):
                raise NnxcError(
                    f"model {what} {name!r} is {v.type}: compiled artifacts take and return "
                    "tensors only"
                )
    ins = [TensorInfo(v.name, v.shape, v.dtype) for v in graph.inputs]
    outs = [TensorInfo(n, v.shape, v.dtype) for n, v in zip(graph.output_names, graph.outputs)]
    return ins, outs


@dataclass
class CompiledModel:
    """A model compiled for one target: its optimized graph and TVM executable."""

    graph: Graph
    executable: Any
    target: Any  # backends.tvm.TargetSpec
    source: Source
    timings: dict[str, float] = field(default_factory=dict)
    compute_precision: str = "fp32"  # the kernels' (--precision); "precision" is Core ML's
    _runtime: Any = field(default=None, init=False, repr=False)  # made by the first ``run``

    @property
    def metadata(self) -> Metadata:
        import tvm

        from compiler import __version__

        ins, outs = signature(self.graph)
        return Metadata(
            inputs=ins,
            outputs=outs,
            target=self.target.to_json(),
            source_format=self.source.format,
            source_sha256=self.source.sha256,
            source_name=self.source.name,
            nnxc_version=__version__,
            tvm_version=tvm.__version__,
            extra={**_extra(self.graph), "compute_precision": self.compute_precision},
        )

    def export(self, path: str | os.PathLike) -> None:
        """Write the deployable shared library (kernels, VM code, weights, metadata)."""
        from backends.tvm import export

        write_artifact(path, lambda tmp: export(self.executable, tmp, self.target), self.metadata)

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run in this process (host targets only), with the same checks as ``load().run``."""
        from compiler.runtime import Runtime

        if self.target.kind == "cuda":
            raise NnxcError(
                "CompiledModel.run runs CPU code only: export the CUDA artifact and load it "
                "with compiler.load(path, device='cuda')"
            )
        if not self.target.is_host:
            raise NnxcError(f"code for {self.target} cannot run on this machine")
        if self._runtime is None:  # a VM and its output analysis, once (vm_outputs)
            self._runtime = Runtime.from_executable(self.executable, self.metadata)
        return self._runtime.run(inputs)


def compile(  # noqa: A001 - the API name users expect
    model: Any,
    target: str = "cpu",
    input_shapes: dict | None = None,
    *,
    progress: Progress | None = None,
    **options: Any,
) -> CompiledModel:
    """Compile a model (a path or an in-memory model of a registered format: see
    ``compiler.frontends.base.frontends()``) for ``target``.

    Options are those of ``CompileOptions`` (``passes``, ``verify_each``, ``print_ir_after``,
    ``time_passes``, ``records``); ``progress`` receives one line per stage.
    """
    opts = CompileOptions.from_kwargs(
        target=target, input_shapes=dict(input_shapes or {}), **options
    )
    from backends.tvm import build, resolve_target
    from backends.tvm.precision import check_precision

    spec = resolve_target(opts.target)
    check_precision(opts.precision, spec.kind)
    if opts.records is not None:
        from backends.tvm.tuning import check_records

        check_records(opts.records)
    stage, timings = _stages(progress, ("import", "optimize", "lower", "build"))
    graph, source, mod = _import_and_lower(model, opts, stage)
    executable = stage(
        "build",
        lambda: build(
            mod,
            spec,
            records=opts.records,
            precision=opts.precision,
            cuda_graph=opts.cuda_graph,
        ),
    )
    return CompiledModel(graph, executable, spec, source, timings, opts.precision)


def tune(
    model: Any,
    records: str | os.PathLike,
    trials: int,
    target: str = "cpu",
    input_shapes: dict | None = None,
    *,
    progress: Progress | None = None,
    seed: int | None = None,
    remote: Any = None,
    **options: Any,
) -> list[Any]:
    """Tune a model's kernels with MetaSchedule, about ``trials`` measured candidates in all,
    keeping the records in the folder ``records`` for ``compile(..., records=...)``.
    ``remote`` (a ``compiler.remote.Remote`` tracker): measure on its servers instead of here.

    Tuning again with the same folder runs only the trials still missing. The other options
    are those of ``compile`` (give the same ones there, so that the kernels match). Returns one
    ``backends.tvm.tuning.TaskReport`` per task; ``progress`` gets one line per stage and task.
    """
    opts = CompileOptions.from_kwargs(
        target=target, input_shapes=dict(input_shapes or {}), **options
    )
    from backends.tvm import resolve_target
    from backends.tvm.precision import check_precision
    from backends.tvm.tuning import check_tunable
    from backends.tvm.tuning import tune as tune_module

    spec = resolve_target(opts.target)
    check_precision(opts.precision, spec.kind)
    check_tunable(spec, trials)
    stage, _ = _stages(progress, ("import", "optimize", "lower", "tune"))
    _, _, mod = _import_and_lower(model, opts, stage)
    return stage(
        "tune",
        lambda: tune_module(mod, spec, records, trials, progress, seed=seed, remote=remote),
    )


class Stages:
    """Runs named, timed stages of one job (import, optimize, ...). Each stage's time goes to
    ``timings`` and to ``progress`` as a line ("build: 1.20 s"); off a terminal a line also
    says when a stage starts ("build..."), on one a bar over the stages shows the current one
    instead. Without ``progress`` it is silent."""

    def __init__(self, progress: Progress | None, names: Sequence[str]) -> None:
        self.quiet = progress is None
        self.say = progress or (lambda _: None)
        self.timings: dict[str, float] = {}
        self.bar = bar(len(names), "stages", unit="stage", quiet=self.quiet)

    def __call__(self, name: str, fn: Callable[[], Any]) -> Any:
        if self.bar.disable:
            self.say(f"{name}...")
        else:
            self.bar.set_postfix_str(name)
        t = time.perf_counter()
        try:
            result = fn()
        except BaseException:
            self.bar.close()
            raise
        self.timings[name] = time.perf_counter() - t
        self.say(f"{name}: {self.timings[name]:.2f} s")
        self.bar.update(1)
        if self.bar.total is not None and self.bar.n >= self.bar.total:
            self.bar.refresh()  # tqdm skips draws within 0.1 s of the last: show the end
            self.bar.close()
        return result


def _stages(progress: Progress | None, names: Sequence[str] = ()) -> tuple[Stages, dict]:
    """A ``Stages`` over ``names`` and the timings it fills in."""
    stages = Stages(progress, names)
    return stages, stages.timings


def _import_and_lower(model: Any, opts: CompileOptions, stage: Stages) -> tuple[Graph, Source, Any]:
    from backends.tvm import check_supported, lower_graph, resolve_target

    # Run-time checks are host loops: CPU targets only (backends/tvm/lowering/checks.py).
    checks = opts.runtime_checks and resolve_target(opts.target).kind != "cuda"
    with memory_limit(opts.max_memory):
        graph, source = stage(
            "import", lambda: import_model(model, opts.input_shapes or None, None, opts.function)
        )
        stage("optimize", lambda: optimize(graph, opts, quiet=stage.quiet))
        check_memory(graph)
        check_supported(graph)
        mod = stage("lower", lambda: lower_graph(graph, runtime_checks=checks))
    return graph, source, mod
