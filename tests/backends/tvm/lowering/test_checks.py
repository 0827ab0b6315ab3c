"""Run-time checks in generated code (``backends/tvm/lowering/checks.py``): an index out of
range or an integer division by zero raises an InputError naming the op and the node, the
same Runtime then runs good inputs, and checks are left out where nothing can go wrong."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from oputil import run_tvm, single_op_graph

import compiler
from backends.tvm import lower_graph
from compiler.errors import ConversionError, InputError
from compiler.runtime import Runtime


def _model(nodes, inputs, outputs, inits=()) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "checks",
        [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
        initializer=[numpy_helper.from_array(a, n) for n, a in inits],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _runtime(model: onnx.ModelProto, **options) -> Runtime:
    c = compiler.compile(model, **options)
    return Runtime.from_executable(c.executable, c.metadata)


F, I64, I32 = TensorProto.FLOAT, TensorProto.INT64, TensorProto.INT32
DATA = np.arange(20, dtype=np.float32).reshape(5, 4)


@pytest.fixture(scope="module")
def indexing() -> Runtime:
    """Every indexing op of the IR on one 5x4 data tensor, each with its own index input."""
    nodes = [
        helper.make_node("Gather", ["data", "g"], ["g_out"], name="gather_3", axis=0),
        helper.make_node("GatherElements", ["data", "ge"], ["ge_out"], name="ge", axis=1),
        helper.make_node("GatherND", ["data", "nd"], ["nd_out"], name="gnd"),
        helper.make_node("ScatterElements", ["data", "se", "upd"], ["se_out"], name="se", axis=0),
        helper.make_node("ScatterND", ["data", "snd", "row"], ["snd_out"], name="snd"),
    ]
    inputs = [
        ("data", F, [5, 4]),
        ("g", I64, [3]),
        ("ge", I64, [5, 2]),
        ("nd", I64, [2, 2]),
        ("se", I64, [1, 4]),
        ("upd", F, [1, 4]),
        ("snd", I64, [1, 1]),
        ("row", F, [1, 4]),
    ]
    outputs = [
        ("g_out", F, [3, 4]),
        ("ge_out", F, [5, 2]),
        ("nd_out", F, [2]),
        ("se_out", F, [5, 4]),
        ("snd_out", F, [5, 4]),
    ]
    return _runtime(_model(nodes, inputs, outputs))


GOOD = {
    "data": DATA,
    "g": np.array([0, -1, 2], np.int64),
    "ge": np.tile(np.array([3, -4], np.int64), (5, 1)),
    "nd": np.array([[4, 3], [-5, -1]], np.int64),
    "se": np.array([[1, -1, 0, 4]], np.int64),
    "upd": np.full((1, 4), -1.0, np.float32),
    "snd": np.array([[-2]], np.int64),
    "row": np.full((1, 4), 9.0, np.float32),
}


def _expected() -> dict[str, np.ndarray]:
    se = DATA.copy()
    for j, i in enumerate(GOOD["se"][0]):
        se[i, j] = -1.0
    snd = DATA.copy()
    snd[3] = 9.0
    return {
        "g_out": DATA[[0, 4, 2]],
        "ge_out": DATA[:, [3, 0]],
        "nd_out": np.array([DATA[4, 3], DATA[0, 3]]),
        "se_out": se,
        "snd_out": snd,
    }


def _assert_good_run(rt: Runtime) -> None:
    out = rt.run(GOOD)
    for name, want in _expected().items():
        np.testing.assert_array_equal(out[name], want, err_msg=name)


def test_in_range_and_negative_indices(indexing: Runtime) -> None:
    _assert_good_run(indexing)


@pytest.mark.parametrize(
    ("name", "bad", "message"),
    [
        ("g", [0, 5, 1], "gather node 'gather_3': an index is out of range [-5, 5) on axis 0"),
        ("g", [0, -6, 1], "gather node 'gather_3': an index is out of range [-5, 5) on axis 0"),
        ("g", [1 << 40, 0, 0], "gather node 'gather_3'"),
        ("ge", np.full((5, 2), 4), "gather_elements node 'ge': an index is out of range [-4, 4)"),
        ("nd", [[0, 0], [5, 0]], "gather_nd node 'gnd': an index is out of range [-5, 5), [-4, 4)"),
        ("nd", [[0, -5], [0, 0]], "gather_nd node 'gnd'"),
        ("se", [[0, 0, 0, 7]], "scatter_elements node 'se': an index is out of range [-5, 5)"),
        ("snd", [[-6]], "scatter_nd node 'snd': an index is out of range [-5, 5) on axes 0"),
    ],
)
def test_index_out_of_range_raises_then_good_run_works(
    indexing: Runtime, name: str, bad, message: str
) -> None:
    feeds = dict(GOOD, **{name: np.array(bad, np.int64).reshape(GOOD[name].shape)})
    with pytest.raises(InputError) as info:
        indexing.run(feeds)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    _assert_good_run(indexing)


@pytest.fixture(scope="module")
def division() -> Runtime:
    """Integer Div and Mod (floor and fmod) of int32 and int64 operands; Mod comes first
    for int32, Div for int64."""
    nodes, inputs, outputs = [], [], []
    div, mod, fmod = ("Div", {}), ("Mod", {}), ("Mod", {"fmod": 1})
    for t, dt, ops in ((I32, "i32", (mod, div, fmod)), (I64, "i64", (div, mod, fmod))):
        inputs += [(f"a_{dt}", t, [4]), (f"b_{dt}", t, [4])]
        for op, attrs in ops:
            name = f"{op.lower()}{'_f' if attrs else ''}_{dt}"
            nodes.append(helper.make_node(op, [f"a_{dt}", f"b_{dt}"], [name], name=name, **attrs))
            outputs.append((name, t, [4]))
    return _runtime(_model(nodes, inputs, outputs))


def _division_feeds(b32, b64) -> dict[str, np.ndarray]:
    return {
        "a_i32": np.array([7, -7, np.iinfo(np.int32).min, 5], np.int32),
        "b_i32": np.array(b32, np.int32),
        "a_i64": np.array([7, -7, np.iinfo(np.int64).min, 5], np.int64),
        "b_i64": np.array(b64, np.int64),
    }


@pytest.mark.parametrize(
    ("b32", "b64", "node"),
    [
        ([2, 3, 1, 0], [2, 3, 1, 1], "mod node 'mod_i32'"),
        ([2, 3, 1, 1], [0, 3, 1, 1], "div node 'div_i64'"),
    ],
)
def test_integer_division_by_zero_raises_then_good_run_works(
    division: Runtime, b32, b64, node: str
) -> None:
    with pytest.raises(InputError, match=f"^{node}: integer division by zero$"):
        division.run(_division_feeds(b32, b64))
    out = division.run(_division_feeds([2, 3, -1, 5], [-2, -3, -1, 5]))
    np.testing.assert_array_equal(out["div_i32"], [3, -2, np.iinfo(np.int32).min, 1])
    np.testing.assert_array_equal(out["div_i64"], [-3, 2, np.iinfo(np.int64).min, 1])
    np.testing.assert_array_equal(out["mod_i32"], [1, 2, 0, 0])  # floor mod, min % -1 is 0
    np.testing.assert_array_equal(out["mod_i64"], [-1, -1, 0, 0])
    np.testing.assert_array_equal(out["mod_f_i64"], [1, -1, 0, 0])  # fmod: the sign of a


def test_embedding_gather_with_symbolic_sequence() -> None:
    """A transformer's input layer: token ids of any length gathered from a table."""
    table = np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["e"], name="embed"),
        helper.make_node("Relu", ["e"], ["y"]),
    ]
    model = _model(nodes, [("ids", I64, [1, "seq"])], [("y", F, [1, "seq", 8])], [("table", table)])
    rt = _runtime(model)
    with pytest.raises(InputError, match=r"gather node 'embed': .* \[-50, 50\) on axis 0"):
        rt.run({"ids": np.array([[3, 50, 1]], np.int64)})
    ids = np.array([[3, 49, -50, 7, 0]], np.int64)
    np.testing.assert_array_equal(rt.run({"ids": ids})["y"], np.maximum(table[ids], 0))


