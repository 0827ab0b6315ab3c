"""Lowering of reductions, arg-reductions, cumsum and top-k to Relax.

sum/mean/max/min/prod map onto the Relax reductions; the norms and log-sums are built from
them and elementwise ops so that TVM fuses them. Two cases Relax does not define the ONNX
way are settled here: reducing a zero-size tensor gives the reduction's identity (a
broadcast constant), and empty ``axes`` reduce nothing (the op acts elementwise).
"""

from __future__ import annotations

from collections.abc import Callable

from tvm import relax

from compiler.ir.ops.reduce import reduce_identity

from .registry import LowerContext, lowers

_BASE: dict[str, Callable[..., relax.Expr]] = {
    "reduce_sum": relax.op.sum,
    "reduce_mean": relax.op.mean,
    "reduce_max": relax.op.max,
    "reduce_min": relax.op.min,
    "reduce_prod": relax.op.prod,
}


def _is_empty(shape: tuple) -> bool:
    return any(d == 0 for d in shape if isinstance(d, int))


def _const(value: float | int | bool, dtype: str) -> relax.Expr:
    return relax.const(value, dtype)


def _filled(ctx: LowerContext, value: float | int | bool) -> relax.Expr:
    """The output filled with ``value``; broadcast, as Relax's ``full`` cannot hold inf/NaN."""
    dtype = ctx.out_types[0].dtype
    return relax.op.broadcast_to(_const(value, dtype), ctx.out_shape())


def _reduce(op: str, ctx: LowerContext, x: relax.Expr, keepdims: bool) -> relax.Expr:
    """One Relax base reduction over the node's axes (identity when there are none)."""
    axes = ctx.attrs["axes"]
    if not axes:
        return x
    return _BASE[op](x, axes, keepdims)


@lowers(*_BASE)
def _base_reduction(ctx: LowerContext, args: list) -> relax.Expr:
    op, x = ctx.node.op, args[0]
    in_type = ctx.node.inputs[0].type
    dtype = in_type.dtype
    keepdims = ctx.attrs["keepdims"]
    if _is_empty(in_type.shape):
        return _filled(ctx, reduce_identity(op, dtype))
    if dtype == "bool":  # max/min of bools: any/all, done on int8
        x = ctx.emit(relax.op.astype(x, "int8"))
        return relax.op.astype(ctx.emit(_reduce(op, ctx, x, keepdims)), "bool")
    if op == "reduce_mean" and (dtype == "float16" or dtype.is_int):
        # float16 accumulates in float32; integers divide in float64 and truncate, as numpy
        x = ctx.emit(relax.op.astype(x, "float32" if dtype == "float16" else "float64"))
        return relax.op.astype(ctx.emit(_reduce(op, ctx, x, keepdims)), dtype)
    return _reduce(op, ctx, x, keepdims)


@lowers("reduce_l1", "reduce_l2", "reduce_sum_square", "reduce_log_sum")
def _derived_reduction(ctx: LowerContext, args: list) -> relax.Expr:
    op, x = ctx.node.op, args[0]
    in_type = ctx.node.inputs[0].type
    dtype = in_type.dtype
    keepdims = ctx.attrs["keepdims"]
    if _is_empty(in_type.shape):
        return _filled(ctx, reduce_identity(op, dtype))
    if op == "reduce_l1":
        return _reduce("reduce_sum", ctx, ctx.emit(relax.op.abs(x)), keepdims)
    if op == "reduce_log_sum":
        return relax.op.log(ctx.emit(_reduce("reduce_sum", ctx, x, keepdims)))
    squares = ctx.emit(relax.op.multiply(x, x))
    total = _reduce("reduce_sum", ctx, squares, keepdims)
    if op == "reduce_sum_square":
        return total
    total = ctx.emit(total)
    if dtype.is_int:  # sqrt on floats, truncated back like numpy's cast
        root = ctx.emit(relax.op.sqrt(ctx.emit(relax.op.astype(total, "float64"))))
        return relax.op.astype(root, dtype)
    return relax.op.sqrt(total)


