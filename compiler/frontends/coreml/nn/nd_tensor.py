"""The ND layers (spec >= 4) that move data: gather/scatter families, concatND/splitND/slices,
reshape families, getShape, loadConstantND, fill/broadcastTo/range, tile, stack, transpose.

These layers use true ranks and their own ``axis`` fields. NeuralNetwork blobs are float at
run time, so values these layers make up (shapes, ranges, fills, non-zero indices) are float32,
and index inputs arriving as float blobs are cast to int32 (integral by construction; negative
ones count from the end, as the IR's indexing ops do). Operands that decide an output shape
(reshape targets, slice bounds, tile counts, fill shapes) must be known at compile time; a
run-time start works where the output shape does not depend on it (squeezed slice axes,
``sliceBySize``), through a run-time ``gather``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from compiler.ir.graph import Value
from compiler.ir.ops.shapes import broadcast_shapes, normalize_axes, normalize_axis
from compiler.ir.types import Dim

from ...converters import resolve_reshape
from .registry import NnContext, layer

_BIG = 2**62
"""A slice bound past every axis end (the masks' "to the end")."""


def _ints(array: np.ndarray | Sequence[int]) -> list[int]:
    return [int(v) for v in np.asarray(array).reshape(-1)]


def _reshape(ctx: NnContext, x: Value, shape: Sequence[Dim]) -> Value:
    if tuple(shape) == x.shape:
        return x
    return ctx.emit("reshape", x, shape=list(shape))


def _indices(ctx: NnContext, v: Value) -> Value:
    """An index blob as int32 when it is not already integer (float blobs hold integers)."""
    if v.dtype.is_int:
        return v
    return ctx.emit("cast", v, to="int32")


def _float_const(ctx: NnContext, array: np.ndarray) -> Value:
    return ctx.const(np.asarray(array, np.float32))


def _static_dim(ctx: NnContext, x: Value, axis: int, what: str) -> int:
    d = x.shape[axis]
    if not isinstance(d, int):
        raise ctx.error(f"{what} needs a static dim {axis}, {x.type} has {d!r}")
    return d


def _full_like(ctx: NnContext, like: Value, value: float, dtype: str) -> Value:
    """A tensor of ``like``'s shape filled with ``value``; symbolic dims stay symbolic."""
    scalar = ctx.const(np.asarray(value, dtype))
    if like.type.is_static:
        return ctx.emit("broadcast_to", scalar, shape=list(like.shape))
    # where(x == x, v, v) is v wherever x is, NaN included, and keeps like's dim names.
    return ctx.emit("where", ctx.emit("equal", like, like), scalar, scalar)


# -- gather / scatter ---------------------------------------------------------------------------

_SCATTER_MODES = ("none", "add", "sub", "mul", "div", "max", "min")
"""``ScatterMode`` by number (SCATTER_UPDATE = 0, ...) as IR reductions, and sub and div."""


def _scatter(ctx: NnContext, op: str, data: Value, idx: Value, upd: Value, **attrs) -> Value:
    """``op`` (scatter_elements or scatter_nd) in the layer's mode. SUB adds the negated
    updates; DIV divides by the product of the updates scattered into ones."""
    if not 0 <= ctx.params.mode < len(_SCATTER_MODES):
        raise ctx.error(f"scatter mode {ctx.params.mode} is not one Core ML defines")
    mode = _SCATTER_MODES[ctx.params.mode]
    if mode == "sub":
        return ctx.emit(op, data, idx, ctx.emit("neg", upd), reduction="add", **attrs)
    if mode == "div":
        ones = _full_like(ctx, data, 1, data.dtype)
        return ctx.emit("div", data, ctx.emit(op, ones, idx, upd, reduction="mul", **attrs))
    return ctx.emit(op, data, idx, upd, reduction=mode, **attrs)


@layer("gather")
def gather(ctx: NnContext) -> Value:
    return ctx.emit("gather", ctx.x(0), _indices(ctx, ctx.x(1)), axis=ctx.params.axis)


@layer("scatter")
def scatter(ctx: NnContext) -> Value:
    """The inverse of gather: updates ``D[:a] + I + D[a+1:]`` written at the ``I`` indices
    along axis a; done as scatter_elements on the indices flattened and broadcast."""
    data, indices, updates = ctx.x(0), _indices(ctx, ctx.x(1)), ctx.x(2)
    r = data.type.rank
    a = normalize_axis(ctx.params.axis, r)
    n = math.prod(_static_dim(ctx, indices, i, "scatter") for i in range(indices.type.rank))
    want = [*data.shape[:a], *indices.shape, *data.shape[a + 1 :]]
    if list(updates.shape) != want:
        raise ctx.error(f"updates {updates.type} must have shape {want}")
    flat = [*data.shape[:a], n, *data.shape[a + 1 :]]
    idx = _reshape(ctx, indices, [1] * a + [n] + [1] * (r - a - 1))
    idx = ctx.emit("broadcast_to", idx, shape=flat)
    return _scatter(ctx, "scatter_elements", data, idx, _reshape(ctx, updates, flat), axis=a)


@layer("gatherND")
def gather_nd(ctx: NnContext) -> Value:
    return ctx.emit("gather_nd", ctx.x(0), _indices(ctx, ctx.x(1)))


@layer("scatterND")
def scatter_nd(ctx: NnContext) -> Value:
    return _scatter(ctx, "scatter_nd", ctx.x(0), _indices(ctx, ctx.x(1)), ctx.x(2))


@layer("gatherAlongAxis")
def gather_along_axis(ctx: NnContext) -> Value:
    x, idx = ctx.x(0), _indices(ctx, ctx.x(1))
    return ctx.emit("gather_elements", x, idx, axis=ctx.params.axis)


@layer("scatterAlongAxis")
def scatter_along_axis(ctx: NnContext) -> Value:
    data, idx, upd = ctx.x(0), _indices(ctx, ctx.x(1)), ctx.x(2)
    return _scatter(ctx, "scatter_elements", data, idx, upd, axis=ctx.params.axis)


# -- reverse, stack, concat, split, transpose, tile --------------------------------------------


@layer("reverse")
def reverse(ctx: NnContext) -> Value:
    x = ctx.x()
    flags = list(ctx.params.reverseDim)
    if len(flags) != x.type.rank:
        raise ctx.error(f"reverseDim has {len(flags)} entries for an input of rank {x.type.rank}")
    axes = [i for i, f in enumerate(flags) if f]
    if not axes:
        return x
    n = len(axes)
    return ctx.emit("slice", x, axes=axes, starts=[-1] * n, ends=[-_BIG] * n, steps=[-1] * n)


@layer("reverseSeq")
def reverse_seq(ctx: NnContext) -> Value:
    """Per batch entry b, the first lengths[b] steps along sequenceAxis reversed: a
    gather_elements whose index is L-1-t for t < L, else t."""
    x, lengths = ctx.x(0), _indices(ctx, ctx.x(1))
    r = x.type.rank
    b = normalize_axis(ctx.params.batchAxis, r)
    s = normalize_axis(ctx.params.sequenceAxis, r)
    if b == s:
        raise ctx.error("batchAxis and sequenceAxis must differ")
    steps = _static_dim(ctx, x, s, "reverseSeq")
    along = [1] * r
    along[s] = steps
    t = ctx.const(np.arange(steps, dtype=lengths.dtype.np).reshape(along))
    per_batch = [1] * r
    per_batch[b] = x.shape[b]
    length = _reshape(ctx, lengths, per_batch)
    back = ctx.emit("sub", ctx.emit("sub", length, ctx.const(np.ones((), lengths.dtype.np))), t)
    idx = ctx.emit("where", ctx.emit("less", t, length), back, t)
    idx = ctx.emit("broadcast_to", idx, shape=list(x.shape))
    return ctx.emit("gather_elements", x, idx, axis=s)


def _stack(ctx: NnContext, xs: Sequence[Value], axis: int) -> Value:
    rank = xs[0].type.rank
    axis = normalize_axis(axis, rank + 1)
    ups = [_reshape(ctx, v, [*v.shape[:axis], 1, *v.shape[axis:]]) for v in xs]
    return ups[0] if len(ups) == 1 else ctx.op("concat", ups, axis=axis)[0]


@layer("stack")
def stack(ctx: NnContext) -> Value:
    return _stack(ctx, [ctx.x(i) for i in range(len(ctx.inputs))], ctx.params.axis)


@layer("concatND")
def concat_nd(ctx: NnContext) -> Value:
    """Plain concatenation, or with ``interleave`` the inputs' slices taken in turn: a stack
    behind the axis, then the two axes merged."""
    xs = [ctx.x(i) for i in range(len(ctx.inputs))]
    axis = normalize_axis(ctx.params.axis, xs[0].type.rank)
    if len(xs) == 1:
        return xs[0]
    if not ctx.params.interleave:
        return ctx.op("concat", xs, axis=axis)[0]
    if any(v.shape != xs[0].shape for v in xs):
        raise ctx.error("interleave needs inputs of one shape")
    stacked = _stack(ctx, xs, axis + 1)
    shape = list(xs[0].shape)
    shape[axis] = _static_dim(ctx, xs[0], axis, "interleave") * len(xs)
    return _reshape(ctx, stacked, shape)


@layer("splitND")
def split_nd(ctx: NnContext) -> list[Value]:
    x = ctx.x()
    axis = normalize_axis(ctx.params.axis, x.type.rank)
    sizes = _ints(ctx.params.splitSizes)
    if not sizes:
        n = ctx.params.numSplits or ctx.num_outputs
        dim = _static_dim(ctx, x, axis, "splitND")
        if dim % n:
            raise ctx.error(f"dim {axis} of {x.type} does not split into {n} equal parts")
        sizes = [dim // n] * n
    if len(sizes) != ctx.num_outputs:
        raise ctx.error(f"{len(sizes)} splits for {ctx.num_outputs} outputs")
    if len(sizes) == 1:
        return [x]
    return ctx.op("split", [x], axis=axis, sizes=sizes)


@layer("transpose")
def transpose(ctx: NnContext) -> Value:
    x = ctx.x()
    perm = _ints(ctx.params.axes)
    if perm == list(range(x.type.rank)):
        return x
    return ctx.emit("transpose", x, perm=perm)


@layer("tile")
def tile(ctx: NnContext) -> Value:
    """Repeats per axis, from the second input (which then wins) or ``reps``; fewer than the
    rank get leading ones."""
    x = ctx.x()
    if len(ctx.inputs) > 1:
        reps = _ints(ctx.require_value(1, "reps", "it sets the output shape"))
    else:
        reps = _ints(ctx.params.reps)
    if not reps or len(reps) > x.type.rank:
        raise ctx.error(f"reps {reps} must have 1 to {x.type.rank} entries")
    reps = [1] * (x.type.rank - len(reps)) + reps
    if all(r == 1 for r in reps):
        return x
    return ctx.emit("tile", x, repeats=reps)


# -- slices -------------------------------------------------------------------------------------


def _slice(
    ctx: NnContext,
    x: Value,
    begin: list[int] | Value,
    end: list[int] | None,
    strides: list[int],
    begin_masks: list[bool],
    end_masks: list[bool],
    squeeze: list[bool],
) -> Value:
    """Numpy slicing per axis (a mask means that bound is open, as in ``x[:e]``); a squeezed
    axis takes the one element at its begin and goes away. ``begin`` may be a run-time
    vector, read only at squeezed axes; ``end`` None: read at no axis."""
    r = x.type.rank
    strides = strides or [1] * r  # an empty list: the proto3 default of every entry
    begin_masks, end_masks, squeeze = (m or [False] * r for m in (begin_masks, end_masks, squeeze))
    for what, vals in [
        ("strides", strides),
        ("beginMasks", begin_masks),
        ("endMasks", end_masks),
        ("squeezeMasks", squeeze),
    ]:
        if len(vals) != r:
            raise ctx.error(f"{what} has {len(vals)} entries for an input of rank {r}")
    runtime_begin = isinstance(begin, Value)
    entries: list[tuple[int, int, int, int]] = []  # (axis, start, end, step)
    picks: list[tuple[int, Value]] = []
    for i in range(r):
        if squeeze[i]:
            if runtime_begin:
                one = ctx.emit("gather", begin, ctx.const(np.array([i], np.int32)), axis=0)
                picks.append((i, one))
                continue
            dim = _static_dim(ctx, x, i, "a squeezed axis")
            b = begin[i] + dim if begin[i] < 0 else begin[i]
            if not 0 <= b < dim:
                raise ctx.error(
                    f"squeezed index {begin[i]} is out of range for dim {i} of {x.type}"
                )
            entries.append((i, b, b + 1, 1))
            continue
        step = strides[i]
        if step == 0:
            raise ctx.error("strides must not be 0")
        if begin_masks[i]:
            start = 0 if step > 0 else -1
        elif runtime_begin:
            raise ctx.error(
                f"begin of axis {i} sets the output shape, so it must be known at compile time"
            )
        else:
            start = begin[i]  # type: ignore[index]
        if end_masks[i]:
            stop = _BIG if step > 0 else -_BIG
        elif end is None:
            raise ctx.error(
                f"end of axis {i} sets the output shape, so it must be known at compile time"
            )
        else:
            stop = end[i]
        entries.append((i, start, stop, step))
    y = x
    if entries:
        axes, starts, ends, steps = (list(t) for t in zip(*entries))
        y = ctx.emit("slice", x, axes=axes, starts=starts, ends=ends, steps=steps)
    for i, one in picks:
        y = ctx.emit("gather", y, _indices(ctx, one), axis=i)
    if any(squeeze):
        # NeuralNetwork blobs have rank >= 1: squeezing every axis leaves shape [1].
        y = _reshape(ctx, y, [d for i, d in enumerate(y.shape) if not squeeze[i]] or [1])
    return y


@layer("sliceStatic")
def slice_static(ctx: NnContext) -> Value:
    p = ctx.params
    begin, end = _ints(p.beginIds), _ints(p.endIds)
    r = ctx.x().type.rank
    if len(begin) != r or len(end) != r:
        raise ctx.error(f"beginIds and endIds need {r} entries each")
    masks = [list(p.beginMasks), list(p.endMasks), list(p.squeezeMasks)]
    return _slice(ctx, ctx.x(), begin, end, _ints(p.strides), *masks)


@layer("sliceDynamic")
def slice_dynamic(ctx: NnContext) -> Value:
    """Bounds from inputs 2-7 where given (begin, end, strides, beginMasks, endMasks,
    squeezeMasks), else from the parameters. A run-time begin or end is accepted where it
    does not set the output shape: begin at squeezed axes, either one under its mask.
    A parameter list of one repeated value and another length than the rank (coremltools'
    builder writes five defaults) gives that value to every axis."""
    p = ctx.params
    x = ctx.x()
    n = len(ctx.inputs)

    def param(values: Sequence) -> list:
        values = list(values)
        if len(values) != x.type.rank and len(set(values)) == 1:
            return values[:1] * x.type.rank
        return values

    def known(i: int, what: str, values: Sequence) -> list:
        if i < n:
            return np.asarray(ctx.require_value(i, what)).reshape(-1).tolist()
        return param(values)

    strides = _ints(known(3, "strides", p.strides))
    begin_masks = [bool(v) for v in known(4, "beginMasks", p.beginMasks)]
    end_masks = [bool(v) for v in known(5, "endMasks", p.endMasks)]
    squeeze = [bool(v) for v in known(6, "squeezeMasks", p.squeezeMasks)]
    b = ctx.x(1)
    begin: list[int] | Value = b if b.const is None else _ints(b.const)
    end: list[int] | None = _ints(param(p.endIds))
    if n > 2:
        e = ctx.x(2)
        end = None if e.const is None else _ints(e.const)
    for what, vals in [("begin", begin), ("end", end)]:
        if isinstance(vals, list) and len(vals) != x.type.rank:
            raise ctx.error(f"{what} has {len(vals)} entries for an input of rank {x.type.rank}")
    if isinstance(begin, Value):
        if begin.type.rank != 1 or begin.shape[0] != x.type.rank:
            raise ctx.error(f"begin {begin.type} must be a vector of {x.type.rank} entries")
        begin = _indices(ctx, begin)
    return _slice(ctx, x, begin, end, strides, begin_masks, end_masks, squeeze)


@layer("sliceBySize")
def slice_by_size(ctx: NnContext) -> Value:
    """``x[..., begin:begin+size, ...]`` along axis; begin (a negative one counts from the
    end) may be a run-time value, as the output shape depends only on size."""
    x, b = ctx.x(0), ctx.x(1)
    axis = normalize_axis(ctx.params.axis, x.type.rank)
    size = int(ctx.params.size)
    dim = _static_dim(ctx, x, axis, "sliceBySize")
    if size < 1:
        raise ctx.error(f"size {size} must be positive")
    if b.const is not None:
        (start,) = _ints(b.const)
        start = start + dim if start < 0 else start
        if not 0 <= start <= start + size <= dim:
            raise ctx.error(f"begin {start} and size {size} exceed dim {axis} of {x.type}")
        return ctx.emit("slice", x, axes=[axis], starts=[start], ends=[start + size])
    start = _reshape(ctx, _indices(ctx, b), [1])
    zero = ctx.const(np.zeros((), start.dtype.np))
    start = ctx.emit(
        "where",
        ctx.emit("less", start, zero),
        ctx.emit("add", start, ctx.const(np.array(dim, start.dtype.np))),
        start,
    )
    idx = ctx.emit("add", start, ctx.const(np.arange(size, dtype=start.dtype.np)))
    return ctx.emit("gather", x, idx, axis=axis)


@layer("slidingWindows")
def sliding_windows(ctx: NnContext) -> Value:
    """Windows of windowSize every step along axis, as one gather with an [M, W] index."""
    x = ctx.x()
    axis = normalize_axis(ctx.params.axis, x.type.rank)
    size, step = int(ctx.params.windowSize), int(ctx.params.step)
    length = _static_dim(ctx, x, axis, "slidingWindows")
    if size <= 0 or step <= 0 or size > length:
        raise ctx.error(f"windowSize {size} and step {step} do not fit dim {axis} of {x.type}")
    count = (length - size) // step + 1
    idx = np.arange(count)[:, None] * step + np.arange(size)[None, :]
    return ctx.emit("gather", x, ctx.const(idx.astype(np.int32)), axis=axis)


# -- shapes, constants, fills, ranges ---------------------------------------------------------


@layer("getShape")
def get_shape(ctx: NnContext) -> Value:
    return ctx.emit("cast", ctx.emit("shape", ctx.x()), to="float32")


@layer("loadConstantND")
def load_constant_nd(ctx: NnContext) -> Value:
    shape = _ints(ctx.params.shape)
    return ctx.weights_const(ctx.params.data, shape, "data")


@layer("fillLike")
def fill_like(ctx: NnContext) -> Value:
    return _full_like(ctx, ctx.x(), ctx.params.value, "float32")


def _fill(ctx: NnContext, shape: list[int]) -> Value:
    if any(d < 0 for d in shape):
        raise ctx.error(f"shape {shape} has a negative dim")
    scalar = _float_const(ctx, np.asarray(ctx.params.value))
    return ctx.emit("broadcast_to", scalar, shape=shape)


@layer("fillStatic")
def fill_static(ctx: NnContext) -> Value:
    return _fill(ctx, _ints(ctx.params.targetShape))


@layer("fillDynamic")
def fill_dynamic(ctx: NnContext) -> Value:
    return _fill(ctx, _ints(ctx.require_value(0, "shape", "it is the output shape")))


def _broadcast(ctx: NnContext, x: Value, shape: Sequence[Dim]) -> Value:
    """x broadcast to ``shape`` (one-directional: the output has exactly that shape)."""
    try:
        ok = broadcast_shapes(x.shape, shape) == tuple(shape)
    except ValueError:
        ok = False
    if not ok:
        raise ctx.error(f"cannot broadcast {x.type} to {list(shape)}")
    if tuple(shape) == x.shape:
        return x
    return ctx.emit("broadcast_to", x, shape=list(shape))


@layer("broadcastToLike")
def broadcast_to_like(ctx: NnContext) -> Value:
    x, like = ctx.x(0), ctx.x(1)
    if like.type.is_static:
        return _broadcast(ctx, x, like.shape)
    if broadcast_shapes(x.shape, like.shape) != like.shape:
        raise ctx.error(f"cannot broadcast {x.type} to the shape of {like.type}")
    # where(y == y, x, x) is x broadcast to y's shape, keeping y's dim names.
    return ctx.emit("where", ctx.emit("equal", like, like), x, x)


@layer("broadcastToStatic")
def broadcast_to_static(ctx: NnContext) -> Value:
    return _broadcast(ctx, ctx.x(), _ints(ctx.params.targetShape))


@layer("broadcastToDynamic")
def broadcast_to_dynamic(ctx: NnContext) -> Value:
    shape = _ints(ctx.require_value(1, "shape", "it is the output shape"))
    return _broadcast(ctx, ctx.x(0), shape)


@layer("rangeStatic")
def range_static(ctx: NnContext) -> Value:
    p = ctx.params
    return _range(ctx, p.startValue, p.endValue, p.stepSizeValue)


@layer("rangeDynamic")
def range_dynamic(ctx: NnContext) -> Value:
    """Inputs: end, then start and step where given (else the parameters)."""
    why = "it sets the output length"

    def scalar(i: int, what: str, default: float) -> float:
        if i >= len(ctx.inputs):
            return default
        data = np.asarray(ctx.require_value(i, what, why)).reshape(-1)
        if data.size != 1:
            raise ctx.error(f"input {what} must hold one value, it has {data.size}")
        return float(data[0])

    end = scalar(0, "end", 0.0)
    return _range(
        ctx,
        scalar(1, "start", ctx.params.startValue),
        end,
        scalar(2, "step", ctx.params.stepSizeValue),
    )


def _range(ctx: NnContext, start: float, end: float, step: float) -> Value:
    """numpy.arange in float32: start + i * step for i < ceil((end - start) / step)."""
    if step == 0:
        raise ctx.error("the step must not be 0")
    count = max(math.ceil((end - start) / step), 0)
    values = np.float32(start) + np.arange(count, dtype=np.float32) * np.float32(step)
    return _float_const(ctx, values)


# -- squeeze, expandDims, reshapes ------------------------------------------------------------


@layer("squeeze")
def squeeze(ctx: NnContext) -> Value:
    """Axes (with squeezeAll, or no axes as coremltools' builder writes it, every axis of
    size 1) removed; rank 1 stays rank 1."""
    x = ctx.x()
    if ctx.params.squeezeAll or not ctx.params.axes:
        if not x.type.is_static:
            raise ctx.error(f"squeezeAll needs static dims, got {x.type}")
        axes = [i for i, d in enumerate(x.shape) if d == 1]
    else:
        axes = normalize_axes(_ints(ctx.params.axes), x.type.rank)
    for a in axes:
        if x.shape[a] != 1:
            raise ctx.error(f"cannot squeeze dim {a} of {x.type}: it is not 1")
    return _reshape(ctx, x, [d for i, d in enumerate(x.shape) if i not in axes] or [1])


@layer("expandDims")
def expand_dims(ctx: NnContext) -> Value:
    x = ctx.x()
    rank = x.type.rank + len(ctx.params.axes)
    axes = normalize_axes(_ints(ctx.params.axes), rank)
    dims = iter(x.shape)
    return _reshape(ctx, x, [1 if i in axes else next(dims) for i in range(rank)])


@layer("flattenTo2D")
def flatten_to_2d(ctx: NnContext) -> Value:
    x = ctx.x()
    r = x.type.rank
    axis = ctx.params.axis + r if ctx.params.axis < 0 else ctx.params.axis
    if not 0 <= axis <= r:
        raise ctx.error(f"axis {ctx.params.axis} is out of range for {x.type}")
    if not x.type.is_static:
        raise ctx.error(f"flattenTo2D needs static dims, got {x.type}")
    return _reshape(ctx, x, [math.prod(x.shape[:axis]), math.prod(x.shape[axis:])])


@layer("reshapeLike")
def reshape_like(ctx: NnContext) -> Value:
    return _reshape(ctx, ctx.x(0), ctx.x(1).shape)


@layer("reshapeStatic")
def reshape_static(ctx: NnContext) -> Value:
    x = ctx.x()
    return _reshape(ctx, x, resolve_reshape(ctx, x.shape, _ints(ctx.params.targetShape), "size"))


@layer("reshapeDynamic")
def reshape_dynamic(ctx: NnContext) -> Value:
    x = ctx.x(0)
    spec = _ints(ctx.require_value(1, "shape", "it is the output shape"))
    return _reshape(ctx, x, resolve_reshape(ctx, x.shape, spec, "size"))


@layer("rankPreservingReshape")
def rank_preserving_reshape(ctx: NnContext) -> Value:
    x = ctx.x()
    spec = _ints(ctx.params.targetShape)
    if len(spec) != x.type.rank:
        raise ctx.error(f"targetShape {spec} must have one entry per axis of {x.type}")
    return _reshape(ctx, x, resolve_reshape(ctx, x.shape, spec, "copy"))


# -- constantPad, whereNonZero ----------------------------------------------------------------


@layer("constantPad")
def constant_pad(ctx: NnContext) -> Value:
    """Pads [before, after] per axis, from ``padAmounts`` or a second input (which may cover
    only the last axes, as coremltools writes MIL pads); with padToGivenOutputSizeMode the
    non-zero entry of a pair is that axis' output size, reached by padding on its side."""
    p = ctx.params
    x = ctx.x()
    r = x.type.rank
    if len(ctx.inputs) > 1:
        amounts = _ints(ctx.require_value(1, "padAmounts", "it sets the output shape"))
        if len(amounts) % 2 or len(amounts) > 2 * r:
            raise ctx.error(f"{len(amounts)} pad amounts for an input of rank {r}")
        amounts = [0] * (2 * r - len(amounts)) + amounts
    else:
        amounts = _ints(p.padAmounts)
        if len(amounts) != 2 * r:
            raise ctx.error(f"padAmounts needs {2 * r} entries for an input of rank {r}")
    if any(a < 0 for a in amounts):
        raise ctx.error(f"pad amounts {amounts} must not be negative")
    before, after = amounts[0::2], amounts[1::2]
    if p.padToGivenOutputSizeMode:
        for i in range(r):
            if before[i] and after[i]:
                raise ctx.error(f"axis {i} gives an output size on both sides: {amounts}")
            if before[i] or after[i]:
                grow = max(before[i], after[i]) - _static_dim(ctx, x, i, "padToGivenOutputSize")
                before[i], after[i] = (max(grow, 0), 0) if before[i] else (0, max(grow, 0))
    if not any(before) and not any(after):
        return x
    return ctx.emit("pad", x, pads=before + after, mode="constant", value=p.value)


@layer("whereNonZero")
def where_non_zero(ctx: NnContext) -> Value:
    """[N, rank] coordinates of the non-zero elements (float32, row-major order)."""
    x = ctx.require_value(0, "x", "its output shape [number of non-zeros, rank]")
    return _float_const(ctx, np.argwhere(np.asarray(x) != 0))
