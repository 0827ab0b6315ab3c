"""Helpers of the CUDA build tests: they need nvcc (CI has it) but no GPU."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper
from onnxutil import make_model


def nvcc_missing() -> str:
    """Why CUDA code cannot be built here, or "" when it can."""
    from backends.tvm.cuda.toolchain import find_toolkit
    from backends.tvm.targets import TargetError

    try:
        find_toolkit()
    except TargetError as e:
        return str(e)
    return ""


_MISSING = nvcc_missing()
requires_nvcc = pytest.mark.skipif(
    bool(_MISSING), reason=f"no CUDA toolkit to build with: {_MISSING}"
)


def conv_relu_model() -> onnx.ModelProto:
    """A 3x3 conv + relu on float32[1, 8, 16, 16]: a few GPU kernels, built in seconds."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 8, 16, 16)).astype(np.float32)
    w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["y"]),
    ]
    return make_model(nodes, [("x", x)], ["y"], [("w", w)])
