"""Lowering of indexing ops: gather/scatter families, trilu, one_hot.

The IR lets indices be negative (counted from the end of their axis); TOPI's kernels
mostly do not, and read out of bounds for an index out of range. So each rule first maps
indices into range: at compile time for constant indices known to be in range, else with
a run-time check kernel that raises for an index out of range and shifts negative ones
(``checks.checked_indices``), or, with checks off, ``where(i < 0, i + size, i)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from tvm import relax

from .checks import checked_indices
from .registry import LowerContext, lowers

_REDUCTION = {"none": "update", "add": "add", "mul": "mul", "max": "max", "min": "min"}


def _sizes(ctx: LowerContext, sizes: list[Any], dtype: str, scalar: bool) -> relax.Expr:
    """The axis sizes as a tensor of the index dtype: a scalar, or a vector of len(sizes)."""
    if all(isinstance(s, int) for s in sizes):
        data = np.asarray(sizes[0] if scalar else sizes, dtype=dtype)
        return relax.const(data, dtype)
    t = ctx.emit(relax.op.shape_to_tensor(relax.ShapeExpr(sizes)))
    t = ctx.emit(relax.op.astype(t, dtype))
    return ctx.emit(relax.op.reshape(t, ())) if scalar else t


def _in_range(
    ctx: LowerContext,
    index: int,
    expr: relax.Expr,
    sizes: list[Any],
    scalar: bool = True,
    where: str = "",
) -> relax.Expr:
    """Indices (node input ``index``) with negatives shifted by the size of their axis,
    checked at run time unless they are constants known to be in range.

    ``sizes`` are Relax shape entries: one per index when ``scalar``, else the sizes of the
    axes the last index dimension addresses (gather_nd, scatter_nd). ``where`` names those
    axes in the check's message.
    """
    value = ctx.node.inputs[index]
    dtype = value.type.dtype
    if value.const is not None and all(isinstance(s, int) for s in sizes):
        size = sizes[0] if scalar else np.asarray(sizes)
        if ((value.const >= -size) & (value.const < size)).all():
            fixed = np.where(value.const < 0, value.const + size, value.const)
            return relax.const(fixed.astype(dtype), dtype)  # astype copies; keeps rank 0
    if ctx.checks:
        return checked_indices(ctx, index, expr, sizes, scalar, where)
    if value.const is not None and (value.const >= 0).all():
        return expr
    size = _sizes(ctx, sizes, dtype, scalar)
    negative = ctx.emit(relax.op.less(expr, relax.const(0, dtype)))
    shifted = ctx.emit(relax.op.add(expr, size))
    return ctx.emit(relax.op.where(negative, shifted, expr))


def _data_shape(ctx: LowerContext) -> list[Any]:
    return ctx.shape_of(ctx.node.inputs[0].type.shape)


@lowers("gather")
def _gather(ctx: LowerContext, args: list) -> relax.Expr:
    data, indices = args
    axis = ctx.attrs["axis"]
    indices = _in_range(ctx, 1, indices, [_data_shape(ctx)[axis]], where=f"axis {axis}")
    return relax.op.take(data, indices, axis=axis)


@lowers("gather_elements")
def _gather_elements(ctx: LowerContext, args: list) -> relax.Expr:
    data, indices = args
    axis = ctx.attrs["axis"]
    indices = _in_range(ctx, 1, indices, [_data_shape(ctx)[axis]], where=f"axis {axis}")
    return relax.op.gather_elements(data, indices, axis=axis)


def _nd_indices(ctx: LowerContext, indices: relax.Expr, batch_dims: int) -> relax.Expr:
    k = ctx.node.inputs[1].type.shape[-1]
    sizes = _data_shape(ctx)[batch_dims : batch_dims + k]
    axes = ", ".join(str(a) for a in range(batch_dims, batch_dims + k))
    indices = _in_range(ctx, 1, indices, sizes, scalar=False, where=f"axes {axes}")
    return _as_int64(ctx, indices)


def _as_int64(ctx: LowerContext, indices: relax.Expr) -> relax.Expr:
    """Relax's gather_nd and scatter_nd accept int64 indices only; the IR allows int32."""
    if ctx.node.inputs[1].type.dtype == "int64":
        return indices
    return ctx.emit(relax.op.astype(indices, "int64"))


