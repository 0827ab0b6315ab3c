"""nnxc's Relax pipeline for CPUs: TVM's CPU passes plus our schedule rules.

TVM's own CPU pipeline legalizes and fuses ops but leaves every PrimFunc unscheduled (naive
loops). Ours legalizes some ops itself first (``legalize.py``: conv weights packed at
compile time into the blocked layout our conv rules want, a vectorizable erf), and between
fusion and lowering applies ``schedules.cpu_rules()``.
"""

from __future__ import annotations

import tvm
from tvm import relax
from tvm.relax.backend.cpu_generic import pipeline as cpu
from tvm.s_tir import dlight

from .legalize import legalize_ops
from .schedules import cpu_rules


def legalize_passes(target: tvm.target.Target) -> list[tvm.transform.Pass]:
    """TVM's CPU legalization with our conv2d rule (weights packed at compile time), and
    without FoldConstant: nnxc's own passes already folded the graph's constants, and Relax's
    folding turns zero-size results into constants the VM cannot load back."""
    return [
        legalize_ops(target),
        relax.transform.AnnotateTIROpPattern(),
        relax.transform.FuseOps(),
        relax.transform.FuseTIR(),
    ]


def cpu_pipeline(target: tvm.target.Target) -> tvm.transform.Pass:
    rules = cpu_rules()
    scheduling = [dlight.ApplyDefaultSchedule(*rules)] if rules else []

    @tvm.transform.module_pass(opt_level=0, name="nnxc.cpu_pipeline")
    def _pipeline(mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        with target:
            seq = tvm.transform.Sequential(
                cpu.library_dispatch_passes(target)
                + legalize_passes(target)
                + scheduling
                + cpu.dataflow_lower_passes(target)
                + cpu.finalize_passes(target)
            )
            return seq(mod)

    return _pipeline


def pipeline_for(target: tvm.target.Target) -> tvm.transform.Pass | str:
    """Our pipeline for LLVM targets; TVM's default for the others."""
    if target.kind.name == "llvm":
        return cpu_pipeline(target)
    return relax.get_default_pipeline(target)
