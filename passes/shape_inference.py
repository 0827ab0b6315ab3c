"""Shape inference: re-derive every node's output types from its inputs' types.

Needed after a frontend binds graph input shapes (``batch`` -> 1) or after a rewrite that
changed an input's type. Each node's attributes are normalized again against the new input
types and its outputs re-inferred through the op registry; ``Value.type`` is updated in place.

Dim names that stored types carried and that are now known (a stored output type says
``[batch, 10]`` where inference now gives ``[1, 10]``) are learned as bindings and
substituted into later attributes of kind ``dims`` (a reshape's target shape), so one
binding at the inputs flows through the whole graph. Bindings can also be given up front.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from compiler.ir.builder import infer_node_types
from compiler.ir.graph import Block, Graph
from compiler.ir.ops import get_op
from compiler.ir.types import Dim, IRTypeError, TensorType

from .manager import Pass, register


def _learn(old: TensorType, new: TensorType, dims: dict[str, Dim]) -> None:
    """Record ``name -> size`` where ``old`` had a dim name that ``new`` resolves."""
    if old.rank != new.rank:
        return
    for a, b in zip(old.shape, new.shape, strict=True):
        if isinstance(a, str) and a != b and a not in dims:
            dims[a] = b


def _bind_type(t: TensorType, dims: Mapping[str, Dim]) -> TensorType:
    if not dims or t.is_static:
        return t
    return t.with_shape([dims.get(d, d) if isinstance(d, str) else d for d in t.shape])


def _bind_attrs(op: str, attrs: dict[str, Any], dims: Mapping[str, Dim]) -> dict[str, Any]:
    if not dims:
        return attrs
    schema = get_op(op).attrs
    out = dict(attrs)
    for key, value in attrs.items():
        spec = schema.get(key)
        if spec is not None and spec.kind == "dims" and isinstance(value, list):
            out[key] = [dims.get(d, d) if isinstance(d, str) else d for d in value]
        elif spec is not None and spec.kind in ("dim", "dim?") and isinstance(value, str):
            out[key] = dims.get(value, value)
    return out


class ShapeInference(Pass):
    """Re-infer all types; ``dims`` binds dim names to sizes (or other names) first."""

    name = "shape_inference"
    description = "re-infer every node's output types from its inputs (binds known dim names)"

    def __init__(self, dims: Mapping[str, Dim] | None = None) -> None:
        self.dims = dict(dims or {})

    def run(self, graph: Graph) -> bool:
        dims: dict[str, Dim] = dict(self.dims)
        changed = False
        for v in graph.inputs:
            t = _bind_type(v.type, dims)
            if t != v.type:
                v.type, changed = t, True
        return self._block(graph, dims) or changed

    def _block(self, block: Block, dims: dict[str, Dim]) -> bool:
        """Re-infer ``block`` in order; a node's regions get their argument types from the
        node's operands and are re-inferred before the node (recursion depth: nesting)."""
        changed = False
        for node in block.nodes:
            opdef = get_op(node.op)
            in_types = [None if v is None else v.type for v in node.inputs]
            try:
                attrs = opdef.prepare(in_types, _bind_attrs(node.op, node.attrs, dims))
                for region, want in zip(node.regions, opdef.arg_types(in_types, attrs)):
                    for arg, t in zip(region.inputs, want, strict=True):
                        if arg.type != t:
                            arg.type, changed = t, True
                    changed |= self._block(region, dims)
                out_types = infer_node_types(opdef, in_types, attrs, node.regions)
            except (IRTypeError, ValueError) as e:
                label = node.name or (node.outputs[0].name if node.outputs else "?")
                raise IRTypeError(f"{node.op} node {label!r}: {e}") from e
            if len(out_types) != len(node.outputs):
                raise IRTypeError(
                    f"{node.op}: inference gave {len(out_types)} types "
                    f"for {len(node.outputs)} outputs"
                )
            if attrs != node.attrs:
                node.attrs, changed = attrs, True
            for value, t in zip(node.outputs, out_types, strict=True):
                if value.type != t:
                    _learn(value.type, t, dims)
                    value.type, changed = t, True
        return changed


register(ShapeInference())
