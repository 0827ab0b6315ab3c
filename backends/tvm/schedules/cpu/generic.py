"""Generic CPU schedule rules: whatever the conv and matmul rules leave.

* ``Injective``: kernels whose every block is spatial (fused elementwise chains, transposes,
  concat, pad, resize gathers, layout transforms). Producers are inlined into the last block;
  the innermost loop is vectorized with the target's vector width when its extent is a
  multiple of it, and the leading loops are fused and parallelized when there is enough work.
* ``Reduce``: one reduction block, with injective producers inlined and injective epilogues
  (pooling, global average pool, reduce_sum/mean/max, argmax, and conv-like or matmul-like
  kernels no other rule took). When the innermost output axis is a spatial loop the reduction
  loops move outside it and it is vectorized (pooling windows, reductions over a non-innermost
  axis). When every input is read along the reduction (global pooling, reductions over
  trailing axes) the rows run in parallel and each is reduced into a vector of partial
  results, then the lanes (``_vector_rows``); that failing, each row's reduction is serial.
* ``Rows``: several reduction blocks over the same leading spatial axes (softmax, layer norm,
  RMS norm): all blocks go under one parallel loop over the rows, so each row's statistics and
  results are made while it is in cache; reductions over the row are vectorized through
  ``rfactor`` (one partial result per lane, then a short serial reduction of the lanes) and
  elementwise blocks are vectorized.

Every rule returns None when the PrimFunc is not its pattern; extents that are symbolic
(dynamic shapes) are never vectorized, only parallelized.
"""

from __future__ import annotations

from tvm import DataType, s_tir, tirx
from tvm.s_tir.dlight import ScheduleRule
from tvm.s_tir.dlight.analysis import SBlockInfo, normalize_prim_func
from tvm.s_tir.dlight.base import try_inline_contiguous_spatial
from tvm.target import Target

from ..inline import inline_bounded
from ..unit_reductions import hides_reduction
from .target_info import vector_lanes

Schedule = s_tir.Schedule
LoopRV = s_tir.schedule.LoopRV
SBlockRV = s_tir.schedule.SBlockRV

# Below this many scalar operations a kernel stays on one thread: waking the pool costs more.
PARALLEL_MIN_WORK = 1 << 14
# The parallel loop is made of the leading loops, fused until it has at least this extent.
PARALLEL_MIN_EXTENT = 16


def _vector_lanes(target: Target, dtype: str) -> int:
    """Lanes of one vector register of the target for ``dtype`` (1: do not vectorize)."""
    dt = DataType(dtype)
    return vector_lanes(target, dt.bits * dt.lanes)


def _extent(sch: Schedule, loop: LoopRV) -> int | None:
    ext = sch.get(loop).extent
    return int(ext.value) if isinstance(ext, tirx.IntImm) else None


def _is_plain(sch: Schedule, loop: LoopRV) -> bool:
    loop_stmt = sch.get(loop)
    return loop_stmt.kind == tirx.ForKind.SERIAL and not loop_stmt.annotations


def _write_dtype(sch: Schedule, block: SBlockRV) -> str | None:
    writes = sch.get(block).writes
    if len(writes) != 1:
        return None
    return str(writes[0].source.dtype)


def _work(sch: Schedule, loops: list[LoopRV]) -> int | None:
    total = 1
    for loop in loops:
        ext = _extent(sch, loop)
        if ext is None:
            return None
        total *= ext
    return total


def _vectorize_inner(sch: Schedule, loop: LoopRV, lanes: int) -> bool:
    """Vectorize the innermost ``loop`` by ``lanes`` (half as many for short loops).

    An extent that is no multiple of the vector is cut (``loop_partition``) into a vectorized
    main part and a scalar tail: a predicated split would not vectorize at all. Symbolic
    extents stay scalar. Returns whether something was vectorized.
    """
    ext = _extent(sch, loop)
    if ext is None or lanes < 2 or ext < 2:
        return False
    vec = lanes
    while vec > ext and vec > 4:
        vec //= 2
    if ext < vec:
        return False
    if ext == vec:
        sch.vectorize(loop)
        return True
    main = ext - ext % vec
    # Every step is a checked primitive: one TVM refuses leaves correct (scalar) code.
    try:
        if main != ext:
            loop = sch.loop_partition(loop, [main, None])[0]
        _, inner = sch.split(loop, factors=[None, vec])
        sch.vectorize(inner)
    except Exception:  # noqa: BLE001 - a loop the primitives refuse stays scalar
        return False
    return True


