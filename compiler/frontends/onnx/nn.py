"""Converters of ONNX nn ops: convolution, pooling, matmul/Gemm, normalizations, softmax
family, LRN, Resize/Upsample, Einsum.

ONNX quirks end here: auto_pad becomes explicit pads, opset < 13 softmax flattening becomes
a reshape, Resize's scales/sizes/axes/keep_aspect_ratio_policy become full-rank sizes.
Rare ops (Gemm, GroupNormalization, MeanVarianceNormalization, Hardmax, LpPool, Global*Pool)
are decomposed into core ops.
"""

from __future__ import annotations

import math

import numpy as np

from compiler.ir.graph import Value

from .registry import NodeContext, converter

# -- windows ---------------------------------------------------------------------------------


def _spatial_dims(ctx: NodeContext, x: Value) -> list[int]:
    dims = list(x.shape[2:])
    if not all(isinstance(d, int) for d in dims):
        raise ctx.error(f"needs static spatial dims, got {x.type}")
    return dims


def _window(ctx: NodeContext, x: Value, kernel: list[int]) -> dict:
    """strides, dilations and explicit pads, with auto_pad resolved."""
    n = len(kernel)
    strides = list(ctx.attr("strides", [1] * n))
    dilations = list(ctx.attr("dilations", [1] * n))
    auto_pad = ctx.attr("auto_pad", "NOTSET")
    if auto_pad == "NOTSET":
        pads = list(ctx.attr("pads", [0] * 2 * n))
    elif auto_pad == "VALID":
        pads = [0] * 2 * n
    elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for d, k, s, dil in zip(_spatial_dims(ctx, x), kernel, strides, dilations):
            out = -(-d // s)
            total = max(0, (out - 1) * s + (k - 1) * dil + 1 - d)
            small, big = total // 2, total - total // 2
            begin.append(small if auto_pad == "SAME_UPPER" else big)
            end.append(big if auto_pad == "SAME_UPPER" else small)
        pads = begin + end
    else:
        raise ctx.error(f"auto_pad {auto_pad!r} is not supported")
    return {"strides": strides, "dilations": dilations, "pads": pads}


@converter("Conv", since=1)
def conv(ctx: NodeContext):
    x, w = ctx.input(0), ctx.input(1)
    kernel = list(ctx.attr("kernel_shape", w.shape[2:]))
    return ctx.emit(
        "conv", x, w, ctx.input(2), groups=ctx.attr("group", 1), **_window(ctx, x, kernel)
    )


@converter("ConvTranspose", since=1)
def conv_transpose(ctx: NodeContext):
    x, w = ctx.input(0), ctx.input(1)
    kernel = list(ctx.attr("kernel_shape", w.shape[2:]))
    n = len(kernel)
    strides = list(ctx.attr("strides", [1] * n))
    dilations = list(ctx.attr("dilations", [1] * n))
    out_pad = list(ctx.attr("output_padding", [0] * n))
    auto_pad = ctx.attr("auto_pad", "NOTSET")
    output_shape = ctx.attr("output_shape")
    pads = ctx.attr("pads")
    if auto_pad == "VALID":
        pads = [0] * 2 * n
    if pads is None and (output_shape is not None or auto_pad in ("SAME_UPPER", "SAME_LOWER")):
        spatial = _spatial_dims(ctx, x)
        if output_shape is None:
            output_shape = [d * s for d, s in zip(spatial, strides)]
        output_shape = list(output_shape)[-n:]
        begin, end = [], []
        for i in range(n):
            full = (spatial[i] - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1
            total = full + out_pad[i] - output_shape[i]
            small, big = total // 2, total - total // 2
            b, e = (small, big) if auto_pad == "SAME_UPPER" else (big, small)
            if e < 0:  # asked for more than the full output: grow the end with zeros
                out_pad[i] -= e
                e = 0
            if b < 0:
                raise ctx.error(f"output_shape {output_shape} needs padding before the data")
            begin.append(b)
            end.append(e)
        pads = begin + end
    pads = list(pads) if pads is not None else [0] * 2 * n
    return ctx.emit(
        "conv_transpose",
        x,
        w,
        ctx.input(2),
        strides=strides,
        dilations=dilations,
        pads=pads,
        output_padding=out_pad,
        groups=ctx.attr("group", 1),
    )


def _one_output(ctx: NodeContext) -> None:
    if ctx.num_outputs > 1 and any(ctx.node.output[1:]):
        raise ctx.error("only the first output is supported")


@converter("MaxPool", since=1)
def max_pool(ctx: NodeContext):
    """The values; from opset 8 also the Indices output (a kernel of its own)."""
    x = ctx.input(0)
    kernel = list(ctx.attr("kernel_shape"))
    window = dict(
        kernel=kernel, ceil_mode=bool(ctx.attr("ceil_mode", 0)), **_window(ctx, x, kernel)
    )
    y = ctx.emit("max_pool", x, **window)
    if ctx.num_outputs < 2 or not ctx.node.output[1]:
        return y
    order = int(ctx.attr("storage_order", 0))
    if order not in (0, 1):
        raise ctx.error(f"storage_order must be 0 or 1, got {order}")
    return [y, ctx.emit("max_pool_indices", x, storage_order=bool(order), **window)]


@converter("AveragePool", since=1)
def average_pool(ctx: NodeContext):
    x = ctx.input(0)
    kernel = list(ctx.attr("kernel_shape"))
    return ctx.emit(
        "avg_pool",
        x,
        kernel=kernel,
        ceil_mode=bool(ctx.attr("ceil_mode", 0)),
        count_include_pad=bool(ctx.attr("count_include_pad", 0)),
        **_window(ctx, x, kernel),
    )


def _lp_power(ctx: NodeContext, x: Value, p: int) -> Value:
    if p == 2:
        return ctx.emit("mul", x, x)
    return ctx.emit("pow", ctx.emit("abs", x), ctx.const(float(p), x.dtype))


def _lp_root(ctx: NodeContext, s: Value, p: int) -> Value:
    if p == 2:
        return ctx.emit("sqrt", s)
    return ctx.emit("pow", s, ctx.const(1.0 / p, s.dtype))


@converter("LpPool", since=2)
def lp_pool(ctx: NodeContext):
    """(sum over the window of |x|^p)^(1/p): an average pool counting pads, times the size."""
    x = ctx.input(0)
    p = int(ctx.attr("p", 2))
    kernel = list(ctx.attr("kernel_shape"))
    avg = ctx.emit(
        "avg_pool",
        _lp_power(ctx, x, p),
        kernel=kernel,
        ceil_mode=bool(ctx.attr("ceil_mode", 0)),
        count_include_pad=True,
        **_window(ctx, x, kernel),
    )
    total = ctx.emit("mul", avg, ctx.const(float(np.prod(kernel)), x.dtype))
    return _lp_root(ctx, total, p)


def _spatial_axes(x: Value) -> list[int]:
    return list(range(2, x.type.rank))


@converter("GlobalAveragePool", since=1)
def global_average_pool(ctx: NodeContext):
    x = ctx.input(0)
    return ctx.emit("reduce_mean", x, axes=_spatial_axes(x), keepdims=True)


@converter("GlobalMaxPool", since=1)
def global_max_pool(ctx: NodeContext):
    x = ctx.input(0)
    return ctx.emit("reduce_max", x, axes=_spatial_axes(x), keepdims=True)


@converter("GlobalLpPool", since=2)
def global_lp_pool(ctx: NodeContext):
    x = ctx.input(0)
    p = int(ctx.attr("p", 2))
    s = ctx.emit("reduce_sum", _lp_power(ctx, x, p), axes=_spatial_axes(x), keepdims=True)
    return _lp_root(ctx, s, p)


# -- matmul ----------------------------------------------------------------------------------


@converter("MatMul", since=1)
def matmul(ctx: NodeContext):
    return ctx.emit("matmul", ctx.input(0), ctx.input(1))


@converter("Gemm", since=1)
def gemm(ctx: NodeContext):
    """alpha * A' @ B' + beta * C, with A' / B' optionally transposed."""
    a, b, c = ctx.input(0), ctx.input(1), ctx.input(2)
    if ctx.attr("transA", 0):
        a = ctx.emit("transpose", a, perm=[1, 0])
    if ctx.attr("transB", 0):
        b = ctx.emit("transpose", b, perm=[1, 0])
    y = ctx.emit("matmul", a, b)
    alpha = float(ctx.attr("alpha", 1.0))
    beta = float(ctx.attr("beta", 1.0))
    if alpha != 1.0:
        y = ctx.emit("mul", y, ctx.const(alpha, y.dtype))
    if c is not None and beta != 0.0:
        if beta != 1.0:
            c = ctx.emit("mul", c, ctx.const(beta, c.dtype))
        y = ctx.emit("add", y, c)
    return y


@converter("Einsum", since=12)
def einsum(ctx: NodeContext):
    return ctx.emit("einsum", *ctx.inputs, equation=ctx.attr("equation"))


# -- normalizations --------------------------------------------------------------------------


@converter("BatchNormalization", since=1)
def batch_norm(ctx: NodeContext):
    x, scale, bias, mean, var = ctx.inputs[:5]
    eps = float(ctx.attr("epsilon", 1e-5))
    if ctx.attr("training_mode", 0):
        return _batch_norm_training(ctx, eps)
    if ctx.opset < 7 and ctx.attr("is_test", 0) == 0:
        raise ctx.error("is_test=0 (training) is not supported")
    _one_output(ctx)
    if ctx.opset < 9 and ctx.attr("spatial", 1) == 0:
        raise ctx.error("spatial=0 is not supported")
    return ctx.emit("batch_norm", x, scale, bias, mean, var, epsilon=eps)


def _batch_norm_training(ctx: NodeContext, eps: float) -> list[Value]:
    """Normalize with the batch's statistics; also output the updated running statistics."""
    x, scale, bias, mean, var = ctx.inputs[:5]
    axes = [a for a in range(x.type.rank) if a != 1]
    batch_mean = ctx.emit("reduce_mean", x, axes=axes, keepdims=False)
    centered = ctx.emit("sub", x, ctx.emit("reduce_mean", x, axes=axes, keepdims=True))
    batch_var = ctx.emit(
        "reduce_mean", ctx.emit("mul", centered, centered), axes=axes, keepdims=False
    )
    y = ctx.emit("batch_norm", x, scale, bias, batch_mean, batch_var, epsilon=eps)
    m = float(ctx.attr("momentum", 0.9))

    def running(old: Value, new: Value) -> Value:
        kept = ctx.emit("mul", old, ctx.const(m, old.dtype))
        return ctx.emit("add", kept, ctx.emit("mul", new, ctx.const(1.0 - m, new.dtype)))

    return [y, running(mean, batch_mean), running(var, batch_var)][: ctx.num_outputs]


@converter("InstanceNormalization", since=1)
def instance_norm(ctx: NodeContext):
    x, scale, bias = ctx.inputs[:3]
    return ctx.emit("instance_norm", x, scale, bias, epsilon=ctx.attr("epsilon", 1e-5))


@converter("LayerNormalization", since=17)
def layer_norm(ctx: NodeContext):
    x, scale, bias = ctx.input(0), ctx.input(1), ctx.input(2)
    rank = x.type.rank
    axis = int(ctx.attr("axis", -1))
    axis = axis + rank if axis < 0 else axis
    eps = float(ctx.attr("epsilon", 1e-5))
    y = ctx.emit("layer_norm", x, scale, bias, axis=axis, epsilon=eps)
    if ctx.num_outputs == 1 or not any(ctx.node.output[1:]):
        return y
    # Mean and 1/std are asked for: compute them apart (the normalized output stays whole).
    axes = list(range(axis, rank))
    mean = ctx.emit("reduce_mean", x, axes=axes, keepdims=True)
    centered = ctx.emit("sub", x, mean)
    var = ctx.emit("reduce_mean", ctx.emit("mul", centered, centered), axes=axes, keepdims=True)
    inv_std = ctx.emit(
        "reciprocal", ctx.emit("sqrt", ctx.emit("add", var, ctx.const(eps, x.dtype)))
    )
    return [y, mean, inv_std][: ctx.num_outputs]


def _static(ctx: NodeContext, x: Value, what: str) -> list[int]:
    if not x.type.is_static:
        raise ctx.error(f"{what} needs a static input shape, got {x.type}")
    return [int(d) for d in x.shape]


@converter("GroupNormalization", since=18)
def group_norm(ctx: NodeContext):
    """Instance norm over (N, groups, rest), then the per-group (18) or per-channel (21) affine."""
    x, scale, bias = ctx.inputs[:3]
    g = int(ctx.attr("num_groups"))
    eps = float(ctx.attr("epsilon", 1e-5))
    shape = list(x.shape)
    if not all(isinstance(d, int) for d in shape[1:]):
        raise ctx.error(f"needs static channel and spatial dims, got {x.type}")
    rest = int(np.prod(shape[1:])) // g
    grouped = ctx.emit("reshape", x, shape=[shape[0], g, rest])
    ones = ctx.const(np.ones(g), x.dtype)
    zeros = ctx.const(np.zeros(g), x.dtype)
    y = ctx.emit("instance_norm", grouped, ones, zeros, epsilon=eps)
    if ctx.opset < 21:
        y = ctx.emit("mul", y, ctx.emit("reshape", scale, shape=[g, 1]))
        y = ctx.emit("add", y, ctx.emit("reshape", bias, shape=[g, 1]))
        return ctx.emit("reshape", y, shape=shape)
    y = ctx.emit("reshape", y, shape=shape)
    channel = [shape[1]] + [1] * (len(shape) - 2)
    y = ctx.emit("mul", y, ctx.emit("reshape", scale, shape=channel))
    return ctx.emit("add", y, ctx.emit("reshape", bias, shape=channel))


@converter("MeanVarianceNormalization", since=9)
def mean_variance_norm(ctx: NodeContext):
    """(x - E[x]) / (sqrt(E[x^2] - E[x]^2) + 1e-9), as ONNX's function body defines it."""
    x = ctx.input(0)
    rank = x.type.rank
    axes = sorted(a + rank if a < 0 else a for a in ctx.attr("axes", [0, 2, 3]))
    mean = ctx.emit("reduce_mean", x, axes=axes, keepdims=True)
    mean_sq = ctx.emit("reduce_mean", ctx.emit("mul", x, x), axes=axes, keepdims=True)
    var = ctx.emit("sub", mean_sq, ctx.emit("mul", mean, mean))
    std = ctx.emit("add", ctx.emit("sqrt", var), ctx.const(1e-9, x.dtype))
    return ctx.emit("div", ctx.emit("sub", x, mean), std)


@converter("LRN", since=1)
def lrn(ctx: NodeContext):
    return ctx.emit(
        "lrn",
        ctx.input(0),
        size=int(ctx.attr("size")),
        alpha=float(ctx.attr("alpha", 1e-4)),
        beta=float(ctx.attr("beta", 0.75)),
        bias=float(ctx.attr("bias", 1.0)),
    )


# -- softmax family --------------------------------------------------------------------------


def _coerced(ctx: NodeContext, apply) -> Value:
    """Opset < 13: the op works on x flattened to 2-D around ``axis`` (default 1)."""
    x = ctx.input(0)
    rank = x.type.rank
    axis = int(ctx.attr("axis", 1))
    axis = axis + rank if axis < 0 else axis
    if axis == rank - 1:
        return apply(x, rank - 1)
    shape = _static(ctx, x, "softmax over several axes")
    flat = ctx.emit("reshape", x, shape=[int(np.prod(shape[:axis])), int(np.prod(shape[axis:]))])
    return ctx.emit("reshape", apply(flat, 1), shape=shape)


def _softmax_like(op: str):
    def old(ctx: NodeContext):
        return _coerced(ctx, lambda x, axis: ctx.emit(op, x, axis=axis))

    def new(ctx: NodeContext):
        return ctx.emit(op, ctx.input(0), axis=int(ctx.attr("axis", -1)))

    return old, new


for _onnx, _core in (("Softmax", "softmax"), ("LogSoftmax", "log_softmax")):
    _old, _new = _softmax_like(_core)
    converter(_onnx, since=1)(_old)
    converter(_onnx, since=13)(_new)


def _hardmax(ctx: NodeContext, x: Value, axis: int) -> Value:
    """1 where the first maximum along ``axis`` is, 0 elsewhere."""
    n = x.shape[axis]
    if not isinstance(n, int):
        raise ctx.error(f"needs a static size along axis {axis}, got {x.type}")
    idx = ctx.emit("argmax", x, axis=axis, keepdims=True, select_last_index=False)
    iota = np.arange(n, dtype=np.int64).reshape([n if i == axis else 1 for i in range(x.type.rank)])
    hit = ctx.emit("equal", idx, ctx.const(iota))
    return ctx.emit("cast", hit, to=x.dtype)


@converter("Hardmax", since=1)
def hardmax_v1(ctx: NodeContext):
    return _coerced(ctx, lambda x, axis: _hardmax(ctx, x, axis))


@converter("Hardmax", since=13)
def hardmax(ctx: NodeContext):
    x = ctx.input(0)
    axis = int(ctx.attr("axis", -1))
    return _hardmax(ctx, x, axis + x.type.rank if axis < 0 else axis)


# -- resize ----------------------------------------------------------------------------------


def _floor_size(d: int, scale: float) -> int:
    return int(math.floor(d * scale))


def _resize_common(
    ctx: NodeContext,
    x: Value,
    scales: list[float] | None,
    sizes: list[int] | None,
    **attrs,
) -> Value:
    """sizes or scales (full rank) -> the core resize with both spelled out."""
    shape = list(x.shape)
    if sizes is None:
        sizes = []
        for d, s in zip(shape, scales):
            if s == 1.0:
                sizes.append(d)
            elif isinstance(d, int):
                sizes.append(_floor_size(d, s))
            else:
                raise ctx.error(f"cannot scale symbolic dim {d}")
    return ctx.emit("resize", x, sizes=sizes, scales=scales or [], **attrs)


@converter("Upsample", since=7)
def upsample(ctx: NodeContext):
    x = ctx.input(0)
    if ctx.opset < 9:
        scales = [float(s) for s in ctx.attr("scales")]
    else:
        scales = [float(s) for s in ctx.require_value(1, "scales")]
    return _resize_common(ctx, x, scales, None, **_legacy_modes(ctx, scales))


def _legacy_modes(ctx: NodeContext, scales: list[float]) -> dict:
    """Upsample and Resize-10: asymmetric coordinates; nearest floors when upsampling."""
    mode = ctx.attr("mode", "nearest")
    if mode not in ("nearest", "linear", "bilinear"):
        raise ctx.error(f"mode {mode!r} is not supported")
    down = any(s < 1 for s in scales)
    return {
        "mode": "linear" if mode == "bilinear" else mode,
        "coordinate_transformation_mode": "asymmetric",
        "nearest_mode": "ceil" if down else "floor",
    }


@converter("Resize", since=10)
def resize_v10(ctx: NodeContext):
    scales = [float(s) for s in ctx.require_value(1, "scales")]
    return _resize_common(ctx, ctx.input(0), scales, None, **_legacy_modes(ctx, scales))


@converter("Resize", since=11)
def resize(ctx: NodeContext):
    x = ctx.input(0)
    rank = x.type.rank
    axes = ctx.attr("axes")
    axes = list(range(rank)) if axes is None else [a + rank if a < 0 else a for a in axes]
    roi_in = ctx.value(1) if ctx.input(1) is not None else None
    scales_in = ctx.value(2) if ctx.input(2) is not None else None
    if ctx.input(2) is not None and scales_in is None:
        scales_in = ctx.require_value(2, "scales")
    sizes_in = None
    if ctx.input(3) is not None:
        sizes_in = ctx.require_value(3, "sizes")
    if scales_in is not None and scales_in.size == 0:
        scales_in = None
    if sizes_in is not None and sizes_in.size == 0:
        sizes_in = None
    if (scales_in is None) == (sizes_in is None):
        raise ctx.error("exactly one of scales and sizes must be given")
    ctm = ctx.attr("coordinate_transformation_mode", "half_pixel")
    roi: list[float] = []
    if ctm == "tf_crop_and_resize":
        if roi_in is None:
            roi_in = ctx.require_value(1, "roi")
        roi = [0.0] * rank + [1.0] * rank
        for i, a in enumerate(axes):
            roi[a] = float(roi_in[i])
            roi[rank + a] = float(roi_in[len(axes) + i])
    shape = list(x.shape)
    scales: list[float] | None = None
    sizes: list | None = None
    if scales_in is not None:
        scales = [1.0] * rank
        for a, s in zip(axes, scales_in):
            scales[a] = float(s)
    else:
        policy = ctx.attr("keep_aspect_ratio_policy", "stretch")
        sizes = list(shape)
        for a, s in zip(axes, sizes_in):
            sizes[a] = int(s)
        if policy != "stretch":
            ratios = [sizes[a] / _static_dim(ctx, shape[a]) for a in axes]
            scale = min(ratios) if policy == "not_larger" else max(ratios)
            sizes = list(shape)
            for a in axes:
                sizes[a] = int(scale * shape[a] + 0.5)
            scales = [scale if a in axes else 1.0 for a in range(rank)]
    mode = ctx.attr("mode", "nearest")
    y = _resize_common(
        ctx,
        x,
        scales,
        sizes,
        roi=roi,
        mode=mode,
        coordinate_transformation_mode=ctm,
        nearest_mode=ctx.attr("nearest_mode", "round_prefer_floor"),
        cubic_coeff_a=float(ctx.attr("cubic_coeff_a", -0.75)),
        exclude_outside=bool(ctx.attr("exclude_outside", 0)),
        extrapolation_value=float(ctx.attr("extrapolation_value", 0.0)),
        antialias=bool(ctx.attr("antialias", 0)) and mode != "nearest",
    )
    return y


def _static_dim(ctx: NodeContext, d) -> int:
    if not isinstance(d, int):
        raise ctx.error(f"keep_aspect_ratio_policy needs static dims, got {d}")
    return d


@converter("Det", since=11)
def det(ctx: NodeContext):
    return ctx.emit("det", ctx.input(0))


@converter("CausalConvWithState", since=27)
def causal_conv_with_state(ctx: NodeContext):
    """A depthwise 1-D conv over [past_state (zeros when absent), input] with no padding, then
    an optional SiLU (in float32, as ONNX's reference); present_state is the last k - 1
    positions of that padded input."""
    x, w, bias, past = ctx.input(0), ctx.input(1), ctx.input(2), ctx.input(3)
    if x.type.rank != 3 or w.type.rank != 3:
        raise ctx.error(f"input and weight must be rank 3, got {x.type} and {w.type}")
    channels, k = x.shape[1], w.shape[2]
    if not isinstance(channels, int) or not isinstance(k, int):
        raise ctx.error(f"needs static channels and kernel size, got {x.type} and {w.type}")
    if w.shape[0] != channels or w.shape[1] != 1:
        raise ctx.error(f"weight {w.type} must be ({channels}, 1, k) for a depthwise conv")
    activation = ctx.attr("activation", "none")
    if activation not in ("none", "silu", "swish"):
        raise ctx.error(f"activation {activation!r} is not one of none, silu, swish")
    if past is None:
        padded = ctx.emit("pad", x, pads=[0, 0, k - 1, 0, 0, 0]) if k > 1 else x
    else:
        if past.type.rank != 3 or past.shape[1:] != (channels, k - 1):
            raise ctx.error(f"past_state {past.type} must be (batch, {channels}, {k - 1})")
        padded = ctx.emit("concat", past, x, axis=2) if k > 1 else x
    y = ctx.emit("conv", padded, w, bias, groups=channels, strides=[1], dilations=[1], pads=[0, 0])
    if activation != "none":
        wide = y if y.dtype == "float32" else ctx.emit("cast", y, to="float32")
        y = ctx.emit("mul", wide, ctx.emit("sigmoid", wide))
        y = y if x.dtype == "float32" else ctx.emit("cast", y, to=x.dtype)
    length = padded.shape[2]
    if not isinstance(length, int):
        raise ctx.error(f"needs a static sequence length, got {x.type}")
    present = ctx.emit("slice", padded, axes=[2], starts=[length - (k - 1)], ends=[length])
    return [y, present]