def test_symbolic_axis_size_is_named() -> None:
    nodes = [helper.make_node("Gather", ["x", "i"], ["y"], name="g", axis=0)]
    model = _model(nodes, [("x", F, ["n", 2]), ("i", I64, [1])], [("y", F, [1, 2])])
    rt = _runtime(model)
    x = np.ones((3, 2), np.float32)
    with pytest.raises(InputError, match=r"out of range \[-n, n\) on axis 0"):
        rt.run({"x": x, "i": np.array([3], np.int64)})
    np.testing.assert_array_equal(rt.run({"x": x, "i": np.array([-3], np.int64)})["y"], x[:1])


def test_impossible_symbolic_reshape_is_refused_at_compile_time() -> None:
    """A reshape whose element count is not provably equal is a ConversionError when
    compiling: no reshape reaches run time that could go wrong with some size of ``n``."""
    shape = np.array([2, 3], np.int64)
    nodes = [helper.make_node("Reshape", ["x", "s"], ["y"], name="rs")]
    model = _model(nodes, [("x", F, ["n"])], [("y", F, [2, 3])], [("s", shape)])
    with pytest.raises(ConversionError, match="Reshape node 'rs'.*cannot reshape"):
        compiler.compile(model)


def _lowered(const_index: np.ndarray | None, runtime_checks: bool = True) -> str:
    data = np.zeros((5, 4), np.float32)
    index = np.array([1, -2], np.int64) if const_index is None else const_index
    const = () if const_index is None else (1,)
    g = single_op_graph("gather", [data, index], {"axis": 0}, const_inputs=const)
    return lower_graph(g, runtime_checks=runtime_checks).script()


