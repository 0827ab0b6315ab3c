"""GPU schedule rules: dlight's defaults, the floor every CUDA build stands on.

``gpu_rules(target)`` is the list TVM's own CUDA pipeline applies (``Matmul``, ``GEMV``,
``Reduction``, ``GeneralReduction``, ``Fallback``), in its order: every fused PrimFunc gets
one of them, ``Fallback`` (a flat thread binding) catching whatever the others refuse.

nnxc-specific GPU rules (convolutions beyond dlight's implicit GEMM, normalization and
softmax rows, attention) belong in this package, as modules of their own listed *before*
dlight's rules, each with the measurements that justify it. None is here yet: the machines
this was written on have no GPU, so no rule could be measured or checked numerically on one,
and an unmeasured rule is a guess. dlight's optional rules (``LowBatchGEMV``, ``Transpose``,
``RMSNorm``) are left out: none of them applies to any fused kernel of squeezenet or of the
zoo models (mobilenet, transformer, unet, lstm) after our legalization and fusion.
"""

from __future__ import annotations

from tvm.s_tir import dlight
from tvm.s_tir.dlight import ScheduleRule
from tvm.target import Target


def gpu_rules(target: Target) -> list[ScheduleRule]:
    """The rules applied to every PrimFunc of a GPU build, most specific first (``target``:
    for the rules to come, which will depend on the architecture)."""
    return [
        dlight.gpu.Matmul(),
        dlight.gpu.GEMV(),
        dlight.gpu.Reduction(),
        dlight.gpu.GeneralReduction(),
        dlight.gpu.Fallback(),
    ]
