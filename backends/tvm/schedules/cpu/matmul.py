"""Schedule rule for matmul / dense / batch matmul PrimFuncs, with fused epilogues.

It matches what ``LegalizeOps`` makes of ``relax.op.matmul`` (after ``FuseOps``/``FuseTIR``):
one multiply-accumulate reduction block ``C[b.., m.., n] += A[b.., m.., k] * B[b.., k, n]``
(batch dims may be missing from either side, ``A`` may be a vector), optionally preceded by
injective blocks that inline into it and followed by injective epilogue blocks (bias add,
activation, residual add, scaling) that FuseOps attached.

The schedule is a register-tiled micro-kernel, the way BLAS kernels are written:

- an ``MR x (NR * lanes)`` tile of ``C`` lives in a local accumulator (registers once LLVM
  unrolls it): per step of ``k`` it broadcasts ``MR`` values of ``A``, loads ``NR`` vectors of
  the ``k``-th row of ``B`` (contiguous, since ``n`` is ``B``'s last axis) and does
  ``MR * NR`` vector FMAs; ``k`` is split and its inner part unrolled;
- the tile's loops over batch, ``n`` and ``m`` tiles are fused and run in parallel;
- when several ``m`` tiles reuse them, ``B`` is first copied into contiguous ``k x panel``
  strips (per call, inside the PrimFunc; cheap next to the FMAs, and it works for
  non-constant ``B`` as in attention);
- the epilogue is inlined into the write-back of the tile (``reverse_compute_inline``), so it
  runs on the tile while it is hot and no full-size intermediate is written.

Tile sizes come from the target (vector lanes from the CPU features, 16 or 32 vector
registers) and the static shape, in microseconds, without search. Shapes that are not
multiples of the tile stay correct (the split adds a predicate on ``m``; ``n`` is vectorized
with the largest power-of-two width that divides it). Anything unexpected (symbolic shapes,
other dtypes, other access patterns, a primitive that refuses) returns None, and the next
rule gets the PrimFunc.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tvm import ir, s_tir, tirx
from tvm.s_tir.dlight import ScheduleRule
from tvm.s_tir.dlight.analysis import normalize_prim_func
from tvm.s_tir.dlight.base import try_inline_contiguous_spatial
from tvm.target import Target

from ..unit_reductions import hides_reduction
from .target_info import thread_count, vector_bits

_DTYPES = ("float32", "float64")
# Below this many multiply-adds a parallel launch costs more than it saves.
_PARALLEL_MACS = 1 << 16
# Pack B into contiguous panels when at least this many m tiles reuse each panel.
_PACK_MIN_REUSE = 4
_Load = ir.TensorLoad  # what tirx.BufferLoad(...) builds in TVM 0.27


# -- target facts ----------------------------------------------------------------------------


def vector_registers(target: Target) -> int:
    """Number of architectural SIMD registers (16 for AVX2/SSE, 32 for AVX-512 and AArch64)."""
    if vector_bits(target) >= 512:
        return 32
    triple = str(target.attrs.get("mtriple", "") or "")
    if triple.startswith(("aarch64", "arm64")):
        return 32
    return 16


# -- pattern ---------------------------------------------------------------------------------


@dataclass
class _Gemm:
    """Roles of the matmul block's loops (positions in ``info.iters``) and the extents."""

    batch: list[int]
    m: list[int]
    n: int
    k: int
    extents: list[int]
    dtype: str
    b_buffer: object  # the operand read along n (``B``)
    b_k_before_n: bool  # B's last two indices are (k, n): packable into panels


def _strip_cast(e: tirx.PrimExpr) -> tirx.PrimExpr:
    while isinstance(e, tirx.Cast):
        e = e.value
    return e


def _index_vars(load, iter_vars: list[tirx.Var]) -> list[int | None] | None:
    """Each index of ``load`` as the position of a block iter var, None for a constant."""
    out: list[int | None] = []
    for idx in load.indices:
        if isinstance(idx, tirx.IntImm):
            out.append(None)
            continue
        pos = next((i for i, v in enumerate(iter_vars) if v.same_as(idx)), -1)
        if pos < 0:
            return None
        out.append(pos)
    return out


