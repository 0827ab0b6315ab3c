import numpy as np
import pytest
import tvm
from oputil import check_op, single_op_graph
from tvm import relax

from backends.reference import run_graph
from backends.tvm import lower_graph, resolve_target
from compiler.ir.builder import Builder
from compiler.ir.graph import Graph
from compiler.ir.types import IRTypeError, TensorType

rng = np.random.default_rng(0)


def _data(*shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype("float32")


# -- gather --------------------------------------------------------------------------------
@pytest.mark.parametrize("const", [False, True])
def test_gather_negative_indices(const):
    x = _data(5, 4, 3)
    idx = np.array([[0, -1], [3, -5]], dtype="int64")
    check_op(
        "gather",
        [x, idx],
        {"axis": 0},
        const_inputs=[1] if const else [],
        expected=[np.take(x, idx % 5, axis=0)],
    )


def test_gather_negative_axis_scalar_index_int32():
    """A rank-0 index drops the axis. (Fed by hand: oputil.run_tvm turns 0-d arrays 1-d.)"""
    x = _data(2, 6)
    idx = np.array(-2, dtype="int32")
    g = single_op_graph("gather", [x, idx], {"axis": -1})
    (y,) = g.outputs
    assert y.type == TensorType("float32", (2,))
    np.testing.assert_array_equal(run_graph(g, {"in0": x, "in1": idx})[y.name], x[:, 4])
    ex = tvm.compile(lower_graph(g), target=resolve_target("cpu").tvm_target())
    out = relax.VirtualMachine(ex, tvm.cpu())["main"](
        tvm.runtime.tensor(x), tvm.runtime.tensor(idx)
    )
    np.testing.assert_array_equal(out[0].numpy(), x[:, 4])


def test_gather_symbolic_dims_pass_through():
    g = Graph()
    x = g.add_input("x", TensorType("float32", ("n", 7)))
    i = g.add_input("i", TensorType("int64", ("m",)))
    (y,) = Builder(g).op("gather", [x, i], {"axis": 1})
    assert y.type == TensorType("float32", ("n", "m"))


def test_gather_refuses_float_indices():
    g = Graph()
    x = g.add_input("x", TensorType("float32", (3,)))
    i = g.add_input("i", TensorType("float32", (2,)))
    with pytest.raises(IRTypeError, match="int32 or int64"):
        Builder(g).op("gather", [x, i], {})


# -- gather_elements -----------------------------------------------------------------------
def test_gather_elements_axis1_negative():
    x = _data(3, 4)
    idx = np.array([[0, -1, 2], [1, 1, -4], [3, 0, 0]], dtype="int64")
    expected = np.take_along_axis(x, idx % 4, axis=1)
    check_op("gather_elements", [x, idx], {"axis": 1}, expected=[expected])


def test_gather_elements_indices_smaller_than_data():
    x = _data(4, 5, 2)
    idx = rng.integers(-4, 4, size=(2, 3, 2)).astype("int32")
    expected = np.empty(idx.shape, "float32")
    for i, j, k in np.ndindex(*idx.shape):
        expected[i, j, k] = x[idx[i, j, k] % 4, j, k]
    check_op("gather_elements", [x, idx], {"axis": 0}, expected=[expected])


# -- gather_nd -----------------------------------------------------------------------------
def test_gather_nd_slices():
    x = _data(3, 4, 5)
    idx = np.array([[[0, 1]], [[2, -1]]], dtype="int64")  # [2, 1, 2]
    expected = np.stack([x[0, 1], x[2, 3]])[:, None]
    check_op("gather_nd", [x, idx], {}, expected=[expected])


def test_gather_nd_batch_dims():
    x = _data(2, 3, 4)
    idx = np.array([[[1], [0]], [[2], [-1]]], dtype="int64")  # [2, 2, 1]
    expected = np.stack([x[0][[1, 0]], x[1][[2, 2]]])
    check_op("gather_nd", [x, idx], {"batch_dims": 1}, expected=[expected])


def test_gather_nd_full_tuples_const_indices():
    x = _data(3, 4)
    idx = np.array([[0, 0], [2, -1], [-1, 1]], dtype="int64")
    check_op("gather_nd", [x, idx], {}, const_inputs=[1], expected=[x[[0, 2, 2], [0, 3, 1]]])


# -- scatter_elements ----------------------------------------------------------------------
@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])
def test_scatter_elements_reductions(reduction):
    x = _data(3, 4)
    idx = np.array([[1, 0, 2, 0], [0, 2, 1, 1]], dtype="int64")  # distinct per column
    upd = _data(2, 4)
    expected = x.copy()
    for i, j in np.ndindex(*idx.shape):
        p = (idx[i, j], j)
        expected[p] = {
            "none": lambda a, b: b,
            "add": np.add,
            "mul": np.multiply,
            "max": np.maximum,
            "min": np.minimum,
        }[reduction](expected[p], upd[i, j])
    check_op(
        "scatter_elements", [x, idx, upd], {"axis": 0, "reduction": reduction}, expected=[expected]
    )


def test_scatter_elements_negative_axis_and_indices():
    x = _data(2, 5)
    idx = np.array([[-1, 1], [0, -3]], dtype="int32")
    upd = _data(2, 2)
    expected = x.copy()
    expected[0, 4], expected[0, 1], expected[1, 0], expected[1, 2] = upd.ravel()
    check_op("scatter_elements", [x, idx, upd], {"axis": -1}, expected=[expected])