def _parallelize(
    sch: Schedule, loops: list[LoopRV], work: int | None, inner_work: int = 1
) -> LoopRV | None:
    """Fuse leading ``loops`` until the extent is large enough and mark the result parallel.

    ``work``: the kernel's total scalar operations (None when symbolic: assume it is large).
    Returns the parallel loop, or None when the kernel is too small to be worth it.
    """
    if not loops:
        return None
    if work is not None and work < PARALLEL_MIN_WORK:
        return None
    take = 0
    extent = 1
    for loop in loops:
        ext = _extent(sch, loop)
        take += 1
        if ext is None:
            break
        extent *= ext
        if extent >= PARALLEL_MIN_EXTENT:
            break
    if extent < 2:
        return None
    fused = sch.fuse(*loops[:take]) if take > 1 else loops[0]
    sch.parallel(fused)
    return fused


def _schedule_spatial(sch: Schedule, block: SBlockRV, target: Target) -> bool:
    """Parallelize the leading loops and vectorize the innermost one of a spatial block."""
    loops = sch.get_loops(block)
    if not loops or not all(_is_plain(sch, lp) for lp in loops):
        return False
    dtype = _write_dtype(sch, block)
    if dtype is None:
        return False
    lanes = _vector_lanes(target, dtype)
    work = _work(sch, loops)
    if len(loops) == 1:
        ext = _extent(sch, loops[0])
        if ext is not None and ext % lanes == 0 and ext >= PARALLEL_MIN_WORK:
            outer, inner = sch.split(loops[0], factors=[None, lanes])
            _parallelize(sch, [outer], work)
            sch.vectorize(inner)
            return True
    _parallelize(sch, list(loops[:-1]), work)
    _vectorize_inner(sch, loops[-1], lanes)
    return True


class _CPURule(ScheduleRule):
    def _available(self, func: tirx.PrimFunc, target: Target) -> bool:
        return isinstance(func, tirx.PrimFunc) and target.kind.name == "llvm"


class Injective(_CPURule):
    """Every block spatial: inline into the outputs, vectorize inner, parallelize outer."""

    def apply(self, func: tirx.PrimFunc, target: Target, _tunable: bool) -> Schedule | None:
        if not self._available(func, target):
            return None
        sch = Schedule(func)
        infos = normalize_prim_func(sch)
        if not infos or not all(b.is_injective() for b in infos) or hides_reduction(sch, infos):
            return None
        sch, infos = inline_bounded(sch, infos)
        done = False
        for info in infos:
            done |= _schedule_spatial(sch, info.block_rv, target)
        return sch if done else None


def _reduction_parts(
    sch: Schedule, infos: list[SBlockInfo]
) -> tuple[SBlockInfo, list[SBlockInfo]] | None:
    """The one reduction block and the injective blocks after it, or None."""
    reductions = [b for b in infos if not b.is_injective()]
    if len(reductions) != 1:
        return None
    red = reductions[0]
    kinds = red.dom_kind()
    if "O" in kinds or "S" not in kinds and "R" not in kinds:
        return None
    index = infos.index(red)
    if index != 0:  # injective producers that would not inline
        return None
    return red, infos[1:]