def _same_index(a, b) -> bool:
    if isinstance(a, tirx.IntImm) and isinstance(b, tirx.IntImm):
        return int(a.value) == int(b.value)
    return a.same_as(b)


def _match_gemm(sch: s_tir.Schedule, info) -> _Gemm | None:
    block = sch.get(info.block_rv)
    if block.init is None or not isinstance(block.body, tirx.BufferStore):
        return None
    if not isinstance(block.init, tirx.BufferStore):
        return None
    init_value = _strip_cast(block.init.value)
    if not (isinstance(init_value, (tirx.FloatImm, tirx.IntImm)) and init_value.value == 0):
        return None
    store = block.body
    dtype = str(store.buffer.dtype)
    if dtype not in _DTYPES:
        return None
    value = store.value
    if not isinstance(value, tirx.Add):
        return None
    iter_vars = [iv.var for iv in block.iter_vars]
    kinds = [info.iters[i].kind for i in range(len(info.iters))]
    if len(iter_vars) != len(info.iters) or any(k not in "SR" for k in kinds):
        return None
    if not all(iv.var.same_as(it.var) for iv, it in zip(block.iter_vars, info.iters)):
        return None

    def is_self(e) -> bool:
        e = _strip_cast(e)
        return (
            isinstance(e, _Load)
            and e.source.same_as(store.buffer)
            and len(e.indices) == len(store.indices)
            and all(_same_index(a, b) for a, b in zip(e.indices, store.indices))
        )

    if is_self(value.a):
        prod = value.b
    elif is_self(value.b):
        prod = value.a
    else:
        return None
    prod = _strip_cast(prod)
    if not isinstance(prod, tirx.Mul):
        return None
    lhs, rhs = _strip_cast(prod.a), _strip_cast(prod.b)
    if not (isinstance(lhs, _Load) and isinstance(rhs, _Load)):
        return None
    c_idx = _index_vars(store, iter_vars)
    a_idx = _index_vars(lhs, iter_vars)
    b_idx = _index_vars(rhs, iter_vars)
    if c_idx is None or a_idx is None or b_idx is None:
        return None
    extents = []
    for it in info.iters:
        dom = it.dom.value if isinstance(it.dom, tirx.IntImm) else it.dom
        if not isinstance(dom, int):
            return None  # symbolic shapes: not handled
        extents.append(dom)
    red = [i for i, k in enumerate(kinds) if k == "R"]
    if len(red) != 1:
        return None
    k = red[0]
    # The vectorized operand is the one whose last index is C's last index.
    if not c_idx or c_idx[-1] is None:
        return None
    n = c_idx[-1]
    if b_idx and b_idx[-1] == n:
        pass
    elif a_idx and a_idx[-1] == n:
        a_idx, b_idx = b_idx, a_idx
        lhs, rhs = rhs, lhs
    else:
        return None
    if k not in a_idx or k not in b_idx or n in a_idx:
        return None
    batch, m = [], []
    for i, kind in enumerate(kinds):
        if kind != "S" or i == n:
            continue
        if i not in c_idx:
            if extents[i] != 1:
                return None
            batch.append(i)
        elif i in a_idx and i in b_idx:
            batch.append(i)
        elif i in a_idx:
            m.append(i)
        elif i in b_idx:
            return None  # a second "n"-like axis: not this pattern
        elif extents[i] == 1:
            batch.append(i)
        else:
            return None
    # Several m axes (batched activations times a shared weight): the outer ones act as
    # batch loops, so that each tile covers one rectangle of C.
    batch, m = batch + m[:-1], m[-1:]
    return _Gemm(
        batch=batch,
        m=m,
        n=n,
        k=k,
        extents=extents,
        dtype=dtype,
        b_buffer=rhs.source,
        b_k_before_n=len(b_idx) >= 2 and b_idx[-2] == k,
    )


# -- tiling ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Tile:
    mr: int
    nr: int  # vectors per row
    lanes: int
    ku: int


