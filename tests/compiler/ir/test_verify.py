"""The verifier: valid graphs pass; each broken invariant is reported, naming its node."""

from __future__ import annotations

import numpy as np
import pytest

from compiler.ir.builder import Builder
from compiler.ir.graph import Graph, Node, Value
from compiler.ir.ops import OPS, Attr, define
from compiler.ir.ops.shapes import normalize_axis
from compiler.ir.text import parse_graph
from compiler.ir.types import TensorType
from compiler.ir.verify import VerifyError, problems, same_attr, verify

F2 = TensorType("float32", (2,))

if "test_e_axis" not in OPS:
    define(
        "test_e_axis",
        inputs=["x", "bias?"],
        attrs={
            "axis": Attr("int", 0),
            "alpha": Attr("float", 1.0),
            "mode": Attr("str", "a", choices=("a", "b")),
            "sizes": Attr("ints", []),
        },
        normalize=lambda ts, a: {**a, "axis": normalize_axis(a["axis"], ts[0].rank)},
        infer=lambda ts, a: ts[0],
        reference=lambda xs, a: xs[0],
    )


def only_problem(graph: Graph) -> str:
    found = problems(graph)
    assert len(found) == 1, found
    with pytest.raises(VerifyError) as info:
        verify(graph)
    assert info.value.problems == found
    assert "1 problem:" in str(info.value) and found[0] in str(info.value)
    return found[0]


def chain() -> tuple[Graph, list[Node]]:
    g = Graph("g")
    x = g.add_input("x", F2)
    b = Builder(g, fold=False)
    w = b.const(np.ones(2, np.float32), name="w")
    (y,) = b.op("add", [x, w], node_name="add0")
    (z,) = b.op("relu", [y])
    g.set_outputs([z], ["out"])
    return g, g.nodes


def test_valid_graphs_pass():
    g, _ = chain()
    assert problems(g) == []
    verify(g)
    text = """graph g(%x: float32[n, 3]) {
  %1 = test_e_axis(%x, _) {axis = 1, mode = "b"} : float32[n, 3]
  return %1, %x as "same"
}"""
    verify(parse_graph(text))


def test_use_before_definition():
    g, nodes = chain()
    g.nodes.reverse()
    msg = only_problem(g)
    assert msg == "node 0 (relu -> %2): %1 is used before the node that produces it"


def test_value_from_a_node_outside_the_graph():
    g, nodes = chain()
    g.remove_node(nodes[0])
    assert only_problem(g) == ("node 0 (relu -> %2): %1 comes from a node that is not in the graph")


def test_undefined_value_and_graph_output():
    g, nodes = chain()
    stray = Value("stray", F2)
    nodes[1].inputs[0] = stray
    g.outputs.append(Value("ghost", F2))
    g.output_names.append("ghost")
    assert problems(g) == [
        "node 1 (relu -> %2): %stray is neither a graph input, a constant nor a node output",
        "graph output 1 ('ghost'): %ghost is neither a graph input, a constant nor a node output",
    ]


def test_value_produced_twice():
    g, nodes = chain()
    twin = Node("relu", [nodes[1].outputs[0]], [nodes[0].outputs[0]])
    g.append(twin)
    found = problems(g)
    assert "node 2 (relu -> %1): output %1 names another producer" not in found
    assert any(
        '%1 is defined twice: by node 0 (add "add0" -> %1) and by node 2 (relu -> %1)' in p
        for p in found
    ), found


def test_names_must_be_unique():
    g, nodes = chain()
    nodes[1].outputs[0].name = "x"
    msg = only_problem(g)
    assert msg == "name %x is used by two values: graph input 0 and node 1 (relu -> %x)"


def test_unknown_op_and_arity():
    g, nodes = chain()
    nodes[1].op = "relu6"
    assert only_problem(g) == "node 1 (relu6 -> %2): unknown op 'relu6'"
    g, nodes = chain()
    nodes[0].inputs.append(nodes[0].inputs[0])
    assert only_problem(g) == 'node 0 (add "add0" -> %1): add takes 2..2 inputs, got 3'


