"""Converters of ONNX shape and data-movement ops onto the core tensor ops.

ONNX passes shapes, axes and pads as tensors; here they must be compile-time values
(``require_value``), and every format quirk (copy-0 and -1 in Reshape, negative axes,
clamped slice bounds, pads with axes) is resolved before a core op is emitted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from compiler.ir.graph import Value
from compiler.ir.ops.shapes import broadcast_shapes, normalize_axes, normalize_axis
from compiler.ir.types import Dim
from compiler.ir.types import dtype as dtype_of
from compiler.limits import check_tensor

from ..converters import product_dim, resolve_reshape
from .registry import NodeContext, converter, onnx_dtype


def _ints(array: np.ndarray) -> list[int]:
    return [int(v) for v in np.asarray(array).reshape(-1)]


def _reshape(ctx: NodeContext, x: Value, shape: Sequence[Dim]) -> Value:
    """Reshape to a resolved shape, skipping the node when nothing changes."""
    if tuple(shape) == x.shape:
        return x
    return ctx.emit("reshape", x, shape=list(shape))


# -- Reshape, Flatten, Squeeze, Unsqueeze ----------------------------------------------------


@converter("Reshape", since=5)
def reshape(ctx: NodeContext):
    x = ctx.input(0)
    spec = _ints(ctx.require_value(1, "shape"))
    shape = resolve_reshape(ctx, x.shape, spec, "size" if ctx.attr("allowzero", 0) else "copy")
    return _reshape(ctx, x, shape)


@converter("Flatten", since=1)
def flatten(ctx: NodeContext):
    x = ctx.input(0)
    axis = ctx.attr("axis", 1)
    axis = axis + x.type.rank if axis < 0 else axis  # in [-rank, rank]
    if not 0 <= axis <= x.type.rank:
        raise ctx.error(f"axis {ctx.attr('axis')} is out of range for {x.type}")
    shape = [product_dim(ctx, x.shape[:axis]), product_dim(ctx, x.shape[axis:])]
    return _reshape(ctx, x, shape)


def _squeeze(ctx: NodeContext, axes: list[int] | None):
    x = ctx.input(0)
    if axes is None:
        if not x.type.is_static:
            raise ctx.error(f"squeezing every dim of size 1 of {x.type} needs static dims")
        axes = [i for i, d in enumerate(x.shape) if d == 1]
    axes = normalize_axes(axes, x.type.rank)
    for a in axes:
        if x.shape[a] != 1:
            raise ctx.error(f"cannot squeeze dim {a} of {x.type}: it is not 1")
    return _reshape(ctx, x, [d for i, d in enumerate(x.shape) if i not in axes])


@converter("Squeeze", since=1)
def squeeze_v1(ctx: NodeContext):
    axes = ctx.attr("axes")
    return _squeeze(ctx, None if axes is None else list(axes))


@converter("Squeeze", since=13)
def squeeze_v13(ctx: NodeContext):
    axes = None if ctx.input(1) is None else _ints(ctx.require_value(1, "axes"))
    return _squeeze(ctx, axes)


def _unsqueeze(ctx: NodeContext, axes: list[int]):
    x = ctx.input(0)
    rank = x.type.rank + len(axes)
    axes = normalize_axes(axes, rank)
    dims = iter(x.shape)
    return _reshape(ctx, x, [1 if i in axes else next(dims) for i in range(rank)])


@converter("Unsqueeze", since=1)
def unsqueeze_v1(ctx: NodeContext):
    return _unsqueeze(ctx, list(ctx.attr("axes", [])))


@converter("Unsqueeze", since=13)
def unsqueeze_v13(ctx: NodeContext):
    return _unsqueeze(ctx, _ints(ctx.require_value(1, "axes")))


# -- Transpose, Concat, Split ------------------------------------------------------------------


@converter("Transpose", since=1)
def transpose(ctx: NodeContext):
    x = ctx.input(0)
    perm = ctx.attr("perm", list(range(x.type.rank))[::-1])
    if list(perm) == list(range(x.type.rank)):
        return x
    return ctx.emit("transpose", x, perm=list(perm))


@converter("Concat", since=1)
def concat(ctx: NodeContext):
    xs = [v for v in ctx.inputs if v is not None]
    axis = ctx.attr("axis", 1 if ctx.opset < 4 else None)
    if axis is None:
        raise ctx.error("attribute axis is required")
    if len(xs) == 1:
        return xs[0]
    return ctx.op("concat", xs, axis=axis)[0]


def _split(ctx: NodeContext, sizes: list[int] | None, num_outputs: int | None = None):
    x = ctx.input(0)
    axis = normalize_axis(ctx.attr("axis", 0), x.type.rank)
    dim = x.shape[axis]
    if sizes is None:
        if not isinstance(dim, int):
            raise ctx.error(f"cannot split symbolic dim {dim!r} of {x.type}")
        if num_outputs is not None:  # opset 18: the last chunk may be smaller
            chunk = -(-dim // num_outputs)
            sizes = [chunk] * (num_outputs - 1) + [dim - chunk * (num_outputs - 1)]
        else:
            n = ctx.num_outputs
            if dim % n:
                raise ctx.error(f"dim {axis} of {x.type} does not split into {n} equal parts")
            sizes = [dim // n] * n
    if len(sizes) != ctx.num_outputs:
        raise ctx.error(f"split has {len(sizes)} sizes for {ctx.num_outputs} outputs")
    if len(sizes) == 1:
        return [x]
    return ctx.op("split", [x], axis=axis, sizes=sizes)


@converter("Split", since=2)
def split_v2(ctx: NodeContext):
    sizes = ctx.attr("split")
    return _split(ctx, None if sizes is None else list(sizes))


@converter("Split", since=13)
def split_v13(ctx: NodeContext):
    sizes = None if ctx.input(1) is None else _ints(ctx.require_value(1, "split"))
    return _split(ctx, sizes)


@converter("Split", since=18)
def split_v18(ctx: NodeContext):
    sizes = None if ctx.input(1) is None else _ints(ctx.require_value(1, "split"))
    num_outputs = ctx.attr("num_outputs")
    if sizes is not None and num_outputs is not None:
        raise ctx.error("split and num_outputs must not both be given")
    return _split(ctx, sizes, num_outputs)


# -- Slice -----------------------------------------------------------------------------------


@converter("Slice", since=1)
def slice_v1(ctx: NodeContext):
    starts, ends = list(ctx.attr("starts")), list(ctx.attr("ends"))
    axes = list(ctx.attr("axes", range(len(starts))))
    return ctx.emit("slice", ctx.input(0), axes=axes, starts=starts, ends=ends)


@converter("Slice", since=10)
def slice_v10(ctx: NodeContext):
    starts = _ints(ctx.require_value(1, "starts"))
    ends = _ints(ctx.require_value(2, "ends"))
    axes = list(range(len(starts))) if ctx.input(3) is None else _ints(ctx.require_value(3, "axes"))
    steps = [1] * len(starts) if ctx.input(4) is None else _ints(ctx.require_value(4, "steps"))
    return ctx.emit("slice", ctx.input(0), axes=axes, starts=starts, ends=ends, steps=steps)


# -- Pad, Tile, Expand ---------------------------------------------------------------------------

_PAD_MODES = {"constant", "reflect", "edge", "wrap"}


def _pad(ctx: NodeContext, pads: list[int], mode: str, value: float, axes: list[int] | None):
    x = ctx.input(0)
    if mode not in _PAD_MODES:
        raise ctx.error(f"pad mode {mode!r} is not supported (use one of {sorted(_PAD_MODES)})")
    if axes is not None:
        axes = normalize_axes(axes, x.type.rank)
        if len(pads) != 2 * len(axes):
            raise ctx.error(f"{len(pads)} pads for {len(axes)} axes")
        full = [0] * (2 * x.type.rank)
        for i, a in enumerate(axes):
            full[a], full[a + x.type.rank] = pads[i], pads[i + len(axes)]
        pads = full
    if not any(pads):
        return x
    return ctx.emit("pad", x, pads=pads, mode=mode, value=value)


@converter("Pad", since=2)
def pad_v2(ctx: NodeContext):
    return _pad(
        ctx, list(ctx.attr("pads")), ctx.attr("mode", "constant"), ctx.attr("value", 0.0), None
    )


@converter("Pad", since=11)
def pad_v11(ctx: NodeContext):
    pads = _ints(ctx.require_value(1, "pads"))
    value = 0.0
    if ctx.input(2) is not None:
        data = ctx.require_value(2, "constant_value")
        if data.size:
            value = float(data.reshape(-1)[0])
    axes = None if ctx.input(3) is None else _ints(ctx.require_value(3, "axes"))
    return _pad(ctx, pads, ctx.attr("mode", "constant"), value, axes)


@converter("Tile", since=6)
def tile(ctx: NodeContext):
    x = ctx.input(0)
    repeats = _ints(ctx.require_value(1, "repeats"))
    if len(repeats) != x.type.rank:
        raise ctx.error(f"{len(repeats)} repeats for an input of rank {x.type.rank}")
    if all(r == 1 for r in repeats):
        return x
    return ctx.emit("tile", x, repeats=repeats)


@converter("Expand", since=8)
def expand(ctx: NodeContext):
    x = ctx.input(0)
    shape = broadcast_shapes(x.shape, _ints(ctx.require_value(1, "shape")))
    if shape == x.shape:
        return x
    return ctx.emit("broadcast_to", x, shape=list(shape))


# -- Shape, Size ---------------------------------------------------------------------------------


@converter("Shape", since=1)
def shape(ctx: NodeContext):
    attrs = {k: ctx.attr(k) for k in ("start", "end") if ctx.has_attr(k)}
    return ctx.emit("shape", ctx.input(0), **attrs)


@converter("Size", since=1)
def size(ctx: NodeContext):
    x = ctx.input(0)
    if x.type.size is not None:
        return ctx.const(np.array(x.type.size, dtype=np.int64))
    dims = ctx.emit("shape", x)
    return ctx.emit("reduce_prod", dims, axes=[0], keepdims=False)


# -- Constants -----------------------------------------------------------------------------------


@converter("Constant", since=1)
def constant(ctx: NodeContext):
    if ctx.has_attr("value"):
        return ctx.const(ctx.attr("value"))
    makers = {
        "value_float": "float32",
        "value_floats": "float32",
        "value_int": "int64",
        "value_ints": "int64",
    }
    for name, dtype in makers.items():
        if ctx.has_attr(name):
            return ctx.const(np.array(ctx.attr(name), dtype=dtype))
    present = [a.name for a in ctx.node.attribute]
    raise ctx.error(f"constant attribute {present} is not supported (only numeric tensors)")


@converter("ConstantOfShape", since=9)
def constant_of_shape(ctx: NodeContext):
    shape = _ints(ctx.require_value(0, "shape"))
    value = ctx.attr("value")
    scalar = np.zeros((), np.float32) if value is None else np.asarray(value).reshape(())
    return ctx.emit("broadcast_to", ctx.const(scalar), shape=shape)


@converter("EyeLike", since=9)
def eye_like(ctx: NodeContext):
    x = ctx.input(0)
    if x.type.rank != 2 or not x.type.is_static:
        raise ctx.error(f"EyeLike needs a static 2-D input, got {x.type}")
    dtype = onnx_dtype(ctx.attr("dtype")) if ctx.has_attr("dtype") else x.dtype
    check_tensor("EyeLike result", x.shape, dtype_of(dtype).np.itemsize)
    return ctx.const(np.eye(x.shape[0], x.shape[1], k=ctx.attr("k", 0), dtype=dtype))


@converter("Range", since=11)
def range_(ctx: NodeContext):
    start, limit, delta = (
        ctx.require_value(i, n) for i, n in enumerate(("start", "limit", "delta"))
    )
    dtype = start.dtype
    if not np.asarray(delta).any():
        raise ctx.error("delta must not be 0")
    if dtype_of(dtype).is_float:
        # 16-bit floats accumulate in stash_type (float32 unless told), as ONNX's function body.
        stash = ctx.attr("stash_type", 1) if dtype_of(dtype).bits < 32 else None
        compute = np.dtype(onnx_dtype(stash)) if stash else dtype
        s, lim, d = (np.asarray(v, compute).item() for v in (start, limit, delta))
        n = max(math.ceil((lim - s) / d), 0)
        check_tensor("Range result", [n], np.dtype(compute).itemsize)
        values = np.asarray(s, compute) + np.arange(n, dtype=compute) * np.asarray(d, compute)
    else:
        s, lim, d = (int(np.asarray(v).item()) for v in (start, limit, delta))
        check_tensor("Range result", [len(range(s, lim, d))], 8)
        values = np.arange(s, lim, d, dtype=np.int64)
    return ctx.const(values.astype(dtype))


# -- Identity, Dropout ---------------------------------------------------------------------------


@converter("Identity", since=1)
def identity(ctx: NodeContext):
    return ctx.input(0)


def _ones_like(ctx: NodeContext, x: Value, dtype: str) -> Value:
    if x.type.is_static:
        return ctx.emit("broadcast_to", ctx.const(np.ones((), dtype)), shape=list(x.shape))
    raise ctx.error(f"the mask output of Dropout needs static dims, got {x.type}")


def _dropout(ctx: NodeContext, ratio: float):
    x = ctx.input(0)
    y = ctx.emit("dropout", x, ratio=ratio)
    if ctx.num_outputs < 2 or not ctx.node.output[1]:
        return [y]
    mask_dtype = "bool" if ctx.opset >= 10 else x.dtype
    return [y, _ones_like(ctx, x, mask_dtype)]


@converter("Dropout", since=1)
def dropout_v1(ctx: NodeContext):
    if ctx.opset < 7 and ctx.attr("is_test", 0) == 0 and ctx.attr("ratio", 0.5) != 0:
        raise ctx.error("training-mode Dropout (is_test=0) is not supported")
    return _dropout(ctx, ctx.attr("ratio", 0.5))


@converter("Dropout", since=12)
def dropout_v12(ctx: NodeContext):
    ratio = 0.5
    if ctx.input(1) is not None and ctx.value(1) is not None:
        ratio = float(ctx.value(1).reshape(-1)[0])
    if ctx.input(2) is not None and bool(ctx.require_value(2, "training_mode").reshape(-1)[0]):
        ratio = float(ctx.require_value(1, "ratio").reshape(-1)[0]) if ctx.input(1) else 0.5
        if ratio != 0:
            raise ctx.error("training-mode Dropout (random masks) is not supported")
    return _dropout(ctx, ratio)


# -- DepthToSpace, SpaceToDepth -----------------------------------------------------------------


def _block_mode(ctx: NodeContext) -> tuple[int, str]:
    x = ctx.input(0)
    if x.type.rank != 4:
        raise ctx.error(f"the input must be 4-D [N, C, H, W], got {x.type}")
    if any(isinstance(d, str) for d in x.shape[1:]):
        raise ctx.error(f"C, H and W must be static, got {x.type}")
    mode = ctx.attr("mode", "DCR")
    if mode not in ("DCR", "CRD"):
        raise ctx.error(f"mode {mode!r} is not supported (DCR or CRD)")
    return int(ctx.attr("blocksize")), mode


@converter("DepthToSpace", since=1)
def depth_to_space(ctx: NodeContext):
    b, mode = _block_mode(ctx)
    x = ctx.input(0)
    n, c, h, w = x.shape
    if c % (b * b):
        raise ctx.error(f"channels {c} are not a multiple of blocksize^2 = {b * b}")
    if mode == "DCR":
        t = _reshape(ctx, x, [n, b, b, c // (b * b), h, w])
        t = ctx.emit("transpose", t, perm=[0, 3, 4, 1, 5, 2])
    else:
        t = _reshape(ctx, x, [n, c // (b * b), b, b, h, w])
        t = ctx.emit("transpose", t, perm=[0, 1, 4, 2, 5, 3])
    return _reshape(ctx, t, [n, c // (b * b), h * b, w * b])


@converter("SpaceToDepth", since=1)
def space_to_depth(ctx: NodeContext):
    b, mode = _block_mode(ctx)
    x = ctx.input(0)
    n, c, h, w = x.shape
    if h % b or w % b:
        raise ctx.error(f"H and W of {x.type} are not multiples of blocksize {b}")
    t = _reshape(ctx, x, [n, c, h // b, b, w // b, b])
    perm = [0, 3, 5, 1, 2, 4] if mode == "DCR" else [0, 1, 3, 5, 2, 4]
    t = ctx.emit("transpose", t, perm=perm)
    return _reshape(ctx, t, [n, c * b * b, h // b, w // b])
