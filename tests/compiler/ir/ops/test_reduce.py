import numpy as np
import pytest
from oputil import check_op, run_tvm

from backends.reference import run_graph
from compiler.ir.builder import Builder
from compiler.ir.graph import Graph
from compiler.ir.ops import get_op
from compiler.ir.types import IRTypeError, TensorType

rng = np.random.default_rng(0)

NUMPY = {
    "reduce_sum": lambda x, a, k: np.sum(x, axis=a, keepdims=k),
    "reduce_mean": lambda x, a, k: np.mean(x, axis=a, keepdims=k),
    "reduce_max": lambda x, a, k: np.max(x, axis=a, keepdims=k),
    "reduce_min": lambda x, a, k: np.min(x, axis=a, keepdims=k),
    "reduce_prod": lambda x, a, k: np.prod(x, axis=a, keepdims=k),
    "reduce_l1": lambda x, a, k: np.sum(np.abs(x), axis=a, keepdims=k),
    "reduce_l2": lambda x, a, k: np.sqrt(np.sum(x * x, axis=a, keepdims=k)),
    "reduce_log_sum": lambda x, a, k: np.log(np.sum(x, axis=a, keepdims=k)),
    "reduce_log_sum_exp": lambda x, a, k: np.log(np.sum(np.exp(x), axis=a, keepdims=k)),
    "reduce_sum_square": lambda x, a, k: np.sum(x * x, axis=a, keepdims=k),
}


@pytest.mark.parametrize("op", sorted(NUMPY))
@pytest.mark.parametrize(
    ("axes", "keepdims"), [([1], False), ([0, 2], True), ([-1], True), ([2, 0, 1], False)]
)
def test_float_reductions(op, axes, keepdims):
    x = rng.uniform(0.5, 1.5, (3, 4, 5)).astype("float32")
    expected = NUMPY[op](x.astype("float64"), tuple(axes), keepdims).astype("float32")
    check_op(op, [x], {"axes": axes, "keepdims": keepdims}, expected=[expected])


@pytest.mark.parametrize("op", sorted(NUMPY))
def test_empty_axes_reduce_nothing(op):
    """Empty axes act elementwise (ONNX noop_with_empty_axes): sum is x, l1 is |x|..."""
    x = rng.uniform(0.5, 1.5, (2, 3)).astype("float32")
    expected = NUMPY[op](x, (), True)
    check_op(op, [x], {"axes": [], "keepdims": True}, expected=[expected])


IDENTITIES = {
    "reduce_sum": 0.0,
    "reduce_mean": np.nan,
    "reduce_max": -np.inf,
    "reduce_min": np.inf,
    "reduce_prod": 1.0,
    "reduce_l1": 0.0,
    "reduce_l2": 0.0,
    "reduce_log_sum": -np.inf,
    "reduce_log_sum_exp": -np.inf,
    "reduce_sum_square": 0.0,
}


@pytest.mark.parametrize("op", sorted(IDENTITIES))
def test_zero_size_axis_gives_identity(op):
    x = np.zeros((2, 0, 4), "float32")
    expected = np.full((2, 1, 4), IDENTITIES[op], "float32")
    check_op(op, [x], {"axes": [1], "keepdims": True}, expected=[expected])


def test_zero_size_kept_axis_gives_empty_result():
    x = np.zeros((2, 0, 4), "float32")
    out = check_op("reduce_sum", [x], {"axes": [2], "keepdims": True})
    assert out[0].shape == (2, 0, 1)


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int32", "uint32", "int64"])
@pytest.mark.parametrize("op", ["reduce_sum", "reduce_max", "reduce_min", "reduce_prod"])
def test_integer_reductions_keep_dtype(op, dtype):
    x = rng.integers(0, 4, (3, 5)).astype(dtype)
    expected = NUMPY[op](x, (1,), False).astype(dtype)
    check_op(op, [x], {"axes": [1], "keepdims": False}, expected=[expected])


def test_integer_mean_truncates_toward_zero():
    x = np.array([[-7, 2], [7, 0], [-1, -2]], "int32")
    check_op(
        "reduce_mean",
        [x],
        {"axes": [1], "keepdims": False},
        expected=[np.array([-2, 3, -1], "int32")],
    )


