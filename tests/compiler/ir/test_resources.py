"""The memory check over a whole graph: inputs, node results, the constants in all."""

from __future__ import annotations

import numpy as np
import pytest

from compiler.errors import ResourceLimitError
from compiler.ir.graph import Graph
from compiler.ir.resources import check_memory
from compiler.ir.types import TensorType
from compiler.limits import memory_limit


def _graph_with_output(t: TensorType) -> Graph:
    g = Graph()
    x = g.add_input("x", TensorType("float32", (2,)))
    node = g.append(g.make_node("relu", [x], [t], name="r"))  # a type no builder checked
    g.set_outputs(node.outputs)
    return g


def test_check_memory_names_value_node_and_op() -> None:
    check_memory(_graph_with_output(TensorType("float32", (2,))))
    g = _graph_with_output(TensorType("float32", (1 << 40, 1 << 40)))
    with pytest.raises(ResourceLimitError, match=r"value %\w+ of relu node 'r': float32\[1099"):
        check_memory(g)


def test_check_memory_ignores_symbolic_dims_and_checks_inputs() -> None:
    check_memory(_graph_with_output(TensorType("float32", ("n", 1 << 40))))
    g = Graph()
    g.set_outputs([g.add_input("x", TensorType("int64", (1 << 20,)))])
    with memory_limit(1 << 20), pytest.raises(ResourceLimitError, match="input 'x': int64"):
        check_memory(g)


def test_check_memory_bounds_the_constants_in_all() -> None:
    g = Graph()
    x = g.add_input("x", TensorType("float32", (256,)))
    for i in range(3):
        c = g.constant(np.ones(256, np.float32), f"c{i}")
        x = g.append(g.make_node("add", [x, c], [x.type])).outputs[0]
    g.set_outputs([x])
    with memory_limit(3 * 1024):
        check_memory(g)
    with memory_limit(3 * 1024 - 1), pytest.raises(ResourceLimitError, match="3 constants need"):
        check_memory(g)
