"""ONNX sequence and optional ops onto ``sequence``/``sequence_at``/``optional`` (static
lengths and positions), against onnxruntime; refusals name the node."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from onnxutil import check_model, make_model

from compiler.errors import ConversionError
from compiler.frontends.onnx import import_onnx
from compiler.ir.types import SequenceType

F, I64 = TensorProto.FLOAT, TensorProto.INT64
rng = np.random.default_rng(0)


def f32(*shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def const(name: str, value, elem: int = I64) -> onnx.NodeProto:
    arr = np.asarray(value)
    return helper.make_node(
        "Constant", [], [name], value=helper.make_tensor(name, elem, arr.shape, arr.reshape(-1))
    )


def node(op: str, inputs, outputs, **attrs) -> onnx.NodeProto:
    return helper.make_node(op, inputs, outputs, **attrs)


def test_construct_at_insert_erase_length():
    a, b, c = f32(2, 3), f32(4, 3), f32(1, 3)
    nodes = [
        node("SequenceConstruct", ["a", "b"], ["s"]),
        const("p1", 1),
        node("SequenceInsert", ["s", "c", "p1"], ["s2"]),  # a, c, b
        node("SequenceInsert", ["s2", "a"], ["s3"]),  # a, c, b, a (at the end)
        const("m1", -1),
        node("SequenceErase", ["s3", "m1"], ["s4"]),  # a, c, b
        const("zero", 0),
        node("SequenceErase", ["s4", "zero"], ["s5"]),  # c, b
        node("SequenceAt", ["s5", "m1"], ["last"]),
        node("SequenceAt", ["s4", "p1"], ["second"]),
        node("SequenceLength", ["s5"], ["n"]),
        node("SequenceLength", ["s3"], ["n3"]),
    ]
    inputs = [("a", a), ("b", b), ("c", c)]
    model = make_model(nodes, inputs, ["last", "second", "n", "n3"])
    last, second, n, n3 = check_model(model, {"a": a, "b": b, "c": c})
    np.testing.assert_array_equal(last, b)
    np.testing.assert_array_equal(second, c)
    assert int(n) == 2 and int(n3) == 4


def test_position_out_of_range_names_the_node():
    nodes = [
        node("SequenceConstruct", ["a", "a"], ["s"]),
        const("p", 2),
        node("SequenceAt", ["s", "p"], ["y"], name="at2"),
    ]
    a = f32(2)
    with pytest.raises(ConversionError, match="SequenceAt node 'at2': position 2 is out of range"):
        import_onnx(_raw(nodes, a))


def _raw(nodes, a) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "t",
        [helper.make_tensor_value_info("a", F, list(a.shape))],
        [helper.make_tensor_value_info("y", F, list(a.shape))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    return model


def test_a_position_from_data_is_refused_by_name():
    nodes = [node("SequenceConstruct", ["a", "a"], ["s"]), node("SequenceAt", ["s", "p"], ["y"])]
    graph = helper.make_graph(
        nodes,
        "t",
        [helper.make_tensor_value_info("a", F, [2]), helper.make_tensor_value_info("p", I64, [])],
        [helper.make_tensor_value_info("y", F, [2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    with pytest.raises(ConversionError, match="SequenceAt node 'y'"):
        import_onnx(model)


@pytest.mark.parametrize(
    ("split", "attrs", "lengths"),
    [
        (None, {}, [1] * 5),  # no split: one element per index
        (None, {"keepdims": 0}, [None] * 5),  # ... with the axis dropped
        (2, {}, [2, 2, 1]),  # a scalar: equal parts, a shorter last one
        ([1, 4], {}, [1, 4]),  # a 1-D split: those sizes
    ],
)
def test_split_to_sequence(split, attrs, lengths):
    x = f32(3, 5)
    nodes = []
    ins = ["x"]
    if split is not None:
        nodes.append(const("split", split))
        ins.append("split")
    nodes.append(node("SplitToSequence", ins, ["s"], axis=1, **attrs))
    outs = []
    for i in range(len(lengths)):
        nodes += [const(f"p{i}", i), node("SequenceAt", ["s", f"p{i}"], [f"y{i}"])]
        outs.append(f"y{i}")
    nodes.append(node("SequenceLength", ["s"], ["n"]))
    model = make_model(nodes, [("x", x)], [*outs, "n"])
    g = import_onnx(model)
    seqs = [v for n in g.nodes for v in n.outputs if isinstance(v.type, SequenceType)]
    assert seqs and len(seqs[0].type) == len(lengths)
    *parts, n = check_model(model, {"x": x})
    assert int(n) == len(lengths)
    for part, length in zip(parts, lengths):
        assert part.shape == ((3,) if length is None else (3, length))
    np.testing.assert_array_equal(np.concatenate([p.reshape(3, -1) for p in parts], axis=1), x)


def test_split_to_sequence_with_sizes_that_do_not_add_up():
    nodes = [const("split", [1, 2]), node("SplitToSequence", ["x", "split"], ["s"], axis=1)]
    nodes.append(node("SequenceLength", ["s"], ["y"], name="len"))
    graph = helper.make_graph(
        nodes,
        "t",
        [helper.make_tensor_value_info("x", F, [3, 5])],
        [helper.make_tensor_value_info("y", I64, [])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    with pytest.raises(ConversionError, match=r"split sizes \[1, 2\] do not add up to the axis"):
        import_onnx(model)


@pytest.mark.parametrize(("new_axis", "axis"), [(0, 0), (0, -1), (1, 0), (1, 2), (1, -1)])
def test_concat_from_sequence(new_axis, axis):
    a, b, c = f32(2, 3), f32(2, 3), f32(2, 3)
    nodes = [
        node("SequenceConstruct", ["a", "b", "c"], ["s"]),
        node("ConcatFromSequence", ["s"], ["y"], axis=axis, new_axis=new_axis),
    ]
    model = make_model(nodes, [("a", a), ("b", b), ("c", c)], ["y"])
    (y,) = check_model(model, {"a": a, "b": b, "c": c})
    want = np.stack([a, b, c], axis) if new_axis else np.concatenate([a, b, c], axis)
    np.testing.assert_array_equal(y, want)


def test_sequence_map_applies_the_body_per_element_with_a_broadcast_tensor():
    body = helper.make_graph(
        [node("Mul", ["e", "w"], ["m"]), node("ReduceSum", ["m"], ["r"], keepdims=0)],
        "body",
        [helper.make_tensor_value_info("e", F, [None]), helper.make_tensor_value_info("w", F, [])],
        [helper.make_tensor_value_info("m", F, [None]), helper.make_tensor_value_info("r", F, [])],
    )
    x = f32(7)
    nodes = [
        const("sizes", [2, 5]),
        node("SplitToSequence", ["x", "sizes"], ["s"], axis=0),
        node("SequenceMap", ["s", "w"], ["ms", "rs"], body=body),
        node("ConcatFromSequence", ["ms"], ["m"], axis=0),
        node("ConcatFromSequence", ["rs"], ["r"], axis=0, new_axis=1),
    ]
    w = np.array(1.5, np.float32)
    model = make_model(nodes, [("x", x), ("w", w)], ["m", "r"])
    m, r = check_model(model, {"x": x, "w": w})
    np.testing.assert_allclose(m, x * 1.5, rtol=1e-6)
    np.testing.assert_allclose(r, [x[:2].sum() * 1.5, x[2:].sum() * 1.5], rtol=1e-5)


def test_optional_family():
    x = f32(3)
    empty_type = helper.make_tensor_type_proto(F, [3])
    seq_type = helper.make_sequence_type_proto(helper.make_tensor_type_proto(F, [3]))
    nodes = [
        node("Optional", ["x"], ["ox"]),
        node("Optional", [], ["oe"], type=empty_type),
        node("Optional", [], ["os"], type=seq_type),
        node("OptionalHasElement", ["ox"], ["has_x"]),
        node("OptionalHasElement", ["oe"], ["has_e"]),
        node("OptionalHasElement", ["os"], ["has_s"]),
        node("OptionalGetElement", ["ox"], ["gx"]),
        node("Neg", ["gx"], ["y"]),
        node("OptionalGetElement", ["x"], ["plain"]),  # a plain tensor passes through
    ]
    model = make_model(nodes, [("x", x)], ["has_x", "has_e", "has_s", "y", "plain"], opset=18)
    has_x, has_e, has_s, y, plain = check_model(model, {"x": x})
    assert bool(has_x) and not bool(has_e) and not bool(has_s)
    np.testing.assert_array_equal(y, -x)
    np.testing.assert_array_equal(plain, x)
