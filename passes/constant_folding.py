"""Constant folding through the ops' reference definitions (``compiler.ir.fold``).

A node whose inputs are all constants becomes constants; so does a node that reads only
the types of its inputs (``shape``) once those types are static, or, for ``shape``, once
the part of the shape it returns is. The node's output values
turn into constants in place, keeping their names, so graph outputs keep theirs too.

Control flow folds too (``compiler.ir.inline``): an ``if`` whose condition is a constant is
replaced by the nodes of the branch it takes, and a ``loop`` with a short known trip count
by that many copies of its body, folding on the way.
"""

from __future__ import annotations

import numpy as np

from compiler.ir.builder import Builder
from compiler.ir.fold import evaluate, foldable_inputs
from compiler.ir.graph import Block, Graph, Node, Value
from compiler.ir.inline import inline_if, unroll_loop
from compiler.ir.ops import get_op

from .manager import block_pass
from .rewrite import make_constant, substitute


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


_CONTROL_FLOW = {"if": inline_if, "loop": unroll_loop}


@block_pass(
    "constant_folding",
    "evaluate nodes whose inputs are constants (or static shapes); inline known ifs, "
    "unroll short known loops",
)
def constant_folding(graph: Graph, block: Block) -> bool:
    kept: list[Node] = []
    mapping: dict[Value, Value] = {}
    changed = False
    for node in block.nodes:
        if node.regions:
            staged = Block()
            replacement = _CONTROL_FLOW[node.op](Builder(graph, block=staged), node)
            if replacement is not None:
                kept.extend(staged.nodes)
                mapping.update(zip(node.outputs, replacement, strict=True))
                changed = True
                continue
        elif fold_node(node):
            changed = True
            continue
        kept.append(node)
    block.nodes = kept
    substitute(block, mapping)
    return changed
