"""CPU schedule rules for convolutions and pooling.

``PackedConv2D`` schedules the conv2d that ``conv_layout.py`` legalizes with a pre-packed weight
``[O // bn, I / groups, KH, KW, bn]`` (its reduction block carries ``CONV_ATTR``), together with
the elementwise epilogue fused after it (bias, ReLU, residual add, the width crop):

- the epilogue's loops are tiled ``(n, oc // bn, oh, ow // tw) x (ow % tw, oc % bn)``; the
  outer three run in parallel;
- the conv is computed at the ``ow // tw`` loop into a ``tw x bn`` local accumulator (oc
  innermost) that LLVM keeps in vector registers: reduction over ``ic, kh, kw`` outside,
  ``tw`` unrolled, ``bn`` output channels vectorized, weights loaded as contiguous vectors and
  input pixels broadcast;
- producers (the pad stage, a 1x1 conv's subsampling) stay loop nests at the root; a pad is
  split into a zero fill and a condition-free copy, parallel only when large (each parallel
  region costs a barrier).

``WidthConv2D`` does the same for ``conv_layout``'s width-vectorized conv (grouped convs with
no vector of output channels per group): ``rows`` output channels unrolled x ``tw`` pixels
vectorized.

``DepthwiseConv2D`` does the same for ``conv_layout``'s depthwise compute: 4 or 8 channels x
``tw`` pixels of accumulators (``tw`` = one or two vectors), vectorized over output width.

``PointwiseConv2D`` schedules ``conv_layout``'s pointwise conv (a stride-1 1x1 conv as
``W @ X`` over flat pixels): tiles of 2-4 output channels x 1-3 vectors of pixels, weights
broadcast, the input packed into panels per pixel tile, results stored as whole vectors.

``Pool2D`` schedules TVM's NCHW pooling (``pool_max`` / ``pool_sum`` + the average's division):
padding inlined, ``(n, c, oh)`` in parallel, the window unrolled.

Rules return None on anything they do not recognize; the first rule that matches wins.
"""

from __future__ import annotations

from tvm import s_tir, tirx
from tvm.s_tir.dlight import ScheduleRule
from tvm.target import Target

from .conv_layout import (
    CONV_ATTR,
    DEPTHWISE_ATTR,
    DEPTHWISE_CHANNELS_ATTR,
    POINTWISE_ATTR,
    TILE_ATTR,
    WVEC_ATTR,
)

_DATA_PAR = 0
_COMM_REDUCE = 2


def _int(x) -> int | None:
    return int(x) if isinstance(x, tirx.IntImm) else None


def _extents(sch: s_tir.Schedule, block) -> list[int | None]:
    return [_int(sch.get(lp).extent) for lp in sch.get_loops(block)]


def _kinds(sch: s_tir.Schedule, block) -> list[int]:
    return [int(iv.iter_type) for iv in sch.get(block).iter_vars]


def _spatial_nest(sch: s_tir.Schedule, block, lead: list[int], lo: int, hi: int) -> bool:
    """Whether ``block`` is a spatial loop nest ``lead + [w]`` with ``lo < w <= hi``."""
    if any(k != _DATA_PAR for k in _kinds(sch, block)):
        return False
    ext = _extents(sch, block)
    return len(ext) == 4 and ext[:3] == lead and lo < (ext[3] or 0) <= hi


_PARALLEL_COPY = 1 << 18
"""Elements below which a producer (pad copy) runs serially: one parallel region less."""


def _parallel_producers(sch: s_tir.Schedule, producers: list) -> None:
    """Pads become a zero fill plus a plain copy of the interior (no per-element condition,
    which LLVM vectorizes); large ones run in parallel."""
    for b in list(producers):
        if sch.get(b).name_hint.startswith("pad_temp"):
            try:
                sch.decompose_padding(b, sch.get_loops(b)[0])
            except Exception:  # noqa: BLE001 - a schedule step TVM refuses: not our pattern
                pass
    for b in producers:
        loops = sch.get_loops(b)
        ext = _extents(sch, b)
        size = 1
        for e in ext:
            size *= e or 1
        if len(loops) >= 2 and size >= _PARALLEL_COPY:
            sch.parallel(sch.fuse(*loops[:2]))


