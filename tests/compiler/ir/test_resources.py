"""The memory check over a whole graph, and the IR builder refusing oversized results."""

from __future__ import annotations

import time

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from compiler.errors import ResourceLimitError
from compiler.frontends.onnx import import_onnx
from compiler.ir.builder import Builder
from compiler.ir.graph import Graph
from compiler.ir.resources import check_memory
from compiler.ir.types import TensorType
from compiler.limits import memory_limit


def test_constant_of_shape_of_a_trillion_elements_is_refused_quickly() -> None:
    shape = numpy_helper.from_array(np.array([10**6, 10**6], np.int64), "shape")
    graph = helper.make_graph(
        [helper.make_node("ConstantOfShape", ["shape"], ["y"], name="big")],
        "g",
        [],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        initializer=[shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    t = time.perf_counter()
    with pytest.raises(ResourceLimitError, match=r"ConstantOfShape node 'big': broadcast_to .*TiB"):
        import_onnx(model)
    assert time.perf_counter() - t < 5


def test_builder_refuses_before_folding() -> None:
    g = Graph()
    b = Builder(g)
    one = b.const(np.float32(1))
    with memory_limit(1000), pytest.raises(ResourceLimitError, match=r"shape \[1000\] needs"):
        b.emit("broadcast_to", one, shape=[1000])
    assert b.emit("broadcast_to", one, shape=[10]).const is not None


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
