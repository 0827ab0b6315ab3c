"""Random core ops: reproducible for a seed (reference == TVM), right statistics, never
folded or merged when unseeded."""

import numpy as np
import pytest
from oputil import check_op, run_tvm, single_op_graph

from backends.reference import run_graph
from compiler.ir.builder import Builder
from compiler.ir.graph import Graph
from compiler.ir.types import IRTypeError
from passes import run_passes


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_uniform_is_reproducible_and_in_range(dtype):
    attrs = {"shape": [64, 50], "dtype": dtype, "low": -2.0, "high": 3.0, "seed": 7.0}
    # TVM == reference up to one rounding (LLVM may fuse low + (high - low) * u into an fma)
    (x,) = check_op("random_uniform", [], attrs, rtol=2e-3 if dtype == "float16" else 1e-6)
    assert x.dtype == dtype and x.shape == (64, 50)
    assert x.min() >= -2 and x.max() < 3
    assert abs(x.astype(np.float64).mean() - 0.5) < 0.1  # mean (low + high) / 2
    assert abs(x.astype(np.float64).var() - 25 / 12) < 0.15  # variance (high - low)^2 / 12
    (again,) = check_op("random_uniform", [], attrs, rtol=1e-2)
    np.testing.assert_array_equal(again, x)


def test_seeds_give_different_independent_samples():
    a = check_op("random_uniform", [], {"shape": [4000], "seed": 1.0})[0]
    b = check_op("random_uniform", [], {"shape": [4000], "seed": 2.0})[0]
    assert not np.array_equal(a, b)
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.05
    assert abs(np.corrcoef(a[:-1], a[1:])[0, 1]) < 0.05  # neighbours do not correlate
    counts = np.histogram(a, bins=10, range=(0, 1))[0]
    assert counts.min() > 330 and counts.max() < 470  # about 400 per bin


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_normal_statistics(dtype):
    attrs = {"shape": [200, 100], "dtype": dtype, "mean": 1.5, "scale": 0.5, "seed": 3.0}
    (x,) = check_op("random_normal", [], attrs, rtol=1e-5, atol=1e-5)
    assert x.dtype == dtype
    assert abs(x.mean() - 1.5) < 0.02 and abs(x.std() - 0.5) < 0.02
    z = (x - 1.5) / 0.5
    assert abs(np.mean(np.abs(z) < 1) - 0.6827) < 0.02  # the normal's one-sigma mass
    assert abs(np.mean(z**3)) < 0.1 and abs(np.mean(z**4) - 3) < 0.2  # skew 0, kurtosis 3


def test_like_input_gives_the_shape_and_is_not_read():
    like = np.full((3, 5), np.nan, "float32")
    (x,) = check_op("random_uniform", [like], {"seed": 0.0}, rtol=0, atol=0)  # no fma here
    assert x.shape == (3, 5) and np.isfinite(x).all()


def test_dtype_must_be_float():
    with pytest.raises(IRTypeError, match="float"):
        single_op_graph("random_normal", [], {"shape": [2], "dtype": "int32", "seed": 1.0})


def _two_samplers(seed):
    g = Graph()
    b = Builder(g)
    u1 = b.emit("random_uniform", shape=[256], seed=seed)
    u2 = b.emit("random_uniform", shape=[256], seed=seed)
    g.set_outputs([u1, u2], ["u1", "u2"])
    return g


def test_seeded_folds_unseeded_stays_computed_and_unmerged():
    seeded = _two_samplers(5.0)
    assert not seeded.nodes and all(v.is_constant for v in seeded.outputs)
    g = _two_samplers(None)
    run_passes(g)
    assert [n.op for n in g.nodes] == ["random_uniform", "random_uniform"]
    u1, u2 = run_tvm(g, {})
    assert not np.array_equal(u1, u2)  # each unseeded node gets its own key
    first = run_graph(g, {})["u1"]
    assert not np.array_equal(first, run_graph(g, {})["u1"])  # fresh draws each evaluation
    assert 0 <= first.min() and first.max() < 1
