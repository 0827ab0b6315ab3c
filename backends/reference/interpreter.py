"""Runs a graph node by node through each op's numpy reference."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from compiler.ir.graph import Graph, Value
from compiler.ir.ops import get_op


def run_graph(graph: Graph, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Output name (``graph.output_names``) -> array.

    Inputs are keyed by graph input name and cast to its dtype.
    """
    env: dict[int, np.ndarray] = {}
    for v in graph.inputs:
        if v.name not in inputs:
            raise KeyError(f"missing input {v.name!r}")
        env[id(v)] = np.asarray(inputs[v.name], dtype=v.type.np_dtype)

    def read(v: Value | None) -> np.ndarray | None:
        if v is None:
            return None
        if v.const is not None:
            return v.const
        return env[id(v)]

    for node in graph.nodes:
        results = get_op(node.op).evaluate([read(v) for v in node.inputs], node.attrs)
        for out, r in zip(node.outputs, results, strict=True):
            env[id(out)] = np.asarray(r, dtype=out.type.np_dtype)
    return {n: np.asarray(read(v)) for n, v in zip(graph.output_names, graph.outputs, strict=True)}
