"""The IR builder refuses a result over the memory limit before folding makes it."""

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