def _producers_at(sch: s_tir.Schedule, producers: list, loop) -> None:
    """Producers (pad, phase split) computed inside the parallel row loop: each task makes the
    few input rows its outputs read, which stay in cache, instead of a pass over memory."""
    for b in reversed(producers):
        sch.compute_at(b, loop, preserve_unit_loops=True)


class _Rule(ScheduleRule):
    """A rule whose ``_apply`` may raise: any schedule step TVM refuses means the PrimFunc is
    not the rule's pattern, and the rule returns None."""

    def apply(self, func: tirx.PrimFunc, target: Target, _tunable: bool):
        if not isinstance(func, tirx.PrimFunc):
            return None
        try:
            return self._apply(func)
        except Exception:  # noqa: BLE001 - a schedule step TVM refuses: not our pattern
            return None

    def _apply(self, func: tirx.PrimFunc):
        raise NotImplementedError


class _TiledConv(_Rule):
    """Shared part: find the annotated reduction block, tile its epilogue, compute it at."""

    attr = ""
    n_reduce = 0

    def _apply(self, func: tirx.PrimFunc):
        sch = s_tir.Schedule(func)
        blocks = list(sch.get_child_blocks(sch.get_sblock("root")))
        found = [b for b in blocks if self.attr in sch.get(b).annotations]
        if len(found) != 1:
            return None
        conv = found[0]
        stmt = sch.get(conv)
        if len(stmt.writes) != 1:
            return None
        if _kinds(sch, conv) != [_DATA_PAR] * 4 + [_COMM_REDUCE] * self.n_reduce:
            return None
        ext = _extents(sch, conv)
        if len(ext) != 4 + self.n_reduce or any(e is None for e in ext):
            return None
        idx = blocks.index(conv)
        producers, consumers = blocks[:idx], blocks[idx + 1 :]
        if not self._fits(stmt, ext):
            return None
        tw = self._tile(stmt)
        n, c, oh, ow = ext[:4]
        if consumers:
            # Elementwise epilogue (and the width crop): all inlined into the last block.
            for b in consumers[:-1]:
                sch.compute_inline(b)
            epilogue = consumers[-1]
            if not self._epilogue_fits(sch, conv, epilogue, ext, tw):
                return None
            sch.set_scope(conv, 0, "local")
        else:
            epilogue = sch.cache_write(conv, 0, "local")
        self._schedule(sch, conv, epilogue, tw)
        if self._producers_per_row(sch, producers):
            _producers_at(sch, producers, sch.get_loops(epilogue)[0])
        else:
            _parallel_producers(sch, producers)
        return sch

    def _fits(self, stmt, ext: list[int]) -> bool:
        raise NotImplementedError

    def _epilogue_fits(self, sch: s_tir.Schedule, conv, epilogue, ext: list[int], tw: int):
        """The epilogue is a spatial nest over the conv's output, less the width padding (below
        one tile) and the channel padding (below ``_channel_slack``)."""
        n, c, oh, ow = ext[:4]
        e = _extents(sch, epilogue)
        slack = self._channel_slack(sch.get(conv))
        return (
            len(e) == 4
            and all(k == _DATA_PAR for k in _kinds(sch, epilogue))
            and e[0] == n
            and e[2] == oh
            and c - slack <= (e[1] or 0) <= c
            and ow - tw < (e[3] or 0) <= ow
        )

    def _channel_slack(self, stmt) -> int:
        """Output channels the compute may add past the op's (cropped by the epilogue)."""
        return 0

    def _producers_per_row(self, sch: s_tir.Schedule, producers: list) -> bool:
        """Whether to make the producers row by row inside the parallel loop (else: whole
        tensors at the root)."""
        return False

    def _tile(self, stmt) -> int:
        raise NotImplementedError

    def _schedule(self, sch: s_tir.Schedule, conv, epilogue, tw: int) -> None:
        raise NotImplementedError


