"""Converters of ONNX's quantized ops into core ops: QuantizeLinear / DequantizeLinear
(opsets 10-25), DynamicQuantizeLinear, MatMulInteger, ConvInteger, QLinearMatMul and
QLinearConv.

Linear quantization is elementwise arithmetic plus casts, so it decomposes:
``y = saturate(round_half_even(x / scale) + zero_point)`` and
``x = (q - zero_point) * scale``. Scales and zero points are per tensor (scalar or one
element), per axis (1-D along ``axis``) or blocked (``block_size`` > 0: the input's shape
with ``ceil(n / block_size)`` along ``axis``, each entry covering a block of inputs).
Integer targets (int8, uint8, int16, uint16, int4, uint4, int2, uint2; int32 too to
dequantize) round half to even and saturate; float8 targets are ``cast(x / scale)`` with the
node's ``saturate`` (their zero point must be 0 and is not added); float4_e2m1fn is
``cast(x / scale + zero_point)``, which always saturates.

The integer products (MatMulInteger, ConvInteger and the QLinear ops) subtract the zero points
in int32 and run an int32 matmul / conv, which is exact (no float accumulation). QLinear ops
then requantize as ONNX's reference does: ``int32 * (s_a * s_b / s_y)`` (the scale quotient
in the scales' dtype, the product in float64, numpy's promotion of int32 with a float array),
plus the output zero point, rounded half to even and saturated.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

from compiler.ir.graph import Value
from compiler.ir.types import dtype

from .nn import _window
from .registry import NodeContext, converter, onnx_dtype

_INT_QUANT = ("int8", "uint8", "int16", "uint16", "int4", "uint4", "int2", "uint2")
_FLOAT8 = ("float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz")
_QUANT_DTYPES = (*_INT_QUANT, *_FLOAT8, "float4_e2m1fn")
_DEQUANT_DTYPES = (*_QUANT_DTYPES, "int32")


def _broadcastable(ctx: NodeContext, param: Value, x: Value, what: str) -> Value:
    """A scale or zero point reshaped (or expanded, for blocks) to broadcast against x."""
    if param.type.rank == 0:
        return param
    if param.type.rank == 1 and param.shape[0] == 1:
        return ctx.emit("reshape", param, shape=[])
    axis = int(ctx.attr("axis", 1))
    if not -x.type.rank <= axis < x.type.rank:
        raise ctx.error(f"axis {axis} is out of range for a rank-{x.type.rank} input")
    axis %= x.type.rank
    block = int(ctx.attr("block_size", 0))
    if block <= 0:
        if param.type.rank != 1 or param.shape[0] != x.shape[axis]:
            raise ctx.error(
                f"per-axis {what} {param.type} does not match the input's axis {axis} "
                f"({x.shape[axis]})"
            )
        return ctx.emit("reshape", param, shape=[param.shape[0]] + [1] * (x.type.rank - axis - 1))
    n = x.shape[axis]
    if not isinstance(n, int):
        raise ctx.error(f"blocked quantization needs a static axis {axis}, got {x.type}")
    blocks = -(-n // block)
    expect = [blocks if i == axis else d for i, d in enumerate(x.shape)]
    if list(param.shape) != expect:
        raise ctx.error(
            f"blocked {what} {param.type} should have shape {expect} (block_size {block})"
        )
    index = ctx.const(np.arange(n, dtype=np.int64) // block)
    return ctx.emit("gather", param, index, axis=axis)


def _as(ctx: NodeContext, x: Value, dtype: str) -> Value:
    return x if x.dtype == dtype else ctx.emit("cast", x, to=dtype)


@converter("QuantizeLinear", since=10)
def quantize_linear(ctx: NodeContext):
    x, scale, zero = ctx.input(0), ctx.input(1), ctx.input(2)
    out_attr = int(ctx.attr("output_dtype", 0))
    if zero is not None:
        out = zero.dtype
        if out_attr and onnx_dtype(out_attr) != out:
            raise ctx.error(f"output_dtype {onnx_dtype(out_attr)} differs from zero point's {out}")
    else:
        out = onnx_dtype(out_attr) if out_attr else "uint8"
    if out not in _QUANT_DTYPES:
        raise ctx.error(f"quantizing to {out} is not supported")
    precision = int(ctx.attr("precision", 0))
    if precision:
        calc = onnx_dtype(precision)
    else:
        calc = np.result_type(np.dtype(x.dtype), np.dtype(scale.dtype)).name
        if calc not in ("float16", "float32", "float64"):
            calc = "float64"  # numpy's true division of integers
    scaled = ctx.emit(
        "div", _as(ctx, x, calc), _as(ctx, _broadcastable(ctx, scale, x, "scale"), calc)
    )
    if out in _FLOAT8:
        if zero is not None and zero.const is not None and np.any(zero.const.astype(np.float32)):
            raise ctx.error(f"a {out} zero point must be 0")
        return ctx.emit("cast", scaled, to=out, saturate=bool(ctx.attr("saturate", 1)))
    if out == "float4_e2m1fn":
        if zero is not None:
            zp = _as(ctx, _broadcastable(ctx, zero, x, "zero point"), calc)
            scaled = ctx.emit("add", scaled, zp)
        return ctx.emit("cast", scaled, to=out)
    # Round half to even, then saturate; the bound first keeps the int32 cast defined.
    rounded = ctx.emit("round", scaled)
    bound = min(2.0**30, float(np.finfo(calc).max))
    rounded = ctx.emit("clip", rounded, min=-bound, max=bound)
    q = ctx.emit("cast", rounded, to="int32")
    if zero is not None:
        q = ctx.emit("add", q, _as(ctx, _broadcastable(ctx, zero, x, "zero point"), "int32"))
    info = ml_dtypes.iinfo(dtype(out).np)
    q = ctx.emit("clip", q, min=float(info.min), max=float(info.max))
    return ctx.emit("cast", q, to=out)


@converter("DequantizeLinear", since=10)
def dequantize_linear(ctx: NodeContext):
    x, scale, zero = ctx.input(0), ctx.input(1), ctx.input(2)
    if x.dtype not in _DEQUANT_DTYPES:
        raise ctx.error(f"dequantizing {x.dtype} is not supported")
    if zero is not None and zero.dtype != x.dtype:
        raise ctx.error(f"zero point dtype {zero.dtype} differs from the input's {x.dtype}")
    out_attr = int(ctx.attr("output_dtype", 0))
    out = onnx_dtype(out_attr) if out_attr else scale.dtype
    # As ONNX: the difference in float32, times the scale (float64 stays float64).
    calc = "float64" if scale.dtype == "float64" else "float32"
    diff = _as(ctx, x, calc)
    if zero is not None:
        diff = ctx.emit("sub", diff, _as(ctx, _broadcastable(ctx, zero, x, "zero point"), calc))
    y = ctx.emit("mul", diff, _as(ctx, _broadcastable(ctx, scale, x, "scale"), calc))
    return _as(ctx, y, out)


# -- integer matmul / conv -------------------------------------------------------------------

_INT8 = ("int8", "uint8")


def _shifted(ctx: NodeContext, x: Value, zero: Value | None, what: str, axis: int | None) -> Value:
    """``x - zero`` in int32; a 1-D zero point (of more than one entry) applies along
    ``axis`` of x (a matmul row or column, a conv output channel)."""
    if x.dtype not in _INT8:
        raise ctx.error(f"{what} must be int8 or uint8, got {x.dtype}")
    wide = _as(ctx, x, "int32")
    if zero is None:
        return wide
    if zero.dtype != x.dtype:
        raise ctx.error(f"{what}'s zero point is {zero.dtype}, not {x.dtype} like {what}")
    zero = _per_axis(ctx, zero, x, axis, f"{what}'s zero point")
    return ctx.emit("sub", wide, _as(ctx, zero, "int32"))


def _per_axis(ctx: NodeContext, p: Value, x: Value, axis: int | None, what: str) -> Value:
    """A scalar (or one-element) parameter as a scalar; a 1-D one shaped to broadcast along
    ``axis`` of x, one of x's rank as it is (None: only per-tensor allowed)."""
    if p.type.rank == 0:
        return p
    if p.type.rank == 1 and p.shape[0] == 1:
        return ctx.emit("reshape", p, shape=[])
    if axis is not None and p.type.rank == x.type.rank > 1:
        return p  # already shaped to broadcast (MatMulInteger's [..., M, 1] / [..., 1, N])
    if axis is None or p.type.rank != 1 or x.type.rank < 2:
        raise ctx.error(f"{what} must be a scalar, got {p.type}")
    axis %= x.type.rank
    if p.shape[0] != x.shape[axis]:
        raise ctx.error(f"{what} {p.type} does not match axis {axis} of {x.type}")
    return ctx.emit("reshape", p, shape=[p.shape[0]] + [1] * (x.type.rank - axis - 1))


