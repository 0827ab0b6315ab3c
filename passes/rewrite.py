"""Helpers shared by the passes: replacing values safely, users, dead-node removal."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from compiler.ir.graph import Block, Node, Value
from compiler.ir.ops import get_op


class RewriteError(AssertionError):
    """A pass tried a replacement that would change the graph's meaning (a bug in the pass)."""


def check_replaceable(old: Value, new: Value) -> None:
    """A value may stand in for another only with exactly the same type."""
    if old.type != new.type:
        raise RewriteError(
            f"cannot replace %{old.name}: {old.type} by %{new.name}: {new.type} (types differ)"
        )


def rewire(node: Node, inputs: Sequence[Value | None], attrs: dict[str, Any] | None = None) -> None:
    """Give ``node`` new inputs (and attributes), keeping its output types.

    The attributes are normalized again against the new input types (some ops store facts
    derived from them, such as a reshape's ``name_axes``) and the outputs re-inferred; a
    rewrite that would change an output type is a bug and raises.
    """
    opdef = get_op(node.op)
    in_types = [None if v is None else v.type for v in inputs]
    new_attrs = opdef.prepare(in_types, dict(node.attrs if attrs is None else attrs))
    types = opdef.infer_types(in_types, new_attrs)
    old = [v.type for v in node.outputs]
    if types != old:
        raise RewriteError(
            f"rewiring {node.op} node {node.name or node.outputs[0].name!r} changes its types "
            f"from {[str(t) for t in old]} to {[str(t) for t in types]}"
        )
    node.inputs = list(inputs)
    node.attrs = new_attrs


def substitute(graph: Block, mapping: Mapping[Value, Value]) -> None:
    """Replace values in node inputs and block outputs in one sweep (one block: regions are
    isolated, so nothing outside the block reads its values).

    Chains (a -> b, b -> c) are followed. Graph outputs keep their user-visible names
    (``graph.output_names`` is untouched), so an output replaced by a graph input or a
    constant still comes out under its own name.
    """
    if not mapping:
        return
    for old, new in mapping.items():
        check_replaceable(old, new)

    def resolve(v: Value | None) -> Value | None:
        seen = 0
        while v is not None and v in mapping:
            v = mapping[v]
            seen += 1
            if seen > len(mapping):
                raise RewriteError("cyclic value substitution")
        return v

    for node in graph.nodes:
        if any(v in mapping for v in node.inputs if v is not None):
            node.inputs = [resolve(v) for v in node.inputs]
    graph.outputs = [resolve(v) for v in graph.outputs]  # type: ignore[misc]


def use_counts(graph: Block) -> dict[Value, int]:
    """How many times each value is read in a block, counting each output as one read."""
    counts: dict[Value, int] = {}
    for node in graph.nodes:
        for v in node.inputs:
            if v is not None:
                counts[v] = counts.get(v, 0) + 1
    for v in graph.outputs:
        counts[v] = counts.get(v, 0) + 1
    return counts


def remove_dead_nodes(graph: Block) -> bool:
    """Drop nodes none of whose outputs is read (transitively); True when any was dropped."""
    live: set[Value] = set(graph.outputs)
    keep: list[Node] = []
    for node in reversed(graph.nodes):
        if any(v in live for v in node.outputs):
            keep.append(node)
            live.update(v for v in node.inputs if v is not None)
    if len(keep) == len(graph.nodes):
        return False
    keep.reverse()
    graph.nodes = keep
    return True


def make_constant(value: Value, array: np.ndarray) -> None:
    """Turn a node output into a constant in place: it keeps its name, type and readers."""
    array = np.asarray(array)
    if tuple(array.shape) != value.type.shape or array.dtype != value.type.np_dtype:
        raise RewriteError(
            f"constant {array.dtype}{list(array.shape)} does not match %{value.name}: {value.type}"
        )
    value.const = array
    value.producer = None


def is_constant_all(value: Value | None, scalar: float) -> bool:
    """True when ``value`` is a constant whose every element equals ``scalar``."""
    if value is None or value.const is None:
        return False
    arr = value.const
    if arr.size == 0 or arr.size > 1 << 16:
        return False
    return bool(np.all(arr == scalar))
