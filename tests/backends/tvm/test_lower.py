"""Lowering to Relax: control flow whose regions compute the same thing; what Relax refuses."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper
from onnxutil import nested_if_model

import compiler
from backends.tvm.lower import LoweringError


def test_nested_ifs_with_equal_branches_compile_and_run() -> None:
    # The three else-branches are the same function: TVM's block builder keeps one of them,
    # and lowering must call that one (it looked the others up by name, and failed).
    m = compiler.compile(nested_if_model(3))
    x = np.array([2.5], np.float32)
    np.testing.assert_array_equal(m.run({"x": x, "c": np.array(True)})["y3"], x)
    np.testing.assert_array_equal(m.run({"x": x, "c": np.array(False)})["y3"], -x)


def test_what_relax_refuses_is_one_line_naming_the_node() -> None:
    """Relax's type inference refuses a stride past int32 when the node is emitted (found by
    fuzzing: it escaped as TVM's ValueError with a C++ check); now a LoweringError."""
    pool = helper.make_node(
        "MaxPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2**62, 2**62], name="pool"
    )
    graph = helper.make_graph(
        [pool],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    with pytest.raises(LoweringError) as e:
        compiler.compile(model)
    message = str(e.value)
    assert "\n" not in message and "Check failed" not in message
    assert (
        message.startswith("lowering max_pool node 'pool': ")
        and "exceeds range of int32" in message
    )
