"""Graph behaviour passes rely on: naming, construction, queries, rewriting, toposort."""

from __future__ import annotations

import numpy as np
import pytest

from compiler.ir.graph import Graph, Node, blocks, walk
from compiler.ir.types import TensorType
from compiler.ir.verify import verify

F2 = TensorType("float32", (2,))


def relu_chain(n: int) -> Graph:
    g = Graph()
    v = g.add_input("x", F2)
    for _ in range(n):
        node = g.append(g.make_node("relu", [v], [F2]))
        v = node.outputs[0]
    g.set_outputs([v])
    return g


def test_unique_name_keeps_free_hints_and_numbers_taken_ones():
    g = Graph()
    assert g.unique_name("x") == "x"
    assert g.unique_name("x") == "x_1"
    assert g.unique_name("") == "2"
    g.claim_name("x_3")
    assert g.unique_name("x") == "x_4"
    assert g.unique_name("3") == "3"
    assert g.unique_name("") == "5"


def test_inputs_constants_and_node_outputs_never_share_a_name():
    g = Graph()
    a = g.add_input("a", F2)
    a2 = g.add_input("a", F2)
    c = g.constant(np.zeros(2, np.float32), "a")
    anon = g.constant(np.zeros(2, np.float32))
    node = g.make_node("add", [a, c], [F2], output_names=["a"])
    names = [a.name, a2.name, c.name, anon.name, node.outputs[0].name]
    assert len(set(names)) == 5
    assert names[0] == "a" and anon.name.startswith("c")


def test_constant_keeps_the_array_and_types_it(tmp_path):
    path = tmp_path / "w.npy"
    np.save(path, np.arange(6, dtype=np.int32).reshape(2, 3))
    mm = np.load(path, mmap_mode="r")
    g = Graph()
    c = g.constant(mm, "w")
    assert c.type == TensorType("int32", (2, 3)) and c.is_constant
    assert np.shares_memory(c.const, mm)
    assert c.producer is None


def test_make_node_gives_fresh_outputs_that_know_their_producer():
    g = Graph()
    x = g.add_input("x", F2)
    node = g.make_node("relu", [x], [F2], {"k": 1}, name="r", output_names=["y"])
    assert node.outputs[0].name == "y" and node.outputs[0].producer is node
    assert node.name == "r" and node.attrs == {"k": 1}
    assert g.nodes == []  # not placed until appended
    with pytest.raises(ValueError):
        g.make_node("relu", [x], [F2], output_names=["a", "b"])


def test_append_insert_before_remove():
    g = relu_chain(2)
    first, second = g.nodes
    extra = g.make_node("relu", [g.inputs[0]], [F2])
    g.insert_before(second, extra)
    assert g.nodes == [first, extra, second]
    g.remove_node(extra)
    assert g.nodes == [first, second]


def test_set_outputs_names_default_to_value_names():
    g = relu_chain(1)
    assert g.output_names == ["1"]
    g.set_outputs(g.outputs, ["prob"])
    assert g.output_names == ["prob"]
    with pytest.raises(ValueError, match="one name per output"):
        g.set_outputs(g.outputs, ["a", "b"])


def test_users_and_values():
    g = Graph()
    x = g.add_input("x", F2)
    c = g.constant(np.ones(2, np.float32), "c")
    n1 = g.append(g.make_node("add", [x, x], [F2]))
    n2 = g.append(g.make_node("add", [n1.outputs[0], c], [F2]))
    g.set_outputs([n2.outputs[0], c])
    uses = g.users()
    assert uses[x] == [(n1, 0), (n1, 1)]
    assert uses[c] == [(n2, 1)]
    assert n2.outputs[0] not in uses
    assert [v.name for v in g.values()] == ["x", "1", "c", "2"]
    assert g.constants() == [c]


def test_replace_all_uses_rewires_nodes_and_outputs_but_keeps_output_names():
    g = relu_chain(2)
    first, second = g.nodes
    g.set_outputs([second.outputs[0]], ["y"])
    g.replace_all_uses(second.outputs[0], first.outputs[0])
    g.replace_all_uses(first.outputs[0], g.inputs[0])
    assert second.inputs == [g.inputs[0]]
    assert g.outputs == [g.inputs[0]]
    assert g.output_names == ["y"]


def test_toposort_puts_producers_first_and_keeps_sorted_graphs():
    g = Graph()
    x = g.add_input("x", F2)
    a = g.make_node("relu", [x], [F2], name="a")
    b = g.make_node("relu", [a.outputs[0]], [F2], name="b")
    c = g.make_node("relu", [x], [F2], name="c")
    d = g.make_node("add", [b.outputs[0], c.outputs[0]], [F2], name="d")
    g.nodes = [d, c, b, a]
    g.set_outputs(d.outputs)
    g.toposort()
    assert [n.name for n in g.nodes] == ["a", "b", "c", "d"]
    verify(g)
    g.nodes = [c, a, b, d]  # already sorted: unchanged
    g.toposort()
    assert g.nodes == [c, a, b, d]