class Reduce(_CPURule):
    """One reduction block (pooling, reduce ops, argmax, conv/matmul fallback) + epilogues."""

    def apply(self, func: tirx.PrimFunc, target: Target, _tunable: bool) -> Schedule | None:
        if not self._available(func, target):
            return None
        sch = Schedule(func)
        infos = normalize_prim_func(sch)
        if not infos or hides_reduction(sch, infos):
            return None
        infos = try_inline_contiguous_spatial(sch, infos)
        if not infos:
            return None
        parts = _reduction_parts(sch, infos)
        if parts is None:
            return None
        red, epilogues = parts
        block = red.block_rv
        loops = sch.get_loops(block)
        if len(loops) != len(red.iters) or not all(_is_plain(sch, lp) for lp in loops):
            return None
        dtype = _write_dtype(sch, block)
        if dtype is None:
            return None
        lanes = _vector_lanes(target, dtype)
        s_loops = [it.loop_rv for it in red.iters if it.kind == "S"]
        r_loops = [it.loop_rv for it in red.iters if it.kind == "R"]
        work = _work(sch, loops)

        if not s_loops or not r_loops:
            return None
        inner = s_loops[-1]
        inner_ext = _extent(sch, inner)
        vec = lanes
        while inner_ext is not None and vec > inner_ext and vec > 4:
            vec //= 2
        # Spatial-innermost (pooling windows, reductions over an outer axis): reduction loops
        # go outside the output's innermost axis, which is vectorized. Only for extents that
        # are multiples of the vector: a vectorized reduction block cannot be partitioned.
        vector_spatial = (
            inner_ext is not None
            and vec >= 2
            and inner_ext % vec == 0
            and self._innermost_write_axis(sch, block, red)
        )
        # Rows along the input's contiguous axis (global pooling, reductions over trailing
        # axes): a vector of partial results per row, even when the output's innermost axis
        # could be vectorized (that would read each lane from a different row).
        rows = None
        if self._reads_along_reduction(sch, block, red):
            rows = _vector_rows(sch, block, s_loops, r_loops, lanes, work)
        if rows is not None:
            sch, anchor, parallel = rows
            par = anchor if parallel else None
        elif vector_spatial:
            sch.reorder(*s_loops[:-1], *r_loops, inner)
            par = _parallelize(sch, s_loops[:-1], work)
            _, lane = sch.split(inner, factors=[None, vec])
            sch.vectorize(lane)
            sch.decompose_reduction(block, r_loops[0])
        else:
            # Reduction innermost: rows in parallel, each reduced serially into a register.
            sch.reorder(*s_loops, *r_loops)
            par = _parallelize(sch, s_loops, work)
            acc = sch.cache_write(block, 0, "local")
            sch.reverse_compute_at(acc, sch.get_loops(block)[len(s_loops) - 1])
            sch.decompose_reduction(block, r_loops[0])
        for epi in epilogues:
            if par is not None:
                try:
                    sch.reverse_compute_at(epi.block_rv, par, preserve_unit_loops=True)
                except Exception:  # noqa: BLE001 - not under the same rows: own loops
                    _schedule_spatial(sch, epi.block_rv, target)
                    continue
                edtype = _write_dtype(sch, epi.block_rv) or dtype
                _vectorize_inner(
                    sch, sch.get_loops(epi.block_rv)[-1], _vector_lanes(target, edtype)
                )
            else:
                _schedule_spatial(sch, epi.block_rv, target)
        return sch

    @staticmethod
    def _reads_along_reduction(sch: Schedule, block: SBlockRV, red: SBlockInfo) -> bool:
        """Whether every input the reduction walks is read along its innermost axis by the
        block's last reduction iter: rows are contiguous, so lanes of partial results read
        whole vectors. (A matmul-like kernel reads B across rows: not this pattern.)"""
        reduction = [it.var for it in red.iters if it.kind == "R"]
        if not reduction:
            return False
        found = False
        for read in sch.get(block).reads:
            mins = [r.min for r in read.region]
            used = {v.name for m in mins for v in tirx.analysis.undefined_vars(m)}
            if not used & {v.name for v in reduction}:
                continue  # broadcast along the row (a bias, a scale)
            last = mins[-1] if mins else None
            if not (isinstance(last, tirx.Var) and last.same_as(reduction[-1])):
                return False
            found = True
        return found

    @staticmethod
    def _innermost_write_axis(sch: Schedule, block: SBlockRV, red: SBlockInfo) -> bool:
        """Whether the output's innermost index is the block's last spatial iter."""
        stmt = sch.get(block)
        if len(stmt.writes) != 1 or not stmt.writes[0].region:
            return False
        last = stmt.writes[0].region[-1].min
        spatial = [it.var for it in red.iters if it.kind == "S"]
        return bool(spatial) and isinstance(last, tirx.Var) and last.same_as(spatial[-1])


