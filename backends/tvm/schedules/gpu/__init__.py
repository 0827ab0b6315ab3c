"""GPU schedule rules: dlight's defaults, the floor every CUDA build stands on.

``gpu_rules(target)`` is the list TVM's own CUDA pipeline applies (``Matmul``, ``GEMV``,
``Reduction``, ``GeneralReduction``, ``Fallback``), in its order: every fused PrimFunc gets
one of them, ``Fallback`` (a flat thread binding) catching whatever the others refuse. A rule
that fails on a kernel counts as declining it (``_Tolerant``). Ahead of them,
``ElementwiseChain`` takes the long elementwise chains dlight's inlining would blow up.

nnxc-specific GPU rules (convolutions beyond dlight's implicit GEMM, normalization and
softmax rows, attention) belong in this package, as modules of their own listed *before*
dlight's rules, each with the measurements that justify it. None is here yet (the one rule
of ours, ``chains.ElementwiseChain``, makes a build finish, not run faster): the machines
this was written on have no GPU, so no rule could be measured or checked numerically on one,
and an unmeasured rule is a guess. dlight's optional rules (``LowBatchGEMV``, ``Transpose``,
``RMSNorm``) are left out: none of them applies to any fused kernel of squeezenet or of the
zoo models (mobilenet, transformer, unet, lstm) after our legalization and fusion.
"""

from __future__ import annotations

import tvm
from tvm import tirx
from tvm.s_tir import dlight
from tvm.s_tir.dlight import ScheduleRule
from tvm.target import Target

from .chains import ElementwiseChain


class _Tolerant(ScheduleRule):
    """A dlight rule that declines a kernel it fails on, so that the next rule in the list
    gets it. dlight's analyses assert, and schedule primitives raise, on some kernels instead
    of the rule declining: ``Reduction`` on roi_align's reads at data-dependent positions
    and in ``rfactor`` of nll_loss's weighted sums, ``Fallback`` fusing the zero-extent
    loops of a zero-size kernel (left unscheduled, it compiles to nothing). Each rule works
    on its own copy of the function, so a failed one leaves nothing behind."""

    def __init__(self, rule: ScheduleRule) -> None:
        self.rule = rule

    def apply(self, func: tirx.PrimFunc, target: Target, tunable: bool):
        try:
            return self.rule.apply(func, target, tunable)
        except (AssertionError, tvm.error.InternalError, ValueError):
            return None

    def __repr__(self) -> str:
        return f"_Tolerant({type(self.rule).__name__})"


def gpu_rules(target: Target) -> list[ScheduleRule]:
    """The rules applied to every PrimFunc of a GPU build, most specific first (``target``:
    for the rules to come, which will depend on the architecture)."""
    rules = [
        ElementwiseChain(),
        dlight.gpu.Matmul(),
        dlight.gpu.GEMV(),
        dlight.gpu.Reduction(),
        dlight.gpu.GeneralReduction(),
        dlight.gpu.Fallback(),
    ]
    return [_Tolerant(rule) for rule in rules]
