"""Converters of ONNX indexing ops: Gather*, Scatter*, Trilu, OneHot, and the ops whose
output shape depends on data (Compress, NonZero, Unique, ReverseSequence's indices), which
convert only when that data is known at compile time."""

from __future__ import annotations

import numpy as np

from .registry import NodeContext, converter


def _static_shape(ctx: NodeContext, i: int) -> tuple[int, ...]:
    t = ctx.input(i).type
    if not t.is_static:
        raise ctx.error(f"input shape {t} must be static (bind dims with --input-shape)")
    return tuple(int(d) for d in t.shape)


# -- gathers -------------------------------------------------------------------------------
@converter("Gather", since=1)
def gather(ctx: NodeContext):
    return ctx.emit("gather", ctx.input(0), ctx.input(1), axis=ctx.attr("axis", 0))


@converter("GatherElements", since=11)
def gather_elements(ctx: NodeContext):
    return ctx.emit("gather_elements", ctx.input(0), ctx.input(1), axis=ctx.attr("axis", 0))


@converter("GatherND", since=11)
def gather_nd(ctx: NodeContext):
    b = ctx.attr("batch_dims", 0)
    return ctx.emit("gather_nd", ctx.input(0), ctx.input(1), batch_dims=b)


# -- scatters ------------------------------------------------------------------------------
@converter("Scatter", since=9)
@converter("ScatterElements", since=11)
def scatter_elements(ctx: NodeContext):
    data, indices, updates = ctx.input(0), ctx.input(1), ctx.input(2)
    reduction = ctx.attr("reduction", "none")
    return ctx.emit(
        "scatter_elements", data, indices, updates, axis=ctx.attr("axis", 0), reduction=reduction
    )


@converter("ScatterND", since=11)
def scatter_nd(ctx: NodeContext):
    reduction = ctx.attr("reduction", "none")
    return ctx.emit("scatter_nd", ctx.input(0), ctx.input(1), ctx.input(2), reduction=reduction)


# -- trilu, one-hot ------------------------------------------------------------------------
@converter("Trilu", since=14)
def trilu(ctx: NodeContext):
    k = 0 if ctx.input(1) is None else int(ctx.require_value(1, "k").reshape(-1)[0])
    return ctx.emit("trilu", ctx.input(0), upper=bool(ctx.attr("upper", 1)), k=k)


@converter("OneHot", since=9)
def one_hot(ctx: NodeContext):
    depth = ctx.require_value(1, "depth")
    if depth.size != 1:
        raise ctx.error(f"depth must hold one value, got shape {list(depth.shape)}")
    depth = int(depth.reshape(-1)[0])  # ONNX casts a float depth to int64
    values = ctx.input(2)
    if values.type.shape != (2,):
        raise ctx.error(f"values must be [off_value, on_value], got {values.type}")
    return ctx.emit("one_hot", ctx.input(0), values, depth=depth, axis=ctx.attr("axis", -1))


# -- data-dependent output shapes ----------------------------------------------------------
@converter("Compress", since=9)
def compress(ctx: NodeContext):
    x = ctx.input(0)
    cond = ctx.require_value(1, "condition", "its output size is the number of true values")
    cond = cond.reshape(-1).astype(bool)
    axis = ctx.attr("axis")
    if axis is None:  # over the flattened input: pick whole index tuples with gather_nd
        shape = _static_shape(ctx, 0)
        size = int(np.prod(shape, dtype=np.int64))
        if cond.size > size:
            raise ctx.error(f"condition has {cond.size} entries, the input {size} elements")
        flat = np.flatnonzero(cond)
        tuples = np.stack(np.unravel_index(flat, shape), axis=-1).reshape(len(flat), len(shape))
        return ctx.emit("gather_nd", x, ctx.const(tuples.astype(np.int64)))
    rank = x.type.rank
    if not -rank <= axis < rank:
        raise ctx.error(f"axis {axis} is out of range for rank {rank}")
    dim = x.type.shape[axis]
    if isinstance(dim, int) and cond.size > dim:
        raise ctx.error(f"condition has {cond.size} entries, axis {axis} only {dim}")
    return ctx.emit("gather", x, ctx.const(np.flatnonzero(cond).astype(np.int64)), axis=axis)


@converter("NonZero", since=9)
def nonzero(ctx: NodeContext):
    x = ctx.require_value(0, "X", "its output shape [rank, number of non-zeros]")
    if x.ndim == 0:
        return ctx.const(np.zeros((0, int(x != 0)), np.int64))
    return ctx.const(np.array(np.nonzero(x), dtype=np.int64).reshape(x.ndim, -1))


@converter("Unique", since=11)
def unique(ctx: NodeContext):
    x = ctx.require_value(0, "X", "its output sizes are the number of distinct values")
    axis = ctx.attr("axis")
    if axis is not None:
        axis = axis + x.ndim if axis < 0 else axis
        if not 0 <= axis < x.ndim:
            raise ctx.error(f"axis {ctx.attr('axis')} is out of range for rank {x.ndim}")
    y, first, inverse, counts = np.unique(
        x, return_index=True, return_inverse=True, return_counts=True, axis=axis
    )
    if not ctx.attr("sorted", 1):  # order of first occurrence
        order = np.argsort(first, kind="stable")
        rank_of = np.empty_like(order)
        rank_of[order] = np.arange(len(order))
        first, counts, inverse = first[order], counts[order], rank_of[inverse]
        y = np.take(x.reshape(-1) if axis is None else x, first, axis=axis or 0)
    ints = [np.asarray(a, np.int64) for a in (first, inverse.reshape(-1), counts)]
    return [ctx.const(a) for a in [y.astype(x.dtype), *ints]][: ctx.num_outputs]


@converter("ReverseSequence", since=10)
def reverse_sequence(ctx: NodeContext):
    """A gather_nd with constant index tuples: each batch entry reverses its first
    sequence_lens[b] time steps. The lengths must be constants (they shape the indices)."""
    lens = ctx.require_value(1, "sequence_lens").astype(np.int64).reshape(-1)
    batch_axis, time_axis = ctx.attr("batch_axis", 1), ctx.attr("time_axis", 0)
    if {batch_axis, time_axis} != {0, 1}:
        raise ctx.error(f"batch_axis {batch_axis} and time_axis {time_axis} must be 0 and 1")
    shape = _static_shape(ctx, 0)
    batch, steps = shape[batch_axis], shape[time_axis]
    if lens.shape != (batch,) or (lens < 0).any() or (lens > steps).any():
        raise ctx.error(f"sequence_lens {lens.tolist()} do not fit {batch} x {steps}")
    t = np.arange(steps)[None, :]
    source = np.where(t < lens[:, None], lens[:, None] - 1 - t, t)  # [batch, time]
    if batch_axis == 0:
        index = source[..., None]
        return ctx.emit("gather_nd", ctx.input(0), ctx.const(index), batch_dims=1)
    b = np.broadcast_to(np.arange(batch)[None, :], (steps, batch))
    index = np.stack([source.T, b], axis=-1)  # [time, batch, 2]: (source step, batch)
    return ctx.emit("gather_nd", ctx.input(0), ctx.const(index.astype(np.int64)))
