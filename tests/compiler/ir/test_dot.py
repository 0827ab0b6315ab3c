"""The IR's picture (``compiler/ir/dot.py``): DOT text naming ops and types, constants folded
into labels, regions as clusters, the node limit's note, and atomic rendering."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from compiler.ir.dot import GraphPictureError, picture_format, render, to_dot
from compiler.ir.graph import Graph
from compiler.ir.text import parse_graph
from compiler.ir.types import TensorType

CONV = """
graph net(%x: float32[1, 3, 8, 8]) {
  %bias = const float32[] dense<0.5>
  %w = const float32[4, 3, 3, 3] @w
  %1 = conv(%x, %w, _) {dilations = [1, 1], groups = 1, pads = [1, 1, 1, 1], strides = [1, 1]}
  %2 = add(%1, %bias)
  %3 = relu(%2)
  return %3 as "y"
}
"""

IF = """
graph branchy(%c: bool[], %x: float32[3]) {
  %r = if(%c, %x) : float32[3] {
    then(%a: float32[3]) {
      %n = neg(%a)
      yield %n
    }
    else(%b: float32[3]) {
      %e = exp(%b)
      yield %e
    }
  }
  return %r
}
"""


def _labels(dot: str) -> list[str]:
    """The label of every op node (ids n<k>), its lines split."""
    return [
        m.group(1).split("\\n")
        for m in re.finditer(r'^\s*n\d+ \[label="((?:[^"\\]|\\.)*)"', dot, re.M)
    ]


def _conv() -> Graph:
    w = np.ones((4, 3, 3, 3), np.float32)
    return parse_graph(CONV, constants={"w": w})


def test_ops_with_output_types_and_short_attributes() -> None:
    dot = to_dot(_conv())
    labels = _labels(dot)
    assert [lines[0] for lines in labels] == ["conv", "add", "relu"]
    conv = labels[0]
    assert "float32[1, 4, 8, 8]" in conv
    assert "strides=[1, 1]" in conv and "pads=[1, 1, 1, 1]" in conv
    assert dot.startswith('digraph "net" {') and dot.rstrip().endswith("}")


def test_constants_are_folded_into_their_users() -> None:
    dot = to_dot(_conv())
    labels = _labels(dot)
    assert len(labels) == 3  # no node for either constant
    assert "in1: float32[4, 3, 3, 3]" in labels[0]  # large: its type
    assert "in1 = 0.5" in labels[1]  # small scalar: its value
    assert "const" not in dot


def test_small_constants_of_any_dtype_show_their_values() -> None:
    g = parse_graph(
        """
graph g(%x: int64[2], %y: bfloat16[]) {
  %s = const int64[2] dense<[2, 3]>
  %h = const bfloat16[] dense<1.5>
  %1 = add(%x, %s)
  %2 = mul(%y, %h)
  return %1, %2, %h
}
"""
    )
    dot = to_dot(g)
    labels = _labels(dot)
    assert "in1 = [2, 3]" in labels[0] and "in1 = 1.5" in labels[1]
    assert 'label="output h\\nbfloat16[]\\nconst = 1.5"' in dot  # an output that is a constant


def test_inputs_and_outputs_are_distinct_nodes_joined_by_edges() -> None:
    dot = to_dot(_conv())
    inp = re.search(
        r'^\s*(input\d+) \[label="input x\\nfloat32\[1, 3, 8, 8\]", shape=invhouse', dot, re.M
    )
    out = re.search(
        r'^\s*(output\d+) \[label="output y\\nfloat32\[1, 4, 8, 8\]", shape=house', dot, re.M
    )
    assert inp and out, dot
    ids = re.findall(r"^\s*(n\d+) \[", dot, re.M)
    edges = set(re.findall(r"^\s*(\w+) -> (\w+)", dot, re.M))
    assert edges == {(inp[1], ids[0]), (ids[0], ids[1]), (ids[1], ids[2]), (ids[2], out[1])}


def test_regions_are_clusters_entered_from_their_owner() -> None:
    dot = to_dot(parse_graph(IF))
    clusters = re.findall(r'subgraph (cluster_\d+) \{\s*label="(\w+)"', dot)
    assert [name for _, name in clusters] == ["then", "else"]
    # Each cluster holds its region's op, and the if node enters it with a dashed edge.
    then_body = dot.split("subgraph " + clusters[0][0])[1].split("subgraph ")[0]
    assert '"neg' in then_body and '"exp' not in then_body
    owner = re.search(r'^\s*(n\d+) \[label="if', dot, re.M)[1]
    assert len(re.findall(rf"^\s*{owner} -> args\d+ \[style=dashed\]", dot, re.M)) == 2
    assert "a: float32[3]" in dot  # the region's block argument


def test_node_limit_draws_a_prefix_and_a_note() -> None:
    g = Graph("chain")
    v = g.add_input("x", TensorType("float32", (2,)))
    for _ in range(30):
        v = g.append(g.make_node("relu", [v], [TensorType("float32", (2,))])).outputs[0]
    g.set_outputs([v], ["y"])
    full = to_dot(g)
    assert len(_labels(full)) == 30 and "not drawn" not in full
    cut = to_dot(g, max_nodes=10)
    assert len(_labels(cut)) == 10
    assert "20 more nodes not drawn" in cut
    # The output, made by an elided node, hangs off the note.
    assert re.search(r"^\s*elided -> output\d+ \[style=dotted\]", cut, re.M)


def test_labels_escape_quotes_and_backslashes() -> None:
    g = Graph("q")
    x = g.add_input('a"b\\c', TensorType("float32", (2,)))
    g.set_outputs([g.append(g.make_node("relu", [x], [TensorType("float32", (2,))])).outputs[0]])
    dot = to_dot(g)
    assert 'input a\\"b\\\\c' in dot


def test_picture_format_by_suffix() -> None:
    assert picture_format("a/b.SVG") == "svg"
    assert picture_format("g.dot") == "dot"
    with pytest.raises(GraphPictureError, match=r"unknown picture format \.pdf; use \.dot"):
        picture_format("g.pdf")


def test_render_dot_needs_no_graphviz(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    text = to_dot(_conv())
    render(text, tmp_path / "g.dot")
    assert (tmp_path / "g.dot").read_text() == text
    with pytest.raises(GraphPictureError, match="apt-get install graphviz"):
        render(text, tmp_path / "g.svg")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.dot"]  # nothing half-written


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot program is not installed")
def test_render_svg_and_png(tmp_path: Path) -> None:
    text = to_dot(parse_graph(IF))
    render(text, tmp_path / "g.svg")
    svg = (tmp_path / "g.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    for op in ("if", "neg", "exp"):
        assert f">{op}</text>" in svg
    render(text, tmp_path / "g.png")
    assert (tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.png", "g.svg"]


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot program is not installed")
def test_render_failure_leaves_no_file(tmp_path: Path) -> None:
    with pytest.raises(GraphPictureError, match="Graphviz's dot failed"):
        render("digraph { this is not dot", tmp_path / "g.svg")
    assert list(tmp_path.iterdir()) == []
