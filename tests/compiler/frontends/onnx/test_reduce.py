import numpy as np
import pytest
from onnx import helper
from onnxutil import check_model, make_model

from compiler.errors import NeedsValueError
from compiler.frontends.onnx import import_onnx

rng = np.random.default_rng(0)

REDUCE_OPS = [
    "ReduceSum",
    "ReduceMean",
    "ReduceMax",
    "ReduceMin",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceSumSquare",
]
AXES_INPUT_SINCE = {op: 13 if op == "ReduceSum" else 18 for op in REDUCE_OPS}


def _reduce_model(op_type, x, axes, opset, **attrs):
    """A one-node model; axes go in as an attribute or as a constant input by opset."""
    inits = []
    inputs = ["x"]
    if axes is not None:
        if opset >= AXES_INPUT_SINCE[op_type]:
            inits.append(("axes", np.array(axes, "int64")))
            inputs.append("axes")
        else:
            attrs["axes"] = axes
    node = helper.make_node(op_type, inputs, ["y"], **attrs)
    return make_model([node], [("x", x)], ["y"], initializers=inits, opset=opset)


@pytest.mark.parametrize("op_type", REDUCE_OPS)
@pytest.mark.parametrize("opset", [13, 18])
@pytest.mark.parametrize(("axes", "keepdims"), [([1], 0), ([0, -1], 1), (None, 1), (None, 0)])
def test_reductions(op_type, opset, axes, keepdims):
    x = rng.uniform(0.5, 2.0, (3, 4, 5)).astype("float32")
    model = _reduce_model(op_type, x, axes, opset, keepdims=keepdims)
    check_model(model, {"x": x})


@pytest.mark.parametrize("op_type", ["ReduceSum", "ReduceMax", "ReduceL1", "ReduceSumSquare"])
def test_noop_with_empty_axes(op_type):
    x = rng.uniform(-2.0, 2.0, (3, 4)).astype("float32")
    node = helper.make_node(op_type, ["x"], ["y"], noop_with_empty_axes=1)
    check_model(make_model([node], [("x", x)], ["y"], opset=18), {"x": x})
    # An empty axes input means the same thing as a missing one.
    node = helper.make_node(op_type, ["x", "axes"], ["y"], noop_with_empty_axes=1)
    model = make_model(
        [node], [("x", x)], ["y"], initializers=[("axes", np.zeros(0, "int64"))], opset=18
    )
    check_model(model, {"x": x})


def test_noop_sum_is_the_input():
    x = rng.standard_normal((2, 3)).astype("float32")
    node = helper.make_node("ReduceSum", ["x"], ["y"], noop_with_empty_axes=1)
    graph = import_onnx(make_model([node], [("x", x)], ["y"], opset=13))
    (n,) = graph.nodes
    assert n.op == "reduce_sum" and n.attrs["axes"] == []


@pytest.mark.parametrize("op_type", ["ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd"])
def test_integer_reductions(op_type):
    x = rng.integers(-5, 5, (4, 6)).astype("int32")
    check_model(_reduce_model(op_type, x, [1], 18, keepdims=0), {"x": x})


def test_reduce_log_sum_exp_large_values():
    x = rng.uniform(500.0, 1000.0, (3, 7)).astype("float32")
    check_model(_reduce_model("ReduceLogSumExp", x, [1], 18, keepdims=1), {"x": x})


def test_reduce_max_bool():
    x = rng.random((3, 4)) > 0.6
    check_model(_reduce_model("ReduceMax", x, [1], 20, keepdims=0), {"x": x})


def test_axes_must_be_known():
    x = rng.standard_normal((2, 3)).astype("float32")
    node = helper.make_node("ReduceSum", ["x", "axes"], ["y"])
    model = make_model([node], [("x", x), ("axes", np.array([1], "int64"))], ["y"], opset=13)
    with pytest.raises(NeedsValueError, match="axes"):
        import_onnx(model)
    graph = import_onnx(model, input_values={"axes": np.array([1], "int64")})
    assert graph.nodes[0].attrs["axes"] == [1]


@pytest.mark.parametrize("op_type", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize("select_last_index", [0, 1])
@pytest.mark.parametrize(("axis", "keepdims"), [(0, 1), (-1, 0)])
def test_arg(op_type, select_last_index, axis, keepdims):
    x = rng.integers(0, 3, (4, 5)).astype("float32")  # many ties
    node = helper.make_node(
        op_type, ["x"], ["y"], axis=axis, keepdims=keepdims, select_last_index=select_last_index
    )
    check_model(make_model([node], [("x", x)], ["y"], opset=13), {"x": x})


@pytest.mark.parametrize("exclusive", [0, 1])
@pytest.mark.parametrize("reverse", [0, 1])
def test_cumsum(exclusive, reverse):
    x = rng.standard_normal((3, 5)).astype("float32")
    node = helper.make_node("CumSum", ["x", "axis"], ["y"], exclusive=exclusive, reverse=reverse)
    model = make_model([node], [("x", x)], ["y"], initializers=[("axis", np.array(-1, "int32"))])
    check_model(model, {"x": x})


def test_topk_opset9_attribute_k():
    x = rng.standard_normal((3, 6)).astype("float32")
    node = helper.make_node("TopK", ["x"], ["v", "i"], k=2, axis=0)
    check_model(make_model([node], [("x", x)], ["v", "i"], opset=9), {"x": x})


@pytest.mark.parametrize("largest", [0, 1])
def test_topk_with_ties(largest):
    x = rng.integers(0, 4, (3, 8)).astype("int64")
    node = helper.make_node("TopK", ["x", "k"], ["v", "i"], largest=largest)
    model = make_model(
        [node], [("x", x)], ["v", "i"], initializers=[("k", np.array([5], "int64"))], opset=11
    )
    check_model(model, {"x": x})


@pytest.mark.parametrize("p", [1, 2])
def test_lp_normalization(p):
    x = rng.standard_normal((3, 4)).astype("float32")
    x[1] = 0.0  # the norm is 0: the result is 0, not NaN
    node = helper.make_node("LpNormalization", ["x"], ["y"], axis=1, p=p)
    check_model(make_model([node], [("x", x)], ["y"], opset=13), {"x": x})
