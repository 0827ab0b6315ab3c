"""Reductions whose every reduction axis has extent 1 (matmul with K = 1, an outer product).

dlight's ``normalize_prim_func``, which our rules start with, drops unit loops and block
iters, so such a block comes out with only spatial iters but still its ``init``
(``C = 0; C = C + A*B``). Rules then take it for an injective block, and TVM's inlining into
it is wrong: ``reverse_compute_inline`` of an epilogue ``D = C + E`` rewrites the init into
``D = 0 + E`` *and* the update into ``D = D + A*B + E``, so ``E`` is added twice (a sum of two
outer products came out with an error of ~3).

``fold_unit_reductions`` (a pass of our pipeline, before fusion) makes each such block the
spatial block it is: ``C = 0 + A*B``, without an init, its unit reduction iters data-parallel
and read at their one value. That is exact (the reduction runs once, from the init value), it
fuses with its neighbours like any elementwise op, and every rule schedules it as one.
``hides_reduction`` lets the rules refuse what the pass could not fold.
"""

from __future__ import annotations

import tvm
import tvm_ffi
from tvm import ir, s_tir, tirx
from tvm.s_tir.dlight.analysis import SBlockInfo

_Load = ir.TensorLoad  # what a BufferLoad is in TVM 0.27
# Combiners of the reducers TE and LegalizeOps emit: sum, product, max, min.
_COMBINERS = (tirx.Add, tirx.Mul, tirx.Max, tirx.Min)


def _blocks(sch: s_tir.Schedule, parent) -> list:
    out = []
    for child in sch.get_child_blocks(parent):
        out.append(child)
        out.extend(_blocks(sch, child))
    return out


def _is_self_load(e: tirx.PrimExpr, store: tirx.BufferStore) -> bool:
    return (
        isinstance(e, _Load)
        and e.source.same_as(store.buffer)
        and len(e.indices) == len(store.indices)
        and all(tvm_ffi.structural_equal(a, b) for a, b in zip(e.indices, store.indices))
    )


def _folded(block: s_tir.SBlock) -> s_tir.SBlock | None:
    """``block`` without its init and with data-parallel unit reduction iters, or None when
    it is not a unit reduction of the plain ``C = C op x`` form."""
    kinds = [int(iv.iter_type) for iv in block.iter_vars]
    if block.init is None or tirx.IterVar.CommReduce not in kinds:
        return None
    if any(k not in (tirx.IterVar.DataPar, tirx.IterVar.CommReduce) for k in kinds):
        return None
    for iv, kind in zip(block.iter_vars, kinds):
        ext = iv.dom.extent
        if kind == tirx.IterVar.CommReduce and not (isinstance(ext, tirx.IntImm) and ext == 1):
            return None
    init, store = block.init, block.body
    if not (isinstance(init, tirx.BufferStore) and isinstance(store, tirx.BufferStore)):
        return None
    if not init.buffer.same_as(store.buffer) or len(init.indices) != len(store.indices):
        return None
    if not all(tvm_ffi.structural_equal(a, b) for a, b in zip(init.indices, store.indices)):
        return None
    if any(r.source.same_as(store.buffer) for r in block.reads):
        return None  # x reads the accumulator too: not a plain reduction
    value = store.value
    if not isinstance(value, _COMBINERS):
        return None
    op = type(value)
    if _is_self_load(value.a, store):
        value = op(init.value, value.b)
    elif _is_self_load(value.b, store):
        value = op(value.a, init.value)
    else:
        return None
    # The unit iters read at their one value: loads then index by the output's iters (and
    # constants) only, which fusion's pattern analysis takes for broadcast/injective.
    units = {
        iv.var: iv.dom.min
        for iv, kind in zip(block.iter_vars, kinds)
        if kind == tirx.IterVar.CommReduce
    }

    def at_unit(node):
        return tvm_ffi.structural_map(
            node, (tirx.Var, lambda v: next((m for u, m in units.items() if u.same_as(v)), v))
        )

    iter_vars = [
        tirx.IterVar(iv.dom, iv.var, tirx.IterVar.DataPar, iv.thread_tag) for iv in block.iter_vars
    ]
    return s_tir.SBlock(
        iter_vars,
        [at_unit(r) for r in block.reads],
        block.writes,
        block.name_hint,
        tirx.BufferStore(store.buffer, at_unit(value), store.indices),
        None,
        block.alloc_buffers,
        block.match_buffers,
        block.annotations,
    )


def fold_unit_reductions(func: tirx.PrimFunc) -> tirx.PrimFunc:
    """``func`` with every unit reduction block made spatial (see the module doc)."""
    try:
        sch = s_tir.Schedule(func)
        root = sch.get_sblock("root")
    except Exception:  # noqa: BLE001 - no root block (not a TensorIR function): nothing to do
        return func
    changed = False
    for rv in _blocks(sch, root):
        block = sch.get(rv)
        new = _folded(block)
        if new is not None:
            sch.state.replace(sch.get_sref(rv), new, {block: new})
            changed = True
    return sch.mod["main"] if changed else func


def fold_unit_reductions_pass() -> tvm.transform.Pass:
    """The pipeline pass applying ``fold_unit_reductions`` to every PrimFunc."""
    return tirx.transform.prim_func_pass(
        lambda func, _mod, _ctx: fold_unit_reductions(func),
        opt_level=0,
        name="nnxc.FoldUnitReductions",
    )


def hides_reduction(sch: s_tir.Schedule, infos: list[SBlockInfo]) -> bool:
    """Whether a block ``normalize_prim_func`` left with only spatial iters still has an init:
    a reduction the rules must not inline into or schedule as injective."""
    return any(sch.get(b.block_rv).init is not None and "R" not in b.dom_kind() for b in infos)