def test_integer_extremes_over_empty_set():
    x = np.zeros((0, 3), "int32")
    check_op("reduce_max", [x], {"axes": [0], "keepdims": False}, expected=[np.full(3, -(2**31))])
    check_op("reduce_min", [x], {"axes": [0], "keepdims": False}, expected=[np.full(3, 2**31 - 1)])


def test_bool_max_min_are_any_all():
    x = np.array([[True, False, False], [True, True, True], [False, False, False]])
    check_op("reduce_max", [x], {"axes": [1], "keepdims": False}, expected=[x.any(axis=1)])
    check_op("reduce_min", [x], {"axes": [1], "keepdims": False}, expected=[x.all(axis=1)])
    empty = np.zeros((0, 2), bool)
    check_op("reduce_max", [empty], {"axes": [0], "keepdims": False}, expected=[[False, False]])


def test_log_sum_exp_is_stable():
    """exp(1000) overflows float32; subtracting the max keeps the result finite."""
    x = np.array([[1000.0, 1000.0, -np.inf], [-np.inf, -np.inf, -np.inf], [-1000.0, 0.0, 3.0]])
    expected = np.array([1000 + np.log(2), -np.inf, np.log(1 + np.exp(3.0))], "float32")
    attrs = {"axes": [1], "keepdims": False}
    check_op("reduce_log_sum_exp", [x.astype("float32")], attrs, expected=[expected])


def test_l2_of_integers_truncates():
    x = np.array([[3, 4], [1, 1]], "int32")
    check_op("reduce_l2", [x], {"axes": [1], "keepdims": True}, expected=[[[5], [1]]])


def test_reduction_attrs_are_normalized():
    t = TensorType("float32", (2, 3, 4))
    attrs = get_op("reduce_sum").prepare([t], {"axes": [-1, 0]})
    assert attrs == {"axes": [0, 2], "keepdims": True}
    with pytest.raises(IRTypeError):
        get_op("reduce_sum").prepare([t], {"axes": [3]})
    with pytest.raises(IRTypeError):
        get_op("reduce_sum").prepare([t], {"axes": [1, -2]})


def test_log_reductions_refuse_integers():
    op = get_op("reduce_log_sum_exp")
    t = TensorType("int32", (2, 3))
    with pytest.raises(IRTypeError, match="float"):
        op.infer_types([t], op.prepare([t], {"axes": [1]}))


def test_symbolic_dims_pass_through():
    g = Graph()
    b = Builder(g)
    x = g.add_input("x", TensorType("float32", ("batch", 6, "n")))
    s = b.emit("reduce_mean", x, axes=[1, 2], keepdims=False)
    m = b.emit("reduce_log_sum_exp", x, axes=[2], keepdims=True)
    (v, i) = b.op("topk", [x], {"k": 3, "axis": 1})
    a = b.emit("argmax", x, axis=-1, keepdims=False)
    assert s.type.shape == ("batch",)
    assert m.type.shape == ("batch", 6, 1)
    assert v.type.shape == ("batch", 3, "n") and i.type.dtype == "int64"
    assert a.type == TensorType("int64", ("batch", 6))
    g.set_outputs([s, m, v, i, a])
    feed = {"x": rng.standard_normal((2, 6, 5)).astype("float32")}
    ref = list(run_graph(g, feed).values())
    got = run_tvm(g, feed)
    for r, t in zip(ref, got, strict=True):
        np.testing.assert_allclose(t, r, rtol=1e-5, atol=1e-6)


# -- argmax / argmin -----------------------------------------------------------------------

TIES = np.array([[2.0, 5.0, 5.0, 1.0], [1.0, 1.0, 0.0, 0.0], [3.0, 3.0, 3.0, 3.0]], "float32")


@pytest.mark.parametrize(
    ("op", "last", "expected"),
    [
        ("argmax", False, [1, 0, 0]),
        ("argmax", True, [2, 1, 3]),
        ("argmin", False, [3, 2, 0]),
        ("argmin", True, [3, 3, 3]),
    ],
)
def test_arg_ties(op, last, expected):
    attrs = {"axis": 1, "keepdims": False, "select_last_index": last}
    check_op(op, [TIES], attrs, expected=[np.array(expected)])