class PackedConv2D(_TiledConv):
    """The packed-weight NCHW conv2d of ``conv_layout`` plus its fused elementwise epilogue."""

    attr = CONV_ATTR
    n_reduce = 3

    def _fits(self, stmt, ext):
        bn, tw = int(stmt.annotations[CONV_ATTR]), int(stmt.annotations[TILE_ATTR])
        return ext[1] % bn == 0 and ext[3] % tw == 0

    def _tile(self, stmt):
        return int(stmt.annotations[TILE_ATTR])

    def _channel_slack(self, stmt):
        # ``conv_layout._padded_channels``: below one block.
        return int(stmt.annotations[CONV_ATTR]) - 1

    def _schedule(self, sch, conv, epilogue, tw):
        bn = int(sch.get(conv).annotations[CONV_ATTR])
        # The accumulator keeps output channels innermost (one vector per output pixel).
        sch.transform_layout(conv, ("write", 0), lambda a, b, c, d: (a, c, d, b))
        en, eoc, eoh, eow = sch.get_loops(epilogue)
        oco, oci = sch.split(eoc, [None, bn])
        owo, owi = sch.split(eow, [None, tw])
        sch.reorder(en, oco, eoh, owo, owi, oci)
        sch.parallel(sch.fuse(en, oco, eoh))
        sch.compute_at(conv, owo, preserve_unit_loops=True)
        sch.vectorize(oci)
        sch.unroll(owi)

        cn, coc, coh, cow, rc, ry, rx = sch.get_loops(conv)[-7:]
        sch.reorder(rc, ry, rx, cn, coh, cow, coc)
        sch.unroll(cow)
        sch.vectorize(coc)
        init = sch.decompose_reduction(conv, rc)
        sch.vectorize(sch.get_loops(init)[-1])


class WidthConv2D(_TiledConv):
    """``conv_layout``'s width-vectorized NCHW conv2d: ``rows`` output channels x ``tw`` pixels
    of accumulators, weights broadcast, input rows loaded as vectors."""

    attr = WVEC_ATTR
    n_reduce = 3

    def _fits(self, stmt, ext):
        rows, tw = int(stmt.annotations[WVEC_ATTR]), int(stmt.annotations[TILE_ATTR])
        return ext[1] % rows == 0 and ext[3] % tw == 0

    def _tile(self, stmt):
        return int(stmt.annotations[TILE_ATTR])

    def _schedule(self, sch, conv, epilogue, tw):
        rows = int(sch.get(conv).annotations[WVEC_ATTR])
        en, eoc, eoh, eow = sch.get_loops(epilogue)
        oco, oci = sch.split(eoc, [None, rows])
        owo, owi = sch.split(eow, [None, tw])
        sch.reorder(en, oco, eoh, owo, oci, owi)
        sch.parallel(sch.fuse(en, oco, eoh))
        sch.compute_at(conv, owo, preserve_unit_loops=True)
        sch.unroll(oci)
        sch.vectorize(owi)

        cn, coc, coh, cow, rc, ry, rx = sch.get_loops(conv)[-7:]
        sch.reorder(rc, ry, rx, cn, coh, coc, cow)
        sch.unroll(coc)
        sch.vectorize(cow)
        init = sch.decompose_reduction(conv, rc)
        sch.vectorize(sch.get_loops(init)[-1])


