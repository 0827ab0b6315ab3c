"""nnxc's Relax pipeline for CPUs: TVM's CPU passes plus our schedule rules.

TVM's own CPU pipeline legalizes and fuses ops but leaves every PrimFunc unscheduled (naive
loops). Ours legalizes some ops itself first (``legalize.py``: conv weights packed at
compile time into the blocked layout our conv rules want, a vectorizable erf), and between
fusion and lowering applies ``schedules.cpu_rules()``. With tuning records (``nnxc tune``),
each PrimFunc that has one gets its fastest record first, and our rules schedule the rest.
"""

from __future__ import annotations

import contextlib

import tvm
from tvm import relax
from tvm.relax.backend.cpu_generic import pipeline as cpu
from tvm.s_tir import dlight

from .legalize import legalize_ops
from .schedules import cpu_rules
from .schedules.unit_reductions import fold_unit_reductions_pass


def legalize_passes(target: tvm.target.Target) -> list[tvm.transform.Pass]:
    """TVM's CPU legalization with our conv2d rule (weights packed at compile time), and
    without FoldConstant: nnxc's own passes already folded the graph's constants, and Relax's
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


def schedule_prefix_passes(target: tvm.target.Target) -> list[tvm.transform.Pass]:
    """Everything before scheduling. Tuning extracts its tasks after exactly these passes, so
    that its records match the PrimFuncs a build schedules."""
    return cpu.library_dispatch_passes(target) + legalize_passes(target)


def cpu_pipeline(target: tvm.target.Target, records: str | None = None) -> tvm.transform.Pass:
    """``records``: a folder written by ``nnxc tune``; functions with records there get the
    fastest one (and ``tirx.is_scheduled``, so our rules leave them alone), as long as our
    current schedule is among the records (``tuning.keep_current_schedules``)."""
    rules = cpu_rules()
    scheduling = [dlight.ApplyDefaultSchedule(*rules)] if rules else []
    database = None
    if records is not None:
        from .tuning import keep_current_schedules, open_records

        database = open_records(records)

    @tvm.transform.module_pass(opt_level=0, name="nnxc.cpu_pipeline")
    def _pipeline(mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        with target, database if database is not None else contextlib.nullcontext():
            tuned = []
            if database is not None:
                # ApplyDatabase finds the target and the database in the context when made.
                tuned = [
                    keep_current_schedules(database, target),
                    relax.transform.MetaScheduleApplyDatabase(),
                ]
            seq = tvm.transform.Sequential(
                schedule_prefix_passes(target)
                + tuned
                + scheduling
                + cpu.dataflow_lower_passes(target)
                + cpu.finalize_passes(target)
            )
            return seq(mod)

    return _pipeline


def pipeline_for(target: tvm.target.Target, records: str | None = None) -> tvm.transform.Pass | str:
    """Our pipeline for LLVM targets; TVM's default for the others (which take no records)."""
    if target.kind.name == "llvm":
        return cpu_pipeline(target, records)
    if records is not None:
        from compiler.errors import NnxcError

        raise NnxcError(f"tuning records apply to LLVM targets only, not {target.kind.name}")
    return relax.get_default_pipeline(target)