def test_no_check_for_constant_in_range_indices() -> None:
    assert "runtime_check" in _lowered(None)
    assert "runtime_check" not in _lowered(np.array([1, -5], np.int64))
    assert "runtime_check" in _lowered(np.array([1, 5], np.int64))  # fails when it runs
    assert "runtime_check" not in _lowered(None, runtime_checks=False)


def test_no_check_for_float_division_or_constant_divisor() -> None:
    a = np.ones(4, np.int32)
    f = np.ones(4, np.float32)
    div = {"fmod": False}
    assert "runtime_check" in lower_graph(single_op_graph("div", [a, a])).script()
    assert "runtime_check" not in lower_graph(single_op_graph("div", [f, f])).script()
    constant = single_op_graph("mod", [a, np.array([3, 1, 2, 4], np.int32)], div, [1])
    assert "runtime_check" not in lower_graph(constant).script()
    zero = single_op_graph("mod", [a, np.array([3, 0, 2, 4], np.int32)], div, [1])
    assert "runtime_check" in lower_graph(zero).script()


def test_without_checks_no_check_kernels_are_built() -> None:
    nodes = [helper.make_node("Gather", ["x", "i"], ["y"], name="g", axis=0)]
    model = _model(nodes, [("x", F, [5, 2]), ("i", I64, [2])], [("y", F, [2, 2])])
    c = compiler.compile(model, runtime_checks=False)
    assert "runtime_check" not in c.executable.as_text()
    rt = Runtime.from_executable(c.executable, c.metadata)
    x = np.arange(10, dtype=np.float32).reshape(5, 2)
    np.testing.assert_array_equal(rt.run({"x": x, "i": np.array([4, -1])})["y"], x[[4, 4]])


@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_lowest_divided_by_constant_minus_one_wraps(dtype: str) -> None:
    """``min / -1`` traps in x86's idiv; it gives ``min`` (the wrapped quotient), remainder 0."""
    lowest = np.iinfo(dtype).min
    a = np.array([lowest, 7, lowest], dtype)
    b = np.array([-1, -1, 2], dtype)
    (q,) = run_tvm(single_op_graph("div", [a, b], const_inputs=[1]), {"in0": a})
    np.testing.assert_array_equal(q, [lowest, -7, lowest // 2])
    g = single_op_graph("mod", [a, b], {"fmod": False}, const_inputs=[1])
    np.testing.assert_array_equal(run_tvm(g, {"in0": a})[0], [0, 0, 0])


def test_one_hot_index_out_of_range_gives_an_all_off_row_without_a_check() -> None:
    """ONNX (and onnxruntime) define it: a row of off values. The lowering compares indices
    with each class, which reads nothing out of bounds, so it needs no check kernel."""
    nodes = [helper.make_node("OneHot", ["i", "depth", "values"], ["y"], name="oh", axis=-1)]
    inits = [("depth", np.array(3, np.int64)), ("values", np.array([0, 1], np.float32))]
    model = _model(nodes, [("i", I64, [4])], [("y", F, [4, 3])], inits)
    c = compiler.compile(model)
    assert "runtime_check" not in lower_graph(c.graph).script()
    out = Runtime.from_executable(c.executable, c.metadata).run(
        {"i": np.array([0, 3, -4, -(1 << 40)], np.int64)}
    )
    np.testing.assert_array_equal(out["y"], [[1, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]])
