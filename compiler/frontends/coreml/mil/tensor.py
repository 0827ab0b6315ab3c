"""MIL ops that move data: reshapes, transposes, concat/split/stack/tile, slices, pads, gather and
scatter families, select, band_part, one_hot, shape/fill/range, depth/space/batch
rearrangements, non_zero (its output size is data), non_maximum_suppression (shared with the
NeuralNetwork layer, ``coreml.nms``).

Shape-defining inputs (reshape's shape, slice bounds, pads, repeats) must be known at compile
time: a constant in the program, a value pymil inferred, or one nnxc folded from static
dims; otherwise the op is refused with a ``NeedsValueError`` naming the value. Indices follow
the core ops (a negative index counts from the end; MIL leaves out-of-range indices
undefined, and nnxc does not check ``validate_indices`` at run time).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from compiler.errors import NeedsValueError
from compiler.ir.graph import Value
from compiler.ir.ops.shapes import normalize_axis
from compiler.ir.types import Dim

from ...converters import ZeroMeans, product_dim, resolve_reshape
from ..nms import non_maximum_suppression
from ..nms import scalar as nms_scalar
from .registry import MilContext, mil_op

IOS17 = 8
"""Spec version of iOS17, which revised reshape and non_maximum_suppression."""


# -- helpers -------------------------------------------------------------------------------


def need(ctx: MilContext, param: str, why: str | None = None) -> np.ndarray:
    """The value of ``param`` at compile time: pymil's, or nnxc's folded constant."""
    known = ctx.known(param)
    if known is not None:
        return np.asarray(known)
    v = ctx.x(param)
    if v.const is not None:
        return v.const
    if why is None:
        because = (
            f"input {param!r} must be known at compile time; it is computed from values that "
            "are not (bind symbolic dims with --input-shape)"
        )
    else:
        because = (
            f"{why}, so input {param!r} must be known at compile time; nnxc compiles static "
            "output shapes only"
        )
    raise NeedsValueError(f"{ctx.op_type} node {ctx.name!r}: {because}", v.name)


def _ints(ctx: MilContext, param: str) -> list[int]:
    return [int(v) for v in need(ctx, param).reshape(-1)]


def _static(ctx: MilContext, x: Value) -> list[int]:
    if not x.type.is_static:
        raise ctx.error(f"the input shape {x.type} must be static (bind dims with --input-shape)")
    return [int(d) for d in x.shape]


def _reshape(ctx: MilContext, x: Value, shape: Sequence[Dim]) -> Value:
    if tuple(shape) == x.shape:
        return x
    return ctx.emit("reshape", x, shape=list(shape))


def _transpose(ctx: MilContext, x: Value, perm: list[int]) -> Value:
    return x if perm == sorted(perm) else ctx.emit("transpose", x, perm=perm)


def _cast_to(ctx: MilContext, v: Value, index: int = 0) -> Value:
    want = ctx.out_dtype(index)
    return v if v.dtype == want else ctx.emit("cast", v, to=want)


def _indices(ctx: MilContext, param: str = "indices") -> Value:
    """Index tensors as the core ops take them: int8/16 and uint8/16 indices (iOS17 allows
    them; coremltools' fp16 pipeline casts indices to uint16) widen to int32."""
    v = ctx.x(param)
    return v if v.dtype in ("int32", "int64") else ctx.emit("cast", v, to="int32")


def _scalar(ctx: MilContext, value: Any, dtype: str) -> Value:
    return ctx.const(np.asarray(value).astype(dtype).reshape(()))


# -- reshapes ------------------------------------------------------------------------------


def _reshape_op(ctx: MilContext, zero: ZeroMeans) -> Value:
    x = ctx.x("x")
    try:
        spec = _ints(ctx, "shape")
    except NeedsValueError:
        # A shape computed at run time (say from shape(x)): pymil's inferred shape, its
        # symbols matched to x's own dims, is the answer when it names no other dim.
        shape = _pymil_dims(ctx, ctx.var("x").shape, x.shape, ctx.out_shape())
        if shape is None:
            raise
        return _reshape(ctx, x, shape)
    return _reshape(ctx, x, resolve_reshape(ctx, x.shape, spec, zero))


def _pymil_dims(
    ctx: MilContext, pymil_in: Sequence[Any], ir_in: Sequence[Dim], pymil_out: Sequence[Any]
) -> list[Dim] | None:
    """pymil's output dims in IR terms: sizes, and symbols of the input as the IR names (or
    sizes) of the same input dims; None when an output symbol is not an input dim."""
    names = {str(p): d for p, d in zip(pymil_in, ir_in) if not isinstance(p, int | np.integer)}
    out: list[Dim] = []
    for d in pymil_out:
        if isinstance(d, int | np.integer):
            out.append(int(d))
        elif str(d) in names:
            out.append(names[str(d)])
        else:
            return None
    return out


@mil_op("reshape")
def reshape(ctx: MilContext) -> Value:
    return _reshape_op(ctx, "copy")


@mil_op("reshape", since=IOS17)
def reshape_ios17(ctx: MilContext) -> Value:
    """iOS17: a 0 copies the input dim at the same distance from the right."""
    return _reshape_op(ctx, "copy_right")


@mil_op("reshape_like")
def reshape_like(ctx: MilContext) -> Value:
    """The output shape is pieces of the reference tensors' shapes (static, pymil checks)."""
    x = ctx.x("x")
    shape: list[Dim] = []
    refs = ctx.xs("ref_tensors")
    begins, ends, masks = ([v.val for v in ctx.var(p)] for p in ("begins", "ends", "end_masks"))
    for ref, b, e, m in zip(refs, begins, ends, masks):
        shape += list(ref.shape[b:] if m else ref.shape[b:e])
    return _reshape(ctx, x, shape)


@mil_op("transpose")
def transpose(ctx: MilContext) -> Value:
    return ctx.emit("transpose", ctx.x("x"), perm=[int(p) for p in ctx.attr("perm")])


@mil_op("expand_dims")
def expand_dims(ctx: MilContext) -> Value:
    x = ctx.x("x")
    rank = x.type.rank + len(ctx.attr("axes"))
    axes = sorted(normalize_axis(int(a), rank) for a in ctx.attr("axes"))
    dims = iter(x.shape)
    return _reshape(ctx, x, [1 if i in axes else next(dims) for i in range(rank)])


@mil_op("squeeze")
def squeeze(ctx: MilContext) -> Value:
    """Only dims of size 1 go (an axis of another size is left, as PyTorch does); without
    axes every 1 goes. A dim counts as 1 where the program's types say so (a flexible dim
    bound to 1 stays, as pymil infers)."""
    x = ctx.x("x")
    axes = ctx.attr("axes")
    rank = x.type.rank
    declared = ctx.var("x").shape
    picked = range(rank) if axes is None else [normalize_axis(int(a), rank) for a in axes]
    drop = {a for a in picked if declared[a] == 1}
    return _reshape(ctx, x, [d for i, d in enumerate(x.shape) if i not in drop])


@mil_op("flatten2d")
def flatten2d(ctx: MilContext) -> Value:
    x = ctx.x("x")
    axis = int(ctx.attr("axis", 1))
    axis = axis + x.type.rank if axis < 0 else axis
    if not 0 <= axis <= x.type.rank:
        raise ctx.error(f"axis {ctx.attr('axis')} is out of range for {x.type}")
    return _reshape(ctx, x, [product_dim(ctx, x.shape[:axis]), product_dim(ctx, x.shape[axis:])])


@mil_op("identity")
def identity(ctx: MilContext) -> Value:
    return ctx.x("x")


# -- concat, split, stack, tile --------------------------------------------------------------


@mil_op("concat")
def concat(ctx: MilContext) -> Value:
    """``interleave`` takes one slice of each input in turn: stacking on a new axis after
    ``axis`` and merging the two."""
    xs = ctx.xs("values")
    axis = normalize_axis(int(ctx.attr("axis")), xs[0].type.rank)
    if len(xs) == 1:
        return xs[0]
    if not ctx.attr("interleave", False):
        return ctx.emit("concat", *xs, axis=axis)
    shape = list(xs[0].shape)
    if any(list(x.shape) != shape for x in xs):
        raise ctx.error("interleave needs inputs of one shape")
    parts = [_reshape(ctx, x, shape[: axis + 1] + [1] + shape[axis + 1 :]) for x in xs]
    joined = ctx.emit("concat", *parts, axis=axis + 1)
    merged = product_dim(ctx, [shape[axis], len(xs)])
    return _reshape(ctx, joined, shape[:axis] + [merged] + shape[axis + 1 :])


@mil_op("split")
def split(ctx: MilContext) -> list[Value]:
    x = ctx.x("x")
    axis = normalize_axis(int(ctx.attr("axis")), x.type.rank)
    dim = x.shape[axis]
    if ctx.has("split_sizes"):
        sizes = _ints(ctx, "split_sizes")
    else:
        n = int(ctx.attr("num_splits"))
        if not isinstance(dim, int):
            raise ctx.error(f"splitting symbolic dim {dim!r} of {x.type} is not supported")
        if dim % n:
            raise ctx.error(f"dim {axis} of {x.type} does not split into {n} equal parts")
        sizes = [dim // n] * n
    return ctx.op("split", [x], axis=axis, sizes=sizes)


@mil_op("stack")
def stack(ctx: MilContext) -> Value:
    xs = ctx.xs("values")
    axis = normalize_axis(int(ctx.attr("axis")), xs[0].type.rank + 1)
    parts = [_reshape(ctx, x, [*x.shape[:axis], 1, *x.shape[axis:]]) for x in xs]
    return parts[0] if len(parts) == 1 else ctx.emit("concat", *parts, axis=axis)


@mil_op("tile")
def tile(ctx: MilContext) -> Value:
    x = ctx.x("x")
    reps = _ints(ctx, "reps")
    if all(r == 1 for r in reps):
        return x
    return ctx.emit("tile", x, repeats=reps)


# -- slices --------------------------------------------------------------------------------


def _mask(ctx: MilContext, param: str, rank: int) -> list[bool]:
    m = ctx.attr(param)
    return [False] * rank if m is None else [bool(v) for v in m]


def _index_slices(ctx: MilContext, x: Value) -> tuple[list[slice], list[int]]:
    """slice_by_index's (and slice_update's) numpy slice per axis and the squeezed axes."""
    rank = x.type.rank
    begin, end = _ints(ctx, "begin"), _ints(ctx, "end")
    stride = _ints(ctx, "stride") if ctx.has("stride") else [1] * rank
    bmask, emask, smask = (_mask(ctx, p, rank) for p in ("begin_mask", "end_mask", "squeeze_mask"))
    slices, squeezed = [], []
    for i in range(rank):
        if smask[i]:
            dim = x.shape[i]
            if not isinstance(dim, int):
                raise ctx.error(f"indexing symbolic dim {dim!r} of {x.type} is not supported")
            b = begin[i] + dim if begin[i] < 0 else begin[i]
            if not 0 <= b < dim:
                raise ctx.error(f"index {begin[i]} is out of range for dim {i} of {x.type}")
            slices.append(slice(b, b + 1, 1))
            squeezed.append(i)
            continue
        if stride[i] == 0:
            raise ctx.error("stride must not be 0")
        slices.append(
            slice(None if bmask[i] else begin[i], None if emask[i] else end[i], stride[i])
        )
    return slices, squeezed


def _slice(ctx: MilContext, x: Value, slices: Sequence[slice]) -> Value:
    """Numpy slicing as the core ``slice`` (whole symbolic axes pass)."""
    axes, starts, ends, steps = [], [], [], []
    for i, s in enumerate(slices):
        dim = x.shape[i]
        if isinstance(dim, str):
            to_end = s.stop is None or s.stop >= 2**31 - 1
            if s.start in (None, 0) and to_end and s.step == 1:
                continue
            raise ctx.error(f"slicing symbolic dim {dim!r} of {x.type} is not supported")
        start, stop, step = s.indices(dim)
        if step < 0 and stop < 0:
            stop = -dim - 1  # through index 0
        axes.append(i)
        starts.append(start)
        ends.append(stop)
        steps.append(step)
    if not axes:
        return x
    return ctx.emit("slice", x, axes=axes, starts=starts, ends=ends, steps=steps)


@mil_op("slice_by_index")
def slice_by_index(ctx: MilContext) -> Value:
    x = ctx.x("x")
    slices, squeezed = _index_slices(ctx, x)
    y = _slice(ctx, x, slices)
    return _reshape(ctx, y, [d for i, d in enumerate(y.shape) if i not in squeezed])


@mil_op("slice_by_size")
def slice_by_size(ctx: MilContext) -> Value:
    x = ctx.x("x")
    begin, size = _ints(ctx, "begin"), _ints(ctx, "size")
    slices = []
    for i, (b, n) in enumerate(zip(begin, size)):
        if b < 0:
            dim = x.shape[i]
            if not isinstance(dim, int):
                raise ctx.error(f"a negative begin on symbolic dim {dim!r} is not supported")
            b += dim
        slices.append(slice(b, None if n == -1 else b + n, 1))
    return _slice(ctx, x, slices)


@mil_op("slice_update")
def slice_update(ctx: MilContext) -> Value:
    """The slice of x (as slice_by_index picks it) replaced by ``update``: a scatter_nd
    at the slice's constant coordinates."""
    x = ctx.x("x")
    shape = _static(ctx, x)
    slices, _ = _index_slices(ctx, x)
    ranges = [np.arange(d)[s] for d, s in zip(shape, slices)]
    grid = np.meshgrid(*ranges, indexing="ij")
    index = np.stack(grid, axis=-1).astype(np.int32) if grid else np.zeros((0,), np.int32)
    update = _reshape(ctx, ctx.x("update"), [len(r) for r in ranges])
    return ctx.emit("scatter_nd", x, ctx.const(index), update)


@mil_op("crop")
def crop(ctx: MilContext) -> Value:
    x = ctx.x("x")
    (top, bottom), (left, right) = ctx.attr("crop_height"), ctx.attr("crop_width")
    slices = [slice(None, None, 1)] * (x.type.rank - 2)
    h, w = x.shape[-2:]
    if not (isinstance(h, int) and isinstance(w, int)):
        raise ctx.error(f"the last two dims of {x.type} must be static")
    slices += [slice(top, h - bottom, 1), slice(left, w - right, 1)]
    return _slice(ctx, x, slices)


@mil_op("reverse")
def reverse(ctx: MilContext) -> Value:
    x = ctx.x("x")
    axes = ctx.attr("axes")
    rank = x.type.rank
    axes = range(rank) if axes is None else {normalize_axis(int(a), rank) for a in axes}
    slices = [slice(None, None, -1 if i in axes else 1) for i in range(rank)]
    return _slice(ctx, x, slices)


@mil_op("reverse_sequence")
def reverse_sequence(ctx: MilContext) -> Value:
    """Each batch entry reverses its first lengths[b] steps: a gather_nd with constant
    indices, so ``lengths`` must be known at compile time."""
    x = ctx.x("x")
    shape = _static(ctx, x)
    rank = len(shape)
    lengths = need(ctx, "lengths", "it decides which elements move").astype(np.int64)
    lengths = lengths.reshape(-1)
    seq = normalize_axis(int(ctx.attr("seq_axis", 0)), rank)
    bat = normalize_axis(int(ctx.attr("batch_axis", 0)), rank)
    if seq == bat:
        raise ctx.error("seq_axis and batch_axis must differ")
    batch, steps = shape[bat], shape[seq]
    if lengths.shape != (batch,) or (lengths < 0).any() or (lengths > steps).any():
        raise ctx.error(f"lengths {lengths.tolist()} do not fit {batch} x {steps}")
    t = np.arange(steps)[None, :]
    source = np.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)  # [batch, steps]
    others = [i for i in range(rank) if i not in (bat, seq)]
    perm = [bat, seq, *others]
    index = ctx.const(source[..., None].astype(np.int32))
    y = ctx.emit("gather_nd", _transpose(ctx, x, perm), index, batch_dims=1)
    return _transpose(ctx, y, [int(p) for p in np.argsort(perm)])


@mil_op("sliding_windows")
def sliding_windows(ctx: MilContext) -> Value:
    x = ctx.x("x")
    axis = normalize_axis(int(ctx.attr("axis")), x.type.rank)
    size, stride = int(ctx.attr("size")), int(ctx.attr("stride", 1))
    dim = x.shape[axis]
    if not isinstance(dim, int):
        raise ctx.error(f"axis {axis} of {x.type} must be static")
    count = (dim - size) // stride + 1
    index = np.arange(count)[:, None] * stride + np.arange(size)[None, :]
    return ctx.emit("gather", x, ctx.const(index.astype(np.int32)), axis=axis)


# -- pad -----------------------------------------------------------------------------------

_PAD_MODES = {"constant": "constant", "reflect": "reflect", "replicate": "edge"}


@mil_op("pad")
def pad(ctx: MilContext) -> Value:
    """``pad`` holds (before, after) pairs for the last len(pad)/2 axes."""
    x = ctx.x("x")
    mode = ctx.attr("mode", "constant")
    if mode not in _PAD_MODES:
        raise ctx.error(f"mode {mode!r} is not supported (constant, reflect, replicate)")
    pairs = _ints(ctx, "pad")
    rank = x.type.rank
    n = len(pairs) // 2
    if len(pairs) % 2 or n > rank:
        raise ctx.error(f"pad {pairs} needs two entries per padded axis of {x.type}")
    begin = [0] * (rank - n) + pairs[0::2]
    end = [0] * (rank - n) + pairs[1::2]
    if not any(begin + end):
        return x
    value = float(ctx.attr("constant_val", 0.0))
    return ctx.emit("pad", x, pads=begin + end, mode=_PAD_MODES[mode], value=value)


# -- shape, fill, range ----------------------------------------------------------------------


@mil_op("shape")
def shape(ctx: MilContext) -> Value:
    return _cast_to(ctx, ctx.emit("shape", ctx.x("x")))


def _full(ctx: MilContext, value: Any, dtype: str, dims: Sequence[int]) -> Value:
    scalar = _scalar(ctx, value, dtype)
    return ctx.emit("broadcast_to", scalar, shape=list(dims)) if dims else scalar


def _full_like(ctx: MilContext, ref: Value, value: Any, dtype: str) -> Value:
    """``value`` in the shape of ``ref``; for symbolic dims a ``where`` whose two branches
    are the value takes the shape from ref at run time (its values never matter)."""
    if ref.type.is_static:
        return _full(ctx, value, dtype, [int(d) for d in ref.shape])
    cond = ref if ref.dtype == "bool" else ctx.emit("cast", ref, to="bool")
    scalar = _scalar(ctx, value, dtype)
    return ctx.emit("where", cond, scalar, scalar)


@mil_op("fill")
def fill(ctx: MilContext) -> Value:
    return _full(ctx, ctx.attr("value", 0.0), ctx.out_dtype(), _ints(ctx, "shape"))


@mil_op("fill_like")
def fill_like(ctx: MilContext) -> Value:
    return _full_like(ctx, ctx.x("ref_tensor"), ctx.attr("value", 0.0), ctx.out_dtype())


@mil_op("range_1d")
def range_1d(ctx: MilContext) -> Value:
    """numpy.arange of constant bounds (the length is the output shape)."""
    why = "it decides the output length"
    start, end, step = (need(ctx, p, why).item() for p in ("start", "end", "step"))
    if step == 0:
        raise ctx.error("step must not be 0")
    dtype = ctx.out_dtype()
    n = max(math.ceil((end - start) / step), 0)
    values = np.asarray(start, dtype) + np.arange(n, dtype=dtype) * np.asarray(step, dtype)
    return ctx.const(values.astype(dtype))


# -- gather, scatter -----------------------------------------------------------------------


@mil_op("gather")
def gather(ctx: MilContext) -> Value:
    """iOS16+ ``batch_dims`` (tf.gather): the axis moves next to the batch axes and a
    gather_nd with batch_dims picks one index per batch entry."""
    x, indices = ctx.x("x"), _indices(ctx)
    axis = normalize_axis(int(ctx.attr("axis", 0)), x.type.rank)
    b = int(ctx.attr("batch_dims", 0))
    b = b + indices.type.rank if b < 0 else b
    if b == 0:
        return ctx.emit("gather", x, indices, axis=axis)
    if not 0 < b <= axis:
        raise ctx.error(f"batch_dims {b} must not exceed axis {axis}")
    perm = [*range(b), axis, *(i for i in range(b, x.type.rank) if i != axis)]
    tuples = _reshape(ctx, indices, [*indices.shape, 1])
    y = ctx.emit("gather_nd", _transpose(ctx, x, perm), tuples, batch_dims=b)
    # y: N + D[b:axis] + D[axis+1:]; MIL: D[:b] + D[b:axis] + N[b:] + D[axis+1:]
    q, mid = indices.type.rank, axis - b
    back = [*range(b), *range(q, q + mid), *range(b, q), *range(q + mid, y.type.rank)]
    return _transpose(ctx, y, back)


@mil_op("gather_along_axis")
def gather_along_axis(ctx: MilContext) -> Value:
    x = ctx.x("x")
    axis = normalize_axis(int(ctx.attr("axis", 0)), x.type.rank)
    return ctx.emit("gather_elements", x, _indices(ctx), axis=axis)


@mil_op("gather_nd")
def gather_nd(ctx: MilContext) -> Value:
    b = int(ctx.attr("batch_dims", 0))
    return ctx.emit("gather_nd", ctx.x("x"), _indices(ctx), batch_dims=b)


_SCATTER = {"update": "none", "add": "add", "mul": "mul", "max": "max", "min": "min"}


def _scatter(ctx: MilContext, op: str, indices: Value, **attrs: Any) -> Value:
    """A core scatter for every MIL mode: ``sub`` adds the negated updates; ``div`` divides
    data by the updates scattered (multiplied) into ones, which equals repeated division
    for distinct indices (repeated ones multiply their divisors first)."""
    data, updates = ctx.x("data"), ctx.x("updates")
    mode = ctx.attr("mode", "update")
    if mode in _SCATTER:
        return ctx.emit(op, data, indices, updates, reduction=_SCATTER[mode], **attrs)
    if mode == "sub":
        return ctx.emit(op, data, indices, ctx.emit("neg", updates), reduction="add", **attrs)
    if mode == "div":
        ones = _full_like(ctx, data, 1, data.dtype)
        divisor = ctx.emit(op, ones, indices, updates, reduction="mul", **attrs)
        return ctx.emit("div", data, divisor)
    raise ctx.error(f"mode {mode!r} is not supported (update, add, sub, mul, div, max, min)")


@mil_op("scatter")
def scatter(ctx: MilContext) -> Value:
    """1-D indices along ``axis``: broadcast to the updates' shape for scatter_elements."""
    data, updates = ctx.x("data"), ctx.x("updates")
    axis = normalize_axis(int(ctx.attr("axis", 0)), data.type.rank)
    indices = _indices(ctx)
    shape = [1] * updates.type.rank
    shape[axis] = indices.shape[0]
    full = ctx.emit("broadcast_to", _reshape(ctx, indices, shape), shape=list(updates.shape))
    return _scatter(ctx, "scatter_elements", full, axis=axis)


@mil_op("scatter_along_axis")
def scatter_along_axis(ctx: MilContext) -> Value:
    axis = normalize_axis(int(ctx.attr("axis", 0)), ctx.x("data").type.rank)
    return _scatter(ctx, "scatter_elements", _indices(ctx), axis=axis)


@mil_op("scatter_nd")
def scatter_nd(ctx: MilContext) -> Value:
    return _scatter(ctx, "scatter_nd", _indices(ctx))


# -- select, band_part, one_hot, non_zero ----------------------------------------------------


@mil_op("select")
def select(ctx: MilContext) -> Value:
    cond = ctx.x("cond")
    if cond.dtype != "bool":
        cond = ctx.emit("cast", cond, to="bool")
    return ctx.emit("where", cond, ctx.x("a"), ctx.x("b"))


@mil_op("band_part")
def band_part(ctx: MilContext) -> Value:
    """Keeps -lower <= n - m <= upper of the last two axes (a negative bound keeps that
    whole triangle): two trilu ops."""
    y = ctx.x("x")
    lower, upper = int(ctx.attr("lower", -1)), int(ctx.attr("upper", -1))
    if lower >= 0:
        y = ctx.emit("trilu", y, upper=True, k=-lower)
    if upper >= 0:
        y = ctx.emit("trilu", y, upper=False, k=upper)
    return y


@mil_op("one_hot")
def one_hot(ctx: MilContext) -> Value:
    """A negative or too large index gives a row of off values (as Core ML's OneHot layer
    defines it), not an index counted from the end."""
    indices = ctx.x("indices")
    depth = int(need(ctx, "one_hot_vector_size", "it is the size of the new axis").item())
    dtype = ctx.out_dtype()
    values = np.array([ctx.attr("off_value", 0), ctx.attr("on_value", 1)]).astype(dtype)
    negative = ctx.emit("less", indices, _scalar(ctx, 0, indices.dtype))
    safe = ctx.emit("where", negative, _scalar(ctx, depth, indices.dtype), indices)
    axis = int(ctx.attr("axis", -1))
    return ctx.emit("one_hot", safe, ctx.const(values), depth=depth, axis=axis)


@mil_op("non_zero")
def non_zero(ctx: MilContext) -> Value:
    x = need(ctx, "x", "its output shape is [number of non-zeros, rank]")
    coords = np.stack(np.nonzero(x), axis=-1) if x.ndim else np.zeros((int(x != 0), 0))
    return ctx.const(coords.astype(ctx.out_dtype()).reshape(-1, x.ndim))


# -- non_maximum_suppression ------------------------------------------------------------------


def _nms(ctx: MilContext, last: bool) -> list[Value]:
    """Computed at run time as the NeuralNetwork layer defines it (``coreml.nms``); before
    iOS17 boxes are ``[B, N, 4]`` and scores ``[B, N, C]``, from iOS17 the box axis is last and
    there is no score threshold and no count."""
    boxes, scores = ctx.x("boxes"), ctx.x("scores")
    if last:
        boxes = ctx.emit("transpose", boxes, perm=[0, 2, 1])
        scores = ctx.emit("transpose", scores, perm=[0, 2, 1])
    results = non_maximum_suppression(
        ctx,
        boxes,
        scores,
        nms_scalar(ctx, float(ctx.attr("iou_threshold"))),
        nms_scalar(ctx, float(ctx.attr("score_threshold", -np.inf))),
        int(ctx.attr("max_boxes")),
        bool(ctx.attr("per_class_suppression", False)),
    )
    if last:
        results[0] = ctx.emit("transpose", results[0], perm=[0, 2, 1])
        results[1] = ctx.emit("transpose", results[1], perm=[0, 2, 1])
    out = []
    for i, v in enumerate(results[: ctx.num_outputs]):
        want = ctx.out_dtype(i)
        out.append(v if v.dtype == want else ctx.emit("cast", v, to=want))
    return out


@mil_op("non_maximum_suppression")
def non_maximum_suppression_op(ctx: MilContext) -> list[Value]:
    return _nms(ctx, last=False)


@mil_op("non_maximum_suppression", since=IOS17)
def non_maximum_suppression_ios17(ctx: MilContext) -> list[Value]:
    return _nms(ctx, last=True)


# -- depth/space/batch rearrangements --------------------------------------------------------


def _nchw(ctx: MilContext) -> tuple[Value, list[Dim]]:
    x = ctx.x("x")
    if x.type.rank != 4 or any(isinstance(d, str) for d in x.shape[1:]):
        raise ctx.error(f"the input must be [N, C, H, W] with static C, H, W, got {x.type}")
    return x, list(x.shape)


def _to_space(ctx: MilContext, b: int, depth_first: bool) -> Value:
    """Channels to b x b blocks; depth_first: the block position is the outer part of the
    channel index (DCR, TF's depth_to_space), else the inner one (CRD, PixelShuffle)."""
    x, (n, c, h, w) = _nchw(ctx)
    if c % (b * b):
        raise ctx.error(f"channels {c} are not a multiple of {b}^2")
    if depth_first:
        t = _reshape(ctx, x, [n, b, b, c // (b * b), h, w])
        t = ctx.emit("transpose", t, perm=[0, 3, 4, 1, 5, 2])
    else:
        t = _reshape(ctx, x, [n, c // (b * b), b, b, h, w])
        t = ctx.emit("transpose", t, perm=[0, 1, 4, 2, 5, 3])
    return _reshape(ctx, t, [n, c // (b * b), h * b, w * b])


def _to_depth(ctx: MilContext, b: int, depth_first: bool) -> Value:
    x, (n, c, h, w) = _nchw(ctx)
    if h % b or w % b:
        raise ctx.error(f"H and W of {x.type} are not multiples of {b}")
    t = _reshape(ctx, x, [n, c, h // b, b, w // b, b])
    perm = [0, 3, 5, 1, 2, 4] if depth_first else [0, 1, 3, 5, 2, 4]
    t = ctx.emit("transpose", t, perm=perm)
    return _reshape(ctx, t, [n, c * b * b, h // b, w // b])


@mil_op("depth_to_space")
def depth_to_space(ctx: MilContext) -> Value:
    return _to_space(ctx, int(ctx.attr("block_size")), depth_first=True)


@mil_op("space_to_depth")
def space_to_depth(ctx: MilContext) -> Value:
    return _to_depth(ctx, int(ctx.attr("block_size")), depth_first=True)


@mil_op("pixel_shuffle")
def pixel_shuffle(ctx: MilContext) -> Value:
    return _to_space(ctx, int(ctx.attr("upscale_factor")), depth_first=False)


@mil_op("pixel_unshuffle")
def pixel_unshuffle(ctx: MilContext) -> Value:
    return _to_depth(ctx, int(ctx.attr("downscale_factor")), depth_first=False)


@mil_op("space_to_batch")
def space_to_batch(ctx: MilContext) -> Value:
    """tf.space_to_batch on NCHW: the block offset (i, j) becomes the outer part of the
    batch index, (i * bw + j) * N + n."""
    x, (n, c, _, _) = _nchw(ctx)
    bh, bw = (int(v) for v in ctx.attr("block_shape"))
    (pt, pb), (pl, pr) = ctx.attr("paddings")
    if pt or pb or pl or pr:
        x = ctx.emit("pad", x, pads=[0, 0, pt, pl, 0, 0, pb, pr])
    _, _, h, w = x.shape
    if h % bh or w % bw:
        raise ctx.error(f"padded H, W {h}, {w} are not multiples of the block {bh}, {bw}")
    t = _reshape(ctx, x, [n, c, h // bh, bh, w // bw, bw])
    t = ctx.emit("transpose", t, perm=[3, 5, 0, 1, 2, 4])
    return _reshape(ctx, t, [product_dim(ctx, [bh * bw, n]), c, h // bh, w // bw])


@mil_op("batch_to_space")
def batch_to_space(ctx: MilContext) -> Value:
    x, (n, c, h, w) = _nchw(ctx)
    bh, bw = (int(v) for v in ctx.attr("block_shape"))
    (ct, cb), (cl, cr) = ctx.attr("crops")
    if not isinstance(n, int) or n % (bh * bw):
        raise ctx.error(f"the batch of {x.type} must be a static multiple of {bh * bw}")
    t = _reshape(ctx, x, [bh, bw, n // (bh * bw), c, h, w])
    t = ctx.emit("transpose", t, perm=[2, 3, 4, 0, 5, 1])
    t = _reshape(ctx, t, [n // (bh * bw), c, h * bh, w * bw])
    slices = [slice(None, None, 1)] * 2 + [slice(ct, h * bh - cb, 1), slice(cl, w * bw - cr, 1)]
    return _slice(ctx, t, slices)
