"""Windowed NeuralNetwork layers: convolution (and deconvolution), pooling, padding, up- and down-
sampling, crops, their 3-D forms.

The 2-D layers act on the trailing ``[C, H, W]`` axes; every leading axis is a batch axis, so
they are folded into one batch axis around the core ``(N, C, H, W)`` ops (``to_nchw``).
Padding follows NeuralNetwork.proto: ``same`` gives ``ceil(in / stride)`` outputs with the odd
pad at the bottom/right (``BOTTOM_RIGHT_HEAVY``) or top/left (``TOP_LEFT_HEAVY``), and pooling's
``includeLastPixel`` is Caffe's ceil mode with symmetric pads.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from compiler.ir.graph import Value
from compiler.ir.ops.nn_conv import pool_geometry
from compiler.ir.types import Dim

from .registry import NnContext, layer

TOP_LEFT_HEAVY = 1
MAX, AVERAGE, L2 = 0, 1, 2


# -- batch axes ------------------------------------------------------------------------------


def to_nchw(ctx: NnContext, x: Value, trailing: int = 3) -> tuple[Value, list[Dim]]:
    """``x`` with its leading axes (all but the trailing ``trailing``) folded into one batch
    axis, and those leading dims, to restore them with ``from_nchw``."""
    shape = list(x.shape)
    if len(shape) < trailing:
        raise ctx.error(f"needs an input of rank >= {trailing}, got shape {shape}")
    lead = shape[: len(shape) - trailing]
    if len(lead) == 1:
        return x, lead
    big = [d for d in lead if d != 1]
    if len(big) <= 1:
        batch: Dim = big[0] if big else 1
    elif all(isinstance(d, int) for d in big):
        batch = int(np.prod(big))
    else:
        raise ctx.error(f"cannot fold the symbolic leading dims {lead} into one batch axis")
    return ctx.emit("reshape", x, shape=[batch, *shape[len(lead) :]]), lead


def from_nchw(ctx: NnContext, y: Value, lead: list[Dim]) -> Value:
    """``y`` with the leading dims ``to_nchw`` folded given back."""
    if len(lead) == 1:
        return y
    tail = list(y.shape[1:])
    return ctx.emit("reshape", y, shape=[*lead, *tail])


# -- padding ---------------------------------------------------------------------------------


def _pair(values: Sequence[int], default: int) -> list[int]:
    """A ``[H, W]`` field, proto3's empty meaning the default."""
    v = [int(a) for a in values]
    return v if v else [default, default]


def _spatial(ctx: NnContext, x: Value, count: int) -> list[int]:
    dims = list(x.shape[-count:])
    if not all(isinstance(d, int) for d in dims):
        raise ctx.error(f"needs static spatial dims, got shape {list(x.shape)}")
    return dims


