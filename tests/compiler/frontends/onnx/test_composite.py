"""ONNX ops decomposed into core ops: RMSNormalization, CumProd, the two losses."""

import numpy as np
import onnx
import pytest
from onnx import helper
from onnxutil import check_model, make_model
from oputil import run_tvm

from backends.reference import run_graph
from compiler.errors import ConversionError, NeedsValueError
from compiler.frontends.onnx import import_onnx

rng = np.random.default_rng(0)


def _op_model(op_type, inputs, inits=(), outputs=("y",), opset=23, **attrs):
    """One node over ``inputs`` (name, array) and constant ``inits`` (name, array)."""
    names = [n for n, _ in inputs] + [n for n, _ in inits]
    node = helper.make_node(op_type, names, list(outputs), **attrs)
    return make_model([node], inputs, list(outputs), initializers=list(inits), opset=opset)


# -- RMSNormalization ------------------------------------------------------------------------


@pytest.mark.parametrize("axis", [0, 1, -1, -2])
def test_rms_normalization_axes(axis):
    x = rng.standard_normal((2, 3, 5)).astype("float32")
    scale = rng.standard_normal(x.shape[axis % 3 :]).astype("float32")
    model = _op_model("RMSNormalization", [("x", x)], [("s", scale)], axis=axis)
    check_model(model, {"x": x})


def test_rms_normalization_epsilon_and_broadcast_scale():
    x = rng.standard_normal((4, 6)).astype("float32") * 1e-2
    scale = rng.standard_normal((1,)).astype("float32")
    model = _op_model("RMSNormalization", [("x", x)], [("s", scale)], epsilon=0.1)
    out = check_model(model, {"x": x})[0]
    expected = x / np.sqrt((x * x).mean(-1, keepdims=True) + 0.1) * scale
    np.testing.assert_allclose(out, expected, rtol=1e-5)


def test_rms_normalization_float16_computes_in_float32():
    """The sum of squares overflows float16 here; the float32 stash keeps it finite."""
    x = np.full((2, 8), 300.0, "float16")
    scale = np.ones(8, "float16")
    model = _op_model("RMSNormalization", [("x", x)], [("s", scale)])
    graph = import_onnx(model)
    got = run_tvm(graph, {"x": x})[0]
    ref = run_graph(graph, {"x": x})
    assert got.dtype == np.float16
    np.testing.assert_allclose(got, np.ones_like(x), rtol=1e-3)
    np.testing.assert_allclose(next(iter(ref.values())), np.ones_like(x), rtol=1e-3)


# -- CumProd ---------------------------------------------------------------------------------


def _np_cumprod(x, axis, exclusive, reverse):
    if reverse:
        x = np.flip(x, axis)
    if exclusive:
        ones = np.ones_like(np.take(x, [0], axis=axis))
        x = np.concatenate([ones, np.delete(x, -1, axis=axis)], axis=axis)
    out = np.cumprod(x, axis=axis, dtype=x.dtype)
    return np.flip(out, axis) if reverse else out


@pytest.mark.parametrize("exclusive", [0, 1])
@pytest.mark.parametrize("reverse", [0, 1])
@pytest.mark.parametrize(("shape", "axis"), [((7,), 0), ((3, 5), 1), ((9, 2, 3), 0), ((2, 4), -1)])
def test_cumprod(shape, axis, exclusive, reverse):
    """Zeros and negative values included, which a log-based scan would get wrong."""
    x = rng.choice(np.array([-1.5, -1.0, 0.0, 0.5, 1.0, 1.25, 2.0], "float32"), shape)
    axis_arr = np.array(axis, "int64")
    model = _op_model(
        "CumProd", [("x", x)], [("a", axis_arr)], opset=26, exclusive=exclusive, reverse=reverse
    )
    out = check_model(model, {"x": x})[0]
    np.testing.assert_allclose(out, _np_cumprod(x, axis, exclusive, reverse), rtol=1e-6)


@pytest.mark.parametrize("dtype", ["int32", "int64"])
@pytest.mark.parametrize(("exclusive", "reverse"), [(0, 0), (1, 1)])
def test_cumprod_integers_exact(dtype, exclusive, reverse):
    """Integers are exact, overflow wrapping included."""
    x = rng.integers(-9, 10, (4, 17)).astype(dtype)
    model = _op_model(
        "CumProd",
        [("x", x)],
        [("a", np.array(1, "int32"))],
        opset=26,
        exclusive=exclusive,
        reverse=reverse,
    )
    out = check_model(model, {"x": x}, rtol=0, atol=0)[0]
    np.testing.assert_array_equal(out, _np_cumprod(x, 1, exclusive, reverse))


