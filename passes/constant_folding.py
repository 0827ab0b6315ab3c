"""Constant folding through the ops' reference definitions (``compiler.ir.fold``).

A node whose inputs are all constants becomes constants; so does a node that reads only
the types of its inputs (``shape``) once those types are static, or, for ``shape``, once
the part of the shape it returns is. The node's output values
turn into constants in place, keeping their names, so graph outputs keep theirs too.
"""

from __future__ import annotations

import numpy as np

from compiler.ir.fold import evaluate, foldable_inputs
from compiler.ir.graph import Graph, Node
from compiler.ir.ops import get_op

from .manager import function_pass
from .rewrite import make_constant


def _static_shape_slice(node: Node) -> bool:
    """``shape`` of a value with dim names folds when the sliced part is all sizes."""
    dims = node.inputs[0].shape[node.attrs["start"] : node.attrs["end"]]
    if not all(isinstance(d, int) for d in dims):
        return False
    make_constant(node.outputs[0], np.array(dims, dtype=np.int64))
    return True


def fold_node(node: Node) -> bool:
    """Evaluate ``node`` when its inputs are known; True when its outputs became constants."""
    opdef = get_op(node.op)
    if node.op == "shape" and node.inputs[0] is not None and not node.inputs[0].type.is_static:
        return _static_shape_slice(node)
    arrays = foldable_inputs(opdef, node.inputs, node.attrs)
    if arrays is None:
        return False
    results = evaluate(opdef, arrays, node.attrs, [v.type for v in node.outputs])
    if results is None:  # too large to keep as a constant
        return False
    for value, array in zip(node.outputs, results, strict=True):
        make_constant(value, array)
    return True


@function_pass("constant_folding", "evaluate nodes whose inputs are constants (or static shapes)")
def constant_folding(graph: Graph) -> bool:
    kept = [node for node in graph.nodes if not fold_node(node)]
    changed = len(kept) != len(graph.nodes)
    graph.nodes = kept
    return changed
