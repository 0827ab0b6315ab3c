"""Copying regions: cloning one with fresh values, and inlining one into a block.

Constant folding inlines an ``if`` whose condition is known and unrolls a short ``loop`` whose
trip count is known; both emit a region's nodes again through a ``Builder`` with the region's
arguments replaced by values of the enclosing block, so that what becomes constant folds on
the way. Regions are isolated, so a region and everything nested in it can be copied without
looking outside it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .builder import Builder
from .graph import Graph, Node, Region, Value
from .types import TensorType

UNROLL_MAX_TRIPS = 16
"""Loops with a known trip count up to this are unrolled by constant folding..."""
UNROLL_MAX_NODES = 2000
"""...as long as the unrolled copies hold at most this many nodes."""


def clone_region(graph: Graph, region: Region) -> Region:
    """A copy of ``region`` with fresh values throughout (nested regions copied too)."""
    copy = graph.region([a.type for a in region.inputs], [a.name for a in region.inputs])
    mapping: dict[int, Value] = {id(a): b for a, b in zip(region.inputs, copy.inputs)}
    for node in region.nodes:
        inputs = [None if v is None else mapping.get(id(v), v) for v in node.inputs]
        new = graph.make_node(
            node.op,
            inputs,
            [v.type for v in node.outputs],
            node.attrs,
            node.name,
            [v.name for v in node.outputs],
            [clone_region(graph, r) for r in node.regions],
        )
        mapping.update((id(a), b) for a, b in zip(node.outputs, new.outputs))
        copy.append(new)
    copy.outputs = [mapping.get(id(v), v) for v in region.outputs]
    return copy


def inline_region(builder: Builder, region: Region, args: Sequence[Value]) -> list[Value]:
    """Emit ``region``'s nodes through ``builder`` reading ``args`` for its arguments; the
    values it yields, in the builder's block (or constants, or ``args`` themselves)."""
    mapping: dict[int, Value] = {id(a): v for a, v in zip(region.inputs, args, strict=True)}
    for node in region.nodes:
        inputs = [None if v is None else mapping.get(id(v), v) for v in node.inputs]
        outs = builder.op(
            node.op,
            inputs,
            node.attrs,
            node_name=node.name,
            regions=[clone_region(builder.graph, r) for r in node.regions],
        )
        mapping.update((id(a), b) for a, b in zip(node.outputs, outs, strict=True))
    return [mapping.get(id(v), v) for v in region.outputs]


def _scalar(v: Value | None) -> np.ndarray | None:
    if v is None or v.const is None or v.const.size != 1:
        return None
    return v.const.reshape(())


def inline_if(builder: Builder, node: Node) -> list[Value] | None:
    """The values replacing an ``if`` node's outputs when its condition is a constant."""
    cond = _scalar(node.inputs[0])
    if cond is None:
        return None
    region = node.regions[0 if bool(cond) else 1]
    return inline_region(builder, region, [v for v in node.inputs[1:] if v is not None])


def unroll_loop(builder: Builder, node: Node) -> list[Value] | None:
    """The values replacing a ``loop`` node's outputs when it can be unrolled: a known trip
    count within ``UNROLL_MAX_TRIPS`` (and the node budget), a condition that stays known,
    and an iteration count that matches the stacked outputs' declared size. None leaves the
    loop as it is (whatever was emitted meanwhile is dead and goes with dce)."""
    trip = _scalar(node.inputs[0])
    if trip is None or not 0 <= int(trip) <= UNROLL_MAX_TRIPS:
        return None
    (body,) = node.regions
    if int(trip) * max(1, len(body.nodes)) > UNROLL_MAX_NODES:
        return None
    has_cond = node.inputs[1] is not None
    go = True
    if has_cond:
        c = _scalar(node.inputs[1])
        if c is None:
            return None
        go = bool(c)
    k = node.attrs["num_carried"]
    operands = list(node.inputs[2:])
    carried, captures = operands[:k], operands[k:]
    scans: list[list[Value]] = [[] for _ in node.outputs[k:]]
    steps = 0
    while steps < int(trip) and go:
        index = builder.const(np.array(steps, np.int64))
        flag = builder.const(np.array(go))
        out = inline_region(builder, body, [index, flag, *carried, *captures])
        if has_cond:
            c = _scalar(out[0])
            if c is None:
                return None
            go = bool(c)
        carried = out[1 : 1 + k]
        for acc, y in zip(scans, out[1 + k :]):
            acc.append(y)
        steps += 1
    if scans and node.attrs["iterations"] != steps:
        return None
    if steps == 0 and any(not v.type.is_static for v in node.outputs[k:]):
        return None
    stacked = [_stack(builder, acc, out.type) for acc, out in zip(scans, node.outputs[k:])]
    return [*carried, *stacked]


def _stack(builder: Builder, values: list[Value], stacked: object) -> Value:
    assert isinstance(stacked, TensorType)
    if not values:
        return builder.const(np.zeros(stacked.shape, stacked.np_dtype))
    rows = [builder.emit("reshape", v, shape=[1, *v.type.shape]) for v in values]
    return rows[0] if len(rows) == 1 else builder.emit("concat", *rows, axis=0)