def _int_matmul(ctx: NodeContext, a: Value, a_zero, b: Value, b_zero) -> Value:
    """(a - a_zero) @ (b - b_zero) in int32; zero points per tensor, a's per row, b's per
    column."""
    if a.type.rank < 1 or b.type.rank < 1:
        raise ctx.error("A and B must have rank >= 1")
    a_axis = -2 if a.type.rank >= 2 else None
    b_axis = -1 if b.type.rank >= 2 else None
    return ctx.emit(
        "matmul", _shifted(ctx, a, a_zero, "A", a_axis), _shifted(ctx, b, b_zero, "B", b_axis)
    )


def _int_conv(ctx: NodeContext, x: Value, x_zero, w: Value, w_zero, bias: Value | None) -> Value:
    """conv of (x - x_zero) and (w - w_zero) in int32 (the padding is 0 after the shift, as
    ONNX's reference pads); w's zero point per tensor or per output channel."""
    if x.type.rank < 3 or w.type.rank != x.type.rank:
        raise ctx.error(
            f"conv needs an input of rank >= 3 and a weight of its rank, got {x.type} and {w.type}"
        )
    if bias is not None and bias.dtype != "int32":
        raise ctx.error(f"the bias must be int32, got {bias.dtype}")
    kernel = list(ctx.attr("kernel_shape", w.shape[2:]))
    return ctx.emit(
        "conv",
        _shifted(ctx, x, x_zero, "x", None),
        _shifted(ctx, w, w_zero, "w", 0),
        bias,
        groups=ctx.attr("group", 1),
        **_window(ctx, x, kernel),
    )


