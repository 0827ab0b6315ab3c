"""MIL quantize/dequantize and the compressed-weight constexpr_* ops (affine dequantize, LUT,
sparse, blockwise shift-scale).

The constexpr_* ops only read constants, so nnxc decompresses them with numpy at import time
into IR constants (then folded into the ops reading them; a chain such as a palettized LUT whose
entries are themselves quantized decompresses step by step). The iOS16 ops keep sub-byte data
packed in bytes (least significant bits first); from iOS18 the loader hands sub-byte tensors
(int4, uint1...) over unpacked. ``quantize``/``dequantize`` (iOS17) act on run-time tensors.
"""

from __future__ import annotations

import numpy as np

from compiler.ir.graph import Value

from .registry import MilContext, mil_op

IOS16, IOS18 = 7, 9
"""Specification versions of the opsets that define (or redefine) these ops."""


def _const(ctx: MilContext, param: str) -> np.ndarray | None:
    """A compile-time input as numpy (an earlier constexpr_* result too); None if absent."""
    if not ctx.has(param):
        return None
    data = ctx.x(param).const
    if data is None:
        raise ctx.error(f"input {param!r} must be known at compile time")
    return data


def _out(ctx: MilContext, data: np.ndarray, index: int = 0) -> Value:
    """``data`` as the IR constant of output ``index`` (in the dtype pymil inferred)."""
    want = ctx.out_shape(index)
    if list(data.shape) != [int(d) for d in want]:
        raise ctx.error(f"decompresses to shape {list(data.shape)}, expected {want}")
    return ctx.const(data.astype(ctx.out_dtype(index)))


def _along(param: np.ndarray, rank: int, axis: int | None) -> np.ndarray:
    """A scalar or per-axis vector ``param`` shaped to broadcast against a rank-``rank``
    tensor along ``axis``."""
    if param.ndim == 0 or param.size == 1 and axis is None:
        return param.reshape(())
    if param.ndim == rank:
        return param
    shape = [1] * rank
    shape[axis % rank] = param.size
    return param.reshape(shape)


def _unpack_bits(packed: np.ndarray, nbits: int, count: int) -> np.ndarray:
    """``count`` unsigned ``nbits``-bit values packed into bytes, least significant bit
    first."""
    bits = np.unpackbits(packed.astype(np.uint8).reshape(-1), bitorder="little")
    bits = bits[: count * nbits].reshape(count, nbits).astype(np.uint32)
    return (bits << np.arange(nbits, dtype=np.uint32)).sum(axis=1)


