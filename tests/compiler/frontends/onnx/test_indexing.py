import numpy as np
import pytest
from onnx import helper
from onnxutil import check_model, make_model

from compiler.errors import NeedsValueError
from compiler.frontends.onnx import import_onnx

rng = np.random.default_rng(1)


def _f32(*shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype("float32")


def _node(op: str, inputs: list[str], outputs: list[str] | None = None, **attrs):
    return helper.make_node(op, inputs, outputs or ["y"], **attrs)


def test_gather_runtime_negative_indices():
    x, i = _f32(3, 5, 2), np.array([[-1, 0], [4, -5]], dtype="int32")
    model = make_model([_node("Gather", ["x", "i"], axis=1)], [("x", x), ("i", i)], ["y"])
    check_model(model, {"x": x, "i": i})


def test_gather_constant_indices():
    x = _f32(4, 3)
    i = np.array([3, -4, -1], dtype="int64")
    model = make_model([_node("Gather", ["x", "i"])], [("x", x)], ["y"], [("i", i)])
    check_model(model, {"x": x})


def test_gather_elements_negative_axis():
    x = _f32(2, 3, 4)
    i = rng.integers(-4, 4, size=(2, 3, 3)).astype("int64")
    model = make_model([_node("GatherElements", ["x", "i"], axis=-1)], [("x", x), ("i", i)], ["y"])
    check_model(model, {"x": x, "i": i})


def test_gather_nd_batch_dims():
    x = _f32(2, 3, 4)
    i = np.array([[[1, -1], [0, 2]], [[2, 0], [-3, 3]]], dtype="int64")
    model = make_model([_node("GatherND", ["x", "i"], batch_dims=1)], [("x", x), ("i", i)], ["y"])
    check_model(model, {"x": x, "i": i})


@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])
def test_scatter_elements(reduction):
    x, u = _f32(3, 4), _f32(3, 2)
    if reduction == "none":
        i = np.array([[0, -1], [1, 2], [3, 0]], dtype="int64")  # no repeats: order-free
    else:
        i = np.array([[0, 0], [1, -3], [3, 3]], dtype="int64")
    model = make_model(
        [_node("ScatterElements", ["x", "i", "u"], axis=1, reduction=reduction)],
        [("x", x), ("i", i), ("u", u)],
        ["y"],
        opset=18,
    )
    check_model(model, {"x": x, "i": i, "u": u})


def test_scatter_opset10_alias():
    x, u = _f32(3, 3), _f32(2, 3)
    i = np.array([[1, 0, 2], [0, 2, 1]], dtype="int64")
    model = make_model(
        [_node("Scatter", ["x", "i", "u"])], [("x", x), ("i", i), ("u", u)], ["y"], opset=10
    )
    check_model(model, {"x": x, "i": i, "u": u})


@pytest.mark.parametrize("reduction", ["none", "add", "mul"])
def test_scatter_nd(reduction):
    x, u = _f32(4, 3, 2), _f32(2, 2)
    i = np.array([[0, 1], [-1, 2]], dtype="int64")
    model = make_model(
        [_node("ScatterND", ["x", "i", "u"], reduction=reduction)],
        [("x", x), ("i", i), ("u", u)],
        ["y"],
        opset=18,
    )
    check_model(model, {"x": x, "i": i, "u": u})


@pytest.mark.parametrize("upper", [0, 1])
def test_trilu_with_k(upper):
    x = _f32(2, 4, 6)
    k = np.array(-1 if upper else 2, dtype="int64")
    model = make_model(
        [_node("Trilu", ["x", "k"], upper=upper)], [("x", x)], ["y"], [("k", k)], opset=14
    )
    check_model(model, {"x": x})


def test_trilu_without_k():
    x = np.arange(12, dtype="int64").reshape(3, 4)
    model = make_model([_node("Trilu", ["x"])], [("x", x)], ["y"], opset=14)
    check_model(model, {"x": x})


def test_one_hot_runtime_values_float_indices():
    idx = np.array([[0.0, 3.9], [-2.0, 7.0]], dtype="float32")  # 7 is out of range
    values = np.array([-1.0, 4.0], dtype="float32")
    model = make_model(
        [_node("OneHot", ["i", "depth", "v"], axis=1)],
        [("i", idx), ("v", values)],
        ["y"],
        [("depth", np.array([5.0], dtype="float32"))],
    )
    check_model(model, {"i": idx, "v": values})


def test_one_hot_runtime_depth_is_an_error():
    idx = np.array([1, 2], dtype="int64")
    depth = np.array(3, dtype="int64")
    values = np.array([0, 1], dtype="int64")
    model = make_model(
        [_node("OneHot", ["i", "d", "v"])], [("i", idx), ("d", depth), ("v", values)], ["y"]
    )
    with pytest.raises(NeedsValueError, match="depth"):
        import_onnx(model)


@pytest.mark.parametrize("axis", [None, 0, -1])
def test_compress_constant_condition(axis):
    x = _f32(3, 4)
    cond = np.array([True, False, True], dtype=bool)
    attrs = {} if axis is None else {"axis": axis}
    model = make_model([_node("Compress", ["x", "c"], **attrs)], [("x", x)], ["y"], [("c", cond)])
    check_model(model, {"x": x})


def test_compress_runtime_condition_is_a_clear_error():
    x = _f32(3, 4)
    cond = np.array([True, False, True])
    model = make_model([_node("Compress", ["x", "c"], axis=0)], [("x", x), ("c", cond)], ["y"])
    with pytest.raises(NeedsValueError, match="number of true values") as e:
        import_onnx(model)
    assert e.value.value_name == "c"


def test_nonzero_constant_folds():
    c = np.array([[0, 2, 0], [1, 0, 3]], dtype="float32")
    x = np.ones((2, 3), dtype="int64")
    model = make_model(
        [_node("NonZero", ["c"], ["nz"]), _node("Add", ["nz", "x"])],
        [("x", x)],
        ["y"],
        [("c", c)],
    )
    check_model(model, {"x": x})
    assert [n.op for n in import_onnx(model).nodes] == ["add"]


def test_nonzero_runtime_input_is_a_clear_error():
    x = _f32(2, 3)
    model = make_model([_node("NonZero", ["x"])], [("x", x)], ["y"])
    with pytest.raises(NeedsValueError, match="number of non-zeros"):
        import_onnx(model)


@pytest.mark.parametrize("sorted_", [0, 1])
@pytest.mark.parametrize("axis", [None, 0, -1])
def test_unique_constant(sorted_, axis):
    c = np.array([[3, 1, 3], [0, 2, 0], [3, 1, 3]], dtype="int64")
    attrs = {"sorted": sorted_} | ({} if axis is None else {"axis": axis})
    outs = ["u", "idx", "inv", "cnt"]
    model = make_model([_node("Unique", ["c"], outs, **attrs)], [], outs, [("c", c)])
    check_model(model, {})


@pytest.mark.parametrize("batch_axis", [0, 1])
def test_reverse_sequence(batch_axis):
    shape = (3, 4, 2) if batch_axis == 0 else (4, 3, 2)
    x = _f32(*shape)
    lens = np.array([4, 1, 2], dtype="int64")
    model = make_model(
        [_node("ReverseSequence", ["x", "l"], batch_axis=batch_axis, time_axis=1 - batch_axis)],
        [("x", x)],
        ["y"],
        [("l", lens)],
    )
    check_model(model, {"x": x})
