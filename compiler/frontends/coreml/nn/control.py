"""NeuralNetwork control flow through IR regions: branch, loop (loopBreak, loopContinue), copy.

A nested network (a branch's ``ifBranch``/``elseBranch``, a loop's ``conditionNetwork`` and
``bodyNetwork``) reads and writes blobs by name in the enclosing network's scope: what it
writes stays visible after the layer. The IR's regions are isolated instead, so each nested
network is converted into a region (``CapturingBuilder`` turns its reads of outer values into
operands), and the blobs it writes that are read later (by the layers after it, the
enclosing networks or the model's outputs; for a loop also by its next iteration) become
the ``if`` results or the ``loop``'s carried values. A branch whose condition is known at
conversion time converts the taken network in place.

A condition blob is true when its first value's magnitude exceeds 1e-6 (the proto's
"absolute value greater than 1e-6"; a loop's ``conditionVar`` "close to 0 is false").
``loopBreak`` and ``loopContinue`` are refused (registry): the structured ``loop`` has no
early exit from within its body.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from compiler.errors import ConversionError
from compiler.ir.builder import Builder, CapturingBuilder, Emitter
from compiler.ir.graph import Region, Value
from compiler.ir.inline import known_scalar
from compiler.ir.ops.control import BOOL, INDEX

from .registry import NnContext, layer

TRUTH_THRESHOLD = 1e-6
"""A condition holds when the magnitude of its first value exceeds this."""


# -- which blobs a network reads and writes -------------------------------------------------


def _networks(lyr: Any) -> list[Any]:
    """The networks a control-flow layer holds, in the order they run."""
    kind = lyr.WhichOneof("layer")
    if kind == "branch":
        return [lyr.branch.ifBranch, lyr.branch.elseBranch]
    if kind == "loop":
        return [lyr.loop.conditionNetwork, lyr.loop.bodyNetwork]
    return []


def _exposed(layers: Iterable[Any], after: Iterable[str] = ()) -> set[str]:
    """The blobs ``layers`` read before writing them, and those of ``after`` (read after the
    layers) that the layers do not surely overwrite (a nested network's writes may not
    happen, so they overwrite nothing)."""
    read: set[str] = set()
    written: set[str] = set()
    for lyr in layers:
        nets = _networks(lyr)
        reads = set(lyr.input).union(*(_exposed(net.layers) for net in nets))
        read |= reads - written
        if not nets:
            written.update(lyr.output)
    return read | (set(after) - written)


def _writes(layers: Iterable[Any]) -> list[str]:
    """Every blob ``layers`` (nested networks included) may write, in order."""
    names: dict[str, None] = {}
    for lyr in layers:
        names.update(dict.fromkeys(lyr.output))
        for net in _networks(lyr):
            names.update(dict.fromkeys(_writes(net.layers)))
    return list(names)


def _scope(ctx: NnContext) -> tuple[dict[str, Value], set[str]]:
    """The blobs so far and those read after this layer."""
    env, layers, start, after = ctx.network.scope
    return env, _exposed(layers[start:], after)


# -- helpers --------------------------------------------------------------------------------


def _first(b: Emitter, v: Value) -> Value:
    """The first value of ``v`` as a scalar."""
    rank = len(v.shape)
    if rank:
        v = b.emit("slice", v, axes=list(range(rank)), starts=[0] * rank, ends=[1] * rank)
    return b.emit("reshape", v, shape=[])


def _truth(b: Emitter, v: Value) -> Value:
    """A condition blob as a bool scalar: ``|first value| > 1e-6``."""
    first = _first(b, v)
    if first.dtype not in ("float16", "float32", "float64"):
        first = b.emit("cast", first, to="float32")
    threshold = b.const(np.array(TRUTH_THRESHOLD, first.dtype))
    return b.emit("greater", b.emit("abs", first), threshold)


def _convert(
    ctx: NnContext, net: Any, what: str, env: dict[str, Value], b: Builder, after: set[str]
) -> None:
    """Convert the nested network ``net`` into ``b``'s block; its errors name this layer."""
    try:
        ctx.network.convert_layers(net.layers, env, b, frozenset(after))
    except ConversionError as e:
        raise ctx.error(f"in its {what}: {e}") from e


def _region(ctx: NnContext, arg_types: list, arg_names: list[str]) -> CapturingBuilder:
    graph = ctx.builder.graph
    return CapturingBuilder(graph, graph.region(arg_types, arg_names), ctx.builder.fold)


# -- copy -----------------------------------------------------------------------------------


@layer("copy")
def copy(ctx: NnContext) -> Value:
    """The input under the output's name (which may overwrite an existing blob)."""
    return ctx.x(0)


# -- branch ---------------------------------------------------------------------------------


