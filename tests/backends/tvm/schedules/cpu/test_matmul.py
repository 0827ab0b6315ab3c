"""The matmul schedule rule: it matches what matmul legalizes into, and stays exact."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from oputil import check_op, fused_prim_funcs, run_tvm

from backends.tvm import resolve_target
from backends.tvm.schedules.cpu import matmul
from backends.tvm.schedules.cpu.target_info import vector_bits
from compiler.ir.builder import Builder
from compiler.ir.graph import Graph
from compiler.ir.types import TensorType

_TARGET = resolve_target("cpu").tvm_target()


def _rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def _dense_graph(m, k, n, rng, epilogue=True, const_weight=True):
    g = Graph()
    b = Builder(g, fold=False)
    x = g.add_input("x", TensorType.of(np.zeros((m, k), np.float32)))
    w = _rand(rng, k, n)
    wv = b.const(w) if const_weight else g.add_input("w", TensorType.of(w))
    y = b.op("matmul", [x, wv], {})[0]
    bias = _rand(rng, n)
    if epilogue:
        y = b.op("add", [y, b.const(bias)], {})[0]
        y = b.op("relu", [y], {})[0]
    g.set_outputs([y])
    return g, w, bias


# -- numerics through our pipeline -------------------------------------------------------------

DENSE_SHAPES = [
    (1, 64, 40),  # vector-matrix, no m loop
    (1, 2048, 1000),  # classifier
    (128, 256, 256),  # packed panels
    (50, 96, 96),
    (7, 30, 13),  # n not a multiple of the vector width
    (13, 17, 24),  # m with no good tile divisor: predicated tail
    (197, 64, 72),  # prime m
    (3, 5, 1),
]


@pytest.mark.parametrize("shape", DENSE_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_dense_const_weight(shape):
    m, k, n = shape
    rng = np.random.default_rng(m * 1000 + n)
    a, w = _rand(rng, m, k), _rand(rng, k, n)
    check_op("matmul", [a, w], const_inputs=(1,), expected=[a @ w], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "sa,sb",
    [
        ((4, 128, 64), (4, 64, 128)),  # attention scores
        ((4, 128, 128), (4, 128, 64)),  # attention @ V
        ((2, 3, 9, 16), (2, 3, 16, 11)),  # 4-D, odd sizes
        ((2, 33, 16), (16, 48)),  # batched activations @ shared weight
        ((16,), (16, 24)),  # vector @ matrix
        ((5, 16), (2, 16, 8)),  # broadcast lhs
    ],
)
def test_batch_matmul(sa, sb):
    rng = np.random.default_rng(len(sa) * 10 + sb[-1])
    a, b = _rand(rng, *sa), _rand(rng, *sb)
    check_op("matmul", [a, b], expected=[np.matmul(a, b)], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape", [(128, 64, 256), (5, 33, 16), (1, 300, 1000)])
def test_fused_bias_relu(shape):
    m, k, n = shape
    rng = np.random.default_rng(7)
    g, w, bias = _dense_graph(m, k, n, rng)
    x = _rand(rng, m, k)
    (got,) = run_tvm(g, {"x": x})
    np.testing.assert_allclose(got, np.maximum(x @ w + bias, 0), rtol=1e-4, atol=1e-4)


def test_residual_epilogue():
    rng = np.random.default_rng(3)
    g = Graph()
    b = Builder(g, fold=False)
    x = g.add_input("x", TensorType.of(np.zeros((64, 48), np.float32)))
    r = g.add_input("r", TensorType.of(np.zeros((64, 32), np.float32)))
    w = _rand(rng, 48, 32)
    y = b.op("matmul", [x, b.const(w)], {})[0]
    y = b.op("add", [y, r], {})[0]
    y = b.op("mul", [y, b.const(np.float32(0.5))], {})[0]
    g.set_outputs([y])
    xv, rv = _rand(rng, 64, 48), _rand(rng, 64, 32)
    (got,) = run_tvm(g, {"x": xv, "r": rv})
    np.testing.assert_allclose(got, (xv @ w + rv) * 0.5, rtol=1e-4, atol=1e-4)


# K = 1 (outer products, whose unit reduction TVM's normalization drops) and small K; batched
# and broadcast operands. Each as one matmul with a residual add (the epilogue fusion) and as a
# sum of two matmuls (LinearAttention's state update). K = 1 used to add the residual twice.
SMALL_K_SHAPES = {
    "2d": lambda k: ((8, k), (k, 8)),
    "batched": lambda k: ((2, 4, 8, k), (2, 4, k, 8)),
    "broadcast": lambda k: ((3, 8, k), (k, 16)),
}


@pytest.mark.parametrize("terms", [1, 2], ids=["matmul+residual", "matmul+matmul"])
@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("layout", sorted(SMALL_K_SHAPES))
def test_small_k_matmul_sums(layout, k, terms):
    sa, sb = SMALL_K_SHAPES[layout](k)
    rng = np.random.default_rng(k * 10 + terms)
    g = Graph()
    b = Builder(g, fold=False)
    feeds, products = {}, []
    for i in range(terms):
        feeds[f"a{i}"], feeds[f"b{i}"] = _rand(rng, *sa), _rand(rng, *sb)
        a = g.add_input(f"a{i}", TensorType.of(feeds[f"a{i}"]))
        bv = g.add_input(f"b{i}", TensorType.of(feeds[f"b{i}"]))
        products.append(b.emit("matmul", a, bv))
    want = sum(np.matmul(feeds[f"a{i}"], feeds[f"b{i}"]) for i in range(terms))
    if terms == 1:
        feeds["r"] = _rand(rng, *want.shape)
        products.append(g.add_input("r", TensorType.of(feeds["r"])))
        want = want + feeds["r"]
    g.set_outputs([b.emit("add", *products)])
    (got,) = run_tvm(g, feeds)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


# -- the rule really applies -----------------------------------------------------------------


@pytest.mark.parametrize(
    "shape,epilogue", [((128, 256, 256), True), ((1, 64, 40), False), ((7, 30, 13), True)]
)
def test_rule_matches_legalized_matmul(shape, epilogue):
    g, _, _ = _dense_graph(*shape, np.random.default_rng(0), epilogue=epilogue)
    funcs = fused_prim_funcs(g)
    mm = [f for name, f in funcs.items() if "matmul" in name]
    assert len(mm) == 1
    sch = matmul.Matmul().apply(mm[0], _TARGET, False)
    assert sch is not None
    text = sch.mod["main"].script()
    assert "T.vectorized" in text
    if shape[0] * shape[1] * shape[2] >= matmul._PARALLEL_MACS:
        assert "T.parallel" in text


def test_rule_ignores_other_funcs():
    g = Graph()
    b = Builder(g, fold=False)
    x = g.add_input("x", TensorType.of(np.zeros((4, 8), np.float32)))
    y = b.op("relu", [x], {})[0]
    y = b.op("reduce_sum", [y], {"axes": [1], "keepdims": False})[0]
    g.set_outputs([y])
    for f in fused_prim_funcs(g).values():
        assert matmul.Matmul().apply(f, _TARGET, False) is None


# -- tile choice -----------------------------------------------------------------------------


def test_choose_tile_fits_registers_and_divides():
    for m, n in [(128, 256), (50, 768), (1, 1000), (197, 1152), (7, 13), (64, 64)]:
        t = matmul.choose_tile(1, m, n, 256, 8, 16, 2)
        assert n % (t.nr * t.lanes) == 0
        assert t.mr * t.nr + min(t.mr, t.nr) + 1 <= 16
    t = matmul.choose_tile(1, 128, 256, 256, 8, 16, 2)
    assert 128 % t.mr == 0 and t.mr * t.nr >= 8


def test_vector_bits_from_features():
    def bits(mcpu):
        return vector_bits(tvm.target.Target({"kind": "llvm", "mcpu": mcpu}))

    assert bits("haswell") == 256
    assert bits("skylake-avx512") == 512
    assert bits("x86-64") == 128


def test_choose_tile_splits_for_the_thread_count():
    """A 1x256 GEMV: wide tiles for 2 threads, 16 narrower ones for 16 threads."""
    few = matmul.choose_tile(1, 1, 256, 256, 8, 16, 2)
    many = matmul.choose_tile(1, 1, 256, 256, 8, 16, 16)
    assert many.nr < few.nr
    assert 256 // (many.nr * many.lanes) >= 16
