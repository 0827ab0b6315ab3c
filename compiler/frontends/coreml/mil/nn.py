"""MIL ops of networks: convolution, linear algebra (linear, matmul, einsum), normalizations,
pooling, up- and re-sampling.

Layout is channels-first as in the core ops. Results keep the dtype of ``x``; parameters
given in another float type (allowed from iOS17) are cast to it. ``pad_type`` "same" puts
the odd pixel at the end, "same_lower" at the start (TensorFlow's SAME and its mirror).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from compiler.ir.graph import Value

from .elementwise import scalar
from .registry import MilContext, mil_op, static_dims


def _param(ctx: MilContext, name: str, x: Value, default: float | None = None) -> Value:
    """Parameter ``name`` in x's dtype; absent: a [C] constant of ``default`` (C = axis 1)."""
    if not ctx.has(name):
        if not isinstance(x.shape[1], int):
            raise ctx.error(f"needs a static channel count without {name}, got {list(x.shape)}")
        return ctx.const(np.full((x.shape[1],), default, dtype=x.dtype.np))
    p = ctx.x(name)
    return p if p.dtype == x.dtype else ctx.emit("cast", p, to=x.dtype)


def _spatial(ctx: MilContext, x: Value) -> list[int]:
    dims = list(x.shape[2:])
    if not static_dims(dims):
        raise ctx.error(f"needs static spatial dims, got {list(x.shape)}")
    return [int(d) for d in dims]


def _pads(
    ctx: MilContext, x: Value, kernel: list[int], strides: list[int], dilations: list[int]
) -> list[int]:
    """Core-op pads (every begin, then every end) for ``pad_type`` and ``pad``."""
    n = len(kernel)
    pad_type = ctx.attr("pad_type", "valid").lower()
    if pad_type == "valid":
        return [0] * (2 * n)
    if pad_type == "custom":
        pad = ctx.attr("pad", [0] * (2 * n))
        return [pad[2 * i] for i in range(n)] + [pad[2 * i + 1] for i in range(n)]
    if pad_type not in ("same", "same_lower"):
        raise ctx.error(f"unknown pad_type {pad_type!r}")
    begin, end = [], []
    for d, k, s, dil in zip(_spatial(ctx, x), kernel, strides, dilations):
        total = max(0, (math.ceil(d / s) - 1) * s + dil * (k - 1) + 1 - d)
        small, large = total // 2, total - total // 2
        begin.append(large if pad_type == "same_lower" else small)
        end.append(small if pad_type == "same_lower" else large)
    return begin + end


# -- convolution -----------------------------------------------------------------------------


@mil_op("conv")
def conv(ctx: MilContext) -> Value:
    """1-D to 3-D convolution, weight [C_out, C_in/groups, k...]."""
    x = ctx.x("x")
    w = _param(ctx, "weight", x)
    n = len(x.shape) - 2
    kernel = [int(k) for k in w.shape[2:]]
    strides = ctx.attr("strides", [1] * n)
    dilations = ctx.attr("dilations", [1] * n)
    b = _param(ctx, "bias", x) if ctx.has("bias") else None
    pads = _pads(ctx, x, kernel, strides, dilations)
    return ctx.emit(
        "conv",
        x,
        w,
        b,
        strides=strides,
        dilations=dilations,
        pads=pads,
        groups=ctx.attr("groups", 1),
    )


