"""Reductions over unit axes (matmul with K = 1): folded into spatial blocks, never inlined
into as if they were spatial while they keep their init."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from oputil import run_prim_func
from tvm import s_tir, te

from backends.tvm import lower_graph, resolve_target
from backends.tvm.pipeline import schedule_prefix_passes
from backends.tvm.schedules.cpu import cpu_rules, generic
from backends.tvm.schedules.unit_reductions import fold_unit_reductions
from compiler.ir.builder import Builder
from compiler.ir.graph import Graph
from compiler.ir.types import TensorType

_TARGET = resolve_target("cpu").tvm_target()


def _rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def _blocks(func: tvm.tirx.PrimFunc) -> list[s_tir.SBlock]:
    sch = s_tir.Schedule(func)
    return [sch.get(b) for b in sch.get_child_blocks(sch.get_sblock("root"))]


def _outer_products_func(m: int, n: int, k: int, terms: int = 2) -> tvm.tirx.PrimFunc:
    """``A0 @ B0 + A1 @ B1`` (``m x k`` times ``k x n``) as one PrimFunc, two reductions over an
    axis of extent ``k`` and an add, as fusion makes of LinearAttention's state update; with
    ``terms=1``, ``A0 @ B0 + E`` (``E`` an input), as fusion makes of a matmul's epilogue.
    Parameters: the ``A``s and ``B``s in turn, then ``E`` for one term, then the output."""
    a = [te.placeholder((m, k), name=f"a{i}") for i in range(terms)]
    b = [te.placeholder((k, n), name=f"b{i}") for i in range(terms)]

    def matmul(x, y, name):
        r = te.reduce_axis((0, k), name="k")
        return te.compute((m, n), lambda i, j: te.sum(x[i, r] * y[r, j], axis=r), name=name)

    c = [matmul(x, y, f"mm{i}") for i, (x, y) in enumerate(zip(a, b))]
    extra = [te.placeholder((m, n), name="e")] if terms == 1 else []
    last = c[1] if terms == 2 else extra[0]
    out = te.compute((m, n), lambda i, j: c[0][i, j] + last[i, j], name="out")
    params = [t for pair in zip(a, b) for t in pair]
    return te.create_prim_func([*params, *extra, out])


def _outer_products_case(rng, m: int, n: int, k: int, terms: int):
    """The function, its inputs, and the expected output."""
    args = [_rand(rng, *s) for _ in range(terms) for s in ((m, k), (k, n))]
    if terms == 1:
        args.append(_rand(rng, m, n))
    want = args[0] @ args[1] + (args[2] @ args[3] if terms == 2 else args[2])
    return _outer_products_func(m, n, k, terms), args, want


def _max_plus_func(rows: int, width: int) -> tvm.tirx.PrimFunc:
    """``max(x, axis=1) + y`` with ``x`` of shape ``rows x width``: a max reducer."""
    x = te.placeholder((rows, width), name="x")
    y = te.placeholder((rows,), name="y")
    r = te.reduce_axis((0, width), name="r")
    peak = te.compute((rows,), lambda i: te.max(x[i, r], axis=r), name="peak")
    out = te.compute((rows,), lambda i: peak[i] + y[i], name="out")
    return te.create_prim_func([x, y, out])


@pytest.mark.parametrize("terms", [1, 2])
@pytest.mark.parametrize("m,n", [(8, 8), (5, 24), (64, 64)])
def test_fold_makes_unit_matmuls_spatial_and_stays_exact(m, n, terms):
    func, args, want = _outer_products_case(np.random.default_rng(m + n), m, n, 1, terms)
    folded = fold_unit_reductions(func)
    blocks = _blocks(folded)
    assert len(blocks) == terms + 1
    assert all(b.init is None for b in blocks)
    assert all(int(iv.iter_type) == tvm.tirx.IterVar.DataPar for b in blocks for iv in b.iter_vars)
    np.testing.assert_allclose(run_prim_func(folded, args), want, rtol=1e-5, atol=1e-5)
    # Folded, the whole sum is one injective kernel: inlined, vectorized, still exact.
    with _TARGET:
        sch = generic.Injective().apply(folded, _TARGET, False)
    assert sch is not None
    assert len(_blocks(sch.mod["main"])) == 1
    assert "T.vectorized" in sch.mod["main"].script()
    np.testing.assert_allclose(run_prim_func(sch.mod["main"], args), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("terms", [1, 2])
@pytest.mark.parametrize("k", [1, 2])
def test_every_rule_is_exact_or_declines_unfolded_unit_matmuls(k, terms):
    """What the rules are handed without the fold. Before the fix, ``Injective`` took a
    normalized K = 1 block for a spatial one and inlined ``+ E`` into both its init and its
    update: ``E`` was added twice."""
    func, args, want = _outer_products_case(np.random.default_rng(k), 8, 16, k, terms)
    np.testing.assert_allclose(run_prim_func(func, args), want, rtol=1e-5, atol=1e-5)
    for rule in cpu_rules():
        with _TARGET:
            sch = rule.apply(func, _TARGET, False)
        if sch is not None:
            got = run_prim_func(sch.mod["main"], args)
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=str(rule))


def test_fold_handles_max_reducers():
    rng = np.random.default_rng(3)
    func = _max_plus_func(16, 1)
    folded = fold_unit_reductions(func)
    assert all(b.init is None for b in _blocks(folded))
    x, y = _rand(rng, 16, 1), _rand(rng, 16)
    np.testing.assert_allclose(run_prim_func(folded, [x, y]), x[:, 0] + y, rtol=0, atol=0)


@pytest.mark.parametrize("func", [_outer_products_func(8, 8, 2), _max_plus_func(16, 3)])
def test_fold_leaves_real_reductions(func):
    assert fold_unit_reductions(func).same_as(func)


def test_pipeline_fuses_sums_of_outer_products():
    """Through our passes before scheduling, ``a0 @ b0 + a1 @ b1`` with K = 1 is one kernel
    without a reduction, which the injective rule schedules."""
    g = Graph()
    b = Builder(g, fold=False)
    xs = [
        g.add_input(name, TensorType("float32", shape))
        for name, shape in [
            ("a0", (2, 4, 8, 1)),
            ("b0", (2, 4, 1, 8)),
            ("a1", (2, 4, 8, 1)),
            ("b1", (2, 4, 1, 8)),
        ]
    ]
    g.set_outputs([b.emit("add", b.emit("matmul", xs[0], xs[1]), b.emit("matmul", xs[2], xs[3]))])
    with _TARGET:
        mod = tvm.transform.Sequential(schedule_prefix_passes(_TARGET))(lower_graph(g))
    funcs = [f for f in mod.functions.values() if isinstance(f, tvm.tirx.PrimFunc)]
    assert len(funcs) == 1
    assert all(blk.init is None for blk in _blocks(funcs[0]))
    with _TARGET:
        assert generic.Injective().apply(funcs[0], _TARGET, False) is not None