def _row_lanes(extent: int, lanes: int) -> int | None:
    """Lanes of partial results for a row of ``extent``: the widest divisor of the extent
    from ``lanes`` down to 4 (7 for a 7x7 window), when the row holds at least two of them."""
    for vec in range(lanes, 3, -1):
        if extent % vec == 0 and extent >= 2 * vec:
            return vec
    return None


def _vector_rows(
    sch: Schedule,
    block: SBlockRV,
    s_loops: list[LoopRV],
    r_loops: list[LoopRV],
    lanes: int,
    work: int | None,
) -> tuple[Schedule, LoopRV, bool] | None:
    """Reduce each row (global pooling, reductions over trailing axes) into a vector of
    partial results, then reduce the vector: the serial chain of one add per element (the
    add's latency per element) becomes one vector add per ``lanes`` elements.

    The reduction loops are fused into one (contiguous when they are the input's trailing
    axes), split by a divisor of its extent (no tail: a partitioned or predicated loop does
    not vectorize) and ``rfactor``-ed; the rows run in parallel with their partial block
    computed inside. Returns None, ``sch`` untouched, when the extents do not allow it or
    TVM refuses a step (the caller's serial schedule then); else the new schedule, the loop
    the epilogues go under and whether it runs in parallel.
    """
    r_ext = _work(sch, r_loops)
    vec = _row_lanes(r_ext, lanes) if r_ext is not None and lanes >= 4 else None
    if vec is None:
        return None
    trial = sch.copy()  # the same random variables, in a schedule we may throw away
    try:
        anchor, parallel = _rfactor_rows(trial, block, s_loops, r_loops, vec, work)
    except Exception:  # noqa: BLE001 - TVM refuses (a max from -inf has no known reducer)
        return None
    return trial, anchor, parallel


def _rfactor_rows(
    sch: Schedule,
    block: SBlockRV,
    s_loops: list[LoopRV],
    r_loops: list[LoopRV],
    vec: int,
    work: int | None,
) -> tuple[LoopRV, bool]:
    """``_vector_rows``' steps, on a schedule the caller drops if one of them raises."""
    sch.reorder(*s_loops, *r_loops)
    fused = sch.fuse(*r_loops) if len(r_loops) > 1 else r_loops[0]
    _, inner = sch.split(fused, factors=[None, vec])
    rf = sch.rfactor(inner, factor_axis=len(sch.get(block).writes[0].region))
    loops = sch.get_loops(block)[: len(s_loops)]
    par = _parallelize(sch, loops, work)
    anchor = par if par is not None else loops[-1]
    sch.compute_at(rf, anchor)
    # Under the row, compute_at left the lanes loop first, then the rows' other loops, the
    # reduction last: the lanes go innermost, so the partial results are one vector updated
    # along the row (its init stays inside: a decomposed init is not vectorized).
    anchor_stmt = sch.get(anchor)
    depth = 1 + next(
        i for i, lp in enumerate(sch.get_loops(rf)) if sch.get(lp).same_as(anchor_stmt)
    )
    under = sch.get_loops(rf)[depth:]
    lane, middle, r_outer = under[0], under[1:-1], under[-1]
    sch.reorder(*middle, r_outer, lane)
    sch.vectorize(lane)
    return anchor, par is not None


def _reduces(sch: Schedule, block: SBlockRV) -> bool:
    return any(int(iv.iter_type) != 0 for iv in sch.get(block).iter_vars)


def _row_axes(sch: Schedule, block: SBlockRV) -> list[int] | None:
    """Extents of the leading spatial iters of a reduction block (its rows), when all its
    spatial iters lead and all are static."""
    kinds = [int(iv.iter_type) for iv in sch.get(block).iter_vars]
    rows = [i for i, k in enumerate(kinds) if k == 0]
    if rows != list(range(len(rows))) or any(k not in (0, 2) for k in kinds):
        return None
    ext = [iv.dom.extent for iv in sch.get(block).iter_vars]
    if not all(isinstance(e, tirx.IntImm) for e in ext):
        return None
    return [int(e) for e in ext[: len(rows)]]