@lowers("reduce_log_sum_exp")
def _log_sum_exp(ctx: LowerContext, args: list) -> relax.Expr:
    """m + log(sum(exp(x - m))) with m the max, replaced by 0 where it is not finite."""
    x = args[0]
    in_type = ctx.node.inputs[0].type
    dtype, axes, keepdims = in_type.dtype, ctx.attrs["axes"], ctx.attrs["keepdims"]
    if _is_empty(in_type.shape):
        return _filled(ctx, -float("inf"))
    if not axes:
        return x
    m = ctx.emit(relax.op.max(x, axes, keepdims=True))
    m = ctx.emit(relax.op.where(relax.op.isfinite(m), m, _const(0, dtype)))
    s = ctx.emit(relax.op.sum(ctx.emit(relax.op.exp(relax.op.subtract(x, m))), axes, True))
    out = relax.op.add(ctx.emit(relax.op.log(s)), m)
    if keepdims:
        return out
    return relax.op.squeeze(ctx.emit(out), axes)


@lowers("argmax", "argmin")
def _arg(ctx: LowerContext, args: list) -> relax.Expr:
    """select_last_index: the first extreme of the flipped axis, counted from the end."""
    fn = relax.op.argmax if ctx.node.op == "argmax" else relax.op.argmin
    x, axis, keepdims = args[0], ctx.attrs["axis"], ctx.attrs["keepdims"]
    if not ctx.attrs["select_last_index"]:
        return relax.op.astype(ctx.emit(fn(x, axis, keepdims)), "int64")
    n = ctx.node.inputs[0].type.shape[axis]
    if not isinstance(n, int):
        raise ValueError(f"select_last_index needs a static size on axis {axis}, got {n!r}")
    flipped = ctx.emit(relax.op.flip(x, axis))
    idx = ctx.emit(relax.op.astype(ctx.emit(fn(flipped, axis, keepdims)), "int64"))
    return relax.op.subtract(_const(n - 1, "int64"), idx)


@lowers("cumsum")
def _cumsum(ctx: LowerContext, args: list) -> relax.Expr:
    x, axis = args[0], ctx.attrs["axis"]
    dtype = ctx.out_types[0].dtype
    if ctx.attrs["reverse"]:
        x = ctx.emit(relax.op.flip(x, axis))
    out = relax.op.cumsum(x, axis, dtype, ctx.attrs["exclusive"])
    if ctx.attrs["reverse"]:
        out = relax.op.flip(ctx.emit(out), axis)
    return out


_TOPK_VIA = {"int16": "int32", "uint16": "int32", "uint32": "int64", "uint64": "int64"}
"""Dtypes TVM's sort kernels lack, and the one each is sorted as (order-preserving)."""

_SIGN_BIT = -(1 << 63)
"""uint64 read as int64 with the sign bit flipped keeps the order of the uint64 values
(TVM's arithmetic on uint64 constants is unreliable, so the flip is done on int64)."""


@lowers("topk")
def _topk(ctx: LowerContext, args: list) -> list[relax.Expr]:
    a, x = ctx.attrs, args[0]
    dtype = ctx.out_types[0].dtype
    if a["k"] == 0:  # TVM reads k=0 as "all": the empty result is made directly
        return [relax.op.zeros(ctx.out_shape(i), t.dtype) for i, t in enumerate(ctx.out_types)]
    via = _TOPK_VIA.get(dtype)
    if via is not None:
        x = ctx.emit(relax.op.astype(x, via))
    if dtype == "uint64":
        x = ctx.emit(relax.op.bitwise_xor(x, _const(_SIGN_BIT, "int64")))
    both = ctx.emit(relax.op.topk(x, a["k"], a["axis"], "both", a["largest"], "int64"))
    values: relax.Expr = relax.TupleGetItem(both, 0)
    if dtype == "uint64":
        values = relax.op.bitwise_xor(ctx.emit(values), _const(_SIGN_BIT, "int64"))
    if via is not None:
        values = relax.op.astype(ctx.emit(values), dtype)
    return [values, relax.TupleGetItem(both, 1)]