def test_required_input_absent():
    g, nodes = chain()
    nodes[0].inputs[1] = None
    assert only_problem(g) == 'node 0 (add "add0" -> %1): input 1 (b) is required but absent'


def axis_graph(attrs: dict, out: TensorType = F2) -> Graph:
    g = Graph()
    x = g.add_input("x", F2)
    node = g.make_node("test_e_axis", [x], [out], attrs)
    g.append(node)
    g.set_outputs(node.outputs)
    return g


FULL = {"axis": 0, "alpha": 1.0, "mode": "a", "sizes": []}


@pytest.mark.parametrize(
    "attrs, message",
    [
        ({**FULL, "alpha": 1}, "attribute alpha=1 is not canonical: 1.0"),
        ({**FULL, "sizes": (1, 2)}, "attribute sizes=(1, 2) is not canonical: [1, 2]"),
        ({"axis": 0, "alpha": 1.0, "mode": "a"}, "attribute 'sizes' is missing (default [] "),
        ({**FULL, "beta": 2}, "attributes: test_e_axis: unknown attribute(s) beta"),
        ({**FULL, "mode": "c"}, "attributes: test_e_axis: attribute mode='c' is not one of"),
        ({**FULL, "axis": 1.5}, "attribute axis=1.5 is not of kind int"),
        ({**FULL, "axis": -1}, "attribute axis=-1 is not normalized: 0"),
        ({**FULL, "axis": 3}, "attributes do not normalize: "),
    ],
)
def test_attribute_schema(attrs, message):
    msg = only_problem(axis_graph(attrs))
    assert msg.startswith("node 0 (test_e_axis -> %1): ")
    assert message in msg


def test_output_types_must_equal_inference():
    msg = only_problem(axis_graph(FULL, TensorType("float32", (3,))))
    assert (
        msg
        == "node 0 (test_e_axis -> %1): output %1 is typed float32[3], inference gives float32[2]"
    )
    g, nodes = chain()
    nodes[0].outputs.append(Value("extra", F2, nodes[0]))
    assert only_problem(g) == 'node 0 (add "add0" -> %1, %extra): has 2 outputs, add makes 1'


def test_inference_failure_is_reported():
    g = Graph()
    a = g.add_input("a", F2)
    b = g.add_input("b", TensorType("int64", (2,)))
    node = g.make_node("add", [a, b], [F2])
    g.append(node)
    g.set_outputs(node.outputs)
    msg = only_problem(g)
    assert msg.startswith("node 0 (add -> %1): type inference fails: IRTypeError: ")
    assert "dtypes differ" in msg


def test_constant_types_must_match_their_arrays():
    g, nodes = chain()
    w = nodes[0].inputs[1]
    w.const = np.ones(2, np.float64)
    assert only_problem(g) == ("constant %w: constant %w is typed float32[2] but holds float64[2]")


def test_graph_inputs_and_outputs():
    g, nodes = chain()
    g.inputs.append(nodes[0].inputs[1])  # a constant listed as an input
    assert "graph input 1: %w is a node output or a constant" in problems(g)
    g, nodes = chain()
    g.outputs.append(g.outputs[0])
    g.output_names.append("out")
    assert only_problem(g) == "graph output 1 ('out'): output name 'out' is used twice"
    g, _ = chain()
    g.output_names = []
    assert only_problem(g) == "graph has 1 outputs but 0 output names"


def test_node_listed_twice():
    g, nodes = chain()
    g.nodes.append(nodes[1])
    assert "node 2 (relu -> %2): the node appears twice in the node list" in problems(g)


def test_all_problems_are_collected():
    text = """graph g(%x: float32[2]) {
  %1 = relu(%x) : int8[2] loc("r1")
  %2 = add(%1, %1) : int8[3]
  %3 = test_e_axis(%x) {axis = 0, alpha = 1.0, mode = "a", sizes = [], extra = 1} : float32[2]
  return %2 as "y", %3 as "y"
}"""
    g = parse_graph(text, check=False)
    with pytest.raises(VerifyError) as info:
        verify(g)
    assert info.value.problems == [
        'node 0 (relu "r1" -> %1): output %1 is typed int8[2], inference gives float32[2]',
        "node 1 (add -> %2): output %2 is typed int8[3], inference gives int8[2]",
        "node 2 (test_e_axis -> %3): attributes: test_e_axis: unknown attribute(s) extra",
        "graph output 1 ('y'): output name 'y' is used twice",
    ]
    assert str(info.value).startswith("graph 'g' fails verification, 4 problems:\n  - node 0")