def choose_tile(batch: int, m: int, n: int, k: int, lanes: int, regs: int, threads: int) -> _Tile:
    """Register tile for an ``m x n`` (per batch) output with reduction length ``k``; fewer
    tiles than ``threads`` (``target_info.thread_count``) leave threads idle and score less."""
    while lanes > 1 and n % lanes:
        lanes //= 2
    nvec = n // lanes
    best, best_score = _Tile(1, 1, lanes, 1), -1.0
    for nr in range(1, min(nvec, 8) + 1):
        if nvec % nr:
            continue
        for mr in range(1, min(m, 8) + 1):
            # accumulators + the broadcasts or B vectors kept live + one spare
            if mr * nr + min(mr, nr) + 1 > regs:
                continue
            # FMAs per load; a partial last m tile costs its waste and, worse, a predicate
            # that keeps the accumulators out of registers.
            score = (mr * nr) / (mr + nr)
            if m % mr:
                score *= 0.5 * m / (-(-m // mr) * mr)
            tiles = batch * -(-m // mr) * (nvec // nr)
            if tiles < threads:
                score *= tiles / threads
            if score > best_score + 1e-9:
                best, best_score = _Tile(mr, nr, lanes, 1), score
    ku = next((u for u in (4, 2) if k % u == 0), 1)
    return _Tile(best.mr, best.nr, best.lanes, ku)


# -- the rule --------------------------------------------------------------------------------


class Matmul(ScheduleRule):
    """Register-tiled, vectorized, parallel schedule for matmul with a fused epilogue."""

    def apply(self, func: tirx.PrimFunc, target: Target, tunable: bool):  # noqa: ARG002
        if not isinstance(func, tirx.PrimFunc) or target.kind.name != "llvm":
            return None
        try:
            return self._apply(func, target)
        except Exception:  # noqa: BLE001 - a primitive refused: not our pattern after all
            return None

    def _apply(self, func: tirx.PrimFunc, target: Target):
        sch = s_tir.Schedule(func)
        infos = normalize_prim_func(sch)
        if infos is None or hides_reduction(sch, infos):
            return None
        reductions = [i for i, b in enumerate(infos) if b.is_reduction()]
        if len(reductions) != 1:
            return None
        infos = try_inline_contiguous_spatial(sch, infos)
        if infos is None:
            return None
        red = [b for b in infos if b.is_reduction()]
        if len(red) != 1 or not infos[0].is_reduction():
            return None  # a prologue that does not inline
        rest = infos[1:]
        if len(rest) > 1 or any(not b.is_injective() for b in rest):
            return None
        # Re-read the matmul block after inlining (its loops are unchanged).
        infos = normalize_prim_func(sch)
        if infos is None:
            return None
        info = next(b for b in infos if b.is_reduction())
        gemm = _match_gemm(sch, info)
        if gemm is None:
            return None
        epilogue = rest[0].block_rv if rest else None
        self._schedule(sch, info, gemm, epilogue, target)
        return sch

    def _schedule(self, sch, info, gemm: _Gemm, epilogue, target: Target) -> None:
        block = info.block_rv
        loops = [it.loop_rv for it in info.iters]
        ext = gemm.extents
        bits = {"float32": 32, "float64": 64}[gemm.dtype]
        lanes = max(vector_bits(target) // bits, 1)
        nbatch = math.prod(ext[i] for i in gemm.batch)
        m = math.prod(ext[i] for i in gemm.m)
        n, k = ext[gemm.n], ext[gemm.k]
        tile = choose_tile(nbatch, m, n, k, lanes, vector_registers(target), thread_count(target))

        sch.reorder(*[loops[i] for i in gemm.batch + gemm.m], loops[gemm.n], loops[gemm.k])
        b_loop = sch.fuse(*[loops[i] for i in gemm.batch]) if gemm.batch else None
        m_loop = sch.fuse(*[loops[i] for i in gemm.m]) if gemm.m else None
        no, ni, nv = sch.split(loops[gemm.n], [None, tile.nr, tile.lanes])
        ko, ki = sch.split(loops[gemm.k], [None, tile.ku])
        outer = [b_loop] if b_loop is not None else []
        inner = []
        if m_loop is not None:
            mo, mi = sch.split(m_loop, [None, tile.mr])
            outer += [no, mo]
            inner = [mi]
        else:
            outer += [no]
        sch.reorder(*outer, ko, ki, *inner, ni, nv)
        tile_loop = sch.fuse(*outer) if len(outer) > 1 else outer[0]
        macs = nbatch * m * n * k
        if macs >= _PARALLEL_MACS:
            sch.parallel(tile_loop)

        acc = sch.cache_write(block, 0, "global")
        sch.reverse_compute_at(acc, tile_loop, preserve_unit_loops=True)
        if epilogue is not None:
            try:
                sch.reverse_compute_inline(epilogue)
                epilogue = None
            except Exception:  # noqa: BLE001 - not inlinable: compute it per tile instead
                sch.reverse_compute_at(epilogue, tile_loop, preserve_unit_loops=True)

        for loop in (ki, *inner, ni):
            sch.unroll(loop)
        sch.vectorize(nv)
        init = sch.decompose_reduction(block, ko)
        self._vectorize_tail(sch, init, 1, tile.lanes)
        self._vectorize_tail(sch, acc, 1, tile.lanes)
        if epilogue is not None:
            self._vectorize_tail(sch, epilogue, 1, tile.lanes)
        panel = tile.nr * tile.lanes
        if gemm.b_k_before_n and m // tile.mr >= _PACK_MIN_REUSE and n > panel:
            self._pack_panels(sch, block, gemm.b_buffer, panel, tile.lanes, macs)

    @staticmethod
    def _pack_panels(sch, block, b_buffer, panel: int, lanes: int, macs: int) -> None:
        """Copy ``B[.., k, n]`` into ``Bp[.., n // panel, k, n % panel]`` before the matmul.

        Without it, the micro-kernel reads a ``k x panel`` strip of ``B`` with a stride of the
        whole row, which thrashes the L1 sets when rows are a multiple of 4 KiB apart (N=1024)
        and wastes cache lines otherwise; after it, each strip is contiguous. The copy costs
        ``K x N`` moves against ``M x N x K`` FMAs, so it is only done when tiles of ``m``
        reuse the strip several times.
        """
        reads = sch.get(block).reads
        index = next((i for i, r in enumerate(reads) if r.source.same_as(b_buffer)), None)
        if index is None:
            return
        pack = sch.cache_read(block, index, "global")
        rank = len(b_buffer.shape)

        def panels(*idx):
            return (*idx[: rank - 2], idx[-1] // panel, idx[-2], idx[-1] % panel)

        sch.transform_layout(block, ("read", index), panels)
        loops = sch.get_loops(pack)
        outer = sch.fuse(*loops[:-1]) if len(loops) > 2 else loops[0]
        if len(loops) >= 2:
            if macs >= _PARALLEL_MACS:
                sch.parallel(outer)
            last = loops[-1]
            extent = sch.get(last).extent
            if isinstance(extent, tirx.IntImm) and int(extent.value) % lanes == 0 and lanes > 1:
                _, vec = sch.split(last, [None, lanes])
                sch.vectorize(vec)

    @staticmethod
    def _vectorize_tail(sch, block, depth: int, lanes: int) -> None:
        """Below the tile loop: unroll the outer loops, vectorize the innermost by ``lanes``."""
        loops = sch.get_loops(block)[depth:]
        if not loops:
            return
        last = loops[-1]
        extent = sch.get(last).extent
        if isinstance(extent, tirx.IntImm) and lanes > 1 and int(extent.value) % lanes == 0:
            if int(extent.value) > lanes:
                outer, vec = sch.split(last, [None, lanes])
                sch.unroll(outer)
            else:
                vec = last
            sch.vectorize(vec)
        elif isinstance(extent, tirx.IntImm):
            sch.unroll(last)
        for loop in loops[:-1]:
            if isinstance(sch.get(loop).extent, tirx.IntImm):
                sch.unroll(loop)


RULES: list[ScheduleRule] = [Matmul()]
