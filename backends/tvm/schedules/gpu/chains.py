"""Long chains of elementwise blocks in one kernel, scheduled without unbounded inlining.

A fused kernel can hold a chain whose every step reads the previous one twice: integer pow
is square-and-multiply over the exponent's bits (``lowering/elementwise._int_pow``), 64
squarings for int64. Inlining such a chain doubles the code per step, and dlight's rules all
start by inlining every producer they can (``Fallback`` too): the build never finishes.
``ElementwiseChain`` takes kernels of more than ``MIN_BLOCKS`` blocks, all of them spatial,
inlines only while the function stays small (``schedules/inline.py``, shared with the CPU
rules) and binds each block left to its own threads, as ``Fallback`` does.
"""

from __future__ import annotations

from tvm import s_tir, tirx
from tvm.s_tir.dlight import ScheduleRule
from tvm.s_tir.dlight.analysis import normalize_prim_func
from tvm.target import Target

from ..inline import inline_bounded

MIN_BLOCKS = 32
"""Kernels with fewer blocks are left to dlight's rules: no model kernel comes near this
except such chains."""

_THREADS = 256


class ElementwiseChain(ScheduleRule):
    def apply(self, func: tirx.PrimFunc, target: Target, tunable: bool):
        if not isinstance(func, tirx.PrimFunc):
            return None
        sch = s_tir.Schedule(func)
        blocks = normalize_prim_func(sch)
        if blocks is None or len(blocks) <= MIN_BLOCKS:
            return None
        if any(b.dom_kind().strip("S") for b in blocks):
            return None  # reductions and opaque blocks: not a chain
        sch, blocks = inline_bounded(sch, blocks)
        for block in blocks:
            loops = sch.get_loops(block.block_rv) or [sch.add_unit_loop(block.block_rv)]
            fused = sch.fuse(*loops)
            bx, tx = sch.split(fused, [None, _THREADS])
            sch.bind(bx, "blockIdx.x")
            sch.bind(tx, "threadIdx.x")
        return sch