@lowers("gather_nd")
def _gather_nd(ctx: LowerContext, args: list) -> relax.Expr:
    data, indices = args
    b = ctx.attrs["batch_dims"]
    return relax.op.gather_nd(data, _nd_indices(ctx, indices, b), batch_dims=b)


def _topi_scatter_layout_ok(data_shape: tuple, index_shape: tuple, axis: int) -> bool:
    """TOPI's scatter_elements flattens indices assuming the data's strides: it is right
    only when the index tensor matches data on every axis but ``axis`` and the first."""
    return all(
        d == i for a, (d, i) in enumerate(zip(data_shape, index_shape)) if a not in (0, axis)
    )


@lowers("scatter_elements")
def _scatter_elements(ctx: LowerContext, args: list) -> relax.Expr:
    data, indices, updates = args
    axis = ctx.attrs["axis"]
    reduction = _REDUCTION[ctx.attrs["reduction"]]
    data_t, index_t = ctx.node.inputs[0].type, ctx.node.inputs[1].type
    indices = _in_range(ctx, 1, indices, [_data_shape(ctx)[axis]], where=f"axis {axis}")
    if _topi_scatter_layout_ok(data_t.shape, index_t.shape, axis):
        return relax.op.scatter_elements(data, indices, updates, axis=axis, reduction=reduction)
    # Otherwise: full coordinates for every update, and scatter_nd.
    if not index_t.is_static:
        raise NotImplementedError(
            f"scatter_elements with indices {index_t} smaller than data {data_t} on an axis "
            "other than the scatter axis needs static shapes"
        )
    grids = np.indices(index_t.shape).astype(index_t.dtype)
    parts = []
    for a in range(data_t.rank):
        if a == axis:
            parts.append(ctx.emit(relax.op.expand_dims(indices, [-1])))
        else:
            parts.append(relax.const(np.ascontiguousarray(grids[a][..., None]), index_t.dtype))
    coords = _as_int64(ctx, ctx.emit(relax.op.concat(parts, axis=-1)))
    return relax.op.scatter_nd(data, coords, updates, reduction=reduction)


@lowers("scatter_nd")
def _scatter_nd(ctx: LowerContext, args: list) -> relax.Expr:
    data, indices, updates = args
    reduction = _REDUCTION[ctx.attrs["reduction"]]
    return relax.op.scatter_nd(data, _nd_indices(ctx, indices, 0), updates, reduction=reduction)


@lowers("trilu")
def _trilu(ctx: LowerContext, args: list) -> relax.Expr:
    fn = relax.op.triu if ctx.attrs["upper"] else relax.op.tril
    return fn(args[0], ctx.attrs["k"])


@lowers("one_hot")
def _one_hot(ctx: LowerContext, args: list) -> relax.Expr:
    indices, values = args
    depth, axis = ctx.attrs["depth"], ctx.attrs["axis"]
    itype = ctx.node.inputs[0].type
    if itype.dtype != "int64":
        indices = ctx.emit(relax.op.astype(indices, "int64"))  # floats truncate, as in ONNX
    negative = ctx.emit(relax.op.less(indices, relax.const(0, "int64")))
    shifted = ctx.emit(relax.op.add(indices, relax.const(depth, "int64")))
    indices = ctx.emit(relax.op.where(negative, shifted, indices))
    indices = ctx.emit(relax.op.expand_dims(indices, [axis]))
    targets = np.arange(depth, dtype="int64").reshape((depth,) + (1,) * (itype.rank - axis))
    hit = ctx.emit(relax.op.equal(indices, relax.const(targets, "int64")))
    off = ctx.emit(relax.op.take(values, relax.const(0, "int64"), axis=0))
    on = ctx.emit(relax.op.take(values, relax.const(1, "int64"), axis=0))
    return relax.op.where(hit, on, off)
