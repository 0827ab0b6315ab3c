"""Copying regions: cloning one with fresh values, and inlining one into a block.

Constant folding inlines an ``if`` whose condition is known and unrolls a short ``loop`` whose
trip count is known; both emit a region's nodes again through a ``Builder`` with the region's
arguments replaced by values of the enclosing block, so that what becomes constant folds on
the way. Regions are isolated, so a region and everything nested in it can be copied without
looking outside it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .builder import Builder, Emitter
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


def known_scalar(v: Value | None) -> np.ndarray | None:
    """The value of a one-element constant (a condition, a trip count), else None."""
    if v is None or v.const is None or v.const.size != 1:
        return None
    return v.const.reshape(())


def stack_rows(b: Emitter, values: Sequence[Value]) -> Value:
    """``values`` (at least one, all of one type) stacked on a new leading axis."""
    rows = [b.emit("reshape", v, shape=[1, *v.type.shape]) for v in values]
    return rows[0] if len(rows) == 1 else b.emit("concat", *rows, axis=0)


Body = Callable[[Value, Value, list[Value]], list[Value]]
"""(iteration index, condition, carried values) -> (condition, carried..., scans...)."""


def unroll(
    b: Emitter, trip: int, cond: bool | None, carried: list[Value], n_scans: int, body: Body
) -> tuple[list[Value], list[list[Value]], int] | None:
    """Run ``body`` up to ``trip`` times while the condition holds (``cond`` None: there is
    none, the body's is ignored): the final carried values, each scan's values per
    iteration, and the iteration count; None when the condition stops being a constant."""
    go = True if cond is None else cond
    k = len(carried)
    scans: list[list[Value]] = [[] for _ in range(n_scans)]
    steps = 0
    while steps < trip and go:
        out = body(b.const(np.array(steps, np.int64)), b.const(np.array(go)), carried)
        if cond is not None:
            flag = known_scalar(out[0])
            if flag is None:
                return None
            go = bool(flag)
        carried = out[1 : 1 + k]
        for acc, y in zip(scans, out[1 + k :], strict=True):
            acc.append(y)
        steps += 1
    return carried, scans, steps


def inline_if(builder: Builder, node: Node) -> list[Value] | None:
    """The values replacing an ``if`` node's outputs when its condition is a constant."""
    cond = known_scalar(node.inputs[0])
    if cond is None:
        return None
    region = node.regions[0 if bool(cond) else 1]
    return inline_region(builder, region, [v for v in node.inputs[1:] if v is not None])


def unroll_loop(builder: Builder, node: Node) -> list[Value] | None:
    """The values replacing a ``loop`` node's outputs when it can be unrolled: a known trip
    count within ``UNROLL_MAX_TRIPS`` (and the node budget), a condition that stays known,
    and an iteration count that matches the stacked outputs' declared size. None leaves the
    loop as it is (whatever was emitted meanwhile is dead and goes with dce)."""
    trip = known_scalar(node.inputs[0])
    if trip is None or not 0 <= int(trip) <= UNROLL_MAX_TRIPS:
        return None
    (body,) = node.regions
    if int(trip) * max(1, len(body.nodes)) > UNROLL_MAX_NODES:
        return None
    cond = None
    if node.inputs[1] is not None:
        cond = known_scalar(node.inputs[1])
        if cond is None:
            return None
    k = node.attrs["num_carried"]
    carried, captures = list(node.inputs[2 : 2 + k]), list(node.inputs[2 + k :])
    result = unroll(
        builder,
        int(trip),
        None if cond is None else bool(cond),
        carried,
        len(node.outputs) - k,
        lambda i, go, state: inline_region(builder, body, [i, go, *state, *captures]),
    )
    if result is None:
        return None
    carried, scans, steps = result
    if scans and node.attrs["iterations"] != steps:
        return None
    stacked = []
    for acc, out in zip(scans, node.outputs[k:]):
        t = out.type
        assert isinstance(t, TensorType)
        if not acc and not t.is_static:
            return None
        stacked.append(
            stack_rows(builder, acc) if acc else builder.const(np.zeros(t.shape, t.np_dtype))
        )
    return [*carried, *stacked]
