"""ONNX random ops: shapes, dtypes and statistics (the values cannot match onnxruntime's
generator); seeded ops are reproducible, unseeded ones stay computed."""

import numpy as np
import pytest
from onnx import TensorProto, helper
from onnxutil import make_model
from oputil import run_tvm

from backends.reference import run_graph
from compiler.errors import ConversionError
from compiler.frontends.onnx import import_onnx

rng = np.random.default_rng(0)


def _run(op_type, inputs=(), opset=22, **attrs):
    """(graph, TVM outputs, reference outputs) of one node."""
    node = helper.make_node(op_type, [n for n, _ in inputs], ["y"], **attrs)
    graph = import_onnx(make_model([node], list(inputs), ["y"], opset=opset))
    feeds = dict(inputs)
    return graph, run_tvm(graph, feeds)[0], next(iter(run_graph(graph, feeds).values()))


@pytest.mark.parametrize(
    ("dtype", "np_dtype"), [(TensorProto.FLOAT, "float32"), (TensorProto.DOUBLE, "float64")]
)
def test_random_uniform(dtype, np_dtype):
    _, got, ref = _run("RandomUniform", shape=[300, 40], dtype=dtype, low=2.0, high=4.0, seed=3.0)
    assert got.dtype == np_dtype and got.shape == (300, 40)
    np.testing.assert_allclose(got, ref, rtol=1e-6)
    assert got.min() >= 2 and got.max() < 4
    assert abs(got.mean() - 3) < 0.02 and abs(got.var() - 4 / 12) < 0.02


def test_random_normal_and_like_variants():
    _, got, _ = _run("RandomNormal", shape=[100, 100], mean=-1.0, scale=2.0, seed=1.0)
    assert abs(got.mean() + 1) < 0.06 and abs(got.std() - 2) < 0.06
    like = np.zeros((50, 60), np.float64)
    _, got, _ = _run("RandomNormalLike", [("x", like)], seed=2.0)
    assert got.dtype == np.float64 and got.shape == like.shape
    assert abs(got.mean()) < 0.05 and abs(got.std() - 1) < 0.05
    _, got, _ = _run("RandomUniformLike", [("x", like)], dtype=TensorProto.FLOAT, seed=2.0)
    assert got.dtype == np.float32 and 0 <= got.min() and got.max() < 1


def test_seeded_is_reproducible_and_seeds_differ():
    _, a, _ = _run("RandomUniform", shape=[64], seed=5.0)
    _, b, _ = _run("RandomUniform", shape=[64], seed=5.0)
    _, c, _ = _run("RandomUniform", shape=[64], seed=6.0)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_unseeded_stays_a_node():
    graph, got, _ = _run("RandomUniform", shape=[64])
    assert [n.op for n in graph.nodes] == ["random_uniform"]
    assert graph.nodes[0].attrs["seed"] is None and got.shape == (64,)


def test_bernoulli_probabilities_zero_one_and_between():
    p = np.tile(np.array([0.0, 1.0, 0.25], np.float32), (4000, 1))
    _, got, _ = _run("Bernoulli", [("p", p)], opset=15, seed=0.0)
    assert got.dtype == np.float32 and got.shape == p.shape
    assert (got[:, 0] == 0).all() and (got[:, 1] == 1).all()
    assert abs(got[:, 2].mean() - 0.25) < 0.02
    _, got, _ = _run("Bernoulli", [("p", p)], dtype=TensorProto.INT64, seed=1.0)
    assert got.dtype == np.int64 and set(np.unique(got)) <= {0, 1}


def test_multinomial_frequencies_follow_the_softmax():
    probs = np.array([[0.1, 0.2, 0.7], [0.5, 0.5, 0.0]], np.float32)
    logits = np.log(np.maximum(probs, 1e-30)).astype(np.float32)
    graph, got, ref = _run(
        "Multinomial", [("x", logits)], opset=7, sample_size=5000, seed=4.0, dtype=TensorProto.INT64
    )
    assert got.dtype == np.int64 and got.shape == (2, 5000)
    assert got.min() >= 0 and got.max() <= 2
    freq = np.stack([np.bincount(row, minlength=3) / 5000 for row in got])
    np.testing.assert_allclose(freq, probs, atol=0.025)
    assert (got[1] != 2).all()  # a class of probability 0 is never drawn
    assert (got == ref).mean() > 0.999  # reference == TVM up to rounding at CDF boundaries


def test_errors_name_the_node():
    with pytest.raises(ConversionError, match="RandomUniform node .*float16, float32 or float64"):
        _run("RandomUniform", shape=[2], dtype=TensorProto.INT32)
    with pytest.raises(ConversionError, match="Multinomial node .*int32 or int64"):
        _run("Multinomial", [("x", np.zeros((1, 3), np.float32))], dtype=TensorProto.FLOAT)
