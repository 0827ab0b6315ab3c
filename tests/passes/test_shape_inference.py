"""shape_inference: output types re-derived after input types changed (shape binding)."""

from __future__ import annotations

import textwrap

import pytest
from passcheck import assert_text, check_pass

from compiler.ir.text import parse_graph, print_graph
from compiler.ir.types import IRTypeError, TensorType
from compiler.ir.verify import verify
from passes import PassManager, ShapeInference

SYMBOLIC = textwrap.dedent(
    """\
    graph main(%x: float32[batch, 6]) {
      %1 = relu(%x)
      %2 = reshape(%1) {shape = ["batch", 2, 3]}
      %3 = transpose(%2) {perm = [2, 1, 0]}
      %4 = shape(%3)
      return %3, %4
    }
    """
)


def test_consistent_graph_is_unchanged() -> None:
    check_pass(["shape_inference"], SYMBOLIC, SYMBOLIC, modified=False)


def test_binding_an_input_type_flows_through_dims_attributes() -> None:
    g = parse_graph(SYMBOLIC)
    g.inputs[0].type = TensorType("float32", (5, 6))  # what a frontend does to bind a shape
    # verify_each would refuse the input: its stored types are stale until this pass runs.
    assert PassManager(["shape_inference"]).run(g)
    verify(g)
    want = """\
        graph main(%x: float32[5, 6]) {
          %1 = relu(%x)
          %2 = reshape(%1) {shape = [5, 2, 3]}
          %3 = transpose(%2) {perm = [2, 1, 0]}
          %4 = shape(%3)
          return %3, %4
        }
        """
    assert_text(print_graph(g), print_graph(parse_graph(textwrap.dedent(want))))


def test_explicit_dim_bindings() -> None:
    check_pass(
        [ShapeInference(dims={"batch": 4})],
        SYMBOLIC,
        """
        graph main(%x: float32[4, 6]) {
          %1 = relu(%x)
          %2 = reshape(%1) {shape = [4, 2, 3]}
          %3 = transpose(%2) {perm = [2, 1, 0]}
          %4 = shape(%3)
          return %3, %4
        }
        """,
        modified=True,
    )


def test_renaming_a_dim() -> None:
    check_pass(
        [ShapeInference(dims={"batch": "n"})],
        SYMBOLIC,
        """
        graph main(%x: float32[n, 6]) {
          %1 = relu(%x)
          %2 = reshape(%1) {shape = ["n", 2, 3]}
          %3 = transpose(%2) {perm = [2, 1, 0]}
          %4 = shape(%3)
          return %3, %4
        }
        """,
    )


def test_stale_types_are_corrected() -> None:
    g = parse_graph(SYMBOLIC)
    g.nodes[0].outputs[0].type = TensorType("float32", ("batch", 7))
    assert PassManager(["shape_inference"]).run(g)
    assert print_graph(g) == print_graph(parse_graph(SYMBOLIC))


def test_an_impossible_binding_names_the_node() -> None:
    g = parse_graph(SYMBOLIC)
    g.inputs[0].type = TensorType("float32", (5, 7))
    with pytest.raises(Exception, match=r"reshape node '2'") as info:
        PassManager(["shape_inference"]).run(g)
    assert isinstance(info.value.__cause__, IRTypeError)


LOOP = """
        graph main(%n: int64[], %x: float32[batch, 6]) {
          %r, %ys = loop(%n, _, %x) {iterations = "k", num_carried = 1} : float32[batch, 6], float32[k, batch, 2, 3] {
            body(%i: int64[], %go: bool[], %v: float32[batch, 6]) {
              %w = relu(%v)
              %s = reshape(%w) {shape = ["batch", 2, 3]}
              yield %go, %w, %s
            }
          }
          return %r, %ys
        }
        """  # noqa: E501


def test_a_binding_flows_into_a_loop_body() -> None:
    check_pass(
        [ShapeInference(dims={"batch": 4})],
        LOOP,
        """
        graph main(%n: int64[], %x: float32[4, 6]) {
          %r, %ys = loop(%n, _, %x) {iterations = "k", num_carried = 1} : float32[4, 6], float32[k, 4, 2, 3] {
            body(%i: int64[], %go: bool[], %v: float32[4, 6]) {
              %w = relu(%v)
              %s = reshape(%w) {shape = [4, 2, 3]}
              yield %go, %w, %s
            }
          }
          return %r, %ys
        }
        """,  # noqa: E501
        modified=True,
    )


def test_a_bound_input_re_infers_the_body_and_learns_the_dim_there() -> None:
    g = parse_graph(textwrap.dedent(LOOP))
    g.inputs[1].type = TensorType("float32", (5, 6))
    assert PassManager(["shape_inference"]).run(g)
    verify(g)
    (loop,) = g.nodes
    body = loop.regions[0]
    assert body.inputs[2].type == TensorType("float32", (5, 6))
    assert body.nodes[1].attrs["shape"] == [5, 2, 3]  # batch -> 5, learned from relu's output
    assert [v.type.shape for v in loop.outputs] == [(5, 6), ("k", 5, 2, 3)]
