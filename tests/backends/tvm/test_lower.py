"""Lowering to Relax: control flow whose regions compute the same thing."""

from __future__ import annotations

import numpy as np
from onnxutil import nested_if_model

import compiler


def test_nested_ifs_with_equal_branches_compile_and_run() -> None:
    # The three else-branches are the same function: TVM's block builder keeps one of them,
    # and lowering must call that one (it looked the others up by name, and failed).
    m = compiler.compile(nested_if_model(3))
    x = np.array([2.5], np.float32)
    np.testing.assert_array_equal(m.run({"x": x, "c": np.array(True)})["y3"], x)
    np.testing.assert_array_equal(m.run({"x": x, "c": np.array(False)})["y3"], -x)