def _repeat_blocks(param: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A per-block ``param`` (each axis dividing ``shape``'s) repeated to ``shape``."""
    for axis, (full, blocks) in enumerate(zip(shape, param.shape)):
        if full != blocks:
            param = np.repeat(param, full // blocks, axis=axis)
    return param


def _block_rows(shape: tuple[int, ...], blocks: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    """Index grids that map each element of ``shape`` to its block (``blocks`` per axis)."""
    grids = []
    for axis, (full, n) in enumerate(zip(shape, blocks)):
        index = np.arange(full) // (full // n)
        view = [1] * len(shape)
        view[axis] = full
        grids.append(index.reshape(view))
    return tuple(grids)


# -- iOS16 ---------------------------------------------------------------------------------


@mil_op("constexpr_affine_dequantize")
def constexpr_affine_dequantize(ctx: MilContext) -> Value:
    """``scale * (quantized_data - zero_point)``, scale and zero point along ``axis``."""
    data = _const(ctx, "quantized_data")
    axis = int(ctx.attr("axis", 0))
    zero = _along(_const(ctx, "zero_point"), data.ndim, axis).astype(np.float32)
    scale = _const(ctx, "scale")
    out = (data.astype(np.float32) - zero) * _along(scale, data.ndim, axis).astype(np.float32)
    return _out(ctx, out)


@mil_op("constexpr_cast")
def constexpr_cast(ctx: MilContext) -> Value:
    return _out(ctx, _const(ctx, "source_val"))


@mil_op("constexpr_lut_to_dense", since=IOS16)
def constexpr_lut_to_dense(ctx: MilContext) -> Value:
    """iOS16: a flat LUT of ``2^nbits`` entries, indices packed ``nbits`` to a value."""
    lut = _const(ctx, "lut").reshape(-1)
    shape = [int(d) for d in ctx.attr("shape")]
    nbits = int(np.log2(lut.size))
    if 1 << nbits != lut.size:
        raise ctx.error(f"the LUT has {lut.size} entries, not a power of 2")
    indices = _unpack_bits(_const(ctx, "indices"), nbits, int(np.prod(shape)))
    return _out(ctx, lut[indices].reshape(shape))


@mil_op("constexpr_sparse_to_dense", since=IOS16)
def constexpr_sparse_to_dense(ctx: MilContext) -> Value:
    """iOS16: a bit mask packed 8 to a byte (least significant bit first) says where the
    non-zero values go, in order."""
    values = _const(ctx, "nonzero_data")
    shape = [int(d) for d in ctx.attr("shape")]
    size = int(np.prod(shape))
    mask = np.unpackbits(_const(ctx, "mask").astype(np.uint8), bitorder="little")[:size]
    return _out(ctx, _scatter(ctx, values, mask.reshape(shape) != 0))


def _scatter(ctx: MilContext, values: np.ndarray, where: np.ndarray) -> np.ndarray:
    if int(where.sum()) != values.size:
        raise ctx.error(f"the mask holds {int(where.sum())} ones for {values.size} values")
    out = np.zeros(where.shape, values.dtype)
    out[where] = values.reshape(-1)
    return out


# -- iOS18 ---------------------------------------------------------------------------------


def _shift_scale(
    ctx: MilContext, data: np.ndarray, scale: np.ndarray, offset: np.ndarray | None
) -> np.ndarray:
    """``scale * (data - offset)``, scale and offset given per block of ``data``."""
    if scale.ndim != data.ndim or any(d % s for d, s in zip(data.shape, scale.shape)):
        raise ctx.error(f"scale {list(scale.shape)} does not tile data {list(data.shape)}")
    out = data.astype(scale.dtype)
    if offset is not None:
        out = out - _repeat_blocks(offset, data.shape).astype(scale.dtype)
    return out * _repeat_blocks(scale, data.shape)


@mil_op("constexpr_blockwise_shift_scale")
def constexpr_blockwise_shift_scale(ctx: MilContext) -> Value:
    data = _const(ctx, "data")
    return _out(ctx, _shift_scale(ctx, data, _const(ctx, "scale"), _const(ctx, "offset")))


def _lut(ctx: MilContext, indices: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """iOS18 LUT decompression: ``lut`` is ``[*blocks, entries, vector_size]``, one table
    per block of ``indices``; vectors of ``vector_size`` values lie along ``vector_axis``."""
    rank = indices.ndim
    if lut.ndim != rank + 2 or any(d % b for d, b in zip(indices.shape, lut.shape)):
        raise ctx.error(f"LUT {list(lut.shape)} does not tile indices {list(indices.shape)}")
    grids = _block_rows(indices.shape, lut.shape[:rank])
    out = lut[(*grids, indices.astype(np.intp))]  # [*indices.shape, vector_size]
    size = lut.shape[-1]
    if size == 1:
        return out[..., 0]
    axis = ctx.attr("vector_axis")
    if axis is None:
        raise ctx.error("a LUT of vectors needs vector_axis")
    axis %= rank
    shape = list(indices.shape)
    shape[axis] *= size
    return np.moveaxis(out, -1, axis + 1).reshape(shape)


@mil_op("constexpr_lut_to_dense", since=IOS18)
def constexpr_lut_to_dense_18(ctx: MilContext) -> Value:
    return _out(ctx, _lut(ctx, _const(ctx, "indices"), _const(ctx, "lut")))


@mil_op("constexpr_sparse_to_dense", since=IOS18)
def constexpr_sparse_to_dense_18(ctx: MilContext) -> Value:
    """iOS18: an unpacked mask of the output's shape."""
    mask = _const(ctx, "mask")
    return _out(ctx, _scatter(ctx, _const(ctx, "nonzero_data"), mask != 0))


@mil_op("constexpr_lut_to_sparse")
def constexpr_lut_to_sparse(ctx: MilContext) -> list[Value]:
    """Sparse palettized indices -> (mask, non-zero values): a vector LUT widens the mask
    along ``vector_axis``."""
    mask = _const(ctx, "indices_mask")
    indices = _scatter(ctx, _const(ctx, "indices_nonzero_data"), mask != 0)
    dense = _lut(ctx, indices, _const(ctx, "lut"))
    size = _const(ctx, "lut").shape[-1]
    if size > 1:
        mask = np.repeat(mask, size, axis=int(ctx.attr("vector_axis")) % mask.ndim)
    return [_out(ctx, mask, 0), _out(ctx, dense[mask != 0], 1)]


@mil_op("constexpr_sparse_blockwise_shift_scale")
def constexpr_sparse_blockwise_shift_scale(ctx: MilContext) -> list[Value]:
    mask = _const(ctx, "data_mask")
    data = _scatter(ctx, _const(ctx, "nonzero_data"), mask != 0)
    dense = _shift_scale(ctx, data, _const(ctx, "scale"), _const(ctx, "offset"))
    return [_out(ctx, mask, 0), _out(ctx, dense[mask != 0], 1)]


# -- run-time quantization (iOS17) ---------------------------------------------------------

_RANGES = {"int8": (-128, 127), "uint8": (0, 255)}


def _scale_zero(ctx: MilContext, rank: int, dtype: str) -> tuple[Value, Value | None]:
    axis = ctx.attr("axis")
    scale = _const(ctx, "scale")
    zero = _const(ctx, "zero_point")
    if axis is None and max(scale.size, 1 if zero is None else zero.size) > 1:
        raise ctx.error("a per-axis scale or zero point needs axis")
    scale = _along(scale, rank, axis)
    zero_v = None
    if zero is not None and np.any(zero):
        zero_v = ctx.const(_along(zero, rank, axis).astype(dtype))
    return ctx.const(scale.astype(dtype)), zero_v


@mil_op("quantize")
def quantize(ctx: MilContext) -> Value:
    """``clip(round(x / scale) + zero_point)`` (ties to even), as int8 or uint8."""
    x = ctx.x("input")
    out = ctx.attr("output_dtype")
    if out not in _RANGES:
        raise ctx.error(f"output_dtype {out!r} is not int8 or uint8")
    scale, zero = _scale_zero(ctx, x.type.rank, x.dtype)
    q = ctx.emit("round", ctx.emit("div", x, scale))
    if zero is not None:
        q = ctx.emit("add", q, zero)
    low, high = _RANGES[out]
    return ctx.emit("cast", ctx.emit("clip", q, min=low, max=high), to=out)


@mil_op("dequantize")
def dequantize(ctx: MilContext) -> Value:
    """``scale * (input - zero_point)`` in the scale's dtype."""
    x = ctx.x("input")
    dtype = ctx.out_dtype()
    scale, zero = _scale_zero(ctx, x.type.rank, dtype)
    v = ctx.emit("cast", x, to=dtype)
    if zero is not None:
        v = ctx.emit("sub", v, zero)
    return ctx.emit("mul", v, scale)
