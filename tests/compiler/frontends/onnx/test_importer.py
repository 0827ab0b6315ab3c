"""The ONNX importer's bounds: how deep subgraphs may nest."""

from __future__ import annotations

import sys

import pytest
from onnxutil import nested_if_model

from compiler.errors import ResourceLimitError
from compiler.frontends.onnx import import_onnx
from compiler.frontends.onnx.importer import nesting_depth
from compiler.limits import MAX_REGION_DEPTH


def test_nesting_depth() -> None:
    assert nesting_depth(nested_if_model(0).graph) == 0
    assert nesting_depth(nested_if_model(5).graph) == 5


def test_nesting_up_to_the_limit_imports_at_the_default_recursion_limit() -> None:
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    try:
        graph = import_onnx(nested_if_model(MAX_REGION_DEPTH))
    finally:
        sys.setrecursionlimit(old)
    assert [n.op for n in graph.nodes] == ["if"]


@pytest.mark.parametrize("depth", [MAX_REGION_DEPTH + 1, 3000])
def test_deeper_nesting_is_refused_before_converting(depth: int) -> None:
    # 3000 levels used to end in a RecursionError wrapped in 3000 node names.
    with pytest.raises(ResourceLimitError, match=r"^graph 'main': subgraphs nested more than 64"):
        import_onnx(nested_if_model(depth))