def test_toposort_refuses_cycles():
    g = relu_chain(2)
    first, second = g.nodes
    first.inputs = [second.outputs[0]]
    with pytest.raises(ValueError, match="cycle"):
        g.toposort()


def test_toposort_handles_deep_chains():
    g = relu_chain(5000)
    g.nodes.reverse()
    g.toposort()
    verify(g)


def test_node_repr_shows_absent_inputs():
    g = Graph()
    x = g.add_input("x", F2)
    node = Node("op", [x, None], [g.make_node("relu", [x], [F2]).outputs[0]])
    assert repr(node).startswith("%1 = op(%x, _)")


# -- regions -------------------------------------------------------------------------------
BOOL = TensorType("bool", ())
INDEX = TensorType("int64", ())


def nested_graph() -> tuple[Graph, dict[str, object]]:
    """``loop { neg; if { then { relu }, else { exp } } }`` followed by ``add``, built by hand."""
    g = Graph()
    n, x = g.add_input("n", INDEX), g.add_input("x", F2)
    body = g.region([INDEX, BOOL, F2], ["i", "go", "v"])
    neg = body.append(g.make_node("neg", [body.inputs[2]], [F2], output_names=["neg"]))
    then = g.region([F2], ["t"])
    relu = then.append(g.make_node("relu", [then.inputs[0]], [F2], output_names=["relu"]))
    then.outputs = [relu.outputs[0]]
    other = g.region([F2], ["e"])
    exp = other.append(g.make_node("exp", [other.inputs[0]], [F2], output_names=["exp"]))
    other.outputs = [exp.outputs[0]]
    branch = body.append(
        g.make_node("if", [body.inputs[1], neg.outputs[0]], [F2], regions=[then, other])
    )
    body.outputs = [body.inputs[1], branch.outputs[0]]
    loop = g.append(
        g.make_node(
            "loop", [n, None, x], [F2], {"num_carried": 1, "iterations": None}, regions=[body]
        )
    )
    add = g.append(g.make_node("add", [loop.outputs[0], x], [F2]))
    g.set_outputs([add.outputs[0]])
    verify(g)
    parts = dict(body=body, then=then, other=other, neg=neg, relu=relu, exp=exp)
    parts.update(branch=branch, loop=loop, add=add)
    return g, parts


def test_region_arguments_are_fresh_values_of_the_graph_namespace():
    g = Graph()
    x = g.add_input("x", F2)
    r = g.region([F2, BOOL], ["x"])
    assert [a.type for a in r.inputs] == [F2, BOOL]
    assert r.inputs[0].name != x.name and len({a.name for a in r.inputs}) == 2
    assert all(a.producer is None and a.const is None for a in r.inputs)
    assert r.nodes == [] and r.outputs == []
    assert g.unique_name("x_1") != r.inputs[0].name  # the names are taken in the graph


def test_walk_visits_outer_nodes_before_their_regions_nodes_in_order():
    g, p = nested_graph()
    assert list(walk(g)) == [p["loop"], p["neg"], p["branch"], p["relu"], p["exp"], p["add"]]


def test_blocks_are_innermost_first_and_end_with_the_graph():
    g, p = nested_graph()
    order = blocks(g)
    assert order[-1] is g and len(order) == 4
    pos = {id(b): i for i, b in enumerate(order)}
    assert pos[id(p["then"])] < pos[id(p["body"])] and pos[id(p["other"])] < pos[id(p["body"])]
    assert pos[id(p["body"])] < pos[id(g)]


def test_values_reach_region_arguments_and_inner_node_outputs_once_each():
    g, p = nested_graph()
    vals = list(g.values())
    assert len(vals) == len({id(v) for v in vals})
    names = {v.name for v in vals}
    assert {"n", "x", "i", "go", "v", "t", "e", "neg", "relu", "exp"} <= names
    assert p["branch"].outputs[0] in vals and p["loop"].outputs[0] in vals


def test_regions_do_not_leak_into_the_owning_blocks_users():
    g, p = nested_graph()
    users = g.users()
    assert [n for n, _ in users[g.inputs[1]]] == [p["loop"], p["add"]]
    assert p["body"].inputs[2] not in users  # read only inside the body
    assert [n for n, _ in p["body"].users()[p["body"].inputs[2]]] == [p["neg"]]
