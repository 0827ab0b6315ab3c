"""Large graphs: a 100,000-node chain goes through import, the passes and lowering without
a RecursionError (at Python's default recursion limit), and a chain compiles and computes
what numpy does (``benchmarks/graph_size.py`` measures the times)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import compiler
from benchmarks.graph_size import chain_model, chain_reference, time_stages


@pytest.fixture
def default_recursion_limit():
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)  # Python's default; a recursive walker of the chain breaks it
    yield
    sys.setrecursionlimit(old)


def test_100k_node_chain_imports_optimizes_and_lowers(default_recursion_limit) -> None:
    timings = time_stages(chain_model(100_000), build=False)
    assert set(timings) == {"import", "optimize", "lower"}


def test_chain_compiles_and_computes(default_recursion_limit) -> None:
    n = 600  # more than TVM fuses into one kernel: several fused kernels in a row
    m = compiler.compile(chain_model(n))
    x = np.linspace(-2, 2, 4, dtype=np.float32).reshape(1, 4)
    (y,) = m.run({"x": x}).values()
    np.testing.assert_allclose(y, chain_reference(n, x), rtol=1e-5, atol=1e-6)
    assert len(m.graph.nodes) == n  # no pass dropped or merged any of them