def same_pads(
    spatial: Sequence[int], kernel: Sequence[int], strides: Sequence[int], mode: int
) -> list[int]:
    """``same`` padding: ``ceil(in / stride)`` outputs; [begins..., ends...]."""
    begins, ends = [], []
    for d, k, s in zip(spatial, kernel, strides, strict=True):
        out = -(-d // s)
        total = max(0, (out - 1) * s + k - d)
        small = total // 2
        big = total - small
        begins.append(big if mode == TOP_LEFT_HEAVY else small)
        ends.append(small if mode == TOP_LEFT_HEAVY else big)
    return begins + ends


def _border(amounts: Any) -> list[int]:
    """``BorderAmounts`` ``[H, W]`` as [top, left, bottom, right] (absent: no border)."""
    edges = list(amounts.borderAmounts)
    if not edges:
        return [0, 0, 0, 0]
    if len(edges) != 2:
        raise ValueError(f"{len(edges)} border amounts (2 are needed, [H, W])")
    return [int(edges[0].startEdgeSize), int(edges[1].startEdgeSize)] + [
        int(edges[0].endEdgeSize),
        int(edges[1].endEdgeSize),
    ]


def _window_pads(
    ctx: NnContext, p: Any, field: str, spatial: list[int], kernel: list[int], strides: list[int]
) -> list[int]:
    kind = p.WhichOneof(field)
    if kind == "same":
        return same_pads(spatial, kernel, strides, int(p.same.asymmetryMode))
    if kind == "valid":
        try:
            return _border(p.valid.paddingAmounts)
        except ValueError as e:
            raise ctx.error(str(e)) from None
    if kind is None:
        return [0, 0, 0, 0]
    raise ctx.error(f"padding type {kind!r} is not one Core ML defines here")


# -- convolution -----------------------------------------------------------------------------


@layer("convolution")
def convolution(ctx: NnContext) -> Value:
    p = ctx.params
    x, lead = to_nchw(ctx, ctx.x(0))
    spatial = _spatial(ctx, x, 2)
    kernel = _pair(p.kernelSize, 3)
    strides = _pair(p.stride, 1)
    dilations = _pair(p.dilationFactor, 1)
    groups = int(p.nGroups) or 1
    cout = int(p.outputChannels)
    bias = ctx.weights_const(p.bias, [cout], "bias", dtype=x.dtype) if p.hasBias else None
    if p.isDeconvolution:
        y = _deconvolution(ctx, p, x, spatial, kernel, strides, dilations, groups, bias)
        return from_nchw(ctx, y, lead)
    if len(ctx.inputs) > 1:
        w = ctx.x(1)
        if len(w.shape) != 4:
            w = ctx.emit("reshape", w, shape=[cout, int(p.kernelChannels), *kernel])
    else:
        shape = [cout, int(p.kernelChannels), *kernel]
        w = ctx.weights_const(p.weights, shape, "weights", dtype=x.dtype)
    span = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    pads = _window_pads(ctx, p, "ConvolutionPaddingType", spatial, span, strides)
    y = ctx.emit("conv", x, w, bias, strides=strides, pads=pads, dilations=dilations, groups=groups)
    return from_nchw(ctx, y, lead)


def _deconvolution(
    ctx: NnContext,
    p: Any,
    x: Value,
    spatial: list[int],
    kernel: list[int],
    strides: list[int],
    dilations: list[int],
    groups: int,
    bias: Value | None,
) -> Value:
    """Transposed convolution: weights ``[C_in, C_out / groups, kH, kW]``."""
    if len(ctx.inputs) > 1:
        raise ctx.error("a deconvolution takes its weights from the layer, not a second input")
    if any(d != 1 for d in dilations):
        raise ctx.error(
            f"deconvolution with dilation {dilations}: NeuralNetwork.proto says the dilation "
            "of a deconvolution is ignored, while coremltools' MIL lowering relies on it"
        )
    shape = [int(p.kernelChannels), int(p.outputChannels) // groups, *kernel]
    w = ctx.weights_const(p.weights, shape, "weights", axis=1, dtype=x.dtype)
    full = [(d - 1) * s + k for d, s, k in zip(spatial, strides, kernel)]
    kind = p.WhichOneof("ConvolutionPaddingType")
    mode = int(p.same.asymmetryMode) if kind == "same" else 0
    amounts = [0, 0, 0, 0]
    if kind == "valid":
        try:
            amounts = _border(p.valid.paddingAmounts)
        except ValueError as e:
            raise ctx.error(str(e)) from None
    target = [int(v) for v in p.outputShape]
    if not target:
        target = [d * s for d, s in zip(spatial, strides)] if kind == "same" else None
    pads, extra = deconv_pads(ctx, full, target, amounts, kind == "same", mode, strides)
    return ctx.emit(
        "conv_transpose",
        x,
        w,
        bias,
        strides=strides,
        pads=pads,
        groups=groups,
        output_padding=extra,
    )


def deconv_pads(
    ctx: NnContext,
    full: list[int],
    target: list[int] | None,
    amounts: list[int],
    same: bool,
    mode: int,
    strides: list[int],
) -> tuple[list[int], list[int]]:
    """Crops (pads) and end growth (output_padding) that bring the uncropped deconvolution
    output ``full`` to ``target`` (None: crop the explicit ``amounts``)."""
    n = len(full)
    if target is None:
        return amounts, [0] * n
    if len(target) != n:
        raise ctx.error(f"outputShape {target} needs {n} entries")
    begins, ends, extra = [0] * n, [0] * n, [0] * n
    for i in range(n):
        total = full[i] - target[i]
        if total < 0:
            if -total >= strides[i]:
                raise ctx.error(
                    f"outputShape {target} is larger than the full output {full} by a stride"
                )
            extra[i] = -total  # the inputs reach no further; the rest is bias only
        elif amounts[i] + amounts[n + i] == total:
            begins[i], ends[i] = amounts[i], amounts[n + i]
        elif same:
            small = total // 2
            begins[i] = total - small if mode == TOP_LEFT_HEAVY else small
            ends[i] = total - begins[i]
        else:
            raise ctx.error(
                f"outputShape {target} crops the full output {full} with valid padding "
                f"{amounts}; which side is cropped is not specified"
            )
    return begins + ends, extra


# -- pooling ---------------------------------------------------------------------------------


@layer("pooling")
def pooling(ctx: NnContext) -> Value:
    p = ctx.params
    kind = int(p.type)
    if kind not in (MAX, AVERAGE, L2):
        raise ctx.error(f"pooling type {kind} is not one Core ML defines")
    x, lead = to_nchw(ctx, ctx.x(0))
    if p.globalPooling:
        return from_nchw(ctx, _global_pool(ctx, x, kind, [2, 3]), lead)
    spatial = _spatial(ctx, x, 2)
    kernel = _pair(p.kernelSize, 3)
    strides = _pair(p.stride, 1)
    padding = p.WhichOneof("PoolingPaddingType")
    ceil = padding == "includeLastPixel"
    if ceil:
        amounts = [int(a) for a in p.includeLastPixel.paddingAmounts] or [0, 0]
        if len(amounts) != 2:
            raise ctx.error(f"includeLastPixel needs 2 padding amounts, got {amounts}")
        pads = amounts + amounts
        if not any(amounts):
            _check_last_window(ctx, spatial, kernel, strides)
    else:
        pads = _window_pads(ctx, p, "PoolingPaddingType", spatial, kernel, strides)
    attrs = {"kernel": kernel, "strides": strides, "pads": pads, "ceil_mode": ceil}
    if ceil and kind == AVERAGE and not p.avgPoolExcludePadding:
        _check_overhang(ctx, spatial, attrs)
    if kind == MAX:
        y = ctx.emit("max_pool", x, **attrs)
    elif kind == AVERAGE:
        y = ctx.emit("avg_pool", x, count_include_pad=not p.avgPoolExcludePadding, **attrs)
    else:
        y = _l2_pool(ctx, x, attrs, spatial)
    return from_nchw(ctx, y, lead)


def _check_last_window(
    ctx: NnContext, spatial: list[int], kernel: list[int], strides: list[int]
) -> None:
    """Without padding, includeLastPixel keeps a last window that starts past the input
    (NeuralNetwork.proto drops it only when there is padding); its value is not defined."""
    for d, k, s in zip(spatial, kernel, strides):
        out = -(-(d - k) // s) + 1
        if (out - 1) * s >= d:
            raise ctx.error(
                f"includeLastPixel without padding puts a window past the input ({d} cells, "
                f"kernel {k}, stride {s}); its value is not specified"
            )


def _check_overhang(ctx: NnContext, spatial: list[int], attrs: dict[str, Any]) -> None:
    """An average counting the padding, over a last window that hangs past the end padding:
    whether its divisor counts the overhang is not specified (Caffe leaves it out; Core ML's
    ML Program runtime counts it, coremltools#2772), so such a layer is refused."""
    _, overhang = pool_geometry(spatial, {**attrs, "dilations": [1, 1]})
    if any(overhang):
        raise ctx.error(
            f"AVERAGE pooling with includeLastPixel whose last window hangs {overhang} cells "
            "past the end padding, the padding counted: whether the divisor counts the "
            "overhang is not specified"
        )


def _l2_pool(ctx: NnContext, x: Value, attrs: dict[str, Any], spatial: list[int]) -> Value:
    """sqrt of the sum of squares over each window: a depthwise convolution of ``x * x`` with
    ones (zero padding adds nothing), grown at the end by the ceil-mode overhang."""
    c = x.shape[1]
    if not isinstance(c, int):
        raise ctx.error(f"L2 pooling needs a static channel count, got shape {list(x.shape)}")
    full = {**attrs, "dilations": [1, 1]}
    _, overhang = pool_geometry(spatial, full)
    pads = attrs["pads"][:2] + [p + e for p, e in zip(attrs["pads"][2:], overhang)]
    ones = ctx.const(np.ones((c, 1, *attrs["kernel"]), np.float32), x.dtype)
    square = ctx.emit("mul", x, x)
    total = ctx.emit("conv", square, ones, None, strides=attrs["strides"], pads=pads, groups=c)
    return ctx.emit("sqrt", total)


def _global_pool(ctx: NnContext, x: Value, kind: int, axes: list[int]) -> Value:
    if kind == MAX:
        return ctx.emit("reduce_max", x, axes=axes, keepdims=True)
    if kind == AVERAGE:
        return ctx.emit("reduce_mean", x, axes=axes, keepdims=True)
    return ctx.emit("sqrt", ctx.emit("reduce_sum_square", x, axes=axes, keepdims=True))


# -- padding and crops -----------------------------------------------------------------------


@layer("padding")
def padding(ctx: NnContext) -> Value:
    """Pads the last two axes (rank >= 2)."""
    p = ctx.params
    x = ctx.x(0)
    rank = len(x.shape)
    if rank < 2:
        raise ctx.error(f"needs an input of rank >= 2, got shape {list(x.shape)}")
    try:
        top, left, bottom, right = _border(p.paddingAmounts)
    except ValueError as e:
        raise ctx.error(str(e)) from None
    zeros = [0] * (rank - 2)
    pads = [*zeros, top, left, *zeros, bottom, right]
    kind = p.WhichOneof("PaddingType")
    if kind in ("constant", None):
        return ctx.emit("pad", x, pads=pads, mode="constant", value=float(p.constant.value))
    if kind == "reflection":
        h, w = x.shape[-2:]
        for size, (a, b) in ((h, (top, bottom)), (w, (left, right))):
            if isinstance(size, int) and max(a, b) >= size:
                raise ctx.error(f"reflection padding of {max(a, b)} needs more than {size} cells")
        return ctx.emit("pad", x, pads=pads, mode="reflect")
    if kind == "replication":
        return ctx.emit("pad", x, pads=pads, mode="edge")
    raise ctx.error(f"padding type {kind!r} is not one Core ML defines")


@layer("crop")
def crop(ctx: NnContext) -> Value:
    """One input: crop the border amounts off H and W; two: the second input's H x W at
    ``offset``."""
    p = ctx.params
    x = ctx.x(0)
    h, w = _spatial(ctx, x, 2)
    rank = len(x.shape)
    if len(ctx.inputs) > 1:
        ref = ctx.x(1)
        oh, ow = _spatial(ctx, ref, 2)
        offset = [int(o) for o in p.offset] or [0, 0]
        if len(offset) != 2:
            raise ctx.error(f"offset needs 2 entries [H, W], got {offset}")
        starts = offset
        ends = [offset[0] + oh, offset[1] + ow]
    else:
        try:
            top, left, bottom, right = _border(p.cropAmounts)
        except ValueError as e:
            raise ctx.error(str(e)) from None
        starts = [top, left]
        ends = [h - bottom, w - right]
    if ends[0] > h or ends[1] > w or ends[0] <= starts[0] or ends[1] <= starts[1]:
        raise ctx.error(f"crop [{starts}, {ends}) does not fit the {h} x {w} input")
    return ctx.emit("slice", x, axes=[rank - 2, rank - 1], starts=starts, ends=ends)


# -- resampling ------------------------------------------------------------------------------

NN, BILINEAR = 0, 1
DEFAULT, ALIGN_CORNERS_TRUE, ALIGN_CORNERS_FALSE = 0, 1, 2


@layer("upsample")
def upsample(ctx: NnContext) -> Value:
    p = ctx.params
    x = ctx.x(0)
    if len(x.shape) < 3:
        raise ctx.error(f"needs an input of rank >= 3, got shape {list(x.shape)}")
    h, w = _spatial(ctx, x, 2)
    mode, linear = int(p.mode), int(p.linearUpsampleMode)
    if mode not in (NN, BILINEAR):
        raise ctx.error(f"interpolation mode {mode} is not one Core ML defines")
    if len(p.fractionalScalingFactor):
        if len(p.scalingFactor):
            raise ctx.error("scalingFactor and fractionalScalingFactor are mutually exclusive")
        if mode != BILINEAR or linear == DEFAULT:
            raise ctx.error(
                "fractional scaling factors are defined for BILINEAR with ALIGN_CORNERS_TRUE "
                "or ALIGN_CORNERS_FALSE"
            )
        factors: list[float] = [float(f) for f in p.fractionalScalingFactor]
    else:
        factors = [float(f) for f in _pair(p.scalingFactor, 1)]
    if len(factors) != 2 or any(f <= 0 for f in factors):
        raise ctx.error(f"scaling factors {factors} need 2 positive entries [H, W]")
    out = [math.floor(d * f) for d, f in zip((h, w), factors)]
    sizes = [*x.shape[:-2], *out]
    if mode == NN:
        return ctx.emit(
            "resize",
            x,
            sizes=sizes,
            mode="nearest",
            coordinate_transformation_mode="asymmetric",
            nearest_mode="floor",
        )
    if linear == ALIGN_CORNERS_TRUE:
        coords = "align_corners"
    elif linear == ALIGN_CORNERS_FALSE:
        coords = "half_pixel"  # negative positions read the edge, as the clamp at 0 does
    elif linear == DEFAULT:
        coords = "asymmetric"  # spacing (X - X/N)/(N - 1) = X/N for integer factors
    else:
        raise ctx.error(f"linearUpsampleMode {linear} is not one Core ML defines")
    return ctx.emit("resize", x, sizes=sizes, mode="linear", coordinate_transformation_mode=coords)


STRICT_ALIGN_ENDPOINTS, ALIGN_ENDPOINTS, UPSAMPLE, ROI_ALIGN = 0, 1, 2, 3


@layer("resizeBilinear")
def resize_bilinear(ctx: NnContext) -> Value:
    """Bilinear resize to ``targetSize``; each SamplingMode's grid is one of resize's
    coordinate transforms (ROI_ALIGN's ``(i + 0.5) (X - 1) / N`` a crop-and-resize box)."""
    p = ctx.params
    x = ctx.x(0)
    if len(x.shape) < 3:
        raise ctx.error(f"needs an input of rank >= 3, got shape {list(x.shape)}")
    h, w = _spatial(ctx, x, 2)
    target = _pair(p.targetSize, 1)
    if len(target) != 2 or min(target) < 1:
        raise ctx.error(f"targetSize {target} needs 2 positive entries [H, W]")
    method = int(p.mode.samplingMethod)
    rank = len(x.shape)
    sizes = [*x.shape[:-2], *target]
    attrs: dict[str, Any] = {"mode": "linear"}
    if method == STRICT_ALIGN_ENDPOINTS:
        attrs["coordinate_transformation_mode"] = "align_corners"
    elif method == UPSAMPLE:
        attrs["coordinate_transformation_mode"] = "asymmetric"
    elif method in (ALIGN_ENDPOINTS, ROI_ALIGN):
        starts, ends = [0.0] * rank, [1.0] * rank
        if method == ROI_ALIGN:
            for i, n in enumerate(target):
                starts[rank - 2 + i] = 0.5 / n
                ends[rank - 2 + i] = 1.0 - 0.5 / n
        attrs["coordinate_transformation_mode"] = "tf_crop_and_resize"
        attrs["roi"] = starts + ends
    else:
        raise ctx.error(f"sampling mode {method} is not one Core ML defines")
    if [h, w] == target and method != ROI_ALIGN:
        return ctx.emit("identity", x)
    return ctx.emit("resize", x, sizes=sizes, **attrs)


# -- 3-D convolution and pooling -------------------------------------------------------------

CUSTOM, VALID, SAME = 0, 1, 2


def _pads_3d(
    ctx: NnContext, p: Any, kind: int, spatial: list[int], span: list[int], strides: list[int]
) -> list[int]:
    if kind == SAME:
        return same_pads(spatial, span, strides, 0)
    if kind == VALID:
        return [0] * 6
    if kind == CUSTOM:
        return [
            int(p.customPaddingFront),
            int(p.customPaddingTop),
            int(p.customPaddingLeft),
            int(p.customPaddingBack),
            int(p.customPaddingBottom),
            int(p.customPaddingRight),
        ]
    raise ctx.error(f"padding type {kind} is not one Core ML defines")


def _rank5(ctx: NnContext, x: Value) -> list[int]:
    if len(x.shape) != 5:
        raise ctx.error(f"needs a [N, C, D, H, W] input, got shape {list(x.shape)}")
    return _spatial(ctx, x, 3)


def _positive(
    ctx: NnContext, what: str, values: list[int], default: int | None = None
) -> list[int]:
    if default is not None:
        values = [v or default for v in values]
    if any(v < 1 for v in values):
        raise ctx.error(f"{what} {values} must be positive")
    return values


@layer("convolution3d")
def convolution3d(ctx: NnContext) -> Value:
    p = ctx.params
    x = ctx.x(0)
    spatial = _rank5(ctx, x)
    kernel = _positive(ctx, "kernel", [p.kernelDepth, p.kernelHeight, p.kernelWidth])
    strides = _positive(ctx, "stride", [p.strideDepth, p.strideHeight, p.strideWidth], 1)
    dilations = _positive(ctx, "dilation", [p.dilationDepth, p.dilationHeight, p.dilationWidth], 1)
    groups = int(p.nGroups) or 1
    cin, cout = int(p.inputChannels), int(p.outputChannels)
    bias = ctx.weights_const(p.bias, [cout], "bias", dtype=x.dtype) if p.hasBias else None
    kind = int(p.paddingType)
    if not p.isDeconvolution:
        w = ctx.weights_const(p.weights, [cout, cin // groups, *kernel], "weights", dtype=x.dtype)
        span = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
        pads = _pads_3d(ctx, p, kind, spatial, span, strides)
        return ctx.emit(
            "conv", x, w, bias, strides=strides, pads=pads, dilations=dilations, groups=groups
        )
    if any(d != 1 for d in dilations):
        raise ctx.error(f"a dilated ({dilations}) 3-D deconvolution is not supported")
    # Stored [C_in, C_out / groups, k...] as in 2-D: coremltools' builder transposes to it,
    # whatever the proto's field comment says.
    shape = [cin, cout // groups, *kernel]
    w = ctx.weights_const(p.weights, shape, "weights", axis=1, dtype=x.dtype)
    full = [(d - 1) * s + k for d, s, k in zip(spatial, strides, kernel)]
    target = [int(v) for v in p.outputShape] or None
    if target is None and kind == SAME:
        target = [d * s for d, s in zip(spatial, strides)]
    amounts = _pads_3d(ctx, p, kind, spatial, kernel, strides) if kind == CUSTOM else [0] * 6
    pads, extra = deconv_pads(ctx, full, target, amounts, kind == SAME, 0, strides)
    return ctx.emit(
        "conv_transpose",
        x,
        w,
        bias,
        strides=strides,
        pads=pads,
        groups=groups,
        output_padding=extra,
    )


@layer("pooling3d")
def pooling3d(ctx: NnContext) -> Value:
    p = ctx.params
    x = ctx.x(0)
    spatial = _rank5(ctx, x)
    kernel = _positive(ctx, "kernel", [p.kernelDepth, p.kernelHeight, p.kernelWidth])
    strides = _positive(ctx, "stride", [p.strideDepth, p.strideHeight, p.strideWidth], 1)
    pads = _pads_3d(ctx, p, int(p.paddingType), spatial, kernel, strides)
    attrs = {"kernel": kernel, "strides": strides, "pads": pads}
    kind = int(p.type)
    if kind == MAX:
        return ctx.emit("max_pool", x, **attrs)
    if kind == AVERAGE:
        return ctx.emit("avg_pool", x, count_include_pad=not p.countExcludePadding, **attrs)
    raise ctx.error(f"pooling type {kind} is not one Core ML defines")


@layer("globalPooling3d")
def global_pooling3d(ctx: NnContext) -> Value:
    x = ctx.x(0)
    _rank5(ctx, x)
    kind = int(ctx.params.type)
    if kind not in (MAX, AVERAGE):
        raise ctx.error(f"pooling type {kind} is not one Core ML defines")
    return _global_pool(ctx, x, kind, [2, 3, 4])


# -- cropResize ------------------------------------------------------------------------------

CORNERS_HEIGHT_FIRST, CORNERS_WIDTH_FIRST = 0, 1
CENTER_SIZE_HEIGHT_FIRST, CENTER_SIZE_WIDTH_FIRST = 2, 3


@layer("cropResize")
def crop_resize(ctx: NnContext) -> Value:
    """Bilinear crops of ``[1, B, C, H, W]`` at the boxes ``[N, 1, 4 or 5, 1, 1]`` (a leading
    batch index with 5). Each box is sampled on ``linspace(start, end, size)`` (the midpoint
    for size 1 with ALIGN_ENDPOINTS_MODE), clamped to the input. UPSAMPLE_MODE and
    ROI_ALIGN_MODE are written for a whole axis ``[0, X - 1]``; the proto does not say how
    they apply to a box, so they are refused."""
    p = ctx.params
    x, rois = ctx.x(0), ctx.x(1)
    method = int(p.mode.samplingMethod)
    if method not in (STRICT_ALIGN_ENDPOINTS, ALIGN_ENDPOINTS):
        raise ctx.error(
            f"sampling mode {method}: only STRICT_ALIGN_ENDPOINTS_MODE and ALIGN_ENDPOINTS_MODE "
            "have a grid NeuralNetwork.proto defines inside a box"
        )
    shape = _static_dims(ctx, x, "input")
    if len(shape) != 5 or shape[0] != 1:
        raise ctx.error(f"needs an input of shape [1, B, C, H, W], got {shape}")
    _, nb, c, h, w = shape
    rshape = _static_dims(ctx, rois, "box input")
    if len(rshape) != 5 or rshape[1] != 1 or rshape[2] not in (4, 5) or rshape[3:] != [1, 1]:
        raise ctx.error(f"needs boxes of shape [N, 1, 4 or 5, 1, 1], got {rshape}")
    n, k = rshape[0], rshape[2]
    target = _pair(p.targetSize, 1)
    boxes = ctx.emit("reshape", rois, shape=[n, k])
    cols = [ctx.emit("slice", boxes, axes=[1], starts=[i], ends=[i + 1]) for i in range(k)]
    images = ctx.emit("reshape", x, shape=[nb, c, h, w])
    if k == 5:
        index = ctx.emit("reshape", ctx.emit("cast", cols[0], to="int32"), shape=[n])
        images = ctx.emit("gather", images, index, axis=0)  # [N, C, H, W]
        count = n
    else:  # every box on every image: N * B crops
        images = ctx.emit(
            "broadcast_to",
            ctx.emit("reshape", images, shape=[1, nb, c, h, w]),
            shape=[n, nb, c, h, w],
        )
        images = ctx.emit("reshape", images, shape=[n * nb, c, h, w])
        cols = [
            ctx.emit("reshape", ctx.emit("broadcast_to", col, shape=[n, nb]), shape=[n * nb, 1])
            for col in cols
        ]
        count = n * nb
    hs, he, ws, we = _box_edges(ctx, p, cols[k - 4 :], h, w)
    ys = _grid(ctx, hs, he, target[0], h, method == ALIGN_ENDPOINTS)
    xs = _grid(ctx, ws, we, target[1], w, method == ALIGN_ENDPOINTS)
    rows = _interpolate(ctx, images, ys, 2, [count, c, target[0], w])
    out = _interpolate(ctx, rows, xs, 3, [count, c, *target])
    return ctx.emit("reshape", out, shape=[n, nb if k == 4 else 1, c, *target])


def _static_dims(ctx: NnContext, v: Value, what: str) -> list[int]:
    if not all(isinstance(d, int) for d in v.shape):
        raise ctx.error(f"needs a static {what} shape, got {list(v.shape)}")
    return [int(d) for d in v.shape]


def _box_edges(ctx: NnContext, p: Any, cols: list[Value], h: int, w: int) -> list[Value]:
    """[h_start, h_end, w_start, w_end] ([M, 1] each) in input cells."""
    mode = int(p.boxIndicesMode.boxMode)
    if mode in (CORNERS_WIDTH_FIRST, CENTER_SIZE_WIDTH_FIRST):
        cols = [cols[1], cols[0], cols[3], cols[2]]
    if mode in (CENTER_SIZE_HEIGHT_FIRST, CENTER_SIZE_WIDTH_FIRST):
        half = ctx.const(np.float32(0.5), cols[0].dtype)
        hh, hw = (ctx.emit("mul", s, half) for s in cols[2:])
        cols = [
            ctx.emit("sub", cols[0], hh),
            ctx.emit("sub", cols[1], hw),
            ctx.emit("add", cols[0], hh),
            ctx.emit("add", cols[1], hw),
        ]
    elif mode not in (CORNERS_HEIGHT_FIRST, CORNERS_WIDTH_FIRST):
        raise ctx.error(f"box coordinates mode {mode} is not one Core ML defines")
    hs, ws, he, we = cols
    scale = float(p.spatialScale) or 1.0  # proto3: unset reads 0
    out = []
    for v, size in ((hs, h), (he, h), (ws, w), (we, w)):
        factor = scale * ((size - 1) if p.normalizedCoordinates else 1)
        if factor != 1.0:
            v = ctx.emit("mul", v, ctx.const(np.float32(factor), v.dtype))
        out.append(v)
    return out


def _grid(ctx: NnContext, start: Value, end: Value, n: int, size: int, mid: bool) -> Value:
    """``linspace(start, end, n)`` per box ([M, n]), clamped to ``[0, size - 1]``."""
    t = np.full((1, 1), 0.5 if mid else 0.0) if n == 1 else np.linspace(0, 1, n)[None]
    span = ctx.emit("sub", end, start)
    g = ctx.emit("mul", span, ctx.const(t.astype(np.float32), start.dtype))
    return ctx.emit("clip", ctx.emit("add", start, g), min=0.0, max=float(size - 1))


def _interpolate(ctx: NnContext, data: Value, coords: Value, axis: int, out: list[int]) -> Value:
    """Linear interpolation of ``data`` [M, C, ...] along ``axis`` at per-box ``coords``
    [M, n] (inside the axis)."""
    size = data.shape[axis]
    view = [out[0], 1, out[2], 1] if axis == 2 else [out[0], 1, 1, out[3]]
    lo = ctx.emit("floor", coords)
    frac = ctx.emit(
        "broadcast_to", ctx.emit("reshape", ctx.emit("sub", coords, lo), shape=view), shape=out
    )
    lo_i = ctx.emit("cast", lo, to="int32")
    hi_i = ctx.emit(
        "minimum",
        ctx.emit("add", lo_i, ctx.const(np.int32(1), "int32")),
        ctx.const(np.int32(size - 1), "int32"),
    )
    taps = []
    for idx in (lo_i, hi_i):
        idx = ctx.emit("broadcast_to", ctx.emit("reshape", idx, shape=view), shape=out)
        taps.append(ctx.emit("gather_elements", data, idx, axis=axis))
    step = ctx.emit("mul", ctx.emit("sub", taps[1], taps[0]), frac)
    return ctx.emit("add", taps[0], step)
