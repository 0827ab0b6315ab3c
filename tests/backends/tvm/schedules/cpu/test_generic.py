"""The generic schedule rules (injective, single reductions): they match and stay exact."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from oputil import check_op, fused_prim_funcs, run_prim_func
from tvm import relax

from backends.reference import run_graph
from backends.tvm import build, lower_graph, resolve_target
from backends.tvm.schedules.cpu import generic
from compiler.ir.builder import Builder
from compiler.ir.graph import Graph
from compiler.ir.types import TensorType

_TARGET = resolve_target("cpu").tvm_target()


def _rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# -- through the whole pipeline (check_op builds with cpu_rules(), generic rules last) --------


@pytest.mark.parametrize("shape", [(1, 64, 55, 55), (3, 7), (2, 5, 13), (1, 1000), (17,)])
def test_elementwise_chain(shape):
    check_op("add", [_rand(*shape), _rand(*shape, seed=1)])
    check_op("relu", [_rand(*shape)])
    check_op("mul", [_rand(*shape), _rand(*shape[-1:], seed=2)])


@pytest.mark.parametrize("perm", [[0, 2, 3, 1], [0, 3, 1, 2], [3, 2, 1, 0]])
def test_transpose(perm):
    x = _rand(1, 8, 13, 24)
    check_op("transpose", [x], {"perm": perm}, expected=[np.transpose(x, perm)])


@pytest.mark.parametrize("axis", [1, 3])
def test_concat(axis):
    a, b = _rand(1, 16, 55, 55), _rand(1, 16, 55, 55, seed=1)
    check_op("concat", [a, b], {"axis": axis}, expected=[np.concatenate([a, b], axis=axis)])


def test_pad():
    x = _rand(1, 3, 9, 11)
    expected = np.pad(x, [(0, 0), (0, 0), (1, 2), (3, 1)], constant_values=0.5)
    check_op("pad", [x], {"pads": [0, 0, 1, 3, 0, 0, 2, 1], "value": 0.5}, expected=[expected])


@pytest.mark.parametrize(
    "op,axes,keepdims",
    [
        ("reduce_sum", [1], False),
        ("reduce_mean", [2, 3], True),
        ("reduce_max", [3], False),
        ("reduce_mean", [1], False),
        ("reduce_sum", [0, 2], True),
    ],
)
def test_reductions(op, axes, keepdims):
    x = _rand(2, 24, 13, 40)
    check_op(op, [x], {"axes": axes, "keepdims": keepdims}, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("axis", [-1, 1])
def test_softmax(axis):
    x = _rand(1, 4, 33, 128)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    check_op("softmax", [x], {"axis": axis}, expected=[e / e.sum(axis=axis, keepdims=True)])


def test_layer_norm():
    x, s, b = _rand(1, 37, 96), _rand(96, seed=1), _rand(96, seed=2)
    check_op("layer_norm", [x, s, b], {"axis": -1}, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "op,shape,attrs",
    [
        ("max_pool", (1, 64, 111, 111), dict(kernel=[3, 3], strides=[2, 2])),
        ("max_pool", (1, 8, 32, 32), dict(kernel=[2, 2], strides=[2, 2])),
        ("avg_pool", (1, 16, 56, 56), dict(kernel=[2, 2], strides=[2, 2])),
        ("avg_pool", (2, 3, 9, 7), dict(kernel=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1])),
        ("max_pool", (1, 3, 10, 10), dict(kernel=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1])),
    ],
)
def test_pooling(op, shape, attrs):
    check_op(op, [_rand(*shape)], attrs, rtol=1e-5, atol=1e-6)


def test_argmax():
    x = _rand(3, 17, 40)
    check_op("argmax", [x], {"axis": 2, "keepdims": False}, expected=[x.argmax(axis=2)])


def test_resize_nearest():
    x = _rand(1, 3, 7, 9)
    attrs = dict(
        sizes=[1, 3, 14, 18],
        mode="nearest",
        coordinate_transformation_mode="asymmetric",
        nearest_mode="floor",
    )
    check_op("resize", [x], attrs, expected=[x.repeat(2, axis=2).repeat(2, axis=3)])


# -- the rules themselves, on the PrimFuncs that legalization makes -------------------------


def _graph(op, inputs, attrs=None) -> Graph:
    g = Graph()
    b = Builder(g, fold=False)
    vals = [g.add_input(f"in{i}", TensorType.of(x)) for i, x in enumerate(inputs)]
    g.set_outputs(b.op(op, vals, attrs or {}))
    return g


@pytest.mark.parametrize(
    "op,inputs,attrs,rule",
    [
        ("add", [_rand(1, 64, 55, 55), _rand(1, 64, 1, 1)], None, generic.Injective),
        ("transpose", [_rand(1, 128, 4, 64)], {"perm": [0, 2, 1, 3]}, generic.Injective),
        ("concat", [_rand(1, 64, 55, 55), _rand(1, 64, 55, 55)], {"axis": 1}, generic.Injective),
        ("relu", [_rand(1 << 16)], None, generic.Injective),
        ("reduce_mean", [_rand(1, 128, 256)], {"axes": [1], "keepdims": False}, generic.Reduce),
        ("reduce_mean", [_rand(1, 512, 13, 13)], {"axes": [2, 3]}, generic.Reduce),
        ("max_pool", [_rand(1, 64, 111, 111)], dict(kernel=[3, 3], strides=[2, 2]), generic.Reduce),
        ("max_pool", [_rand(1, 32, 64, 64)], dict(kernel=[2, 2], strides=[2, 2]), generic.Reduce),
        ("avg_pool", [_rand(1, 16, 56, 56)], dict(kernel=[2, 2], strides=[2, 2]), generic.Reduce),
        ("softmax", [_rand(4, 33, 128)], {"axis": -1}, generic.Rows),
        ("softmax", [_rand(64, 40, 12)], {"axis": -1}, generic.Rows),  # rows: no whole vectors
        ("log_softmax", [_rand(2, 40, 64)], {"axis": -1}, generic.Rows),
        ("layer_norm", [_rand(1, 37, 96), _rand(96), _rand(96)], {"axis": -1}, generic.Rows),
    ],
)
def test_rule_matches_and_is_exact(op, inputs, attrs, rule):
    funcs = fused_prim_funcs(_graph(op, inputs, attrs))
    (func,) = funcs.values()
    with _TARGET:
        sch = rule().apply(func, _TARGET, False)
    assert sch is not None, f"{rule.__name__} did not take {op}"
    scheduled = sch.mod["main"]
    text = scheduled.script()
    assert "T.parallel" in text or "T.vectorized" in text
    np.testing.assert_allclose(
        run_prim_func(scheduled, inputs), run_prim_func(func, inputs), rtol=1e-6, atol=1e-6
    )


def test_rules_leave_multi_reduction_kernels():
    """Softmax has several reductions: the single-reduction rule leaves it alone."""
    funcs = fused_prim_funcs(_graph("softmax", [_rand(4, 100)], {"axis": -1}))
    (func,) = funcs.values()
    with _TARGET:
        assert generic.Injective().apply(func, _TARGET, False) is None
        assert generic.Reduce().apply(func, _TARGET, False) is None


def test_rows_vectorizes_the_row_reductions():
    funcs = fused_prim_funcs(_graph("softmax", [_rand(4, 33, 128)], {"axis": -1}))
    (func,) = funcs.values()
    with _TARGET:
        text = generic.Rows().apply(func, _TARGET, False).mod["main"].script()
    assert text.count("_rf") >= 2 and "T.parallel" in text, text


@pytest.mark.parametrize("axis", [0, 1])
def test_rows_leaves_reductions_over_leading_axes(axis):
    funcs = fused_prim_funcs(_graph("softmax", [_rand(4, 33, 128)], {"axis": axis}))
    (func,) = funcs.values()
    with _TARGET:
        assert generic.Rows().apply(func, _TARGET, False) is None


def test_vector_width_comes_from_the_target():
    lanes = generic._vector_lanes
    assert lanes(tvm.target.Target({"kind": "llvm", "mcpu": "znver3"}), "float32") == 8
    assert lanes(tvm.target.Target({"kind": "llvm", "mcpu": "skylake-avx512"}), "float32") == 16
    assert lanes(tvm.target.Target({"kind": "llvm", "mcpu": "x86-64"}), "float32") == 4
    aarch64 = tvm.target.Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu"})
    assert lanes(aarch64, "float32") == 4


# -- symbolic shapes: a rule returns None or schedules code that works for every size ------


@pytest.mark.parametrize(
    "op,attrs",
    [
        ("relu", None),
        ("reduce_sum", {"axes": [1], "keepdims": False}),
        ("reduce_max", {"axes": [2], "keepdims": True}),
        ("softmax", {"axis": -1}),
        ("transpose", {"perm": [2, 1, 0]}),
    ],
)
def test_symbolic_shapes(op, attrs):
    g = Graph()
    b = Builder(g, fold=False)
    x = g.add_input("x", TensorType("float32", ("n", 24, "m")))
    g.set_outputs(b.op(op, [x], attrs or {}))
    ex = build(lower_graph(g), resolve_target("cpu"))
    vm = relax.VirtualMachine(ex, tvm.cpu())
    for n, m in [(1, 1), (3, 17), (2, 64)]:
        data = _rand(n, 24, m)
        (ref,) = run_graph(g, {"x": data}).values()
        got = vm["main"](tvm.runtime.tensor(data))[0].numpy()
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_unit_extent_reduction_is_not_inlined_as_injective():
    """A depthwise conv of kernel 1 reduces over unit extents only: dlight calls it injective,
    but inlining it into the bias add would drop its init (the sum read garbage)."""
    x, w, b = _rand(2, 3, 5), _rand(3, 1, 1, seed=1), _rand(3, seed=2)
    expected = x * w[:, 0, 0][None, :, None] + b[None, :, None]
    check_op("conv", [x, w, b], {"groups": 3}, expected=[expected], rtol=1e-6, atol=1e-6)


# -- global pooling: rows reduced into a vector of partial results --------------------------


@pytest.mark.parametrize(
    "op,shape,keepdims",
    [
        ("reduce_mean", (1, 1280, 7, 7), True),  # MobileNet's head: 49 = 7 lanes x 7
        ("reduce_sum", (2, 48, 14, 14), False),
        ("reduce_mean", (1, 3, 8, 8), True),  # too little work for threads: serial rows
    ],
)
def test_global_pooling_reduces_rows_in_vectors(op, shape, keepdims):
    x = _rand(*shape)
    (func,) = fused_prim_funcs(_graph(op, [x], {"axes": [2, 3], "keepdims": keepdims})).values()
    with _TARGET:
        sch = generic.Reduce().apply(func, _TARGET, False)
    text = sch.mod["main"].script()
    assert "_rf" in text and "T.vectorized" in text, text
    np.testing.assert_allclose(
        run_prim_func(sch.mod["main"], [x]), run_prim_func(func, [x]), rtol=1e-5, atol=1e-6
    )


def test_rows_without_a_lane_divisor_stay_serial():
    x = _rand(1, 64, 1, 37)  # 37 is prime: no split without a tail
    (func,) = fused_prim_funcs(_graph("reduce_sum", [x], {"axes": [2, 3]})).values()
    with _TARGET:
        sch = generic.Reduce().apply(func, _TARGET, False)
    assert "_rf" not in sch.mod["main"].script()
    np.testing.assert_allclose(
        run_prim_func(sch.mod["main"], [x]), run_prim_func(func, [x]), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("op", ["reduce_mean", "reduce_max", "reduce_sum"])
def test_global_pooling_through_the_pipeline(op):
    """nnxc's own legalization first (a max from -inf, which rfactor refuses: serial rows)."""
    check_op(op, [_rand(1, 96, 7, 7)], {"axes": [2, 3], "keepdims": True}, rtol=1e-5, atol=1e-5)


def test_row_lanes_divide_the_row():
    assert generic._row_lanes(49, 8) == 7
    assert generic._row_lanes(64, 8) == 8
    assert generic._row_lanes(196, 16) == 14
    assert generic._row_lanes(37, 8) is None
    assert generic._row_lanes(7, 8) is None  # one vector at most: nothing to gain


def test_matmul_like_reductions_keep_vectorized_outputs():
    """An int32 matmul (not the Matmul rule's) reads B across rows: no lanes of partial sums,
    its output's innermost axis stays the vector."""
    a = np.arange(64 * 32, dtype=np.int32).reshape(64, 32) % 7
    b = np.arange(32 * 64, dtype=np.int32).reshape(32, 64) % 5
    (func,) = fused_prim_funcs(_graph("matmul", [a, b])).values()
    with _TARGET:
        sch = generic.Reduce().apply(func, _TARGET, False)
    text = sch.mod["main"].script()
    assert "_rf" not in text and "T.vectorized" in text
    np.testing.assert_array_equal(run_prim_func(sch.mod["main"], [a, b]), a @ b)