@converter("MatMulInteger", since=10)
def matmul_integer(ctx: NodeContext):
    return _int_matmul(ctx, ctx.input(0), ctx.input(2), ctx.input(1), ctx.input(3))


@converter("ConvInteger", since=10)
def conv_integer(ctx: NodeContext):
    return _int_conv(ctx, ctx.input(0), ctx.input(2), ctx.input(1), ctx.input(3), None)


def _requantize(
    ctx: NodeContext, acc: Value, scale: Value, y_zero: Value | None, out: str
) -> Value:
    """The int32 result times ``scale`` (float64), plus y_zero, rounded half to even and
    saturated to ``out``."""
    if out not in _INT8:
        raise ctx.error(f"the output must be int8 or uint8, got {out}")
    # Through int64: TVM's simplifier crashes on a float64 cast of an inlined int32 product
    # (a 1x1 single-channel conv); int32 -> int64 -> float64 is exact all the same.
    wide = ctx.emit("cast", ctx.emit("cast", acc, to="int64"), to="float64")
    y = ctx.emit("mul", wide, _as(ctx, scale, "float64"))
    if y_zero is not None:
        y = ctx.emit("add", y, _as(ctx, y_zero, "float64"))
    info = np.iinfo(out)
    y = ctx.emit("clip", ctx.emit("round", y), min=float(info.min), max=float(info.max))
    return ctx.emit("cast", y, to=out)


def _scale_quotient(
    ctx: NodeContext, sa: Value, sb: Value, sy: Value, axes: tuple, like: tuple
) -> Value:
    """``sa * sb / sy`` in the scales' dtype, each broadcast along its axis."""
    dtype = sa.dtype
    if dtype not in ("float32", "float16") or sb.dtype != dtype or sy.dtype != dtype:
        raise ctx.error(
            f"scales must all be float32 or float16, got {sa.dtype}, {sb.dtype}, {sy.dtype}"
        )
    sa, sb, sy = (
        _per_axis(ctx, p, x, ax, what)
        for p, x, ax, what in zip((sa, sb, sy), like, axes, ("a_scale", "b_scale", "y_scale"))
    )
    return ctx.emit("div", ctx.emit("mul", sa, sb), sy)


@converter("QLinearMatMul", since=10)
def qlinear_matmul(ctx: NodeContext):
    a, sa, za, b, sb, zb, sy, zy = (ctx.input(i) for i in range(8))
    acc = _int_matmul(ctx, a, za, b, zb)
    a_axis = -2 if a.type.rank >= 2 else None
    b_axis = -1 if b.type.rank >= 2 else None
    scale = _scale_quotient(ctx, sa, sb, sy, (a_axis, b_axis, a_axis), (a, b, acc))
    if zy is not None:
        zy = _per_axis(ctx, zy, acc, a_axis, "y_zero_point")
    return _requantize(ctx, acc, scale, zy, a.dtype if zy is None else zy.dtype)


@converter("QLinearConv", since=10)
def qlinear_conv(ctx: NodeContext):
    x, sx, zx, w, sw, zw, sy, zy, bias = (ctx.input(i) for i in range(9))
    acc = _int_conv(ctx, x, zx, w, zw, bias)
    # w_scale per output channel: axis 1 of the [N, M, ...] result.
    scale = _scale_quotient(ctx, sx, sw, sy, (None, 1, None), (x, acc, acc))
    return _requantize(ctx, acc, scale, zy, x.dtype if zy is None else zy.dtype)


@converter("DynamicQuantizeLinear", since=11)
def dynamic_quantize_linear(ctx: NodeContext):
    """uint8 with the range [min(x, 0), max(x, 0)] mapped onto [0, 255], all in float32."""
    x = ctx.input(0)
    if x.dtype != "float32":
        raise ctx.error(f"x must be float32, got {x.dtype}")
    axes = list(range(x.type.rank))
    zero = ctx.const(0, "float32")
    hi = ctx.emit("maximum", ctx.emit("reduce_max", x, axes=axes, keepdims=False), zero)
    lo = ctx.emit("minimum", ctx.emit("reduce_min", x, axes=axes, keepdims=False), zero)
    span = ctx.emit("sub", hi, lo)
    span = ctx.emit("where", ctx.emit("equal", hi, lo), ctx.const(1, "float32"), span)
    scale = ctx.emit("div", span, ctx.const(255, "float32"))
    zp = ctx.emit("clip", ctx.emit("neg", ctx.emit("div", lo, scale)), min=0.0, max=255.0)
    zp = ctx.emit("round", zp)
    y = ctx.emit("add", ctx.emit("round", ctx.emit("div", x, scale)), zp)
    y = ctx.emit("cast", ctx.emit("clip", y, min=0.0, max=255.0), to="uint8")
    return [y, scale, ctx.emit("cast", zp, to="uint8")]
