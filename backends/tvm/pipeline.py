"""nnxc's Relax pipeline: one shape for every target, the target choosing rules and passes.

    [mixed precision] -> library dispatch -> legalization -> unit-reduction folding, fusion
    -> [tuning records] -> scheduling -> dataflow lowering -> finalize

- mixed precision (``precision="fp16"``, CUDA only): ``ToMixedPrecision`` on the Relax ops
  our lowering emits (``precision.py``).
- library dispatch: TVM's for the target family (sort, scan, sampling as TIR or library
  calls; ``DispatchSortScan`` picks GPU kernels for CUDA, ``tvm.contrib.sort`` for CPUs).
- legalization: ``legalize.legalize_ops(target)``: rules shared by every target (erf,
  softmax, max) plus the CPU's conv weight packing; then ``fold_unit_reductions``
  (``schedules/unit_reductions.py``, every target) and TVM's fusion.
- tuning records (``nnxc tune``, LLVM only): each PrimFunc with a record gets the fastest.
- scheduling: dlight's ``ApplyDefaultSchedule`` with ``schedules.cpu.cpu_rules()`` or
  ``schedules.gpu.gpu_rules(target)``. TVM's own CPU pipeline schedules nothing at all.
- dataflow lowering and finalize: TVM's passes for the family; CUDA's finalize includes
  ``RewriteCUDAGraph``, which nnxc turns on for static-shape models unless ``cuda_graph`` is
  False (``_use_cuda_graph``).

The CPU pipeline is TVM's CPU passes without ``FoldConstant`` (see ``legalize_passes``),
with our legalization and rules: unchanged from when it was CPU-only.
"""

from __future__ import annotations

import contextlib

import tvm
from tvm import relax, tirx
from tvm.relax.backend.cpu_generic import pipeline as cpu
from tvm.relax.backend.cuda import pipeline as cuda
from tvm.s_tir import dlight

from compiler.errors import NnxcError

from .intrinsics import tensor_intrinsics_only
from .legalize import legalize_ops
from .precision import check_precision, mixed_precision_passes
from .schedules.unit_reductions import fold_unit_reductions_pass

CUDA_GRAPH_CONFIG = "relax.backend.use_cuda_graph"


def is_gpu(target: tvm.target.Target) -> bool:
    return target.kind.name == "cuda"


def library_dispatch_passes(target: tvm.target.Target) -> list[tvm.transform.Pass]:
    family = cuda if is_gpu(target) else cpu
    return family.library_dispatch_passes(target)


def legalize_passes(target: tvm.target.Target) -> list[tvm.transform.Pass]:
    """TVM's legalization with our rules for the target (``legalize.py``), and without
    FoldConstant: nnxc's own passes already folded the graph's constants, and Relax's
    folding turns zero-size results into constants the VM cannot load back. Reductions over
    unit axes (matmul with K = 1) are made elementwise before fusion (``unit_reductions.py``):
    they fuse like one, and the rules would otherwise miscompile them."""
    return [
        legalize_ops(target),
        fold_unit_reductions_pass(),
        relax.transform.AnnotateTIROpPattern(),
        relax.transform.FuseOps(),
        relax.transform.FuseTIR(),
    ]


def schedule_prefix_passes(
    target: tvm.target.Target, precision: str = "fp32"
) -> list[tvm.transform.Pass]:
    """Everything before scheduling. Tuning extracts its tasks after exactly these passes, so
    that its records match the PrimFuncs a build schedules."""
    return (
        mixed_precision_passes(precision)
        + library_dispatch_passes(target)
        + legalize_passes(target)
    )


def schedule_rules(target: tvm.target.Target) -> list[dlight.ScheduleRule]:
    if is_gpu(target):
        from .schedules.gpu import gpu_rules

        return gpu_rules(target)
    from .schedules.cpu import cpu_rules

    return cpu_rules()


def lowering_passes(target: tvm.target.Target) -> list[tvm.transform.Pass]:
    """Dataflow lowering and finalize, TVM's for the family (CUDA's has RewriteCUDAGraph)."""
    family = cuda if is_gpu(target) else cpu
    return family.dataflow_lower_passes(target) + family.finalize_passes(target)