class DepthwiseConv2D(_TiledConv):
    """``conv_layout``'s NCHW depthwise conv2d: vectors over output width, window unrolled."""

    attr = DEPTHWISE_ATTR
    n_reduce = 2

    def _producers_per_row(self, sch, producers):
        # Measured (MobileNet shapes, one thread): a strided depthwise conv gains when its
        # phase split is made row by row (0.94 -> 0.67 ms at 112x112); a stride-1 one loses
        # (0.50 -> 0.77 ms at 56x56: its rows are re-padded for each of the kernel's rows).
        return any(sch.get(b).name_hint.startswith("phase_split") for b in producers)

    def _fits(self, stmt, ext):
        ct = int(stmt.annotations[DEPTHWISE_CHANNELS_ATTR])
        return ext[3] % int(stmt.annotations[DEPTHWISE_ATTR]) == 0 and ext[1] % ct == 0

    def _tile(self, stmt):
        return int(stmt.annotations[DEPTHWISE_ATTR])

    def _schedule(self, sch, conv, epilogue, tw):
        ct = int(sch.get(conv).annotations[DEPTHWISE_CHANNELS_ATTR])
        en, ec, eoh, eow = sch.get_loops(epilogue)
        co, ci = sch.split(ec, [None, ct])
        owo, owi = sch.split(eow, [None, tw])
        sch.reorder(en, co, eoh, owo, ci, owi)
        sch.parallel(sch.fuse(en, co, eoh))
        sch.compute_at(conv, owo, preserve_unit_loops=True)
        sch.unroll(ci)
        sch.vectorize(owi)

        cn, cc, coh, cow, ry, rx = sch.get_loops(conv)[-6:]
        sch.reorder(ry, rx, cn, coh, cc, cow)
        sch.unroll(ry)
        sch.unroll(rx)
        sch.unroll(cc)
        sch.vectorize(cow)
        init = sch.decompose_reduction(conv, ry)
        sch.vectorize(sch.get_loops(init)[-1])