def _rfactor_lanes(sch: Schedule, block: SBlockRV, lanes: int) -> SBlockRV | None:
    """Split the innermost (reduction) loop of ``block`` by ``lanes`` and rfactor it: a new
    block makes one partial result per lane (the lanes innermost, to vectorize), ``block``
    then reduces the lanes. None when the extent does not allow it or TVM refuses."""
    loop = sch.get_loops(block)[-1]
    ext = _extent(sch, loop)
    if ext is None or lanes < 2 or ext % lanes or ext < 2 * lanes:
        return None
    try:
        _, inner = sch.split(loop, factors=[None, lanes])
        # The lanes as the partial buffer's last axis: contiguous vectors.
        return sch.rfactor(inner, factor_axis=len(sch.get(block).writes[0].region))
    except Exception:  # noqa: BLE001 - TVM refuses (e.g. no known reducer): stays serial
        return None


class Rows(_CPURule):
    """Reductions and elementwise blocks over the same rows (softmax, layer norm): see the
    module doc."""

    def apply(self, func: tirx.PrimFunc, target: Target, _tunable: bool) -> Schedule | None:
        if not self._available(func, target):
            return None
        try:
            return self._apply(func, target)
        except Exception:  # noqa: BLE001 - no root block, or a step TVM refuses: not ours
            return None

    def _apply(self, func: tirx.PrimFunc, target: Target) -> Schedule | None:
        sch = Schedule(func)
        blocks = list(sch.get_child_blocks(sch.get_sblock("root")))
        if any(int(iv.iter_type) not in (0, 2) for b in blocks for iv in sch.get(b).iter_vars):
            return None
        reductions = [b for b in blocks if _reduces(sch, b)]
        if len(reductions) < 2 or _reduces(sch, blocks[-1]):
            return None
        rows = _row_axes(sch, reductions[0])
        if not rows or any(_row_axes(sch, b) != rows for b in reductions):
            return None
        out = blocks[-1]
        loops = sch.get_loops(out)
        if len(loops) <= len(rows) or [_extent(sch, lp) for lp in loops[: len(rows)]] != rows:
            return None
        if not all(_is_plain(sch, lp) for b in blocks for lp in sch.get_loops(b)):
            return None
        work = _work(sch, loops)
        partials = []
        for b in reductions:
            dtype = _write_dtype(sch, b)
            rf = _rfactor_lanes(sch, b, _vector_lanes(target, dtype)) if dtype else None
            if rf is not None:
                partials.append(rf)
        blocks = list(sch.get_child_blocks(sch.get_sblock("root")))
        par = sch.fuse(*loops[: len(rows)]) if len(rows) > 1 else loops[0]
        for b in reversed(blocks[:-1]):
            sch.compute_at(b, par, preserve_unit_loops=True)
        if work is None or work >= PARALLEL_MIN_WORK:
            sch.parallel(par)
        for rf in partials:
            # Under the row, compute_at left the lanes loop first and the reduction last:
            # swap them, so the partial results are one vector updated along the row. (Its
            # init stays inside: a decomposed init makes TVM refuse the vectorization.)
            inner = sch.get_loops(rf)[1:]
            sch.reorder(inner[-1], inner[0])
            sch.vectorize(sch.get_loops(rf)[-1])
        for b in blocks:
            if _reduces(sch, b) or len(sch.get_loops(b)) < 2:  # partials: vectorized above
                continue
            dtype = _write_dtype(sch, b)
            loop = sch.get_loops(b)[-1]
            ext = _extent(sch, loop)
            lanes = _vector_lanes(target, dtype) if dtype else 1
            # Whole vectors only: a loop_partition under compute_at breaks TVM's buffer
            # region compaction.
            if ext is not None and lanes > 1 and ext % lanes == 0:
                sch.vectorize(sch.split(loop, factors=[None, lanes])[1])
        return sch


RULES: list[ScheduleRule] = [Injective(), Reduce(), Rows()]