def pipeline_for(
    target: tvm.target.Target,
    records: str | None = None,
    precision: str = "fp32",
    cuda_graph: bool = True,
) -> tvm.transform.Pass:
    """The pipeline for ``target`` (an LLVM or CUDA ``tvm.target.Target``).

    ``records``: a folder written by ``nnxc tune`` (LLVM only); functions with records there
    get the fastest one (and ``tirx.is_scheduled``, so our rules leave them alone), as long
    as our current schedule is among the records (``tuning.keep_current_schedules``).
    ``precision``: "fp32" or "fp16" (CUDA; ``check_precision``). ``cuda_graph``: let CUDA
    builds of static-shape models capture their kernels in CUDA graphs (``_use_cuda_graph``).
    """
    kind = target.kind.name
    if kind not in ("llvm", "cuda"):
        raise NnxcError(f"nnxc builds for llvm and cuda targets, not {kind}")
    check_precision(precision, kind)
    if records is not None and kind != "llvm":
        raise NnxcError(f"tuning records apply to LLVM targets only, not {kind}")
    rules = schedule_rules(target)
    scheduling = [dlight.ApplyDefaultSchedule(*rules)] if rules else []
    database = None
    if records is not None:
        from .tuning import keep_current_schedules, open_records

        database = open_records(records)

    @tvm.transform.module_pass(opt_level=0, name="nnxc.pipeline")
    def _pipeline(mod: tvm.IRModule, ctx: tvm.transform.PassContext) -> tvm.IRModule:
        graphs = is_gpu(target) and cuda_graph and _static_shapes(mod)
        # fp16 takes dlight's tensor-core path, which imports TVM's tensor intrinsics: the
        # CUDA ones only. (fp32 never does; int8 matmuls would, importing them all.)
        fp16_gpu = is_gpu(target) and precision == "fp16"
        intrinsics = tensor_intrinsics_only("cuda") if fp16_gpu else None
        with (
            target,
            database if database is not None else contextlib.nullcontext(),
            intrinsics if intrinsics is not None else contextlib.nullcontext(),
        ):
            tuned = []
            if database is not None:
                # ApplyDatabase finds the target and the database in the context when made.
                tuned = [
                    keep_current_schedules(database, target),
                    relax.transform.MetaScheduleApplyDatabase(),
                ]
            mod = tvm.transform.Sequential(
                schedule_prefix_passes(target, precision) + tuned + scheduling
            )(mod)
            with _use_cuda_graph(ctx) if graphs else contextlib.nullcontext():
                return tvm.transform.Sequential(lowering_passes(target))(mod)

    return _pipeline


@contextlib.contextmanager
def _use_cuda_graph(ctx: tvm.transform.PassContext):
    """Within: ``ctx`` with CUDA graphs on, unless its config says otherwise.

    ``RewriteCUDAGraph`` (in CUDA's finalize) lifts the kernels between statically planned
    buffers into a function that the VM captures once into a CUDA graph and then replays: one
    launch instead of one per kernel, which is what batch-1 models are bound by. TVM leaves it
    off by default; nnxc turns it on for models without control flow whose shapes are all
    static (``_static_shapes``; symbolic shapes would capture one graph per shape). A
    caller's explicit ``relax.backend.use_cuda_graph`` in the PassContext wins; ``nnxc compile
    --no-cuda-graph`` turns it off."""
    config = dict(ctx.config)
    if CUDA_GRAPH_CONFIG in config:
        yield
        return
    config[CUDA_GRAPH_CONFIG] = True
    with tvm.transform.PassContext(
        opt_level=ctx.opt_level,
        required_pass=list(ctx.required_pass),
        disabled_pass=list(ctx.disabled_pass),
        config=config,
    ):
        yield


def _static_shapes(mod: tvm.IRModule) -> bool:
    """Whether the module is one Relax function whose parameters and results all have static
    shapes. Control flow (``if`` branches, loop steps) makes more functions; a loop step calls
    itself, and the storage a captured graph caches would then be shared by nested calls."""
    funcs = [f for f in mod.functions.values() if isinstance(f, relax.Function)]
    if len(funcs) != 1:
        return False
    infos = [p.ty for p in funcs[0].params] + [funcs[0].ret_ty]
    return all(_static(s) for s in infos)


def _static(ty: relax.Type) -> bool:
    if isinstance(ty, relax.TupleType):
        return all(_static(f) for f in ty.fields)
    if isinstance(ty, relax.TensorType):
        shape = ty.shape
        return isinstance(shape, relax.ShapeExpr) and all(
            isinstance(d, tirx.IntImm) for d in shape.values
        )
    return False  # shapes and scalars: their values come at run time
