"""Converters of ONNX QuantizeLinear / DequantizeLinear (opsets 10-25) into core ops.

Linear quantization is elementwise arithmetic plus casts, so it decomposes:
``y = saturate(round_half_even(x / scale) + zero_point)`` and
``x = (q - zero_point) * scale``. Scales and zero points are per tensor (scalar or one
element), per axis (1-D along ``axis``) or blocked (``block_size`` > 0: the input's shape
with ``ceil(n / block_size)`` along ``axis``, each entry covering a block of inputs).
Integer targets (int8, uint8, int16, uint16, int4, uint4, int2, uint2; int32 too to
dequantize) round half to even and saturate; float8 targets are ``cast(x / scale)`` with the
node's ``saturate`` (their zero point must be 0 and is not added); float4_e2m1fn is
``cast(x / scale + zero_point)``, which always saturates.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

from compiler.ir.graph import Value
from compiler.ir.types import dtype

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