def test_same_attr_is_strict_about_kinds():
    assert same_attr([1, 2.0], [1, 2.0])
    assert not same_attr(1, 1.0)
    assert not same_attr(True, 1)
    assert not same_attr((1,), [1])
    assert same_attr(float("nan"), float("nan"))
    assert not same_attr([1, [2]], [1, [3]])


# -- regions -------------------------------------------------------------------------------
BOOL = TensorType("bool", ())


def if_graph() -> tuple[Graph, Node]:
    """``%r = if(%c, %x) { then(%a) { neg(%a) } else(%b) { relu(%b) } }``."""
    g = Graph("g")
    c, x = g.add_input("c", BOOL), g.add_input("x", F2)
    b = Builder(g, fold=False)
    then, other = g.region([F2], ["a"]), g.region([F2], ["b"])
    then.outputs = [b.nested(then).emit("neg", then.inputs[0])]
    other.outputs = [b.nested(other).emit("relu", other.inputs[0])]
    (r,) = b.op("if", [c, x], node_name="branch", regions=[then, other])
    g.set_outputs([r], ["r"])
    return g, g.nodes[0]


def test_valid_regions_pass():
    g, _ = if_graph()
    assert problems(g) == []


def test_region_reading_an_outer_value_directly_names_the_node_and_region():
    g, node = if_graph()
    x = g.inputs[1]
    neg = node.regions[0].nodes[0]
    neg.inputs[0] = x  # the outer %x instead of the region argument %a
    found = only_problem(g)
    assert found.startswith(f'node 0 (if "branch" -> %{node.outputs[0].name}), region then: ')
    assert f"node 0 (neg -> %{neg.outputs[0].name}): reads %x from another block" in found
    assert "graph input 1" in found and "only through operands" in found


def test_region_yield_of_an_undefined_value():
    g, node = if_graph()
    node.regions[1].outputs = [Value("ghost", F2)]
    found = only_problem(g)
    assert found == (
        f'node 0 (if "branch" -> %{node.outputs[0].name}), region else: yield 0: %ghost is '
        "neither a graph input, a constant nor a node output"
    )


def test_region_argument_types_must_match_the_operands():
    g, node = if_graph()
    then = node.regions[0]
    then.inputs = [Value("a2", TensorType("float32", (5,)))]
    g.claim_name("a2")
    then.nodes = []
    then.outputs = [g.constant(np.zeros(2, np.float32), "z")]
    found = only_problem(g)
    assert found.startswith('node 0 (if "branch"')
    assert r"region 'then' takes (float32[5]), the operands give (float32[2])" in found


def test_value_of_one_branch_used_in_the_other():
    g, node = if_graph()
    then, other = node.regions
    t = then.outputs[0]
    other.outputs = [t]
    found = only_problem(g)
    assert ", region else: yield 0: " in found
    assert f"reads %{t.name} from another block" in found and "region then: node 0" in found


def test_the_same_node_in_two_regions():
    g, node = if_graph()
    then, other = node.regions
    shared = then.nodes[0]
    other.nodes.append(shared)
    found = problems(g)
    assert any(
        ", region else: node 1 (neg" in p and "the node appears twice" in p for p in found
    ), found


def test_loop_body_yielding_a_carried_value_of_another_type():
    text = """graph g(%n: int64[], %x: float32[2]) {
  %r = loop(%n, _, %x) {iterations = none, num_carried = 1} : float32[2] {
    body(%i: int64[], %go: bool[], %v: float32[2]) {
      %w = isnan(%v) : bool[2]
      yield %go, %w
    }
  }
  return %r
}"""
    g = parse_graph(text, check=False)
    found = only_problem(g)
    assert found.startswith("node 0 (loop -> %r): type inference fails")
    assert "carried value 0 enters as float32[2] but the body yields bool[2]" in found