def test_scatter_elements_indices_narrower_than_data():
    """Index tensor smaller than data on a trailing axis: TOPI's kernel cannot do this."""
    x = _data(3, 4, 5)
    idx = np.array([[[0, 2], [1, -1]]], dtype="int32")  # [1, 2, 2], axis 2
    upd = _data(1, 2, 2)
    expected = x.copy()
    for i, j, k in np.ndindex(*idx.shape):
        expected[i, j, idx[i, j, k] % 5] = upd[i, j, k]
    check_op("scatter_elements", [x, idx, upd], {"axis": 2}, expected=[expected])


# -- scatter_nd ----------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])
def test_scatter_nd_slices(reduction):
    x = _data(4, 3)
    idx = np.array([[2], [0], [-1]], dtype="int64")
    upd = _data(3, 3)
    expected = x.copy()
    op = {"none": lambda a, b: b, "add": np.add, "mul": np.multiply}
    op |= {"max": np.maximum, "min": np.minimum}
    for n, row in enumerate([2, 0, 3]):
        expected[row] = op[reduction](expected[row], upd[n])
    check_op("scatter_nd", [x, idx, upd], {"reduction": reduction}, expected=[expected])


def test_scatter_nd_elements_duplicates_add_int32():
    x = _data(2, 3)
    idx = np.array([[[0, 1], [0, 1]], [[1, -1], [0, 0]]], dtype="int32")
    upd = _data(2, 2)
    expected = x.copy()
    for (a, b), u in zip(idx.reshape(-1, 2), upd.ravel()):
        expected[a, b % 3] += u
    check_op("scatter_nd", [x, idx, upd], {"reduction": "add"}, expected=[expected])


# -- trilu ---------------------------------------------------------------------------------
@pytest.mark.parametrize("upper", [True, False])
@pytest.mark.parametrize("k", [-7, -1, 0, 2, 9])
def test_trilu(upper, k):
    x = _data(2, 4, 5)
    expected = (np.triu if upper else np.tril)(x, k)
    check_op("trilu", [x], {"upper": upper, "k": k}, expected=[expected])


def test_trilu_needs_rank_2():
    g = Graph()
    x = g.add_input("x", TensorType("float32", (3,)))
    with pytest.raises(IRTypeError, match="rank >= 2"):
        Builder(g).op("trilu", [x], {})


# -- one_hot -------------------------------------------------------------------------------
@pytest.mark.parametrize("axis", [-1, 0, 1, -2])
def test_one_hot(axis):
    idx = np.array([[1, 9], [-2, 12]], dtype="int64")  # 12 is out of range: all off
    values = np.array([2.0, 5.0], dtype="float32")
    depth = 10
    oh = np.zeros((2, 2, depth), "float32") + 2
    for i, j in np.ndindex(2, 2):
        v = idx[i, j] + depth if idx[i, j] < 0 else idx[i, j]
        if 0 <= v < depth:
            oh[i, j, v] = 5
    expected = np.moveaxis(oh, -1, axis)
    check_op("one_hot", [idx, values], {"depth": depth, "axis": axis}, expected=[expected])


def test_one_hot_float_indices_int_values():
    idx = np.array([0.0, 2.7, -1.0], dtype="float32")
    values = np.array([0, 3], dtype="int32")
    expected = np.array([[3, 0, 0], [0, 0, 3], [0, 0, 3]], dtype="int32")
    check_op("one_hot", [idx, values], {"depth": 3}, expected=[expected])


# -- symbolic dims ---------------------------------------------------------------------------
def _run_symbolic(op: str, attrs: dict, data: np.ndarray, idx: np.ndarray, data_dims: tuple):
    """Lower with named dims (sizes read at run time), run, compare with the reference."""
    g = Graph()
    x = g.add_input("x", TensorType("float32", data_dims))
    i = g.add_input("i", TensorType(idx.dtype.name, ("m",) + idx.shape[1:]))
    (y,) = Builder(g).op(op, [x, i], attrs)
    g.set_outputs([y])
    ex = tvm.compile(lower_graph(g), target=resolve_target("cpu").tvm_target())
    got = relax.VirtualMachine(ex, tvm.cpu())["main"](
        tvm.runtime.tensor(data), tvm.runtime.tensor(idx)
    )
    expected = run_graph(g, {"x": data, "i": idx})[y.name]
    np.testing.assert_array_equal(got[0].numpy(), expected)
    return expected


def test_gather_symbolic_axis_negative_indices():
    x = _data(6, 3)
    idx = np.array([-1, 0, -6, 2], dtype="int64")
    out = _run_symbolic("gather", {"axis": 0}, x, idx, ("n", 3))
    np.testing.assert_array_equal(out, x[[5, 0, 0, 2]])


def test_gather_nd_symbolic_negative_indices():
    x = _data(4, 5, 2)
    idx = np.array([[-1, 0], [2, -2], [0, 4]], dtype="int32")
    out = _run_symbolic("gather_nd", {}, x, idx, ("n", "w", 2))
    np.testing.assert_array_equal(out, x[[3, 2, 0], [0, 3, 4]])
