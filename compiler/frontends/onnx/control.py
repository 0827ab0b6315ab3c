"""Converters of ONNX control flow: If, Loop, Scan, onto the core ``if`` and ``loop``.

A subgraph reads outer values by name; ``ctx.subgraphs.region`` turns those reads into the
captures the IR's isolated regions need. When the condition of an ``If`` or the trip count
of a ``Loop`` is known at conversion time, the subgraph is converted in place instead
(a loop once per iteration), so that values it computes from the iteration number, such
as sequence positions, are constants too. Scan becomes a ``loop`` whose body slices the
scanned inputs at the iteration number.
"""

from __future__ import annotations

import re

import numpy as np
import onnx

from compiler.errors import ConversionError, NeedsValueError
from compiler.ir.builder import Builder
from compiler.ir.graph import Value
from compiler.ir.inline import (
    UNROLL_MAX_NODES,
    UNROLL_MAX_TRIPS,
    known_scalar,
    stack_rows,
    unroll,
)
from compiler.ir.ops.control import BOOL, INDEX

from .registry import NodeContext, SubgraphConverter, converter


def _subgraphs(ctx: NodeContext) -> SubgraphConverter:
    assert ctx.subgraphs is not None  # the importer always provides them
    return ctx.subgraphs


def _in_subgraph(ctx: NodeContext, e: ConversionError) -> ConversionError:
    """An error met converting a subgraph, named after this node too (of the same kind: a
    value needed at compile time stays a ``NeedsValueError``)."""
    message = f"{ctx.node.op_type} node {ctx.name!r}: in its subgraph: {e}"
    if isinstance(e, NeedsValueError):
        return NeedsValueError(message, e.value_name)
    return ConversionError(message)


@converter("If", since=1)
def if_(ctx: NodeContext):
    then_g, else_g = ctx.attr("then_branch"), ctx.attr("else_branch")
    known = known_scalar(ctx.input(0))
    if known is not None:
        return _subgraphs(ctx).inline(then_g if bool(known) else else_g, [])
    try:
        then, then_caps = _subgraphs(ctx).region(then_g, [])
        other, else_caps = _subgraphs(ctx).region(else_g, [])
    except ConversionError as e:
        raise _in_subgraph(ctx, e) from e
    then_types = [v.type for v in then.outputs]
    else_types = [v.type for v in other.outputs]
    if then_types != else_types:
        # The IR types values statically: which branch runs must be known to type the result.
        raise NeedsValueError(
            f"If node {ctx.name!r}: the branches yield different types (then "
            f"{', '.join(map(str, then_types))}; else {', '.join(map(str, else_types))}), so the "
            "condition must be known at compile time",
            ctx.input(0).name,
        )
    # One capture list for both regions: each region takes all captures as arguments.
    captures = list(dict.fromkeys(then_caps + else_caps))
    graph = ctx.builder.graph
    regions = []
    for region, caps in ((then, then_caps), (other, else_caps)):
        regions.append(_widen(graph, region, caps, captures))
    return ctx.builder.op("if", [ctx.input(0), *captures], {}, node_name=ctx.name, regions=regions)


def _widen(graph, region, caps: list[Value], captures: list[Value]):
    """``region`` taking ``captures`` (a superset of its own ``caps``) as arguments."""
    if caps == captures:
        return region
    by_value = dict(zip(map(id, caps), region.inputs))
    args = []
    for v in captures:
        arg = by_value.get(id(v))
        args.append(arg if arg is not None else graph.region([v.type], ["unused"]).inputs[0])
    region.inputs = args
    return region


def _iteration_dim(ctx: NodeContext) -> str:
    """The dim name of a data-dependent iteration count (stacked scan outputs)."""
    base = re.sub(r"\W", "_", ctx.name) or "loop"
    return f"{base if base[0].isalpha() else 'n_' + base}_iterations"


@converter("Loop", since=1)
def loop(ctx: NodeContext):
    body = ctx.attr("body")
    max_trip, cond = ctx.input(0), ctx.input(1)
    carried = [ctx.input(i) for i in range(2, len(ctx.inputs))]
    if any(v is None for v in carried):
        raise ctx.error("a loop-carried initial value is missing")
    n_scan = len(body.output) - 1 - len(carried)
    if n_scan < 0:
        raise ctx.error(
            f"the body yields {len(body.output)} values; it needs the condition and "
            f"{len(carried)} carried value(s)"
        )
    unrolled = _unroll(ctx, body, carried, n_scan)
    if unrolled is not None:
        return unrolled
    trip = known_scalar(max_trip)
    iterations = int(trip) if trip is not None and cond is None else _iteration_dim(ctx)
    leading = [INDEX, BOOL, *(v.type for v in carried)]
    try:
        region, captures = _subgraphs(ctx).region(body, leading)
    except ConversionError as e:
        raise _in_subgraph(ctx, e) from e
    return ctx.builder.op(
        "loop",
        [max_trip, cond, *carried, *captures],
        {"num_carried": len(carried), "iterations": iterations},
        node_name=ctx.name,
        regions=[region],
    )


def _unroll(
    ctx: NodeContext, body: onnx.GraphProto, carried: list, n_scan: int
) -> list[Value] | None:
    """The loop's results converted iteration by iteration, when its trip count is a known
    small constant and its condition stays known; None to build a real loop instead."""
    trip = known_scalar(ctx.input(0))
    if trip is None or not 0 <= int(trip) <= UNROLL_MAX_TRIPS:
        return None
    if int(trip) * max(1, len(body.node)) > UNROLL_MAX_NODES:
        return None
    cond = None
    if ctx.input(1) is not None:
        cond = known_scalar(ctx.input(1))
        if cond is None:
            return None
    subgraphs = _subgraphs(ctx)
    result = unroll(
        ctx,
        int(trip),
        None if cond is None else bool(cond),
        carried,
        n_scan,
        lambda i, go, state: subgraphs.inline(body, [i, go, *state]),
    )
    if result is None:
        return None  # the condition depends on data: a real loop
    carried, scans, _ = result
    for acc, out in zip(scans, body.output[1 + len(carried) :]):
        if not acc:
            raise ctx.error(f"scan output {out.name!r} of a loop that runs no iteration")
    return [*carried, *(stack_rows(ctx, acc) for acc in scans)]


