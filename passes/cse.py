"""Common-subexpression elimination.

Two nodes with the same op, the same inputs and the same attributes compute the same
values (core ops are pure, except unseeded random ones, which are kept), so the later one
is dropped and its readers read the earlier
one. Small constants with identical dtype, shape and bytes are merged first, so that nodes
reading equal-but-distinct constants (``add(x, 1)`` twice) merge too.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from compiler.ir.graph import Block, Graph, Value
from compiler.ir.ops import get_op

from .manager import block_pass
from .rewrite import substitute

SMALL_CONSTANT = 1024
"""Constants up to this many elements are compared by content; larger ones by identity
(hashing every weight would cost time for nothing: equal large weights are rare)."""


def _freeze(v: Any) -> Any:
    """A hashable, exact form of an attribute value (1, 1.0, True and -0.0 stay distinct)."""
    if isinstance(v, list | tuple):
        return ("seq", tuple(_freeze(x) for x in v))
    if isinstance(v, dict):
        return ("map", tuple(sorted((k, _freeze(x)) for k, x in v.items())))
    if isinstance(v, float):
        return ("float", v.hex())
    return (type(v).__name__, v)


def _constant_key(v: Value) -> tuple | None:
    arr = v.const
    if arr is None or arr.size > SMALL_CONSTANT:
        return None
    return (v.type.dtype, v.type.shape, np.ascontiguousarray(arr).tobytes())


@block_pass("cse", "merge nodes with equal op, inputs and attributes; merge equal small constants")
def cse(graph: Graph, block: Block) -> bool:
    mapping: dict[Value, Value] = {}
    # Graph outputs are merged too: an output is then read under two names.
    consts: dict[tuple, Value] = {}
    for node in block.nodes:
        for v in node.inputs:
            if v is None or v in mapping:
                continue
            key = _constant_key(v)
            if key is not None:
                first = consts.setdefault(key, v)
                if first is not v:
                    mapping[v] = first

    seen: dict[tuple, list[Value]] = {}
    kept = []
    for node in block.nodes:
        if not get_op(node.op).is_pure(node.attrs):
            kept.append(node)
            continue
        inputs = [None if v is None else mapping.get(v, v) for v in node.inputs]
        key = (
            id(node) if node.regions else node.op,  # nodes owning regions stay apart
            node.op,
            tuple(None if v is None else id(v) for v in inputs),
            _freeze(node.attrs),
            tuple(v.type for v in node.outputs),
        )
        first = seen.get(key)
        if first is None:
            seen[key] = node.outputs
            kept.append(node)
        else:
            mapping.update(zip(node.outputs, first, strict=True))
    if not mapping:
        return False
    block.nodes = kept
    substitute(block, mapping)
    return True
