"""ONNX If, Loop and Scan onto the core ``if``/``loop`` (implicit outer reads become captures),
against onnxruntime; and the errors of malformed or untypeable control flow."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from onnxutil import check_model, make_model

import compiler
from compiler.errors import ConversionError
from compiler.frontends.onnx import import_onnx
from compiler.ir.graph import walk

F, I64, B = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL
rng = np.random.default_rng(0)


def vi(name: str, elem: int, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, shape)


def ops_of(model: onnx.ModelProto) -> list[str]:
    return [n.op for n in walk(import_onnx(model))]


def raw_model(nodes, inputs, outputs, opset: int = 21) -> onnx.ModelProto:
    """A model with the given value infos, no shape inference (for broken subgraphs)."""
    graph = helper.make_graph(nodes, "test", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    return model


def f32(*shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


# -- If -------------------------------------------------------------------------------------
def branches(then_op: str = "Add", else_op: str = "Sub") -> tuple[onnx.GraphProto, ...]:
    """Branches reading the outer %x and %y implicitly."""
    then = helper.make_graph(
        [helper.make_node(then_op, ["x", "y"], ["t"])], "then", [], [vi("t", F, [3])]
    )
    other = helper.make_graph(
        [helper.make_node(else_op, ["x", "y"], ["e"])], "else", [], [vi("e", F, [3])]
    )
    return then, other


def test_if_on_a_graph_input_becomes_an_if_with_captures():
    then, other = branches()
    node = helper.make_node("If", ["c"], ["out"], then_branch=then, else_branch=other)
    x, y = f32(3), f32(3)
    model = make_model([node], [("c", np.array(True)), ("x", x), ("y", y)], ["out"])
    g = import_onnx(model)
    (n,) = g.nodes
    assert n.op == "if" and [v.name for v in n.inputs] == ["c", "x", "y"]
    assert [len(r.inputs) for r in n.regions] == [2, 2]
    for c in (True, False):
        (got,) = check_model(model, {"c": np.array(c), "x": x, "y": y})
        np.testing.assert_allclose(got, x + y if c else x - y, rtol=1e-6)


@pytest.mark.parametrize("cond", [True, False])
def test_if_on_a_constant_is_converted_in_place(cond):
    then, other = branches("Mul", "Div")
    nodes = [
        helper.make_node("Constant", [], ["c"], value=helper.make_tensor("c", B, [], [cond])),
        helper.make_node("If", ["c"], ["out"], then_branch=then, else_branch=other),
    ]
    x, y = f32(3), f32(3) + 3
    model = make_model(nodes, [("x", x), ("y", y)], ["out"])
    assert ops_of(model) == ["mul" if cond else "div"]
    check_model(model, {"x": x, "y": y})


def test_nested_if_reads_values_of_every_enclosing_scope():
    inner_then = helper.make_graph(
        [helper.make_node("Mul", ["a", "x"], ["it"])], "it", [], [vi("it", F, [3])]
    )
    inner_else = helper.make_graph(
        [helper.make_node("Sub", ["a", "y"], ["ie"])], "ie", [], [vi("ie", F, [3])]
    )
    outer_then = helper.make_graph(
        [
            helper.make_node("Add", ["x", "y"], ["a"]),
            helper.make_node("If", ["c2"], ["ot"], then_branch=inner_then, else_branch=inner_else),
        ],
        "ot",
        [],
        [vi("ot", F, [3])],
    )
    outer_else = helper.make_graph(
        [helper.make_node("Neg", ["y"], ["oe"])], "oe", [], [vi("oe", F, [3])]
    )
    node = helper.make_node("If", ["c1"], ["out"], then_branch=outer_then, else_branch=outer_else)
    x, y = f32(3), f32(3)
    inputs = [("c1", np.array(True)), ("c2", np.array(True)), ("x", x), ("y", y)]
    model = make_model([node], inputs, ["out"])
    assert ops_of(model).count("if") == 2
    for c1 in (True, False):
        for c2 in (True, False):
            feeds = {"c1": np.array(c1), "c2": np.array(c2), "x": x, "y": y}
            (got,) = check_model(model, feeds)
            want = ((x + y) * x if c2 else (x + y) - y) if c1 else -y
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


# -- Loop -----------------------------------------------------------------------------------
def accumulate_body() -> onnx.GraphProto:
    """(i, cond, v, count) -> (cond, v + y, count + i, scan (v + y) * i): reads the outer y."""
    return helper.make_graph(
        [
            helper.make_node("Add", ["v", "y"], ["v2"]),
            helper.make_node("Add", ["count", "i"], ["count2"]),
            helper.make_node("Cast", ["i"], ["fi"], to=F),
            helper.make_node("Mul", ["v2", "fi"], ["row"]),
            helper.make_node("Identity", ["cond"], ["cond2"]),
        ],
        "body",
        [vi("i", I64, []), vi("cond", B, []), vi("v", F, [3]), vi("count", I64, [])],
        [vi("cond2", B, []), vi("v2", F, [3]), vi("count2", I64, []), vi("row", F, [3])],
    )


def test_loop_with_a_trip_count_input_carries_values_and_stacks_scans():
    node = helper.make_node(
        "Loop", ["n", "", "x", "k"], ["v", "count", "rows"], body=accumulate_body()
    )
    x, y = f32(3), f32(3)
    inputs = [("n", np.array(4)), ("x", x), ("k", np.array(10)), ("y", y)]
    model = make_model([node], inputs, ["v", "count", "rows"])
    assert "loop" in ops_of(model)
    for n in (1, 4, 7):
        feeds = {"n": np.array(n), "x": x, "k": np.array(10), "y": y}
        v, count, rows = check_model(model, feeds)
        np.testing.assert_allclose(v, x + n * y, rtol=1e-5)
        assert int(count) == 10 + n * (n - 1) // 2 and rows.shape == (n, 3)


def test_loop_with_a_known_short_trip_count_is_unrolled():
    nodes = [
        helper.make_node("Constant", [], ["n"], value=helper.make_tensor("n", I64, [], [3])),
        helper.make_node(
            "Loop", ["n", "", "x", "k"], ["v", "count", "rows"], body=accumulate_body()
        ),
    ]
    x, y = f32(3), f32(3)
    model = make_model(nodes, [("x", x), ("k", np.array(1)), ("y", y)], ["v", "count", "rows"])
    assert "loop" not in ops_of(model)
    check_model(model, {"x": x, "k": np.array(1), "y": y})


def test_while_loop_stops_on_the_condition_its_body_computes():
    body = helper.make_graph(
        [
            helper.make_node("Add", ["v", "v"], ["v2"]),
            helper.make_node("ReduceSum", ["v2"], ["s"], keepdims=0),
            helper.make_node("Less", ["s", "limit"], ["go"]),
        ],
        "body",
        [vi("i", I64, []), vi("cond", B, []), vi("v", F, [2])],
        [vi("go", B, []), vi("v2", F, [2])],
    )
    node = helper.make_node("Loop", ["", "c", "x"], ["v"], body=body)
    x = np.array([0.25, 0.5], np.float32)
    inputs = [("c", np.array(True)), ("x", x), ("limit", np.array(20, np.float32))]
    model = make_model([node], inputs, ["v"])
    for limit, c in ((20.0, True), (1000.0, True), (20.0, False)):
        feeds = {"c": np.array(c), "x": x, "limit": np.array(limit, np.float32)}
        (got,) = check_model(model, feeds)
        v = x.copy()
        while c:
            v = v + v
            c = v.sum() < limit
        np.testing.assert_allclose(got, v)


# -- Scan -----------------------------------------------------------------------------------
def test_scan_forward_and_reverse_inputs_output_axes_and_several_states():
    """States (sum, product); inputs a (forward, axis 0) and b (reverse, scanned on axis 1);
    outputs a running sum (stacked on axis 1) and a * b (stacked reversed on axis 0)."""
    body = helper.make_graph(
        [
            helper.make_node("Add", ["s", "a_t"], ["s2"]),
            helper.make_node("Mul", ["p", "b_t"], ["p2"]),
            helper.make_node("Mul", ["a_t", "b_t"], ["ab"]),
            helper.make_node("Identity", ["s2"], ["running"]),
        ],
        "body",
        [vi("s", F, [2]), vi("p", F, [2]), vi("a_t", F, [2]), vi("b_t", F, [2])],
        [vi("s2", F, [2]), vi("p2", F, [2]), vi("running", F, [2]), vi("ab", F, [2])],
    )
    node = helper.make_node(
        "Scan",
        ["s0", "p0", "a", "b"],
        ["s", "p", "running", "ab"],
        body=body,
        num_scan_inputs=2,
        scan_input_directions=[0, 1],
        scan_input_axes=[0, 1],
        scan_output_axes=[1, 0],
        scan_output_directions=[0, 1],
    )
    a, b = f32(4, 2), f32(2, 4)
    s0, p0 = f32(2), np.ones(2, np.float32)
    inputs = [("s0", s0), ("p0", p0), ("a", a), ("b", b)]
    model = make_model([node], inputs, ["s", "p", "running", "ab"])
    s, p, running, ab = check_model(model, {"s0": s0, "p0": p0, "a": a, "b": b})
    np.testing.assert_allclose(s, s0 + a.sum(0), rtol=1e-5)
    np.testing.assert_allclose(p, b.prod(1), rtol=1e-5)
    assert running.shape == (2, 4) and ab.shape == (4, 2)
    np.testing.assert_allclose(running[:, -1], s, rtol=1e-5)
    np.testing.assert_allclose(ab, (a * b[:, ::-1].T)[::-1], rtol=1e-5)


# -- errors ---------------------------------------------------------------------------------
def test_a_subgraph_reading_an_undefined_name_is_refused_by_name():
    then = helper.make_graph(
        [helper.make_node("Neg", ["nowhere"], ["t"])], "then", [], [vi("t", F, [3])]
    )
    other = helper.make_graph(
        [helper.make_node("Neg", ["x"], ["e"])], "else", [], [vi("e", F, [3])]
    )
    node = helper.make_node(
        "If", ["c"], ["out"], name="branchy", then_branch=then, else_branch=other
    )
    model = raw_model([node], [vi("c", B, []), vi("x", F, [3])], [vi("out", F, [3])])
    with pytest.raises(ConversionError, match="If node 'branchy'") as info:
        import_onnx(model)
    assert "nowhere" in str(info.value)


def test_a_loop_body_with_too_few_outputs_for_its_carried_values():
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond"], ["go"])],
        "body",
        [vi("i", I64, []), vi("cond", B, []), vi("v", F, [3]), vi("w", F, [3])],
        [vi("go", B, [])],
    )
    node = helper.make_node("Loop", ["n", "", "x", "x"], ["a", "b"], name="lp", body=body)
    model = raw_model(
        [node], [vi("n", I64, []), vi("x", F, [3])], [vi("a", F, [3]), vi("b", F, [3])]
    )
    with pytest.raises(ConversionError, match=r"Loop node 'lp': the body yields 1 values; it "):
        import_onnx(model)


def test_a_loop_body_changing_a_carried_values_type():
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond"], ["go"]),
            helper.make_node("Cast", ["v"], ["v2"], to=TensorProto.INT32),
        ],
        "body",
        [vi("i", I64, []), vi("cond", B, []), vi("v", F, [3])],
        [vi("go", B, []), vi("v2", TensorProto.INT32, [3])],
    )
    node = helper.make_node("Loop", ["n", "", "x"], ["a"], name="lp", body=body)
    model = raw_model([node], [vi("n", I64, []), vi("x", F, [3])], [vi("a", F, [3])])
    with pytest.raises(ConversionError, match="lp") as info:
        import_onnx(model)
    assert "float32[3]" in str(info.value) and "int32[3]" in str(info.value)


def test_if_branches_of_different_types_need_a_known_condition():
    then = helper.make_graph([helper.make_node("Neg", ["x"], ["t"])], "then", [], [vi("t", F, [3])])
    other = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["e"], to=I64)], "else", [], [vi("e", I64, [3])]
    )
    node = helper.make_node("If", ["c"], ["out"], name="pick", then_branch=then, else_branch=other)
    model = raw_model([node], [vi("c", B, []), vi("x", F, [3])], [vi("out", F, [3])])
    with pytest.raises(ConversionError, match="If node 'pick': the branches yield different"):
        import_onnx(model)
    with pytest.raises(ConversionError) as info:
        compiler.compile(model)
    assert "If node 'pick'" in str(info.value) and "condition must be known" in str(info.value)
    # a known condition types the result: the then branch
    g = import_onnx(model, input_values={"c": np.array(True)})
    assert [n.op for n in g.nodes] == ["neg"]


def test_a_sequence_op_on_a_tensor():
    node = helper.make_node("SequenceLength", ["x"], ["n"], name="len")
    model = raw_model([node], [vi("x", F, [3])], [vi("n", I64, [])])
    with pytest.raises(ConversionError, match=r"SequenceLength node 'len': expects a sequence"):
        import_onnx(model)


def test_subgraphs_yielding_outer_values_directly():
    """onnxruntime refuses these models (an outer value as a subgraph output), ONNX allows
    them: checked against numpy on the reference and on TVM."""
    from oputil import run_tvm

    from backends.reference import run_graph

    then = helper.make_graph([], "then", [], [vi("x", F, [3])])
    other = helper.make_graph(
        [helper.make_node("Neg", ["x"], ["e"])], "else", [], [vi("e", F, [3])]
    )
    body = helper.make_graph(
        [
            helper.make_node("Add", ["v", "y"], ["v2"]),
            helper.make_node("Identity", ["cond"], ["c2"]),
        ],
        "body",
        [vi("i", I64, []), vi("cond", B, []), vi("v", F, [3])],
        [vi("c2", B, []), vi("v2", F, [3]), vi("y", F, [3])],
    )
    nodes = [
        helper.make_node("If", ["c"], ["out"], then_branch=then, else_branch=other),
        helper.make_node("Loop", ["n", "", "x"], ["v", "ys"], body=body),
    ]
    x, y = f32(3), f32(3)
    inputs = [("c", np.array(True)), ("n", np.array(2)), ("x", x), ("y", y)]
    g = import_onnx(make_model(nodes, inputs, ["out", "v", "ys"]))
    for c, n in ((True, 0), (False, 3)):
        feeds = {"c": np.array(c), "n": np.array(n), "x": x, "y": y}
        want = [x if c else -x, x + n * y, np.tile(y, (n, 1))]
        ref = list(run_graph(g, feeds).values())
        for got in (ref, run_tvm(g, feeds)):
            for a, w in zip(got, want, strict=True):
                assert a.shape == w.shape
                np.testing.assert_allclose(a, w, rtol=1e-5)


def test_a_loop_model_through_the_whole_pipeline():
    import onnxruntime as ort

    node = helper.make_node(
        "Loop", ["n", "", "x", "k"], ["v", "count", "rows"], body=accumulate_body()
    )
    x, y = f32(3), f32(3)
    inputs = [("n", np.array(4)), ("x", x), ("k", np.array(10)), ("y", y)]
    model = make_model([node], inputs, ["v", "count", "rows"])
    compiled = compiler.compile(model, verify_each=True)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for n in (0, 3):
        feeds = {"n": np.array(n), "x": x, "k": np.array(10), "y": y}
        got = compiled.run(feeds)
        for name, want in zip(["v", "count", "rows"], sess.run(None, feeds), strict=True):
            assert got[name].shape == want.shape
            np.testing.assert_allclose(got[name], want, rtol=1e-5, atol=1e-6)


def test_a_known_trip_count_over_the_unroll_limit_builds_a_loop_of_static_length():
    body = helper.make_graph(
        [
            helper.make_node("Add", ["v", "y"], ["v2"]),
            helper.make_node("Identity", ["cond"], ["c2"]),
            helper.make_node("ReduceSum", ["v2"], ["s"], keepdims=0),
        ],
        "body",
        [vi("i", I64, []), vi("cond", B, []), vi("v", F, [3])],
        [vi("c2", B, []), vi("v2", F, [3]), vi("s", F, [])],
    )
    nodes = [
        helper.make_node("Constant", [], ["n"], value=helper.make_tensor("n", I64, [], [20])),
        helper.make_node("Loop", ["n", "", "x"], ["v", "ss"], body=body),
    ]
    x, y = f32(3), f32(3)
    model = make_model(nodes, [("x", x), ("y", y)], ["v", "ss"])
    g = import_onnx(model)
    (loop,) = (n for n in g.nodes if n.op == "loop")
    assert loop.attrs["iterations"] == 20 and g.outputs[1].type.shape == (20,)
    check_model(model, {"x": x, "y": y})


def test_scan_with_negative_axes_and_a_body_reading_an_outer_value():
    body = helper.make_graph(
        [helper.make_node("Mul", ["a", "w"], ["o"]), helper.make_node("Add", ["s", "o"], ["s2"])],
        "body",
        [vi("s", F, [2]), vi("a", F, [2])],
        [vi("s2", F, [2]), vi("o", F, [2])],
    )
    node = helper.make_node(
        "Scan",
        ["s0", "xs"],
        ["s", "os"],
        body=body,
        num_scan_inputs=1,
        scan_input_axes=[-1],
        scan_output_axes=[-1],
    )
    xs, w, s0 = f32(2, 4), f32(2), f32(2)
    model = make_model([node], [("s0", s0), ("xs", xs), ("w", w)], ["s", "os"])
    s, os_ = check_model(model, {"s0": s0, "xs": xs, "w": w})
    np.testing.assert_allclose(s, s0 + (xs * w[:, None]).sum(1), rtol=1e-5)
    assert os_.shape == (2, 4)


def test_if_on_data_choosing_between_sequences():
    seq = helper.make_tensor_sequence_value_info
    then = helper.make_graph(
        [helper.make_node("SequenceConstruct", ["x", "y"], ["t"])], "t", [], [seq("t", F, [3])]
    )
    other = helper.make_graph(
        [helper.make_node("SequenceConstruct", ["y", "x"], ["e"])], "e", [], [seq("e", F, [3])]
    )
    nodes = [
        helper.make_node("If", ["c"], ["s"], then_branch=then, else_branch=other),
        helper.make_node("Constant", [], ["p"], value=helper.make_tensor("p", I64, [], [0])),
        helper.make_node("SequenceAt", ["s", "p"], ["out"]),
    ]
    x, y = f32(3), f32(3)
    model = make_model(nodes, [("c", np.array(True)), ("x", x), ("y", y)], ["out"])
    assert "if" in ops_of(model)
    for c in (True, False):
        (got,) = check_model(model, {"c": np.array(c), "x": x, "y": y})
        np.testing.assert_array_equal(got, x if c else y)