def _vectorize_tile(sch: s_tir.Schedule, loop, tw: int) -> None:
    """Vectorize a tile of ``tw`` pixels; three vectors go as three unrolled ones (LLVM turns
    one 24-lane vector into slow code: 10x slower measured)."""
    if tw & (tw - 1) and tw % 3 == 0:
        outer, inner = sch.split(loop, [3, tw // 3])
        sch.unroll(outer)
        sch.vectorize(inner)
    else:
        sch.vectorize(loop)


class PointwiseConv2D(_Rule):
    """``conv_layout``'s pointwise conv (``W[O, I] @ X[I, H*W]``, input packed in panels)
    plus its fused epilogue: tiles of ``rows`` output channels x ``tw`` pixels, pixel tiles in
    parallel, each tile's panel packed just before it is used, then every output channel of
    the tile in turn (the panel stays in L1), the reduction innermost, weights broadcast."""

    def _apply(self, func: tirx.PrimFunc):
        sch = s_tir.Schedule(func)
        blocks = list(sch.get_child_blocks(sch.get_sblock("root")))
        found = [b for b in blocks if POINTWISE_ATTR in sch.get(b).annotations]
        if len(found) != 1 or blocks.index(found[0]) != 1:
            return None
        conv = found[0]
        panels = blocks[0]
        stmt = sch.get(conv)
        rows, tw = int(stmt.annotations[POINTWISE_ATTR]), int(stmt.annotations[TILE_ATTR])
        ext = _extents(sch, conv)
        if _kinds(sch, conv) != [_DATA_PAR] * 3 + [_COMM_REDUCE] or None in ext:
            return None
        n, oc, padded, _ = ext
        if oc % rows or padded % tw:
            return None
        consumers = blocks[2:]
        for b in consumers[:-1]:
            sch.compute_inline(b)
        epilogue = consumers[-1]
        e = _extents(sch, epilogue)
        if (
            len(e) != 4
            or any(k != _DATA_PAR for k in _kinds(sch, epilogue))
            or e[:2] != [n, oc]
            or not padded - tw < (e[2] or 0) * (e[3] or 0) <= padded
        ):
            return None
        if e[2] * e[3] != padded:
            return self._schedule_padded(sch, conv, panels, epilogue, rows, tw)
        width = e[3]
        # One flat pixel axis: the epilogue then reads the conv's flat output at exactly p,
        # so compute_at gets affine bindings (fusing h and w does not).
        sch.transform_block_layout(epilogue, lambda a, o, i, j: (a, o, i * width + j))
        en, eo, ep = sch.get_loops(epilogue)
        po, pi = sch.split(ep, [None, tw])
        oo, oi = sch.split(eo, [None, rows])
        sch.reorder(en, po, oo, oi, pi)
        par = sch.fuse(en, po)
        sch.parallel(par)
        sch.set_scope(conv, 0, "local")
        sch.compute_at(conv, oo, preserve_unit_loops=True)
        sch.unroll(oi)
        _vectorize_tile(sch, pi, tw)

        cn, co, cp, rc = sch.get_loops(conv)[-4:]
        sch.reorder(rc, cn, co, cp)
        sch.unroll(co)
        _vectorize_tile(sch, cp, tw)
        init = sch.decompose_reduction(conv, rc)
        _vectorize_tile(sch, sch.get_loops(init)[-1], tw)
        sch.compute_at(panels, par, preserve_unit_loops=True)
        return sch

    @staticmethod
    def _schedule_padded(sch, conv, panels, epilogue, rows: int, tw: int):
        """Pixels rounded up to the tile: the product is made tile by tile into its own
        buffer (accumulators in registers, written back as vectors), and the epilogue copies
        it out without the padding in a loop nest of its own."""
        cn, co, cp, rc = sch.get_loops(conv)
        po, pi = sch.split(cp, [None, tw])
        oo, oi = sch.split(co, [None, rows])
        sch.reorder(cn, po, oo, rc, oi, pi)
        par = sch.fuse(cn, po)
        sch.parallel(par)
        acc = sch.cache_write(conv, 0, "local")
        sch.reverse_compute_at(acc, oo, preserve_unit_loops=True)
        sch.unroll(oi)
        _vectorize_tile(sch, pi, tw)
        init = sch.decompose_reduction(conv, rc)
        _vectorize_tile(sch, sch.get_loops(init)[-1], tw)
        _vectorize_tile(sch, sch.get_loops(acc)[-1], tw)
        sch.compute_at(panels, par, preserve_unit_loops=True)
        en, eo = sch.get_loops(epilogue)[:2]
        sch.parallel(sch.fuse(en, eo))
        return sch


class Pool2D(_Rule):
    """TVM's NCHW max/avg pooling: pad inlined, ``(n, c, oh)`` parallel, window unrolled."""

    def _apply(self, func: tirx.PrimFunc):
        sch = s_tir.Schedule(func)
        blocks = list(sch.get_child_blocks(sch.get_sblock("root")))
        pools = [b for b in blocks if sch.get(b).name_hint in ("pool_max", "pool_sum")]
        if len(pools) != 1:
            return None
        pool = pools[0]
        if _kinds(sch, pool) != [_DATA_PAR] * 4 + [_COMM_REDUCE] * 2:
            return None
        ext = _extents(sch, pool)
        if len(ext) != 6 or any(e is None for e in ext):
            return None
        idx = blocks.index(pool)
        producers, consumers = blocks[:idx], blocks[idx + 1 :]
        for b in producers:
            if any(k != _DATA_PAR for k in _kinds(sch, b)):
                return None
        for b in consumers:
            if not _spatial_nest(sch, b, ext[:3], ext[3] - 1, ext[3]):
                return None
        for b in producers:
            sch.compute_inline(b)
        for b in consumers[:-1]:
            sch.compute_inline(b)
        n, c, oh, ow, ry, rx = sch.get_loops(pool)
        outer = sch.fuse(n, c, oh)
        sch.parallel(outer)
        if ext[4] * ext[5] <= 16:
            sch.unroll(ry)
            sch.unroll(rx)
        if consumers:
            sch.reverse_compute_at(consumers[-1], outer)
        return sch


RULES: list[ScheduleRule] = [
    PackedConv2D(),
    PointwiseConv2D(),
    WidthConv2D(),
    DepthwiseConv2D(),
    Pool2D(),
]
