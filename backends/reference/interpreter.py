"""Runs a graph node by node through each op's numpy reference, regions included."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from compiler.ir.graph import Block, Graph, Region, Value
from compiler.ir.ops import RegionRunner, get_op
from compiler.ir.types import OptionalType, SequenceType, TensorType, Type


def _cast(data: Any, t: Type) -> Any:
    """A run-time value in the form its IR type says: arrays of the dtype, lists of arrays
    for a sequence, None for an empty optional."""
    if isinstance(t, TensorType):
        return np.asarray(data, dtype=t.np_dtype)
    if isinstance(t, SequenceType):
        return [_cast(x, e) for x, e in zip(data, t.elements, strict=True)]
    if isinstance(t, OptionalType):
        return None if not t.present else _cast(data, t.of)
    raise TypeError(f"no run-time form for {t!r}")


def _run_block(block: Block, env: dict[int, Any]) -> list[Any]:
    def read(v: Value | None) -> Any:
        if v is None:
            return None
        if v.const is not None:
            return v.const
        return env[id(v)]

    for node in block.nodes:
        runners = [RegionRunner(_runner(r), [v.type for v in r.outputs]) for r in node.regions]
        results = get_op(node.op).evaluate([read(v) for v in node.inputs], node.attrs, runners)
        for out, r in zip(node.outputs, results, strict=True):
            env[id(out)] = _cast(r, out.type)
    return [read(v) for v in block.outputs]


def _runner(region: Region):
    def run(args: Sequence[Any]) -> list[Any]:
        env = {id(a): _cast(x, a.type) for a, x in zip(region.inputs, args, strict=True)}
        return _run_block(region, env)

    return run


def run_graph(graph: Graph, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Output name (``graph.output_names``) -> array (a list for a sequence output).

    Inputs are keyed by graph input name and cast to its type.
    """
    env: dict[int, Any] = {}
    for v in graph.inputs:
        if v.name not in inputs:
            raise KeyError(f"missing input {v.name!r}")
        env[id(v)] = _cast(inputs[v.name], v.type)
    results = _run_block(graph, env)
    return {
        n: r if isinstance(r, list) or r is None else np.asarray(r)
        for n, r in zip(graph.output_names, results, strict=True)
    }