@mil_op("conv_transpose")
def conv_transpose(ctx: MilContext) -> Value:
    """Transposed convolution, weight [C_in, C_out/groups, k...]. The full result is cropped
    at the start by the begin padding (custom ``pad``, or half of k - stride for "same",
    the odd one at the end) and at the end to the output size (``output_shape`` or the
    one pymil infers); a larger output size grows past the full result with zeros (plus
    the bias), as PyTorch's output_padding does."""
    x = ctx.x("x")
    w = _param(ctx, "weight", x)
    n = len(x.shape) - 2
    kernel = [int(k) for k in w.shape[2:]]
    strides = ctx.attr("strides", [1] * n)
    dilations = ctx.attr("dilations", [1] * n)
    b = _param(ctx, "bias", x) if ctx.has("bias") else None
    pad_type = ctx.attr("pad_type", "valid").lower()
    target = ctx.out_shape()[2:]
    if not static_dims(target):
        raise ctx.error(f"needs a static output size, got {ctx.out_shape()}")
    begin, end, extra = [], [], []
    for i, d in enumerate(_spatial(ctx, x)):
        span = dilations[i] * (kernel[i] - 1) + 1
        full = (d - 1) * strides[i] + span
        if pad_type == "custom":
            pb = ctx.attr("pad", [0] * (2 * n))[2 * i]
        elif pad_type == "same":
            pb = max(0, span - strides[i]) // 2
        elif pad_type == "valid":
            pb = 0
        else:
            raise ctx.error(f"unknown pad_type {pad_type!r}")
        rest = full - pb - int(target[i])
        begin.append(pb)
        end.append(max(rest, 0))
        extra.append(max(-rest, 0))
    return ctx.emit(
        "conv_transpose",
        x,
        w,
        b,
        strides=strides,
        dilations=dilations,
        pads=begin + end,
        output_padding=extra,
        groups=ctx.attr("groups", 1),
    )


# -- linear algebra --------------------------------------------------------------------------


def _last_two_swapped(ctx: MilContext, v: Value) -> Value:
    r = len(v.shape)
    return ctx.emit("transpose", v, perm=[*range(r - 2), r - 1, r - 2])


@mil_op("linear")
def linear(ctx: MilContext) -> Value:
    """x @ weight.T + bias, weight [D_out, D_in]."""
    x = ctx.x("x")
    y = ctx.emit("matmul", x, _last_two_swapped(ctx, _param(ctx, "weight", x)))
    known = ctx.known("bias")
    if ctx.has("bias") and (known is None or np.any(known)):  # pymil fills in zeros
        y = ctx.emit("add", y, _param(ctx, "bias", x))
    return y


@mil_op("matmul")
def matmul(ctx: MilContext) -> Value:
    """numpy matmul after the optional swaps of each operand's last two axes."""
    want = ctx.out_dtype()
    x, y = (ctx.x(p) for p in ("x", "y"))
    x, y = (v if v.dtype == want else ctx.emit("cast", v, to=want) for v in (x, y))
    if len(x.shape) == 1 and len(y.shape) > 2:
        raise ctx.error(
            f"a 1-D x times a rank-{len(y.shape)} y: coremltools infers shape "
            f"{ctx.out_shape()}, not numpy's; the product is ambiguous"
        )
    if ctx.attr("transpose_x", False) and len(x.shape) > 1:
        x = _last_two_swapped(ctx, x)
    if ctx.attr("transpose_y", False) and len(y.shape) > 1:
        y = _last_two_swapped(ctx, y)
    return ctx.emit("matmul", x, y)


@mil_op("einsum")
def einsum(ctx: MilContext) -> Value:
    """The two equations MIL allows ("nchw,nwhu->nchu", "chw,whr->chr", any letters): a
    matrix product over axes -3 and -1, batch axes -2 (and -4) broadcast first."""
    a, b = ctx.xs("values")
    if len(a.shape) != len(b.shape) or len(a.shape) not in (3, 4):
        raise ctx.error(f"needs two operands of rank 3 or 4, got {a.shape} and {b.shape}")
    batch = [-2] if len(a.shape) == 3 else [-4, -2]
    shapes = [list(a.shape), list(b.shape)]
    for ax in batch:
        size = max(int(a.shape[ax]), int(b.shape[ax]))
        for s in shapes:
            s[ax] = size
    a, b = (
        v if list(v.shape) == s else ctx.emit("broadcast_to", v, shape=s)
        for v, s in zip((a, b), shapes)
    )
    return ctx.emit("einsum", a, b, equation=ctx.attr("equation"))


# -- normalization ---------------------------------------------------------------------------