@pytest.mark.parametrize("op", ["argmax", "argmin"])
@pytest.mark.parametrize("dtype", ["float32", "int32", "uint8"])
def test_arg_keepdims_negative_axis(op, dtype):
    x = rng.integers(0, 100, (3, 4, 5)).astype(dtype)
    fn = np.argmax if op == "argmax" else np.argmin
    check_op(op, [x], {"axis": -2}, expected=[fn(x, axis=1, keepdims=True)])


# -- cumsum --------------------------------------------------------------------------------


def _cumsum(x, axis, exclusive, reverse):
    if reverse:
        x = np.flip(x, axis)
    out = np.cumsum(x, axis=axis)
    if exclusive:
        out = np.concatenate([np.zeros_like(np.take(out, [0], axis)), out], axis)
        out = np.delete(out, -1, axis)
    return np.flip(out, axis) if reverse else out


@pytest.mark.parametrize("exclusive", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "int32", "int64"])
def test_cumsum(exclusive, reverse, dtype):
    x = rng.integers(-5, 5, (3, 4)).astype(dtype)
    attrs = {"axis": -1, "exclusive": exclusive, "reverse": reverse}
    check_op("cumsum", [x], attrs, expected=[_cumsum(x, 1, exclusive, reverse).astype(dtype)])


# -- topk ----------------------------------------------------------------------------------


def test_topk_ties_keep_lower_index_first():
    x = np.array([[3, 1, 3, 2, 1, 3]], "float32")
    values, indices = check_op("topk", [x], {"k": 4, "axis": 1})
    np.testing.assert_array_equal(values, [[3, 3, 3, 2]])
    np.testing.assert_array_equal(indices, [[0, 2, 5, 3]])
    values, indices = check_op("topk", [x], {"k": 3, "axis": 1, "largest": False})
    np.testing.assert_array_equal(values, [[1, 1, 2]])
    np.testing.assert_array_equal(indices, [[1, 4, 3]])


@pytest.mark.parametrize(
    "dtype", ["int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "float16", "float64"]
)
@pytest.mark.parametrize("largest", [True, False])
def test_topk_dtypes(dtype, largest):
    x = rng.permutation(24).reshape(4, 6).astype(dtype)
    order = np.argsort(-x.astype("float64") if largest else x, axis=0, kind="stable")[:2]
    values, indices = check_op("topk", [x], {"k": 2, "axis": 0, "largest": largest})
    np.testing.assert_array_equal(indices, order)
    np.testing.assert_array_equal(values, np.take_along_axis(x, order, 0))


def test_topk_uint64_full_range():
    x = np.array([[2**64 - 1, 5, 2**63, 2**63 - 1, 0, 2**64 - 1]], "uint64")
    values, indices = check_op("topk", [x], {"k": 4, "axis": 1})
    np.testing.assert_array_equal(indices, [[0, 5, 2, 3]])
    assert values.dtype == np.uint64 and values[0, 2] == 2**63


def test_topk_k_zero_is_empty():
    x = rng.standard_normal((2, 5)).astype("float32")
    values, indices = check_op("topk", [x], {"k": 0, "axis": 1})
    assert values.shape == indices.shape == (2, 0)


def test_topk_k_out_of_range():
    t = TensorType("float32", (2, 3))
    with pytest.raises(IRTypeError, match="k=4"):
        get_op("topk").prepare([t], {"k": 4})


@pytest.mark.parametrize("dtype", ["float32", "float16", "float64"])
def test_max_of_all_minus_inf_rows_is_minus_inf(dtype):
    """numpy's max of a row of -inf is -inf (TVM's reduction starts at the lowest finite)."""
    x = np.array([[-np.inf, -np.inf, -np.inf], [-np.inf, 2.0, -np.inf]], dtype)
    for axes, expected in (([1], x.max(axis=1)), ([0, 1], x.max())):
        check_op("reduce_max", [x], {"axes": axes, "keepdims": False}, expected=[expected])