def test_cumprod_single_element_axis():
    x = rng.standard_normal((3, 1)).astype("float32")
    model = _op_model("CumProd", [("x", x)], [("a", np.array(1, "int64"))], opset=26)
    np.testing.assert_array_equal(check_model(model, {"x": x})[0], x)
    model = _op_model("CumProd", [("x", x)], [("a", np.array(1, "int64"))], opset=26, exclusive=1)
    np.testing.assert_array_equal(check_model(model, {"x": x})[0], np.ones_like(x))


def test_cumprod_axis_must_be_known():
    x = rng.standard_normal((3, 4)).astype("float32")
    model = _op_model("CumProd", [("x", x), ("a", np.array(1, "int64"))], opset=26)
    with pytest.raises(NeedsValueError, match="axis"):
        import_onnx(model)


# -- NegativeLogLikelihoodLoss -----------------------------------------------------------------


def _loss_inputs(shape, target_dtype="int64", ignore_index=None):
    """Input [N, C, d...], target [N, d...] with some entries set to ignore_index."""
    x = rng.standard_normal(shape).astype("float32")
    target = rng.integers(0, shape[1], (shape[0], *shape[2:])).astype(target_dtype)
    if ignore_index is not None:
        target.flat[::3] = ignore_index
    return x, target


def _nll_numpy(log_prob, target, weight, reduction, ignore_index):
    """Straightforward loops, as the ONNX spec describes the loss."""
    n, c = log_prob.shape[:2]
    lp = log_prob.reshape(n, c, -1)
    t = target.reshape(n, -1)
    loss = np.zeros(t.shape, "float64")
    w = np.zeros(t.shape, "float64")
    for i in range(n):
        for d in range(t.shape[1]):
            k = t[i, d]
            if k == ignore_index:
                continue
            w[i, d] = 1.0 if weight is None else weight[k]
            loss[i, d] = -lp[i, k, d] * w[i, d]
    if reduction == "none":
        return loss.reshape(target.shape)
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / w.sum()


NLL_CASES = [
    # shape, reduction, with weight, ignore_index
    ((3, 5), "mean", False, None),
    ((3, 5), "none", True, None),
    ((3, 5, 4), "sum", False, 2),
    ((3, 5, 4), "mean", True, 1),
    ((2, 3, 2, 2, 3), "mean", True, None),
    ((2, 3, 2, 2, 3), "none", False, -1),
    ((2, 4, 3), "mean", True, -5),
    ((2, 4, 3), "sum", True, 10),
]


def _loss_case(shape, reduction, with_weight, ignore_index):
    """Inputs (named, for the model), the class weight or None, and the loss attributes."""
    x, target = _loss_inputs(shape, ignore_index=ignore_index)
    inputs = [("x", x), ("t", target)]
    weight = rng.uniform(0.5, 2.0, shape[1]).astype("float32") if with_weight else None
    if weight is not None:
        inputs.append(("w", weight))
    attrs = {"reduction": reduction}
    if ignore_index is not None:
        attrs["ignore_index"] = ignore_index
    return x, target, weight, inputs, attrs


@pytest.mark.parametrize(("shape", "reduction", "with_weight", "ignore_index"), NLL_CASES)
def test_nll_loss(shape, reduction, with_weight, ignore_index):
    x, target, weight, inputs, attrs = _loss_case(shape, reduction, with_weight, ignore_index)
    model = _op_model("NegativeLogLikelihoodLoss", inputs, opset=22, **attrs)
    feeds = {n: a for n, a in inputs}
    out = check_model(model, feeds)[0]
    expected = _nll_numpy(x, target, weight, reduction, ignore_index)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_nll_loss_int32_target_opset13():
    x, target = _loss_inputs((4, 3, 2), target_dtype="int32", ignore_index=0)
    model = _op_model(
        "NegativeLogLikelihoodLoss", [("x", x), ("t", target)], opset=13, ignore_index=0
    )
    check_model(model, {"x": x, "t": target})