@mil_op("batch_norm")
def batch_norm(ctx: MilContext) -> Value:
    """gamma (x - mean) / sqrt(variance + epsilon) + beta per channel (axis 1)."""
    x = ctx.x("x")
    return ctx.emit(
        "batch_norm",
        x,
        _param(ctx, "gamma", x, 1.0),
        _param(ctx, "beta", x, 0.0),
        _param(ctx, "mean", x),
        _param(ctx, "variance", x),
        epsilon=ctx.attr("epsilon", 1e-5),
    )


@mil_op("instance_norm")
def instance_norm(ctx: MilContext) -> Value:
    x = ctx.x("x")
    return ctx.emit(
        "instance_norm",
        x,
        _param(ctx, "gamma", x, 1.0),
        _param(ctx, "beta", x, 0.0),
        epsilon=ctx.attr("epsilon", 1e-5),
    )


@mil_op("layer_norm")
def layer_norm(ctx: MilContext) -> Value:
    """Normalizes over ``axes`` (default all); gamma/beta have the shape of those axes.
    Trailing axes use the core op; other axes compose it from reductions."""
    x = ctx.x("x")
    r = len(x.shape)
    axes = sorted({a % r for a in ctx.attr("axes", list(range(r)))})
    eps = ctx.attr("epsilon", 1e-5)
    kept = [int(x.shape[a]) if a in axes else 1 for a in range(r)]
    gamma = _param(ctx, "gamma", x) if ctx.has("gamma") else None
    beta = _param(ctx, "beta", x) if ctx.has("beta") else None
    if axes and axes == list(range(axes[0], r)):
        scale = gamma if gamma is not None else ctx.const(np.ones(kept[axes[0] :], x.dtype.np))
        return ctx.emit("layer_norm", x, scale, beta, axis=axes[0], epsilon=eps)
    if not axes:
        raise ctx.error("normalizes over no axes")
    mean = ctx.emit("reduce_mean", x, axes=axes, keepdims=True)
    d = ctx.emit("sub", x, mean)
    var = ctx.emit("reduce_mean", ctx.emit("mul", d, d), axes=axes, keepdims=True)
    std = ctx.emit("sqrt", ctx.emit("add", var, scalar(ctx, eps, x)))
    y = ctx.emit("div", d, std)
    if gamma is not None:
        y = ctx.emit("mul", y, ctx.emit("reshape", gamma, shape=kept))
    if beta is not None:
        y = ctx.emit("add", y, ctx.emit("reshape", beta, shape=kept))
    return y


@mil_op("l2_norm")
def l2_norm(ctx: MilContext) -> Value:
    """x / sqrt(sum of x^2 over the last three axes + epsilon), leading axes batch."""
    x = ctx.x("x")
    r = len(x.shape)
    ss = ctx.emit("reduce_sum_square", x, axes=[r - 3, r - 2, r - 1], keepdims=True)
    eps = scalar(ctx, ctx.attr("epsilon", 1e-6), x)
    return ctx.emit("div", x, ctx.emit("sqrt", ctx.emit("add", ss, eps)))


@mil_op("local_response_norm")
def local_response_norm(ctx: MilContext) -> Value:
    """x / (k + alpha / size * sum of x^2 over ``size`` channels centred on c) ^ beta. Core
    ML does not say where an even window's extra channel lies: even sizes are refused."""
    size = ctx.attr("size")
    if size % 2 == 0:
        raise ctx.error(f"size {size} is even; Core ML leaves that window's placement open")
    return ctx.emit(
        "lrn",
        ctx.x("x"),
        size=size,
        alpha=ctx.attr("alpha", 1e-4),
        beta=ctx.attr("beta", 0.75),
        bias=ctx.attr("k", 1.0),
    )


# -- pooling ---------------------------------------------------------------------------------