@converter("Scan", since=9)
def scan(ctx: NodeContext):
    body = ctx.attr("body")
    n_in = ctx.attr("num_scan_inputs")
    if any(v is None for v in ctx.inputs):
        raise ctx.error("an input is missing")
    states = ctx.inputs[: len(ctx.inputs) - n_in]
    xs = ctx.inputs[len(ctx.inputs) - n_in :]
    in_axes = _axes(ctx, "scan_input_axes", n_in, [v.type.rank for v in xs])
    in_dirs = ctx.attr("scan_input_directions") or [0] * n_in
    finals, stacked, length = _scan(ctx, body, states, xs, in_axes, in_dirs)
    n_out = len(stacked)
    out_axes = _axes(ctx, "scan_output_axes", n_out, [v.type.rank for v in stacked])
    out_dirs = ctx.attr("scan_output_directions") or [0] * n_out
    outs = []
    for y, axis, direction in zip(stacked, out_axes, out_dirs):
        if direction:
            y = ctx.emit("gather", y, ctx.const(np.arange(length - 1, -1, -1)), axis=0)
        if axis != 0:
            perm = list(range(1, y.type.rank))
            perm.insert(axis, 0)
            y = ctx.emit("transpose", y, perm=perm)
        outs.append(y)
    return [*finals, *outs]


def _scan(
    ctx: NodeContext,
    body: onnx.GraphProto,
    states: list[Value],
    xs: list[Value],
    in_axes: list[int],
    in_dirs: list[int],
) -> tuple[list[Value], list[Value], int]:
    """A ``loop`` over the scanned axis: (final states, outputs stacked on axis 0, length)."""
    lengths = {v.type.shape[a] for v, a in zip(xs, in_axes)}
    if len(lengths) != 1:
        raise ctx.error(f"the scanned inputs disagree on the sequence length: {lengths}")
    (length,) = lengths
    if not isinstance(length, int):
        raise ctx.error(f"the sequence length {length!r} must be known at compile time")

    def prologue(b: Builder, args: list[Value]) -> list[Value]:
        """Region arguments (i, cond, states..., scanned...) -> the body's inputs."""
        i = args[0]
        reverse = b.emit("sub", b.const(np.array(length - 1, np.int64)), i)
        slices = []
        for x, axis, direction in zip(args[2 + len(states) :], in_axes, in_dirs):
            slices.append(b.emit("gather", x, reverse if direction else i, axis=axis))
        return [*args[2 : 2 + len(states)], *slices]

    leading = [INDEX, BOOL, *(v.type for v in states), *(v.type for v in xs)]
    try:
        region, captures = _subgraphs(ctx).region(body, leading, prologue)
    except ConversionError as e:
        raise _in_subgraph(ctx, e) from e
    region.outputs = [region.inputs[1], *region.outputs]  # the condition: unchanged
    results = ctx.builder.op(
        "loop",
        [ctx.const(np.array(length, np.int64)), None, *states, *xs, *captures],
        {"num_carried": len(states), "iterations": length},
        node_name=ctx.name,
        regions=[region],
    )
    return results[: len(states)], results[len(states) :], length


def _axes(ctx: NodeContext, name: str, n: int, ranks: list[int]) -> list[int]:
    axes = ctx.attr(name) or [0] * n
    if len(axes) != n:
        raise ctx.error(f"{name} has {len(axes)} entries for {n} values")
    out = []
    for a, r in zip(axes, ranks):
        if not -r <= a < r:
            raise ctx.error(f"{name}: axis {a} is out of range for rank {r}")
        out.append(a + r if a < 0 else a)
    return out


@converter("Scan", since=8)
def scan_8(ctx: NodeContext):
    """Opset 8: a leading batch axis (scanned along axis 1) and optional sequence_lens. Each
    batch entry is its own scan; the results are stacked back along the batch axis."""
    body = ctx.attr("body")
    n_in = ctx.attr("num_scan_inputs")
    operands = ctx.inputs[1:]
    if any(v is None for v in operands):
        raise ctx.error("an input is missing")
    states, xs = operands[: len(operands) - n_in], operands[len(operands) - n_in :]
    batch = {v.type.shape[0] for v in operands}
    if len(batch) != 1 or not isinstance(next(iter(batch)), int):
        raise ctx.error(f"the inputs' batch sizes must agree and be known, got {batch}")
    (batch_size,) = batch
    steps = xs[0].type.shape[1] if xs else 0
    if ctx.input(0) is not None:
        lens = ctx.require_value(0, "sequence_lens").reshape(-1)
        if np.any(lens != steps):
            raise ctx.error(
                f"sequence_lens {lens.tolist()} shorter than the scanned axis ({steps}) are "
                "not supported"
            )
    dirs = ctx.attr("directions") or [0] * n_in
    per_batch: list[list[Value]] = []
    for b in range(batch_size):
        index = ctx.const(np.array(b, np.int64))
        pick = [ctx.emit("gather", v, index, axis=0) for v in operands]
        finals, stacked, _ = _scan(
            ctx, body, pick[: len(states)], pick[len(states) :], [0] * n_in, dirs
        )
        per_batch.append([*finals, *stacked])
    return [stack_rows(ctx, list(rows)) for rows in zip(*per_batch)]