def test_nll_loss_symbolic_batch():
    x, target = _loss_inputs((4, 3, 2))
    model = _op_model("NegativeLogLikelihoodLoss", [("x", x), ("t", target)], reduction="none")
    for v in (model.graph.input[0], model.graph.input[1], model.graph.output[0]):
        v.type.tensor_type.shape.dim[0].dim_param = "N"
    onnx.checker.check_model(model)
    graph = import_onnx(model)
    assert graph.inputs[0].type.shape[0] == "N"
    out = run_tvm(graph, {"x": x, "t": target})[0]
    np.testing.assert_allclose(out, _nll_numpy(x, target, None, "none", None), rtol=1e-6)


def test_nll_loss_unknown_reduction():
    x, target = _loss_inputs((2, 3))
    node = helper.make_node("NegativeLogLikelihoodLoss", ["x", "t"], ["y"], reduction="max")
    graph = helper.make_graph(
        [node],
        "g",
        [
            helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 3]),
            helper.make_tensor_value_info("t", onnx.TensorProto.INT64, [2]),
        ],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 22)])
    with pytest.raises(ConversionError, match="reduction 'max'"):
        import_onnx(model)


# -- SoftmaxCrossEntropyLoss -------------------------------------------------------------------


def _log_softmax(x):
    s = x - x.max(axis=1, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=1, keepdims=True))


@pytest.mark.parametrize(("shape", "reduction", "with_weight", "ignore_index"), NLL_CASES)
@pytest.mark.parametrize("log_prob", [False, True])
def test_softmax_cross_entropy_loss(shape, reduction, with_weight, ignore_index, log_prob):
    x, target, weight, inputs, attrs = _loss_case(shape, reduction, with_weight, ignore_index)
    outputs = ("y", "lp") if log_prob else ("y",)
    model = _op_model("SoftmaxCrossEntropyLoss", inputs, outputs=outputs, opset=13, **attrs)
    outs = check_model(model, {n: a for n, a in inputs})
    lp = _log_softmax(x.astype("float64"))
    expected = _nll_numpy(lp, target, weight, reduction, ignore_index)
    np.testing.assert_allclose(outs[0], expected, rtol=1e-5, atol=1e-6)
    if log_prob:
        np.testing.assert_allclose(outs[1], lp, rtol=1e-5, atol=1e-6)


# -- Swish, SwiGLU ---------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [1.0, 0.5, -2.0])
def test_swish(alpha):
    x = rng.standard_normal((3, 7)).astype("float32") * 4
    out = check_model(_op_model("Swish", [("x", x)], opset=24, alpha=alpha), {"x": x})[0]
    np.testing.assert_allclose(out, x / (1 + np.exp(-alpha * x)), rtol=1e-5, atol=1e-6)


def _onnx_reference(model, feeds):
    from onnx.reference import ReferenceEvaluator

    return ReferenceEvaluator(model).run(None, feeds)


