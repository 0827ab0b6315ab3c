"""Appending ops to a graph with attribute normalization, type inference and eager folding."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .fold import evaluate, foldable_inputs
from .graph import Graph, Value
from .ops import get_op


class Builder:
    """Emits core ops at the end of ``graph``.

    With ``fold=True`` (the default) an op whose inputs are all constants becomes a constant
    at once, evaluated by its reference definition: a frontend then sees shape-computing
    subgraphs (Shape -> Gather -> Concat -> Reshape) turn into plain attributes.
    """

    def __init__(self, graph: Graph, fold: bool = True) -> None:
        self.graph = graph
        self.fold = fold

    def op(
        self,
        name: str,
        inputs: Sequence[Value | None],
        attrs: dict[str, Any] | None = None,
        *,
        node_name: str = "",
        output_names: Sequence[str] = (),
    ) -> list[Value]:
        opdef = get_op(name)
        in_types = [None if v is None else v.type for v in inputs]
        attrs = opdef.prepare(in_types, attrs or {})
        out_types = opdef.infer_types(in_types, attrs)
        if self.fold:
            arrays = foldable_inputs(opdef, inputs, attrs)
            if arrays is not None:
                results = evaluate(opdef, arrays, attrs, out_types)
                if results is not None:
                    hints = list(output_names) + [""] * len(results)
                    return [self.graph.constant(r, h) for r, h in zip(results, hints)]
        node = self.graph.make_node(name, inputs, out_types, attrs, node_name, output_names)
        self.graph.append(node)
        return node.outputs

    def emit(self, name: str, *inputs: Value | None, **attrs: Any) -> Value:
        """One-output shorthand: ``b.emit("add", x, y)``."""
        (out,) = self.op(name, inputs, attrs)
        return out

    def const(
        self, array: np.ndarray | float | int, dtype: str | None = None, name: str = ""
    ) -> Value:
        return self.graph.constant(np.asarray(array, dtype=dtype), name)
