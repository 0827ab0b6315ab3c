import numpy as np
import pytest
from oputil import check_op, run_tvm

from backends.reference import run_graph
from compiler.ir.builder import Builder
from compiler.ir.graph import Graph
from compiler.ir.types import IRTypeError, TensorType

rng = np.random.default_rng(0)


def rand(*shape: int, dtype: str = "float32") -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype)


def test_reshape():
    x = rand(2, 3, 4)
    check_op("reshape", [x], {"shape": [4, 1, 6]}, expected=[x.reshape(4, 1, 6)])


def test_reshape_refuses_wrong_size_and_minus_one():
    g = Graph()
    x = g.add_input("x", TensorType("float32", (2, 3)))
    with pytest.raises(IRTypeError):
        Builder(g).emit("reshape", x, shape=[4, 2])
    with pytest.raises(IRTypeError):
        Builder(g).emit("reshape", x, shape=[-1, 2])


def test_reshape_with_dim_names_moving_axes():
    g = Graph()
    x = g.add_input("x", TensorType("float32", (1, "b", "s", 6)))
    y = Builder(g).emit("reshape", x, shape=["b", "s", 2, 3])
    assert y.type == TensorType("float32", ("b", "s", 2, 3))
    assert y.producer.attrs["name_axes"] == [1, 2]
    g.set_outputs([y])
    data = rand(1, 4, 5, 6)
    (ref,) = run_graph(g, {"x": data}).values()
    np.testing.assert_array_equal(ref, data.reshape(4, 5, 2, 3))
    np.testing.assert_array_equal(run_tvm(g, {"x": data})[0], ref)


def test_reshape_refuses_unknown_name():
    g = Graph()
    x = g.add_input("x", TensorType("float32", ("b", 6)))
    with pytest.raises(IRTypeError, match="not dims of the input"):
        Builder(g).emit("reshape", x, shape=["n", 6])


@pytest.mark.parametrize("perm", [[1, 0, 2], [2, 0, 1], [-1, 0, 1]])
def test_transpose(perm):
    x = rand(2, 3, 4)
    check_op("transpose", [x], {"perm": perm}, expected=[np.transpose(x, perm)])


def test_concat():
    a, b, c = rand(2, 3), rand(2, 1), rand(2, 0)
    check_op("concat", [a, b, c], {"axis": -1}, expected=[np.concatenate([a, b, c], axis=1)])


def test_concat_int_axis0():
    a, b = np.arange(6, dtype="int64").reshape(2, 3), np.arange(3, dtype="int64")[None]
    check_op("concat", [a, b], {"axis": 0}, expected=[np.concatenate([a, b])])


def test_split_uneven_and_empty():
    x = rand(7, 3)
    outs = check_op("split", [x], {"axis": 0, "sizes": [3, 0, 4]})
    np.testing.assert_array_equal(outs[0], x[:3])
    assert outs[1].shape == (0, 3)
    np.testing.assert_array_equal(outs[2], x[3:])


def test_split_refuses_wrong_total():
    g = Graph()
    x = g.add_input("x", TensorType("float32", (4,)))
    with pytest.raises(IRTypeError):
        Builder(g).op("split", [x], {"axis": 0, "sizes": [1, 2]})


@pytest.mark.parametrize(
    "axes,starts,ends,steps",
    [
        ([0, 1], [1, 0], [3, 10], [1, 1]),
        ([1], [-1], [-100], [-1]),  # reversed to index 0
        ([0, 2], [10, -2], [-10, 100], [-2, 1]),
        ([2], [3], [1], [1]),  # empty
        ([-1], [1], [2**63 - 1], [2]),
    ],
)
def test_slice(axes, starts, ends, steps):
    x = rand(4, 5, 6)
    index = [slice(None)] * 3
    for a, s, e, st in zip(axes, starts, ends, steps):
        index[a] = slice(s, e, st)
    attrs = {"axes": axes, "starts": starts, "ends": ends, "steps": steps}
    check_op("slice", [x], attrs, expected=[x[tuple(index)]])


def test_slice_normalize_is_idempotent():
    g = Graph()
    x = g.add_input("x", TensorType("float32", (5, 6)))
    y = Builder(g).emit("slice", x, axes=[1], starts=[-1], ends=[-100], steps=[-1])
    attrs = y.producer.attrs
    assert attrs == {"axes": [1], "starts": [5], "ends": [-7], "steps": [-1]}
    z = Builder(g).emit("slice", x, **attrs)
    assert z.producer.attrs == attrs


def test_slice_whole_symbolic_dim():
    g = Graph()
    x = g.add_input("x", TensorType("float32", ("n", 6)))
    y = Builder(g).emit("slice", x, axes=[0, 1], starts=[0, 2], ends=[2**63 - 1, 4])
    assert y.type == TensorType("float32", ("n", 2))
    with pytest.raises(IRTypeError, match="symbolic"):
        Builder(g).emit("slice", x, axes=[0], starts=[1], ends=[2**63 - 1])


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
def test_pad_modes(mode):
    x = rand(3, 4)
    pads = [1, 2, 2, 0]
    kwargs = {"constant_values": 1.5} if mode == "constant" else {}
    expected = np.pad(x, [(1, 2), (2, 0)], mode=mode, **kwargs)
    check_op("pad", [x], {"pads": pads, "mode": mode, "value": 1.5}, expected=[expected])


def test_pad_negative_crops():
    x = rand(4, 5)
    expected = np.pad(x[1:, :3], [(0, 1), (2, 0)])
    check_op("pad", [x], {"pads": [-1, 2, 1, -2]}, expected=[expected])


def test_pad_int():
    x = np.arange(6, dtype="int32").reshape(2, 3)
    expected = np.pad(x, [(0, 0), (1, 1)], constant_values=7)
    check_op("pad", [x], {"pads": [0, 1, 0, 1], "value": 7}, expected=[expected])


def test_tile():
    x = rand(2, 3)
    check_op("tile", [x], {"repeats": [2, 3]}, expected=[np.tile(x, [2, 3])])


def test_broadcast_to():
    x = rand(3, 1)
    check_op("broadcast_to", [x], {"shape": [2, 3, 4]}, expected=[np.broadcast_to(x, (2, 3, 4))])


def test_broadcast_to_refuses():
    g = Graph()
    x = g.add_input("x", TensorType("float32", (3, 2)))
    with pytest.raises(IRTypeError):
        Builder(g).emit("broadcast_to", x, shape=[3, 4])


def test_shape_folds_when_static():
    g = Graph()
    x = g.add_input("x", TensorType("float32", (2, 3, 4)))
    y = Builder(g).emit("shape", x, start=-2)
    assert y.is_constant
    np.testing.assert_array_equal(y.const, [3, 4])
    assert y.const.dtype == np.int64
    z = Builder(g).emit("shape", x, start=2, end=1)
    assert z.const.shape == (0,)


def test_shape_of_symbolic_dims_lowers():
    g = Graph()
    x = g.add_input("x", TensorType("float32", ("n", 3, "m")))
    y = Builder(g).emit("shape", x, end=-1)
    assert not y.is_constant and y.type == TensorType("int64", (2,))
    g.set_outputs([y])
    data = rand(5, 3, 2)
    np.testing.assert_array_equal(run_graph(g, {"x": data})[y.name], [5, 3])
    np.testing.assert_array_equal(run_tvm(g, {"x": data})[0], [5, 3])


def test_identity_and_dropout():
    x = rand(2, 3)
    check_op("identity", [x], expected=[x])
    check_op("dropout", [x], {"ratio": 0.3}, expected=[x])
