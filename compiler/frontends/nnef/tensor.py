"""NNEF tensor-shape ops (reshape, transpose, concat, split, slice, squeeze, unsqueeze, stack,
unstack, tile, pad, gather) and ``pad_border``, the one place NNEF's border modes become IR
ops (pooling and convolution use it too)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from compiler.ir.graph import Value

from ..converters import NodeContext
from .registry import NnefContext, converter

BORDERS = ("constant", "ignore", "replicate", "reflect", "reflect-even")
_IR_PAD_MODES = {"constant": "constant", "replicate": "edge", "reflect": "reflect"}


def pad_border(
    ctx: NodeContext,
    x: Value,
    pairs: Sequence[tuple[int, int]],
    border: str,
    value: float = 0.0,
) -> Value:
    """``x`` padded by ``pairs`` (one (front, back) per dim) the way NNEF's ``border`` says:
    ``constant`` with ``value``, ``replicate`` repeats the edge, ``reflect`` mirrors without
    the edge, ``reflect-even`` mirrors with it (numpy's ``symmetric``; the IR pad has no such
    mode, so it is built from reversed slices). ``ignore`` is not a padding: callers that
    support it handle it before."""
    pairs = [(int(a), int(b)) for a, b in pairs]
    if not any(a or b for a, b in pairs):
        return x
    if any(a < 0 or b < 0 for a, b in pairs):
        raise ctx.error(f"negative padding {pairs}")
    if border in _IR_PAD_MODES:
        pads = [a for a, _ in pairs] + [b for _, b in pairs]
        mode = _IR_PAD_MODES[border]
        return ctx.emit(
            "pad", x, pads=pads, mode=mode, value=float(value) if mode == "constant" else 0.0
        )
    if border != "reflect-even":
        raise ctx.error(f"border {border!r} is not a padding mode ({', '.join(BORDERS)})")
    for axis, (front, back) in enumerate(pairs):
        if not front and not back:
            continue
        size = x.shape[axis]
        if not isinstance(size, int) or max(front, back) > size:
            raise ctx.error(f"reflect-even padding {pairs} needs dim {axis} of {x.type} >= it")
        parts = []
        if front:  # elements front-1 down to 0
            parts.append(_reversed(ctx, x, axis, front - 1, front))
        parts.append(x)
        if back:  # elements size-1 down to size-back
            parts.append(_reversed(ctx, x, axis, size - 1, back))
        x = ctx.emit("concat", *parts, axis=axis)
    return x


def _reversed(ctx: NodeContext, x: Value, axis: int, start: int, count: int) -> Value:
    """``count`` elements of ``x`` along ``axis``, from index ``start`` downwards."""
    end = start - count if start - count >= 0 else -x.shape[axis] - 1
    return ctx.emit("slice", x, axes=[axis], starts=[start], ends=[end], steps=[-1])


# -- shape ops -----------------------------------------------------------------------------------
def _static(ctx: NnefContext, v: Value) -> list[int]:
    if not all(isinstance(d, int) for d in v.shape):
        raise ctx.error(f"needs a static shape, got {v.type}")
    return [int(d) for d in v.shape]


@converter("reshape")
def _reshape(ctx: NnefContext) -> Value:
    """Reshapes dims ``[axis_start, axis_start + axis_count)`` (count -1: to the end) into
    ``shape``; in it 0 copies the input dim at the same position, one -1 is inferred."""
    x = ctx.x("input")
    dims = _static(ctx, x)
    start, count = int(ctx.attr("axis_start")), int(ctx.attr("axis_count"))
    end = len(dims) if count == -1 else start + count
    if not 0 <= start <= end <= len(dims):
        raise ctx.error(f"axis_start {start}, axis_count {count} outside rank {len(dims)}")
    shape = [int(s) for s in ctx.attr("shape")]
    if any(s < -1 for s in shape) or shape.count(-1) > 1:
        raise ctx.error(f"shape {shape}: entries must be >= -1, at most one -1")
    new = []
    for i, s in enumerate(shape):
        if s == 0:
            if start + i >= len(dims):
                raise ctx.error(f"shape {shape}: 0 at {i} has no input dim to copy")
            s = dims[start + i]
        new.append(s)
    volume = int(np.prod(dims[start:end], dtype=np.int64))
    known = int(np.prod([s for s in new if s != -1], dtype=np.int64))
    if -1 in new:
        if known == 0 or volume % known:
            raise ctx.error(f"shape {shape} does not divide {dims[start:end]}")
        new[new.index(-1)] = volume // known
    elif known != volume:
        raise ctx.error(f"shape {shape} does not hold the {volume} elements of {dims[start:end]}")
    return ctx.emit("reshape", x, shape=dims[:start] + new + dims[end:])


@converter("transpose")
def _transpose(ctx: NnefContext) -> Value:
    """``axes`` permutes the leading dims; dims past its length stay where they are."""
    x = ctx.x("input")
    axes = [int(a) for a in ctx.attr("axes")]
    if sorted(axes) != list(range(len(axes))) or len(axes) > len(x.shape):
        raise ctx.error(f"axes {axes} are not a permutation of leading axes of {x.type}")
    return ctx.emit("transpose", x, perm=axes + list(range(len(axes), len(x.shape))))


@converter("concat")
def _concat(ctx: NnefContext) -> Value:
    values = ctx.xs("values")
    if len(values) == 1:
        return ctx.emit("identity", values[0])
    return ctx.emit("concat", *values, axis=int(ctx.attr("axis")))


@converter("split")
def _split(ctx: NnefContext) -> list[list[Value]]:
    """Sizes proportional to ``ratios``: the axis is cut into ``sum(ratios)`` equal units."""
    x = ctx.x("value")
    axis, ratios = int(ctx.attr("axis")), [int(r) for r in ctx.attr("ratios")]
    dim = _static(ctx, x)[axis]
    if not ratios or any(r <= 0 for r in ratios) or dim % sum(ratios):
        raise ctx.error(f"ratios {ratios} must be positive and their sum divide {dim}")
    unit = dim // sum(ratios)
    return [ctx.op("split", [x], axis=axis, sizes=[unit * r for r in ratios])]


@converter("slice")
def _slice(ctx: NnefContext) -> Value:
    """NNEF's slice: negative indices count from the end, then both ends clamp to
    ``[-1, dim]``; ``end = 0`` means the end of the axis when every stride is 1 (the rule of
    ``nnef.shapes.slice_shape``, by which the C++ executor sizes its output); with a negative
    stride a clamped end of -1 means through index 0."""
    x = ctx.x("input")
    dims = _static(ctx, x)
    axes = [int(a) for a in ctx.attr("axes")]
    begin, end = [int(b) for b in ctx.attr("begin")], [int(e) for e in ctx.attr("end")]
    stride = [int(s) for s in ctx.attr("stride")] or [1] * len(axes)
    if not len(axes) == len(begin) == len(end) == len(stride):
        raise ctx.error(f"axes {axes}, begin {begin}, end {end}, stride {stride} differ in length")
    if all(s == 1 for s in stride):
        end = [dims[a] if e == 0 else e for a, e in zip(axes, end)]
    starts, ends = [], []
    for a, b, e, s in zip(axes, begin, end, stride):
        if not 0 <= a < len(dims) or s == 0:
            raise ctx.error(f"axis {a} (rank {len(dims)}) or stride {s} is invalid")
        b = min(max(b + dims[a] if b < 0 else b, -1), dims[a])
        e = min(max(e + dims[a] if e < 0 else e, -1), dims[a])
        if not (0 <= b <= e if s > 0 else e <= b < dims[a]):
            raise ctx.error(f"slice {b}:{e}:{s} of axis {a} (size {dims[a]}) is invalid")
        starts.append(b)
        ends.append(-dims[a] - 1 if s < 0 and e == -1 else e)
    if not axes:
        return ctx.emit("identity", x)
    return ctx.emit("slice", x, axes=axes, starts=starts, ends=ends, steps=stride)


@converter("squeeze")
def _squeeze(ctx: NnefContext) -> Value:
    x = ctx.x("input")
    dims = _static(ctx, x)
    axes = [int(a) for a in ctx.attr("axes")]
    if any(not 0 <= a < len(dims) or dims[a] != 1 for a in axes):
        raise ctx.error(f"squeezes axes {axes} of {x.type}: each must exist and have size 1")
    return ctx.emit("reshape", x, shape=[d for i, d in enumerate(dims) if i not in axes])


def _unsqueezed(ctx: NnefContext, x: Value, axes: list[int]) -> Value:
    """``x`` with size-1 dims inserted at ``axes``, one after another as
    ``nnef.shapes.unsqueeze_shape`` inserts them."""
    shape = _static(ctx, x)
    rank = len(shape) + len(axes)
    for a in axes:
        if not 0 <= a < rank:
            raise ctx.error(f"unsqueeze axis {a} outside the output rank {rank}")
        shape = shape[:a] + [1] + shape[a:]
    return ctx.emit("reshape", x, shape=shape)


@converter("unsqueeze")
def _unsqueeze(ctx: NnefContext) -> Value:
    return _unsqueezed(ctx, ctx.x("input"), [int(a) for a in ctx.attr("axes")])


@converter("stack")
def _stack(ctx: NnefContext) -> Value:
    axis = int(ctx.attr("axis"))
    parts = [_unsqueezed(ctx, v, [axis]) for v in ctx.xs("values")]
    return parts[0] if len(parts) == 1 else ctx.emit("concat", *parts, axis=axis)


@converter("unstack")
def _unstack(ctx: NnefContext) -> list[list[Value]]:
    """One tensor per index of ``axis``, that axis removed (a tensor-array result)."""
    x = ctx.x("value")
    dims = _static(ctx, x)
    axis = int(ctx.attr("axis"))
    if not 0 <= axis < len(dims):
        raise ctx.error(f"axis {axis} outside rank {len(dims)}")
    rest = dims[:axis] + dims[axis + 1 :]
    if dims[axis] == 1:
        return [[ctx.emit("reshape", x, shape=rest)]]
    parts = ctx.op("split", [x], axis=axis, sizes=[1] * dims[axis])
    return [[ctx.emit("reshape", p, shape=rest) for p in parts]]


@converter("tile")
def _tile(ctx: NnefContext) -> Value:
    return ctx.emit("tile", ctx.x("input"), repeats=[int(r) for r in ctx.attr("repeats")])


@converter("pad")
def _pad(ctx: NnefContext) -> Value:
    """One (front, back) pair per dim, by ``pad_border``; negative entries crop, after the
    padding (as nnef-tools' interpreter does)."""
    x = ctx.x("input")
    dims = _static(ctx, x)
    pairs = [(int(a), int(b)) for a, b in ctx.attr("padding")]
    if len(pairs) != len(dims):
        raise ctx.error(f"padding {pairs} needs one pair for each of the {len(dims)} dims")
    y = pad_border(
        ctx, x, [(max(a, 0), max(b, 0)) for a, b in pairs], ctx.attr("border"), ctx.attr("value")
    )
    crop = [i for i, (a, b) in enumerate(pairs) if a < 0 or b < 0]
    if not crop:
        return y
    size = [int(d) for d in y.shape]
    return ctx.emit(
        "slice",
        y,
        axes=crop,
        starts=[-min(pairs[i][0], 0) for i in crop],
        ends=[size[i] + min(pairs[i][1], 0) for i in crop],
    )


@converter("gather")
def _gather(ctx: NnefContext) -> Value:
    """``input[:axis] + indices.shape + input[axis+1:]``, numpy's ``take``."""
    x, indices = ctx.x("input"), ctx.x("indices", "int64")
    axis = int(ctx.attr("axis"))
    if not 0 <= axis < len(x.shape):
        raise ctx.error(f"axis {axis} outside rank {len(x.shape)}")
    return ctx.emit("gather", x, indices, axis=axis)
