"""CPU schedule rules for convolutions.

``PackedConv2D`` schedules the conv2d that ``conv_layout.py`` legalizes with a pre-packed weight
``[O // bn, I / groups, KH, KW, bn]`` (its reduction block carries the ``CONV_ATTR``
annotation), together with the elementwise epilogue fused after it (bias, ReLU, residual add):

- the epilogue's loops are tiled ``(n, oc // bn, oh, ow // tw) x (ow % tw, oc % bn)``; the
  outer three run in parallel;
- the conv is computed at the ``ow // tw`` loop into a ``tw x bn`` local accumulator (oc
  innermost) that LLVM keeps in vector registers: reduction over ``ic, kh, kw`` outside,
  ``tw`` unrolled, ``bn`` output channels vectorized, weights loaded as contiguous vectors and
  input pixels broadcast;
- the pad stage stays a separate parallel loop nest at the root.

Rules return None on anything they do not recognize; the first rule that matches wins.
"""

from __future__ import annotations

import tvm
from tvm import s_tir, tirx
from tvm.s_tir.dlight import ScheduleRule
from tvm.target import Target

from .conv_layout import CONV_ATTR, vector_lanes

_DATA_PAR = 0
_COMM_REDUCE = 2


def _int(x) -> int | None:
    return int(x) if isinstance(x, tirx.IntImm) else None


def _choose_tile(extent: int, max_tile: int) -> int:
    """Width of the register tile over ``extent``: least padded work, then the widest."""
    if extent <= max_tile:
        return extent
    best, best_cost = max_tile, None
    for t in range(max_tile, max(1, max_tile // 2) - 1, -1):
        cost = -(-extent // t) * t
        if best_cost is None or cost < best_cost:
            best, best_cost = t, cost
    return best


class PackedConv2D(ScheduleRule):
    """The packed-weight NCHW conv2d of ``conv_layout`` plus its fused elementwise epilogue."""

    def apply(self, func: tirx.PrimFunc, target: Target, _tunable: bool):
        if not isinstance(func, tirx.PrimFunc):
            return None
        try:
            return self._apply(func, target)
        except tvm.TVMError:
            return None

    def _apply(self, func: tirx.PrimFunc, target: Target):  # noqa: C901, PLR0911, PLR0912
        sch = s_tir.Schedule(func)
        root = sch.get_sblock("root")
        blocks = list(sch.get_child_blocks(root))
        convs = [b for b in blocks if CONV_ATTR in sch.get(b).annotations]
        if len(convs) != 1:
            return None
        conv = convs[0]
        stmt = sch.get(conv)
        bn = int(stmt.annotations[CONV_ATTR])
        kinds = [int(iv.iter_type) for iv in stmt.iter_vars]
        if kinds != [_DATA_PAR] * 4 + [_COMM_REDUCE] * 3 or len(stmt.writes) != 1:
            return None
        loops = sch.get_loops(conv)
        if len(loops) != 7:
            return None
        extents = [_int(sch.get(lp).extent) for lp in loops]
        if any(e is None for e in extents):
            return None
        n, oc, oh, ow = extents[:4]
        if oc % bn:
            return None

        lanes = vector_lanes(target)
        regs_per_row = max(1, bn // lanes)
        tw = _choose_tile(ow, max(1, (12 if lanes <= 8 else 24) // regs_per_row))

        idx = blocks.index(conv)
        producers, consumers = blocks[:idx], blocks[idx + 1 :]
        # Elementwise epilogue: inline all but the last into the last; else a cache write.
        epilogue = None
        if consumers:
            try:
                for b in consumers[:-1]:
                    sch.compute_inline(b)
                epilogue = consumers[-1]
                if not self._elementwise_over(sch, epilogue, [n, oc, oh, ow]):
                    return None
            except tvm.TVMError:
                return None
        if epilogue is None:
            epilogue = sch.cache_write(conv, 0, "local")
        else:
            sch.set_scope(conv, 0, "local")
        # The accumulator keeps output channels innermost (one vector per output pixel).
        sch.transform_layout(conv, ("write", 0), lambda a, b, c, d: (a, c, d, b))

        e_loops = sch.get_loops(epilogue)
        en, eoc, eoh, eow = e_loops
        oco, oci = sch.split(eoc, [None, bn])
        owo, owi = sch.split(eow, [None, tw])
        sch.reorder(en, oco, eoh, owo, owi, oci)
        outer = sch.fuse(en, oco, eoh)
        sch.parallel(outer)
        sch.compute_at(conv, owo, preserve_unit_loops=True)
        sch.vectorize(oci)
        sch.unroll(owi)

        c_loops = sch.get_loops(conv)[-7:]
        cn, coc, coh, cow, rc, ry, rx = c_loops
        sch.reorder(rc, ry, rx, cn, coh, cow, coc)
        sch.unroll(cow)
        sch.vectorize(coc)
        init = sch.decompose_reduction(conv, rc)
        i_loops = sch.get_loops(init)
        sch.vectorize(i_loops[-1])

        for b in producers:
            p_loops = sch.get_loops(b)
            if len(p_loops) >= 2:
                sch.parallel(sch.fuse(*p_loops[:2]))
        return sch

    @staticmethod
    def _elementwise_over(sch: s_tir.Schedule, block, shape: list[int]) -> bool:
        """Whether ``block`` is a 4-deep spatial loop nest of ``shape``."""
        stmt = sch.get(block)
        if any(int(iv.iter_type) != _DATA_PAR for iv in stmt.iter_vars):
            return False
        loops = sch.get_loops(block)
        return [_int(sch.get(lp).extent) for lp in loops] == shape


RULES: list[ScheduleRule] = [PackedConv2D()]