@pytest.mark.parametrize(("dtype", "rtol"), [("float32", 1e-5), ("float16", 1e-3)])
def test_swiglu_against_the_onnx_reference(dtype, rtol):
    """onnxruntime 1.32 has no SwiGLU: the ONNX reference evaluator is the oracle."""
    a = (rng.standard_normal((4, 6)) * 3).astype(dtype)
    b = rng.standard_normal((4, 6)).astype(dtype)
    model = _op_model("SwiGLU", [("a", a), ("b", b)], opset=28, alpha=0.7)
    graph = import_onnx(model)
    got = run_tvm(graph, {"a": a, "b": b})[0]
    ref = next(iter(run_graph(graph, {"a": a, "b": b}).values()))
    a64 = a.astype(np.float64)
    want = a64 / (1 + np.exp(-0.7 * a64)) * b
    for out in (got, ref):
        assert out.dtype == dtype
        np.testing.assert_allclose(out, want, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(got, _onnx_reference(model, {"a": a, "b": b})[0], rtol=2 * rtol)


def test_swiglu_refuses_different_shapes():
    a, b = np.zeros((2, 3), np.float32), np.zeros((1, 3), np.float32)
    with pytest.raises(ConversionError, match="SwiGLU node .*same type and shape"):
        import_onnx(_op_model("SwiGLU", [("a", a), ("b", b)], opset=28))


# -- RotaryEmbedding -------------------------------------------------------------------------


@pytest.mark.parametrize("interleaved", [0, 1])
@pytest.mark.parametrize("rot", [0, 4])
@pytest.mark.parametrize("rank", [3, 4])
def test_rotary_embedding_with_position_ids(interleaved, rot, rank):
    heads, seq, head = 3, 5, 8
    half = (rot or head) // 2
    shape = (2, seq, heads * head) if rank == 3 else (2, heads, seq, head)
    x = rng.standard_normal(shape).astype("float32")
    cos = rng.standard_normal((20, half)).astype("float32")
    sin = rng.standard_normal((20, half)).astype("float32")
    pos = rng.integers(0, 20, (2, seq)).astype("int64")
    attrs = {"interleaved": interleaved, "rotary_embedding_dim": rot}
    if rank == 3:
        attrs["num_heads"] = heads
    inputs = [("x", x), ("cos", cos), ("sin", sin), ("pos", pos)]
    model = _op_model("RotaryEmbedding", inputs, **attrs)
    check_model(model, dict(inputs), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("interleaved", [0, 1])
def test_rotary_embedding_without_position_ids(interleaved):
    x = rng.standard_normal((1, 2, 4, 6)).astype("float32")
    angle = rng.standard_normal((1, 4, 3))
    cos, sin = np.cos(angle).astype("float32"), np.sin(angle).astype("float32")
    inputs = [("x", x), ("cos", cos), ("sin", sin)]
    model = _op_model("RotaryEmbedding", inputs, interleaved=interleaved)
    out = check_model(model, dict(inputs), rtol=1e-5, atol=1e-6)[0]
    # A rotation keeps the norm of every pair, so of every head vector.
    np.testing.assert_allclose(np.linalg.norm(out, axis=-1), np.linalg.norm(x, axis=-1), rtol=1e-5)


def test_rotary_embedding_errors():
    x = np.zeros((1, 2, 3, 6), np.float32)
    cache = np.zeros((1, 3, 3), np.float32)
    inputs = [("x", x), ("c", cache), ("s", cache)]
    with pytest.raises(ConversionError, match="RotaryEmbedding node .*must be even"):
        import_onnx(_op_model("RotaryEmbedding", inputs, rotary_embedding_dim=5))
    with pytest.raises(ConversionError, match="needs num_heads"):
        import_onnx(_op_model("RotaryEmbedding", [("x", x[0]), ("c", cache), ("s", cache)]))


# -- TensorScatter ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["linear", "circular"])
@pytest.mark.parametrize("axis", [-2, 2])
def test_tensor_scatter(mode, axis):
    past = rng.standard_normal((3, 2, 6, 4)).astype("float32")
    update = rng.standard_normal((3, 2, 3, 4)).astype("float32")
    writes = np.array([0, 3, 5 if mode == "circular" else 2], np.int64)
    inputs = [("past", past), ("update", update), ("w", writes)]
    model = _op_model("TensorScatter", inputs, opset=24, mode=mode, axis=axis)
    out = check_model(model, dict(inputs), rtol=0, atol=0)[0]
    want = past.copy()
    for b in range(3):
        for s in range(3):
            want[b, :, (writes[b] + s) % 6] = update[b, :, s]
    np.testing.assert_array_equal(out, want)


def test_tensor_scatter_without_write_indices_and_on_another_axis():
    past = rng.standard_normal((2, 5, 3)).astype("float32")
    update = rng.standard_normal((2, 2, 3)).astype("float32")
    inputs = [("past", past), ("update", update)]
    out = check_model(_op_model("TensorScatter", inputs, opset=24, axis=1), dict(inputs))[0]
    np.testing.assert_array_equal(out[:, :2], update)
    np.testing.assert_array_equal(out[:, 2:], past[:, 2:])


def test_tensor_scatter_errors():
    past, update = np.zeros((2, 4, 3), np.float32), np.zeros((2, 5, 3), np.float32)
    with pytest.raises(ConversionError, match="TensorScatter node .*5 <= 4"):
        import_onnx(_op_model("TensorScatter", [("p", past), ("u", update)], opset=24, axis=1))
    with pytest.raises(ConversionError, match="batch axis"):
        import_onnx(_op_model("TensorScatter", [("p", past), ("u", past)], opset=24, axis=0))
