import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxutil import check_model, make_model
from oputil import run_tvm

from backends.reference import run_graph
from compiler.errors import ConversionError, NeedsValueError, ResourceLimitError
from compiler.frontends.onnx import import_onnx

rng = np.random.default_rng(0)


def rand(*shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype("float32")


def i64(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def node(op: str, inputs: list[str], outputs: list[str] | None = None, **attrs):
    return helper.make_node(op, inputs, outputs or ["y"], **attrs)


def check(nodes, inputs, initializers=(), opset=21, outputs=("y",)):
    """onnxruntime == reference == TVM for a model over ``nodes``."""
    model = make_model(nodes, inputs, list(outputs), initializers=initializers, opset=opset)
    return check_model(model, dict(inputs))


def symbolic_model(nodes, inputs, outputs, initializers=(), opset=21) -> onnx.ModelProto:
    """A model whose inputs have dim names (``inputs``: name -> (dtype, dims))."""
    graph = helper.make_graph(
        nodes,
        "sym",
        [helper.make_tensor_value_info(n, t, dims) for n, (t, dims) in inputs.items()],
        [helper.make_tensor_value_info(n, t, None) for n, t in outputs.items()],
        initializer=[onnx.numpy_helper.from_array(x, n) for n, x in initializers],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    return model


def run_both(graph, feeds):
    ref = list(run_graph(graph, feeds).values())
    got = run_tvm(graph, feeds)
    for r, t in zip(ref, got):
        np.testing.assert_array_equal(t, r)
    return ref


# -- Reshape, Flatten, Squeeze, Unsqueeze ---------------------------------------------------


@pytest.mark.parametrize(
    "shape,allowzero",
    [((4, 0, -1), 0), ((-1,), 0), ((2, 0, 2, 5), 0), ((3, 4, 0), 1)],
)
def test_reshape(shape, allowzero):
    x = rand(2, 3, 4) if not allowzero else np.zeros((0, 3, 4), "float32")
    if shape == (2, 0, 2, 5):
        x = rand(2, 3, 10)
    check(
        [node("Reshape", ["x", "s"], allowzero=allowzero)],
        [("x", x)],
        initializers=[("s", i64(*shape))],
    )


def test_reshape_shape_from_shape_subgraph_folds():
    # Shape -> Gather -> Concat arrives as a constant once input shapes are known.
    x = rand(2, 3, 4)
    nodes = [
        node("Shape", ["x"], ["sh"]),
        node("Gather", ["sh", "i0"], ["n"]),
        node("Concat", ["n", "m1"], ["s"], axis=0),
        node("Reshape", ["x", "s"]),
    ]
    inits = [("i0", i64(0)), ("m1", i64(-1))]
    model = make_model(nodes, [("x", x)], ["y"], initializers=inits)
    graph = import_onnx(model)
    assert [n.op for n in graph.nodes] == ["reshape"]
    assert graph.nodes[0].attrs["shape"] == [2, 12]


def test_reshape_symbolic_batch_copy_and_infer():
    model = symbolic_model(
        [node("Reshape", ["x", "s"], ["r"]), node("Reshape", ["r", "t"], ["y"])],
        {"x": (TensorProto.FLOAT, ["N", "S", 12])},
        {"y": TensorProto.FLOAT},
        initializers=[("s", i64(0, 0, 3, 4)), ("t", i64(-1, 12))],
        opset=13,
    )
    with pytest.raises(ConversionError, match="product of symbolic dims"):
        import_onnx(model)
    model.graph.initializer[1].CopyFrom(onnx.numpy_helper.from_array(i64(0, -1, 12), "t"))
    graph = import_onnx(model)
    assert graph.outputs[0].type.shape == ("N", "S", 12)
    x = rand(2, 5, 12)
    (y,) = run_both(graph, {"x": x})
    np.testing.assert_array_equal(y, x)


def test_reshape_shape_must_be_known():
    model = make_model([node("Reshape", ["x", "s"])], [("x", rand(2, 3)), ("s", i64(3, 2))], ["y"])
    with pytest.raises(NeedsValueError) as e:
        import_onnx(model)
    assert e.value.value_name == "s"
    graph = import_onnx(model, input_values={"s": i64(3, 2)})
    assert graph.outputs[0].type.shape == (3, 2)


@pytest.mark.parametrize("axis", [0, 1, 2, -1, -3])
def test_flatten(axis):
    check([node("Flatten", ["x"], axis=axis)], [("x", rand(2, 3, 4))])


def test_flatten_symbolic_batch():
    model = symbolic_model(
        [node("Flatten", ["x"])], {"x": (TensorProto.FLOAT, ["N", 3, 4])}, {"y": 1}
    )
    graph = import_onnx(model)
    assert graph.outputs[0].type.shape == ("N", 12)
    x = rand(5, 3, 4)
    np.testing.assert_array_equal(run_both(graph, {"x": x})[0], x.reshape(5, 12))


@pytest.mark.parametrize("opset", [11, 13])
def test_squeeze_unsqueeze(opset):
    x = rand(1, 3, 1, 4)
    if opset >= 13:
        nodes = [node("Squeeze", ["x", "a"], ["s"]), node("Unsqueeze", ["s", "b"])]
        inits = [("a", i64(0, -2)), ("b", i64(-1, 0))]
    else:
        nodes = [
            node("Squeeze", ["x"], ["s"], axes=[0, -2]),
            node("Unsqueeze", ["s"], axes=[-1, 0]),
        ]
        inits = []
    (y,) = check(nodes, [("x", x)], initializers=inits, opset=opset)
    assert y.shape == (1, 3, 4, 1)


def test_squeeze_all_ones():
    check([node("Squeeze", ["x"])], [("x", rand(1, 3, 1))])


def test_squeeze_unsqueeze_symbolic_dims_move():
    model = symbolic_model(
        [node("Unsqueeze", ["x", "a"], ["u"]), node("Squeeze", ["u", "b"])],
        {"x": (TensorProto.FLOAT, ["B", "S", 8])},
        {"y": TensorProto.FLOAT},
        initializers=[("a", i64(0, 2)), ("b", i64(0))],
    )
    graph = import_onnx(model)
    assert graph.outputs[0].type.shape == ("B", 1, "S", 8)
    x = rand(2, 3, 8)
    np.testing.assert_array_equal(run_both(graph, {"x": x})[0], x[:, None])


# -- Transpose, Concat, Split -------------------------------------------------------------------


@pytest.mark.parametrize("perm", [None, [0, 2, 1], [2, 0, 1]])
def test_transpose(perm):
    attrs = {} if perm is None else {"perm": perm}
    check([node("Transpose", ["x"], **attrs)], [("x", rand(2, 3, 4))])


def test_concat():
    a, b, c = rand(2, 3), rand(2, 1), rand(2, 2)
    check([node("Concat", ["a", "b", "c"], axis=-1)], [("a", a), ("b", b), ("c", c)])


@pytest.mark.parametrize(
    "opset,split,attrs,n",
    [
        (11, None, {"split": [1, 3]}, 2),
        (11, None, {}, 2),
        (13, (2, 0, 2), {}, 3),
        (18, None, {"num_outputs": 3}, 3),
        (18, (1, 3), {}, 2),
    ],
)
def test_split(opset, split, attrs, n):
    x = rand(3, 4)
    outs = [f"y{i}" for i in range(n)]
    inputs = ["x", "s"] if split is not None else ["x"]
    inits = [("s", i64(*split))] if split is not None else []
    if opset == 18 and "num_outputs" in attrs:
        x = rand(3, 5)  # uneven: 2, 2, 1
    check([node("Split", inputs, outs, axis=1, **attrs)], [("x", x)], inits, opset, outs)


# -- Slice ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "starts,ends,axes,steps",
    [
        ((1, 0), (3, 10), (0, 1), None),
        ((-1,), (-1000,), (1,), (-1,)),
        ((10, -2), (-10, 2**63 - 1), (0, -1), (-2, 1)),
        ((0,), (2**63 - 1,), None, (3,)),
        ((4,), (1,), (2,), None),
    ],
)
def test_slice(starts, ends, axes, steps):
    inputs = ["x", "st", "en"]
    inits = [("st", i64(*starts)), ("en", i64(*ends))]
    if axes is not None or steps is not None:
        inputs.append("ax")
        inits.append(("ax", i64(*(axes or range(len(starts))))))
    if steps is not None:
        inputs.append("sp")
        inits.append(("sp", i64(*steps)))
    check([node("Slice", inputs)], [("x", rand(4, 5, 6))], inits)


def test_slice_v1_attributes():
    check(
        [node("Slice", ["x"], starts=[1, -3], ends=[100, -1], axes=[0, 2])],
        [("x", rand(4, 5, 6))],
        opset=9,
    )


# -- Pad, Tile, Expand -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
def test_pad(mode):
    inits = [("p", i64(0, 1, 2, 1, 2, 0)), ("v", np.array(1.5, "float32"))]
    check([node("Pad", ["x", "p", "v"], mode=mode)], [("x", rand(2, 3, 4))], inits)


def test_pad_axes_and_negative_pads():
    inits = [("p", i64(2, -1, -1, 3)), ("v", np.array(0, "int32")), ("a", i64(-1, 0))]
    x = np.arange(24, dtype="int32").reshape(4, 6)
    check([node("Pad", ["x", "p", "v", "a"])], [("x", x)], inits)


def test_pad_v2_attributes():
    check(
        [node("Pad", ["x"], pads=[0, 1, 1, 0], mode="edge")],
        [("x", rand(3, 4))],
        opset=10,
    )


def test_tile():
    check([node("Tile", ["x", "r"])], [("x", rand(2, 3))], [("r", i64(2, 3))])


@pytest.mark.parametrize("shape", [(3, 1, 4), (2, 1, 1, 1), (1,)])
def test_expand_is_bidirectional(shape):
    check([node("Expand", ["x", "s"])], [("x", rand(3, 1, 1))], [("s", i64(*shape))])


# -- Shape, Size, constants --------------------------------------------------------------------


def test_shape_start_end_folds():
    model = make_model([node("Shape", ["x"], start=1, end=-1)], [("x", rand(2, 3, 4, 5))], ["y"])
    graph = import_onnx(model)
    assert not graph.nodes
    np.testing.assert_array_equal(graph.outputs[0].const, [3, 4])


def test_shape_of_symbolic_dims_runs():
    model = symbolic_model(
        [node("Shape", ["x"], start=-2)],
        {"x": (TensorProto.FLOAT, [2, "H", "W"])},
        {"y": TensorProto.INT64},
    )
    graph = import_onnx(model)
    np.testing.assert_array_equal(run_both(graph, {"x": rand(2, 3, 5)})[0], [3, 5])


def test_size_folds():
    model = make_model([node("Size", ["x"])], [("x", rand(2, 3, 4))], ["y"])
    graph = import_onnx(model)
    assert graph.outputs[0].const.shape == () and int(graph.outputs[0].const) == 24


@pytest.mark.parametrize(
    "attr,value,expected",
    [
        ("value_float", 1.5, np.array(1.5, "float32")),
        ("value_ints", [1, 2], np.array([1, 2], "int64")),
        (
            "value",
            helper.make_tensor("t", TensorProto.INT32, [2], [3, 4]),
            np.array([3, 4], "int32"),
        ),
    ],
)
def test_constant(attr, value, expected):
    model = make_model([node("Constant", [], **{attr: value})], [], ["y"])
    out = import_onnx(model).outputs[0].const
    assert out.dtype == expected.dtype
    np.testing.assert_array_equal(out, expected)


def test_constant_refuses_strings():
    model = make_model([node("Constant", [], value_strings=["a"])], [], ["y"])
    with pytest.raises(ConversionError, match="value_strings"):
        import_onnx(model)


def test_constant_of_shape_and_eyelike():
    value = helper.make_tensor("v", TensorProto.INT32, [1], [7])
    nodes = [
        node("ConstantOfShape", ["s"], ["c"], value=value),
        node("EyeLike", ["x"], ["e"], k=1, dtype=TensorProto.FLOAT),
    ]
    model = make_model(nodes, [("x", rand(3, 4))], ["c", "e"], [("s", i64(2, 3))])
    c, e = (v.const for v in import_onnx(model).outputs)
    np.testing.assert_array_equal(c, np.full((2, 3), 7, "int32"))
    np.testing.assert_array_equal(e, np.eye(3, 4, k=1, dtype="float32"))


@pytest.mark.parametrize(
    "start,limit,delta,dtype",
    [(1, 10, 3, "int64"), (10, 2, -3, "int32"), (0.5, 3.0, 0.7, "float32")],
)
def test_range(start, limit, delta, dtype):
    inits = [(n, np.array(v, dtype)) for n, v in zip("sld", (start, limit, delta))]
    model = make_model([node("Range", ["s", "l", "d"])], [], ["y"], inits)
    y = import_onnx(model).outputs[0].const
    assert y.dtype == np.dtype(dtype)
    np.testing.assert_allclose(y, np.arange(start, limit, delta).astype(dtype), rtol=1e-6)


def test_range_needs_values():
    model = make_model(
        [node("Range", ["s", "l", "d"])],
        [("s", i64(0)[0]), ("l", i64(5)[0]), ("d", i64(1)[0])],
        ["y"],
    )
    with pytest.raises(NeedsValueError):
        import_onnx(model)


# -- Identity, Dropout, DepthToSpace, SpaceToDepth ------------------------------------------


def test_identity_and_dropout_with_mask():
    x = rand(2, 3)
    nodes = [node("Identity", ["x"], ["i"]), node("Dropout", ["i"], ["y", "m"])]
    y, m = check(nodes, [("x", x)], outputs=("y", "m"))
    assert m.dtype == np.bool_ and m.all()


def test_dropout_training_is_refused():
    inits = [("r", np.array(0.5, "float32")), ("t", np.array(True))]
    model = make_model([node("Dropout", ["x", "r", "t"])], [("x", rand(2, 3))], ["y"], inits)
    with pytest.raises(ConversionError, match="training"):
        import_onnx(model)


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
def test_depth_to_space(mode):
    check([node("DepthToSpace", ["x"], blocksize=2, mode=mode)], [("x", rand(2, 8, 3, 4))])


def test_space_to_depth():
    check([node("SpaceToDepth", ["x"], blocksize=2)], [("x", rand(2, 3, 4, 6))])


def _scalars(**values: int) -> list[onnx.TensorProto]:
    return [numpy_helper.from_array(np.array(v, np.int64), k) for k, v in values.items()]


@pytest.mark.parametrize(
    ("nodes", "inits", "inputs", "what"),
    [
        (
            [helper.make_node("Range", ["s", "l", "d"], ["y"], name="n")],
            _scalars(s=0, l=10**12, d=1),
            [],
            r"Range node 'n': Range result of shape \[1000000000000\] needs 7.3 TiB",
        ),
        (
            [helper.make_node("EyeLike", ["x"], ["y"], name="n")],
            [],
            [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [10**6, 10**6])],
            r"EyeLike node 'n': EyeLike result of shape \[1000000, 1000000\]",
        ),
        (
            [helper.make_node("Tile", ["x", "r"], ["y"], name="n")],
            [numpy_helper.from_array(np.ones(2, np.float32), "x")]
            + [numpy_helper.from_array(np.array([10**12], np.int64), "r")],
            [],
            r"Tile node 'n': tile result of shape \[2000000000000\]",
        ),
    ],
)
def test_results_over_the_memory_limit_are_refused_before_allocating(
    nodes: list, inits: list, inputs: list, what: str
) -> None:
    graph = helper.make_graph(
        nodes,
        "g",
        inputs,
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(ResourceLimitError, match=what):
        import_onnx(model)