def _pool_attrs(ctx: MilContext, x: Value) -> dict[str, Any]:
    """Core-op pool attributes. MIL's ceil_mode (symmetric pads only) drops a last window
    starting past the input like PyTorch, but only when there is padding; the one size
    where that differs is refused."""
    n = len(x.shape) - 2
    kernel = ctx.attr("kernel_sizes")
    strides = ctx.attr("strides", [1] * n)
    pads = _pads(ctx, x, kernel, strides, [1] * n)
    ceil = bool(ctx.attr("ceil_mode", False))
    if ceil:
        for i, d in enumerate(_spatial(ctx, x)):
            room = d + pads[i] + pads[n + i] - kernel[i]
            size = -(-room // strides[i]) + 1
            torch_drop = (size - 1) * strides[i] >= d + pads[i]
            if torch_drop and pads[i] + pads[n + i] == 0:
                raise ctx.error(
                    f"ceil_mode without padding keeps a last window that starts past the "
                    f"input on spatial axis {i}; nnxc does not compute such windows"
                )
    return {"kernel": kernel, "strides": strides, "pads": pads, "ceil_mode": ceil}


@mil_op("max_pool")
def max_pool(ctx: MilContext) -> Value:
    x = ctx.x("x")
    return ctx.emit("max_pool", x, **_pool_attrs(ctx, x))


@mil_op("avg_pool")
def avg_pool(ctx: MilContext) -> Value:
    """The divisor counts the padding unless exclude_padding_from_average."""
    x = ctx.x("x")
    include = not ctx.attr("exclude_padding_from_average", False)
    return ctx.emit("avg_pool", x, **_pool_attrs(ctx, x), count_include_pad=include)


@mil_op("l2_pool")
def l2_pool(ctx: MilContext) -> Value:
    """sqrt of the sum of squares in each window: a depthwise convolution of x^2 with ones
    (padding adds zeros; a ceil_mode overhang is padded with zeros too)."""
    x = ctx.x("x")
    attrs = _pool_attrs(ctx, x)
    c = x.shape[1]
    if not isinstance(c, int):
        raise ctx.error(f"needs a static channel count, got {list(x.shape)}")
    out = ctx.out_shape()[2:]
    n = len(out)
    pads = list(attrs["pads"])
    for i, d in enumerate(_spatial(ctx, x)):
        need = (int(out[i]) - 1) * attrs["strides"][i] + attrs["kernel"][i]
        pads[n + i] += max(0, need - (d + pads[i] + pads[n + i]))
    ones = ctx.const(np.ones((c, 1, *attrs["kernel"]), x.dtype.np))
    sq = ctx.emit("mul", x, x)
    s = ctx.emit("conv", sq, ones, None, strides=attrs["strides"], pads=pads, groups=c)
    return ctx.emit("sqrt", s)


# -- up- and re-sampling ---------------------------------------------------------------------


def _resize(
    ctx: MilContext,
    x: Value,
    k: int,
    mode: str,
    coords: str,
    scales: list[float] | None = None,
    roi: list[float] | None = None,
) -> Value:
    """The core resize of the last ``k`` axes to the output size pymil inferred; ``scales``
    and ``roi`` (starts then ends) for those axes. Nearest reads floor(source coordinate)."""
    out = ctx.out_shape()
    if not static_dims(out):
        raise ctx.error(f"needs a static output size, got {out}")
    r = len(out)
    attrs: dict[str, Any] = {
        "sizes": [int(d) for d in out],
        "mode": mode,
        "coordinate_transformation_mode": coords,
        "nearest_mode": "floor",
    }
    if scales is not None:
        attrs["scales"] = [1.0] * (r - k) + scales
    if roi is not None:
        attrs["roi"] = [0.0] * (r - k) + roi[:k] + [1.0] * (r - k) + roi[k:]
    return ctx.emit("resize", x, **attrs)


def _bilinear(ctx: MilContext, x: Value, k: int, mode: str) -> Value:
    """Linear interpolation of the last ``k`` axes with MIL's grid modes, as resize
    coordinate transforms (coordinates clamp to the input): STRICT_ALIGN_CORNERS ->
    align_corners; ALIGN_CORNERS -> the same but the middle for one output, which
    tf_crop_and_resize over the whole input gives; DEFAULT -> asymmetric; UNALIGN_CORNERS
    -> half_pixel; OFFSET_CORNERS samples at (i + 0.5) * max(1, in - 1) / out, a
    crop-and-resize window that stays inside the input."""
    simple = {
        "STRICT_ALIGN_CORNERS": "align_corners",
        "DEFAULT": "asymmetric",
        "UNALIGN_CORNERS": "half_pixel",
    }
    if not x.dtype.is_float:
        raise ctx.error(f"linear interpolation needs a float input, got {x.dtype}")
    if mode in simple:
        return _resize(ctx, x, k, "linear", simple[mode])
    if mode == "ALIGN_CORNERS":
        return _resize(ctx, x, k, "linear", "tf_crop_and_resize", roi=[0.0] * k + [1.0] * k)
    if mode != "OFFSET_CORNERS":
        raise ctx.error(f"unknown sampling_mode {mode!r}")
    starts, ends = [], []
    for d, o in zip(x.shape[-k:], ctx.out_shape()[-k:]):
        if not isinstance(d, int):
            raise ctx.error(f"needs static sizes in the resized axes, got {list(x.shape)}")
        if d == 1:  # every coordinate clamps to the one input pixel
            starts.append(0.0)
            ends.append(1.0)
            continue
        delta = max(1, d - 1) / int(o)
        start = delta / 2 / (d - 1)
        starts.append(start)
        ends.append(start + delta * (int(o) - 1) / (d - 1))
    return _resize(ctx, x, k, "linear", "tf_crop_and_resize", roi=starts + ends)


@mil_op("upsample_nearest_neighbor")
def upsample_nearest_neighbor(ctx: MilContext) -> Value:
    """Output (i, j) reads input (floor(i / scale_h), floor(j / scale_w))."""
    scales = [float(ctx.attr("scale_factor_height", 1)), float(ctx.attr("scale_factor_width", 1))]
    return _resize(ctx, ctx.x("x"), 2, "nearest", "asymmetric", scales=scales)


@mil_op("resize_nearest_neighbor")
def resize_nearest_neighbor(ctx: MilContext) -> Value:
    """Output i reads input floor(i * in / out) on each of the last two axes."""
    return _resize(ctx, ctx.x("x"), 2, "nearest", "asymmetric")


@mil_op("upsample_bilinear")
def upsample_bilinear(ctx: MilContext) -> Value:
    """Bilinear, the scale recomputed from the sizes: align_corners maps the corner pixels
    onto each other; else half_pixel_centers (iOS16, default: not align_corners) samples
    at (i + 0.5) * in / out - 0.5, or at i * in / out without it. Coordinates clamp to the
    input."""
    align = bool(ctx.attr("align_corners", True))
    half = bool(ctx.attr("half_pixel_centers", not align))
    if align and half:
        raise ctx.error("align_corners and half_pixel_centers are both set")
    coords = "align_corners" if align else "half_pixel" if half else "asymmetric"
    return _resize(ctx, ctx.x("x"), 2, "linear", coords)


@mil_op("resize_bilinear")
def resize_bilinear(ctx: MilContext) -> Value:
    return _bilinear(ctx, ctx.x("x"), 2, ctx.attr("sampling_mode", "DEFAULT"))


@mil_op("resize")
def resize(ctx: MilContext) -> Value:
    """iOS17: the last ``resized_dims`` axes to the sizes pymil inferred from ``shape``
    (which must be known). NEAREST_NEIGHBOR is defined for the DEFAULT grid only: input
    floor(i * in / out)."""
    x = ctx.x("x")
    k = int(ctx.attr("resized_dims"))
    mode = ctx.attr("sampling_mode", "DEFAULT")
    if k == 0:
        return ctx.emit("identity", x)
    if ctx.attr("interpolation_mode", "LINEAR") == "LINEAR":
        return _bilinear(ctx, x, k, mode)
    if mode != "DEFAULT":
        raise ctx.error(f"NEAREST_NEIGHBOR with sampling_mode {mode}: Core ML does not define it")
    return _resize(ctx, x, k, "nearest", "asymmetric")


# -- sampling at computed positions ----------------------------------------------------------


def _grid_sample(ctx: MilContext, x: Value, grid: Value, align: bool) -> Value:
    """Samples x at normalized positions (x, y) in [-1, 1], as PyTorch's grid_sample.
    MIL's padding modes: constant (any padding_value: x - v is sampled with zeros, then v
    added back, exact since the taps' weights sum to 1), border, reflection (about the edge
    pixels' centers, which is PyTorch's with align_corners) and symmetric (about their
    outer edges, PyTorch's without)."""
    sampling = ctx.attr("sampling_mode", "bilinear")
    if sampling not in ("bilinear", "nearest"):
        raise ctx.error(f"unknown sampling_mode {sampling!r}")
    padding = ctx.attr("padding_mode", "constant")
    if padding in ("reflection", "symmetric") and align != (padding == "reflection"):
        raise ctx.error(
            f"padding_mode {padding} with align_corners={align}: Core ML does not define it"
        )
    modes = {"constant": "zeros", "border": "border", "reflection": "reflection"}
    if padding not in modes and padding != "symmetric":
        raise ctx.error(f"unknown padding_mode {padding!r}")
    value = float(ctx.attr("padding_value", 0.0)) if padding == "constant" else 0.0
    src = x if value == 0 else ctx.emit("sub", x, scalar(ctx, value, x))
    y = ctx.emit(
        "grid_sample",
        src,
        grid,
        mode="linear" if sampling == "bilinear" else "nearest",
        padding_mode=modes.get(padding, "reflection"),
        align_corners=align,
    )
    return y if value == 0 else ctx.emit("add", y, scalar(ctx, value, x))


@mil_op("resample")
def resample(ctx: MilContext) -> Value:
    """Samples x [B, C, H, W] at ``coordinates`` [B, H2, W2, 2] given as (x, y): in [-1, 1],
    in [0, 1], or unnormalized pixels (0 and size - 1 the corner pixels' centers)."""
    x = ctx.x("x")
    coords = ctx.x("coordinates")
    if not coords.dtype.is_float:
        coords = ctx.emit("cast", coords, to="float32")
    mode = ctx.attr("coordinates_mode", "normalized_minus_one_to_one")
    align = bool(ctx.attr("align_corners", False))
    one = ctx.const(np.asarray(1, coords.dtype.np))
    if mode == "normalized_zero_to_one":
        coords = ctx.emit("sub", ctx.emit("add", coords, coords), one)
    elif mode == "unnormalized":
        h, w = x.shape[2:]
        if not (isinstance(h, int) and isinstance(w, int) and h > 1 and w > 1):
            raise ctx.error(f"unnormalized coordinates need a static H, W > 1, got {x.shape}")
        scale = ctx.const(np.asarray([2 / (w - 1), 2 / (h - 1)], coords.dtype.np))
        coords, align = ctx.emit("sub", ctx.emit("mul", coords, scale), one), True
    elif mode != "normalized_minus_one_to_one":
        raise ctx.error(f"unknown coordinates_mode {mode!r}")
    return _grid_sample(ctx, x, coords, align)


@mil_op("affine")
def affine(ctx: MilContext) -> Value:
    """PyTorch's affine_grid + grid_sample: output pixel (x, y), normalized to [-1, 1] over
    the output, reads the input at (a0 x + a1 y + a2, b0 x + b1 y + b2); one matrix
    [a0 a1 a2 b0 b1 b2] per batch entry, or one for all."""
    x = ctx.x("x")
    if ctx.attr("coordinates_mode", "normalized_minus_one_to_one") != (
        "normalized_minus_one_to_one"
    ):
        raise ctx.error("only coordinates_mode normalized_minus_one_to_one is defined")
    align = bool(ctx.attr("align_corners", True))
    h, w = int(ctx.attr("output_height")), int(ctx.attr("output_width"))
    theta = ctx.x("transform_matrix")
    if not theta.dtype.is_float:
        theta = ctx.emit("cast", theta, to="float32")
    d = theta.shape[0]

    def axis(n: int) -> np.ndarray:
        i = np.arange(n, dtype=np.float64)
        if align:
            return i * 2 / (n - 1) - 1 if n > 1 else np.zeros(1)
        return (2 * i + 1) / n - 1

    gy, gx = np.meshgrid(axis(h), axis(w), indexing="ij")
    base = np.stack([gx, gy, np.ones_like(gx)], -1).reshape(h * w, 3)
    t = ctx.emit("transpose", ctx.emit("reshape", theta, shape=[d, 2, 3]), perm=[0, 2, 1])
    grid = ctx.emit("matmul", ctx.const(base.astype(theta.dtype.np)), t)
    grid = ctx.emit("reshape", grid, shape=[d, h, w, 2])
    b = x.shape[0]
    if d != b:
        grid = ctx.emit("broadcast_to", grid, shape=[b, h, w, 2])
    return _grid_sample(ctx, x, grid, align)


_BOX_ORDER = {
    "CORNERS_HEIGHT_FIRST": (0, 1, 2, 3),
    "CORNERS_WIDTH_FIRST": (1, 0, 3, 2),
    "CENTER_SIZE_HEIGHT_FIRST": (0, 1, 2, 3),
    "CENTER_SIZE_WIDTH_FIRST": (1, 0, 3, 2),
}
"""Columns of (h, w, h, w) in each box layout: corners, or center then size."""


def _box_positions(
    ctx: MilContext, boxes: Value, size: tuple[int, int], out: tuple[int, int]
) -> tuple[Value, Value]:
    """Sample rows [N, out_h] and columns [N, out_w] in input pixels: the corners of each box
    and evenly between (TensorFlow's crop_and_resize); one sample is the box's centre with
    ALIGN_CORNERS, its start with STRICT_ALIGN_CORNERS."""
    mode = ctx.attr("sampling_mode", "DEFAULT")
    if mode not in ("ALIGN_CORNERS", "STRICT_ALIGN_CORNERS"):
        raise ctx.error(
            f"sampling_mode {mode}: Core ML does not say how that grid fits a box; only "
            "ALIGN_CORNERS and STRICT_ALIGN_CORNERS are converted"
        )
    layout = ctx.attr("box_coordinate_mode", "CORNERS_HEIGHT_FIRST")
    if layout not in _BOX_ORDER:
        raise ctx.error(f"unknown box_coordinate_mode {layout!r}")
    cols = [
        ctx.emit("gather", boxes, ctx.const(np.asarray([c], np.int32)), axis=1)
        for c in _BOX_ORDER[layout]
    ]
    normalized = bool(ctx.attr("normalized_coordinates", False))
    scale = float(ctx.attr("spatial_scale", 1.0))
    result = []
    for axis in range(2):
        a, b = cols[axis], cols[2 + axis]
        if layout.startswith("CENTER"):
            half = ctx.emit("mul", b, ctx.const(np.asarray(0.5, np.float32)))
            a, b = ctx.emit("sub", a, half), ctx.emit("add", a, half)
        factor = scale * ((size[axis] - 1) if normalized else 1)
        a, b = (ctx.emit("mul", v, ctx.const(np.asarray(factor, np.float32))) for v in (a, b))
        n = out[axis]
        if n > 1:
            t = np.arange(n) / (n - 1)
        else:
            t = np.full(1, 0.5 if mode == "ALIGN_CORNERS" else 0.0)
        step = ctx.emit("mul", ctx.emit("sub", b, a), ctx.const(t[None].astype(np.float32)))
        result.append(ctx.emit("add", a, step))
    return result[0], result[1]


def _crop(ctx: MilContext, images: Value, rows: Value, cols: Value) -> Value:
    """Bilinear samples of images [M, C, H, W] at rows [M, h] x cols [M, w] (pixels);
    samples outside the image are pad_value."""
    m, _, h, w = images.shape
    oh, ow = rows.shape[1], cols.shape[1]
    grid_axes = []
    masks = []
    for pos, size in ((cols, w), (rows, h)):
        factor = 2 / (size - 1) if size > 1 else 0.0
        scaled = ctx.emit("mul", pos, ctx.const(np.asarray(factor, np.float32)))
        grid_axes.append(ctx.emit("sub", scaled, ctx.const(np.asarray(1, np.float32))))
        lo = ctx.emit("less", pos, ctx.const(np.asarray(0, np.float32)))
        hi = ctx.emit("greater", pos, ctx.const(np.asarray(size - 1, np.float32)))
        masks.append(ctx.emit("logical_or", lo, hi))
    gx = ctx.emit(
        "broadcast_to", ctx.emit("reshape", grid_axes[0], shape=[m, 1, ow, 1]), shape=[m, oh, ow, 1]
    )
    gy = ctx.emit(
        "broadcast_to", ctx.emit("reshape", grid_axes[1], shape=[m, oh, 1, 1]), shape=[m, oh, ow, 1]
    )
    grid = ctx.emit("concat", gx, gy, axis=3)
    y = ctx.emit(
        "grid_sample", images, grid, mode="linear", padding_mode="border", align_corners=True
    )
    outside = ctx.emit(
        "logical_or",
        ctx.emit("reshape", masks[0], shape=[m, 1, 1, ow]),
        ctx.emit("reshape", masks[1], shape=[m, 1, oh, 1]),
    )
    pad = scalar(ctx, float(ctx.attr("pad_value", 0.0)), images)
    return ctx.emit("where", outside, pad, y)


@mil_op("crop_resize")
def crop_resize(ctx: MilContext) -> Value:
    """Crops boxes out of x [B, C, H, W] and resizes each bilinearly to target_height x
    target_width. Up to iOS16 ``roi`` [N, 1, 4 or 5, 1, 1] (a leading image index, or every
    box on every image: [N, B, C, h, w]); from iOS17 ``boxes`` [N, 4] with ``box_indices``
    (default 0..N-1): [N, C, h, w]."""
    x = ctx.x("x")
    b, c, h, w = x.shape
    if not all(isinstance(d, int) for d in (b, c, h, w)):
        raise ctx.error(f"needs a static input shape, got {list(x.shape)}")
    out = (int(ctx.attr("target_height", 1)), int(ctx.attr("target_width", 1)))
    if ctx.has("boxes"):
        boxes = ctx.x("boxes")
        n = boxes.shape[0]
        if ctx.has("box_indices"):
            index = ctx.x("box_indices")
        else:
            index = ctx.const(np.arange(n, dtype=np.int32))
    else:
        roi = ctx.x("roi")
        n, k = roi.shape[0], roi.shape[2]
        flat = ctx.emit("reshape", roi, shape=[n, k])
        index = None
        if k == 5:
            if b != 1:
                raise ctx.error(
                    "a 5-element roi with B > 1: pymil and Core ML disagree on the shape"
                )
            index = ctx.const(np.zeros(n, np.int32))
        keep = np.arange(k - 4, k, dtype=np.int32)
        boxes = ctx.emit("gather", flat, ctx.const(keep), axis=1)
    if not boxes.dtype.is_float or boxes.dtype != "float32":
        boxes = ctx.emit("cast", boxes, to="float32")
    rows, cols = _box_positions(ctx, boxes, (h, w), out)
    if index is not None:
        if index.dtype not in ("int32", "int64"):
            index = ctx.emit("cast", index, to="int32")
        y = _crop(ctx, ctx.emit("gather", x, index, axis=0), rows, cols)
        return y if ctx.has("boxes") else ctx.emit("reshape", y, shape=[n, 1, c, *out])
    # every box on every image: pair them up as N * B crops
    every = ctx.emit(
        "reshape", ctx.emit("broadcast_to", x, shape=[n, b, c, h, w]), shape=[n * b, c, h, w]
    )
    rows, cols = (
        ctx.emit(
            "reshape",
            ctx.emit("broadcast_to", ctx.emit("reshape", p, shape=[n, 1, s]), shape=[n, b, s]),
            shape=[n * b, s],
        )
        for p, s in ((rows, out[0]), (cols, out[1]))
    )
    y = _crop(ctx, every, rows, cols)
    return ctx.emit("reshape", y, shape=[n, b, c, *out])
