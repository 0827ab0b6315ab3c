"""Appending ops to a graph with attribute normalization, type inference and eager folding."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from compiler.limits import check_tensor

from .fold import evaluate, foldable_inputs
from .graph import Block, Graph, Region, Value
from .ops import get_op
from .ops.registry import OpDef
from .types import IRTypeError, TensorType, Type


class Emitter(Protocol):
    """What code that emits ops needs: ``Builder`` and the ONNX ``NodeContext`` both fit."""

    def emit(self, name: str, *inputs: Value | None, **attrs: Any) -> Value: ...

    def const(self, array: Any, dtype: str | None = None) -> Value: ...


class Builder:
    """Emits core ops at the end of ``block`` (default: the graph itself; a region of it to
    build a control-flow body; names always come from ``graph``).

    With ``fold=True`` (the default) an op whose inputs are all constants becomes a constant
    at once, evaluated by its reference definition: a frontend then sees shape-computing
    subgraphs (Shape -> Gather -> Concat -> Reshape) turn into plain attributes.
    """

    def __init__(self, graph: Graph, fold: bool = True, block: Block | None = None) -> None:
        self.graph = graph
        self.fold = fold
        self.block: Block = graph if block is None else block

    def nested(self, region: Region) -> Builder:
        """A builder emitting into ``region`` (folding as this one does)."""
        return Builder(self.graph, self.fold, region)

    def op(
        self,
        name: str,
        inputs: Sequence[Value | None],
        attrs: dict[str, Any] | None = None,
        *,
        node_name: str = "",
        output_names: Sequence[str] = (),
        regions: Sequence[Region] = (),
    ) -> list[Value]:
        opdef = get_op(name)
        in_types = [None if v is None else v.type for v in inputs]
        attrs = opdef.prepare(in_types, attrs or {})
        out_types = infer_node_types(opdef, in_types, attrs, regions)
        for t in out_types:
            if isinstance(t, TensorType) and t.is_static:
                check_tensor(f"{name} result", t.shape, t.np_dtype.itemsize)
        if self.fold and not regions:
            arrays = foldable_inputs(opdef, inputs, attrs)
            if arrays is not None:
                results = evaluate(opdef, arrays, attrs, out_types)
                if results is not None:
                    hints = list(output_names) + [""] * len(results)
                    return [self.graph.constant(r, h) for r, h in zip(results, hints)]
        node = self.graph.make_node(
            name, inputs, out_types, attrs, node_name, output_names, regions
        )
        self.block.append(node)
        return node.outputs

    def emit(self, name: str, *inputs: Value | None, **attrs: Any) -> Value:
        """One-output shorthand: ``b.emit("add", x, y)``."""
        (out,) = self.op(name, inputs, attrs)
        return out

    def const(
        self, array: np.ndarray | float | int, dtype: str | None = None, name: str = ""
    ) -> Value:
        return self.graph.constant(np.asarray(array, dtype=dtype), name)


class CapturingBuilder(Builder):
    """Builds a region from code that reads outer values freely (a recurrent cell written
    for any block): each outer value it reads becomes a new block argument of the region,
    and ``captures`` lists those values, in order, for the owning node's operands."""

    def __init__(self, graph: Graph, region: Region, fold: bool = True) -> None:
        super().__init__(graph, fold, region)
        self.captures: list[Value] = []
        self._args: dict[int, Value] = {}
        self._inside = {id(a) for a in region.inputs}

    def op(
        self,
        name: str,
        inputs: Sequence[Value | None],
        attrs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[Value]:
        outs = super().op(name, [self.read(v) for v in inputs], attrs, **kwargs)
        self._inside.update(id(v) for v in outs)
        return outs

    def read(self, v: Value | None) -> Value | None:
        """``v`` as the region sees it: itself, or the argument capturing it."""
        if v is None or v.const is not None or id(v) in self._inside:
            return v
        arg = self._args.get(id(v))
        if arg is None:
            (arg,) = self.graph.region([v.type], [v.name]).inputs
            self.block.inputs.append(arg)
            self.captures.append(v)
            self._args[id(v)] = arg
            self._inside.add(id(arg))
        return arg


def infer_node_types(
    opdef: OpDef,
    in_types: Sequence[Type | None],
    attrs: dict[str, Any],
    regions: Sequence[Region] = (),
) -> list[Type]:
    """Output types of a node, checking its regions' count and argument types first."""
    if len(regions) != len(opdef.regions):
        raise IRTypeError(
            f"{opdef.name} owns {len(opdef.regions)} region(s), the node has {len(regions)}"
        )
    if not regions:
        return opdef.infer_types(in_types, attrs)
    for region_name, region, want in zip(opdef.regions, regions, opdef.arg_types(in_types, attrs)):
        got = [v.type for v in region.inputs]
        if got != want:
            raise IRTypeError(
                f"region {region_name!r} takes ({', '.join(map(str, got))}), the operands "
                f"give ({', '.join(map(str, want))})"
            )
    return opdef.infer_types(in_types, attrs, [[v.type for v in r.outputs] for r in regions])
