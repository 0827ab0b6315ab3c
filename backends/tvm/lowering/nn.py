"""Lowering of nn ops: conv, pooling, matmul, normalizations, softmax, LRN, resize, einsum, det.

Relax's own ops are used where their semantics match ours exactly (conv*, pools, matmul,
softmax, einsum); the rest is decomposed into high-level Relax ops so TVM still fuses it.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.script import tirx as T

from compiler.ir.ops.nn import lrn_window
from compiler.ir.ops.nn_conv import convt_full_size, pool_geometry
from compiler.ir.ops.nn_resize import plan

from .registry import LowerContext, lowers

_CONV = {1: relax.op.nn.conv1d, 2: relax.op.nn.conv2d, 3: relax.op.nn.conv3d}
_CONVT = {
    1: relax.op.nn.conv1d_transpose,
    2: relax.op.nn.conv2d_transpose,
    3: relax.op.nn.conv3d_transpose,
}
_MAX_POOL = {1: relax.op.nn.max_pool1d, 2: relax.op.nn.max_pool2d, 3: relax.op.nn.max_pool3d}
_AVG_POOL = {1: relax.op.nn.avg_pool1d, 2: relax.op.nn.avg_pool2d, 3: relax.op.nn.avg_pool3d}
_LAYOUTS = {1: ("NCW", "OIW", "IOW"), 2: ("NCHW", "OIHW", "IOHW"), 3: ("NCDHW", "OIDHW", "IODHW")}


def _const(value, dtype: str) -> relax.Expr:
    return relax.const(np.asarray(value, dtype=dtype), dtype)


def _channel_vector(ctx: LowerContext, v: relax.Expr, rank: int) -> relax.Expr:
    """A per-channel (C,) operand shaped (1, C, 1, ...) to broadcast against (N, C, ...)."""
    return ctx.emit(relax.op.expand_dims(v, [0, *range(2, rank)]))


def _add_bias(ctx: LowerContext, y: relax.Expr, b: relax.Expr | None, rank: int):
    if b is None:
        return y
    return relax.op.add(ctx.emit(y), _channel_vector(ctx, b, rank))


def _pad_width(n_lead: int, begin: list[int], end: list[int]) -> list[int]:
    width = [0, 0] * n_lead
    for b, e in zip(begin, end):
        width += [b, e]
    return width


@lowers("conv")
def _conv(ctx: LowerContext, args: list) -> relax.Expr:
    """float16 sums its products in float32, rounds once, then adds the bias (as numpy)."""
    x, w, b = args
    a = ctx.attrs
    n = len(a["strides"])
    data_layout, kernel_layout, _ = _LAYOUTS[n]
    half = ctx.out_types[0].dtype == "float16"
    if half:
        x, w = (ctx.emit(relax.op.astype(v, "float32")) for v in (x, w))
    y = _CONV[n](
        x,
        w,
        strides=a["strides"],
        padding=a["pads"],
        dilation=a["dilations"],
        groups=a["groups"],
        data_layout=data_layout,
        kernel_layout=kernel_layout,
    )
    if half:
        y = relax.op.astype(ctx.emit(y), "float16")
    return _add_bias(ctx, y, b, n + 2)


@lowers("conv_transpose")
def _conv_transpose(ctx: LowerContext, args: list) -> relax.Expr:
    x, w, b = args
    a = ctx.attrs
    n = len(a["strides"])
    data_layout, _, kernel_layout = _LAYOUTS[n]
    pads, op = a["pads"], a["output_padding"]
    direct = all(o < max(s, d) for o, s, d in zip(op, a["strides"], a["dilations"]))
    if direct:
        y = _CONVT[n](
            x,
            w,
            strides=a["strides"],
            padding=pads,
            output_padding=op,
            dilation=a["dilations"],
            groups=a["groups"],
            data_layout=data_layout,
            kernel_layout=kernel_layout,
        )
        return _add_bias(ctx, y, b, n + 2)
    # Relax refuses large output_padding: build the uncropped result, then crop and zero-pad.
    y = ctx.emit(
        _CONVT[n](
            x,
            w,
            strides=a["strides"],
            dilation=a["dilations"],
            groups=a["groups"],
            data_layout=data_layout,
            kernel_layout=kernel_layout,
        )
    )
    xt = ctx.node.inputs[0].type
    wt = ctx.node.inputs[1].type
    full = [
        convt_full_size(d, k, s, dil)
        for d, k, s, dil in zip(xt.shape[2:], wt.shape[2:], a["strides"], a["dilations"])
    ]
    ends = [min(f - pads[n + i] + op[i], f) for i, f in enumerate(full)]
    y = ctx.emit(relax.op.strided_slice(y, list(range(2, n + 2)), pads[:n], ends))
    grow = [max(0, op[i] - pads[n + i]) for i in range(n)]
    y = relax.op.nn.pad(y, _pad_width(2, [0] * n, grow))
    return _add_bias(ctx, y, b, n + 2)


@lowers("max_pool")
def _max_pool(ctx: LowerContext, args: list) -> relax.Expr:
    a = ctx.attrs
    n = len(a["kernel"])
    _, extra = pool_geometry(list(ctx.node.inputs[0].type.shape[2:]), a)
    pads = a["pads"][:n] + [p + e for p, e in zip(a["pads"][n:], extra)]
    return _MAX_POOL[n](
        args[0],
        pool_size=a["kernel"],
        strides=a["strides"],
        padding=pads,
        dilation=a["dilations"],
        layout=_LAYOUTS[n][0],
    )


@lowers("avg_pool")
def _avg_pool(ctx: LowerContext, args: list) -> relax.Expr:
    a = ctx.attrs
    n = len(a["kernel"])
    x = args[0]
    _, extra = pool_geometry(list(ctx.node.inputs[0].type.shape[2:]), a)
    pads = a["pads"][:n] + [p + e for p, e in zip(a["pads"][n:], extra)]
    if a["count_include_pad"] and any(a["pads"]):
        # Explicit pads count in the divisor, the ceil_mode overhang does not: pad first.
        x = ctx.emit(relax.op.nn.pad(x, _pad_width(2, a["pads"][:n], a["pads"][n:])))
        pads = [0] * n + extra
    return _AVG_POOL[n](
        x,
        pool_size=a["kernel"],
        strides=a["strides"],
        padding=pads,
        dilation=a["dilations"],
        count_include_pad=False,
        layout=_LAYOUTS[n][0],
    )


@lowers("matmul")
def _matmul(ctx: LowerContext, args: list) -> relax.Expr:
    """float16 products are summed in float32 and rounded once, as numpy does."""
    a, b = args
    if ctx.out_types[0].dtype != "float16":
        return relax.op.matmul(a, b)
    wide = [ctx.emit(relax.op.astype(x, "float32")) for x in (a, b)]
    return relax.op.astype(ctx.emit(relax.op.matmul(*wide)), "float16")


@lowers("batch_norm")
def _batch_norm(ctx: LowerContext, args: list) -> relax.Expr:
    x, scale, bias, mean, var = args
    dtype = ctx.out_types[0].dtype
    rank = ctx.out_types[0].rank
    eps = _const(ctx.attrs["epsilon"], dtype)
    a = ctx.emit(relax.op.divide(scale, relax.op.sqrt(relax.op.add(var, eps))))
    shift = ctx.emit(relax.op.subtract(bias, relax.op.multiply(mean, a)))
    y = ctx.emit(relax.op.multiply(x, _channel_vector(ctx, a, rank)))
    return relax.op.add(y, _channel_vector(ctx, shift, rank))


def _normalize(ctx: LowerContext, x: relax.Expr, axes: list[int]) -> relax.Expr:
    """(x - mean) / sqrt(var + eps) over ``axes``."""
    dtype = ctx.out_types[0].dtype
    mean = ctx.emit(relax.op.mean(x, axes, keepdims=True))
    centered = ctx.emit(relax.op.subtract(x, mean))
    var = ctx.emit(relax.op.mean(relax.op.multiply(centered, centered), axes, keepdims=True))
    denom = relax.op.sqrt(relax.op.add(var, _const(ctx.attrs["epsilon"], dtype)))
    return ctx.emit(relax.op.divide(centered, ctx.emit(denom)))


@lowers("instance_norm")
def _instance_norm(ctx: LowerContext, args: list) -> relax.Expr:
    x, scale, bias = args
    rank = ctx.out_types[0].rank
    y = _normalize(ctx, x, list(range(2, rank)))
    y = ctx.emit(relax.op.multiply(y, _channel_vector(ctx, scale, rank)))
    return relax.op.add(y, _channel_vector(ctx, bias, rank))


@lowers("layer_norm")
def _layer_norm(ctx: LowerContext, args: list) -> relax.Expr:
    x, scale, bias = args
    out = ctx.out_types[0]
    axis = ctx.attrs["axis"]
    axes = list(range(axis, out.rank))
    tail = tuple(out.shape[axis:])
    st = ctx.node.inputs[1].type
    bt = ctx.node.inputs[2].type if bias is not None else st
    if st.shape == tail and bt.shape == tail:
        if bias is None:
            bias = _const(np.zeros(tail), out.dtype)
        return relax.op.nn.layer_norm(x, scale, bias, axes, epsilon=ctx.attrs["epsilon"])
    y = ctx.emit(relax.op.multiply(_normalize(ctx, x, axes), scale))
    return y if bias is None else relax.op.add(y, bias)


@lowers("softmax")
def _softmax(ctx: LowerContext, args: list) -> relax.Expr:
    return relax.op.nn.softmax(args[0], ctx.attrs["axis"])


@lowers("log_softmax")
def _log_softmax(ctx: LowerContext, args: list) -> relax.Expr:
    return relax.op.nn.log_softmax(args[0], ctx.attrs["axis"])


@lowers("lrn")
def _lrn(ctx: LowerContext, args: list) -> relax.Expr:
    x = args[0]
    a = ctx.attrs
    out = ctx.out_types[0]
    before, after = lrn_window(a["size"])
    sq = ctx.emit(relax.op.multiply(x, x))
    padded = ctx.emit(
        relax.op.nn.pad(sq, _pad_width(1, [before], [after]) + [0, 0] * (out.rank - 2))
    )
    c = out.shape[1]
    total = None
    for j in range(a["size"]):
        if isinstance(c, int):
            part = relax.op.strided_slice(padded, [1], [j], [j + c])
        else:
            raise ValueError("lrn needs a static channel count")
        part = ctx.emit(part)
        total = part if total is None else ctx.emit(relax.op.add(total, part))
    coef = _const(a["alpha"] / a["size"], out.dtype)
    scale = ctx.emit(relax.op.add(_const(a["bias"], out.dtype), relax.op.multiply(total, coef)))
    return relax.op.divide(x, ctx.emit(relax.op.power(scale, _const(a["beta"], out.dtype))))


@lowers("resize")
def _resize(ctx: LowerContext, args: list) -> relax.Expr:
    y = args[0]
    out = ctx.out_types[0]
    in_shape = ctx.node.inputs[0].type.shape
    is_float = out.dtype.startswith("float")
    work = out.dtype if is_float else "float32"
    if not is_float and ctx.attrs["mode"] != "nearest":
        raise ValueError("resize of integer tensors supports only mode nearest")
    for a, idx, w, mask in plan(in_shape, ctx.attrs):
        bshape = [1] * out.rank
        bshape[a] = idx.shape[0]
        if idx.shape[1] == 1:  # nearest: a gather, no arithmetic
            y = ctx.emit(relax.op.take(y, _const(idx[:, 0], "int64"), axis=a, mode="clip"))
        else:
            acc = None
            for t in range(idx.shape[1]):
                if not w[:, t].any():
                    continue
                g = ctx.emit(relax.op.take(y, _const(idx[:, t], "int64"), axis=a, mode="clip"))
                term = ctx.emit(relax.op.multiply(g, _const(w[:, t].reshape(bshape), work)))
                acc = term if acc is None else ctx.emit(relax.op.add(acc, term))
            y = acc
        if mask is not None and mask.any():
            ev = _const(ctx.attrs["extrapolation_value"], out.dtype)
            y = ctx.emit(relax.op.where(_const(mask.reshape(bshape), "bool"), ev, y))
    return y


@lowers("einsum")
def _einsum(ctx: LowerContext, args: list) -> relax.Expr:
    return relax.op.einsum(relax.Tuple(args), ctx.attrs["equation"].replace(" ", ""))


# -- det -------------------------------------------------------------------------------------


def _det_kernel(dtype: str) -> tvm.tirx.PrimFunc:
    """det of each of ``batch`` n x n matrices: Gaussian elimination with partial pivoting
    on a copy, the product of the pivots, negated once per row swap (serial per matrix).

    Written in TVMScript with a root block like TE's; the parser's well-formedness check
    does not know blocks at the root, hence ``check_well_formed=False``. Marked scheduled:
    the loops carry dependences that no schedule rule of ours should touch.
    """

    @T.prim_func(private=True, check_well_formed=False)
    def det(a: T.handle, out: T.handle):
        T.func_attr({"tir.noalias": True, "tirx.is_scheduled": True})
        batch = T.int64()
        n = T.int64()
        A = T.match_buffer(a, (batch, n, n), dtype)
        D = T.match_buffer(out, (batch,), dtype)
        with T.sblock("root"):
            work = T.alloc_buffer((n, n), dtype)
            acc = T.alloc_buffer((1,), dtype)
            tmp = T.alloc_buffer((1,), dtype)
            piv = T.alloc_buffer((1,), "int64")
            for b in range(batch):
                for i, j in T.grid(n, n):
                    work[i, j] = A[b, i, j]
                acc[0] = T.Cast(dtype, 1)
                for k in range(n):
                    piv[0] = k
                    tmp[0] = T.abs(work[k, k])
                    for i in range(k + 1, n):
                        if T.abs(work[i, k]) > tmp[0]:
                            tmp[0] = T.abs(work[i, k])
                            piv[0] = i
                    if piv[0] != k:
                        for j in range(n):
                            tmp[0] = work[k, j]
                            work[k, j] = work[piv[0], j]
                            work[piv[0], j] = tmp[0]
                        acc[0] = -acc[0]
                    acc[0] = acc[0] * work[k, k]
                    if work[k, k] != T.Cast(dtype, 0):
                        for i in range(k + 1, n):
                            tmp[0] = work[i, k] / work[k, k]
                            for j in range(k + 1, n):
                                work[i, j] = work[i, j] - tmp[0] * work[k, j]
                D[b] = acc[0]

    return det


@lowers("det")
def _det(ctx: LowerContext, args: list) -> relax.Expr:
    x = args[0]
    in_type = ctx.node.inputs[0].type
    dtype = in_type.dtype
    work = "float32" if dtype == "float16" else dtype  # elimination in float16 loses too much
    shape = ctx.shape_of(in_type.shape)
    lead, n = shape[:-2], shape[-1]
    batch = 1
    for d in lead:
        batch = batch * d
    x = ctx.emit(relax.op.reshape(x, [batch, n, n]))
    if work != dtype:
        x = ctx.emit(relax.op.astype(x, work))
    kernel = ctx.bb.add_func(_det_kernel(work), "det")
    y = ctx.emit(relax.call_tir(kernel, [x], relax.TensorType([batch], work)))
    if work != dtype:
        y = ctx.emit(relax.op.astype(y, dtype))
    return relax.op.reshape(y, lead)