@layer("branch")
def branch(ctx: NnContext) -> list[Value]:
    p = ctx.params
    env, later = _scope(ctx)
    cond = _truth(ctx, ctx.x(0))
    known = known_scalar(cond)
    if known is not None:
        net, what = (p.ifBranch, "ifBranch") if bool(known) else (p.elseBranch, "elseBranch")
        _convert(ctx, net, what, env, ctx.builder, later)
        return []
    arms = []
    for net, what in ((p.ifBranch, "ifBranch"), (p.elseBranch, "elseBranch")):
        b = _region(ctx, [], [])
        scope = dict(env)
        _convert(ctx, net, what, scope, b, later)
        arms.append((b, scope))
    names = [
        n
        for n in dict.fromkeys([*arms[0][1], *arms[1][1]])
        if n in later and any(scope.get(n) is not env.get(n) for _, scope in arms)
    ]
    for n in names:
        values = [scope.get(n) for _, scope in arms]
        if values[0] is None or values[1] is None:
            raise ctx.error(
                f"blob {n!r} is written by only one of the branches, did not exist before and "
                "is read after the branch"
            )
        if values[0].type != values[1].type:
            raise ctx.error(
                f"blob {n!r} is {values[0].type} after ifBranch and {values[1].type} after "
                "elseBranch; the IR types values statically"
            )
    for b, scope in arms:
        b.block.outputs = [b.read(scope[n]) for n in names]
    captures = list(dict.fromkeys([*arms[0][0].captures, *arms[1][0].captures]))
    regions = [_widen(ctx, b, captures) for b, _ in arms]
    outs = ctx.builder.op("if", [cond, *captures], {}, node_name=ctx.name, regions=regions)
    env.update(zip(names, outs))
    return []


def _widen(ctx: NnContext, b: CapturingBuilder, captures: list[Value]) -> Region:
    """``b``'s region taking all of ``captures`` (a superset of its own) as arguments."""
    region = b.block
    assert isinstance(region, Region)
    mine = dict(zip(map(id, b.captures), region.inputs))
    graph = ctx.builder.graph
    region.inputs = [
        mine[id(v)] if id(v) in mine else graph.region([v.type], ["unused"]).inputs[0]
        for v in captures
    ]
    return region


# -- loop -----------------------------------------------------------------------------------


@layer("loop")
def loop(ctx: NnContext) -> list[Value]:
    """``cond = conditionNetwork(); while cond and i < max: body(); cond =
    conditionNetwork()``, without a condition network ``for i < max: body()``. The blobs the
    networks write and that are read in the loop or after it are carried."""
    p = ctx.params
    env, later = _scope(ctx)
    cond_net, body_net = p.conditionNetwork, p.bodyNetwork
    has_cond = bool(p.conditionVar)
    if has_cond != bool(cond_net.layers):
        raise ctx.error("conditionVar and conditionNetwork must be given together")
    inside = _exposed(body_net.layers) | _exposed(cond_net.layers)
    live = inside | later  # read after the body: next iteration, condition, after the loop
    trip = _max_trip(ctx, has_cond)
    go = None
    if has_cond:
        _convert(ctx, cond_net, "conditionNetwork", env, ctx.builder, live)
        go = _truth(ctx, _condition(ctx, env, p.conditionVar))
    if _known_false(trip, go):
        return []

    carried = [n for n in _writes([*body_net.layers, *cond_net.layers]) if n in live]
    missing = [n for n in carried if n not in env]
    if missing:
        raise ctx.error(
            f"blob {missing[0]!r} is first written inside the loop and read in a later "
            "iteration or after the loop; nnxc needs it to exist before the loop"
        )
    b = _region(ctx, [INDEX, BOOL, *(env[n].type for n in carried)], ["i", "go"])
    _, go_arg, *args = b.block.inputs
    scope = dict(env)
    scope.update(zip(carried, args))
    _convert(ctx, body_net, "bodyNetwork", scope, b, live)
    new_go = go_arg
    if has_cond:
        _convert(ctx, cond_net, "conditionNetwork", scope, b, live)
        new_go = _truth(b, _condition(ctx, scope, p.conditionVar))
    for n in carried:
        if scope[n].type != env[n].type:
            raise ctx.error(
                f"blob {n!r} enters the loop as {env[n].type} and leaves an iteration as "
                f"{scope[n].type}; a carried blob must keep its type"
            )
    b.block.outputs = [new_go, *(b.read(scope[n]) for n in carried)]
    outs = ctx.builder.op(
        "loop",
        [trip, go, *(env[n] for n in carried), *b.captures],
        {"num_carried": len(carried)},
        node_name=ctx.name,
        regions=[b.block],  # type: ignore[list-item]
    )
    env.update(zip(carried, outs))
    return []


def _max_trip(ctx: NnContext, has_cond: bool) -> Value | None:
    """The iteration limit as an int64 scalar: the input blob's first value when there is
    one, else ``maxLoopIterations`` (no limit when 0 with a condition network)."""
    if ctx.inputs:
        return ctx.emit("cast", _first(ctx, ctx.x(0)), to="int64")
    count = int(ctx.params.maxLoopIterations)
    if count == 0 and has_cond:
        return None
    return ctx.const(np.array(count, np.int64))


def _condition(ctx: NnContext, env: dict[str, Value], name: str) -> Value:
    if name not in env:
        raise ctx.error(f"the conditionNetwork does not compute conditionVar {name!r}")
    return env[name]


def _known_false(trip: Value | None, go: Value | None) -> bool:
    """Whether the loop surely runs no iteration."""
    t, g = known_scalar(trip), known_scalar(go)
    return (t is not None and int(t) <= 0) or (g is not None and not bool(g))
