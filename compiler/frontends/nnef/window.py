"""NNEF sliding-window ops: conv, deconv, box, debox, max_pool, avg_pool, argmax_pool, sample,
desample, the up/down-sampling ops and local_response_normalization.

Conventions (NNEF 1.0.5 stdlib, ``nnef/shapes.py``, the Khronos C++ executor):

* conv/deconv list padding, stride and dilation for the spatial dims only; the pooling ops for
  every dim. ``padding = []`` is "same" padding: total = max(0, (out-1)*stride + (k-1)*dil + 1
  - in) with out = ceil(in / stride) (deconv: computed on its output), front = total // 2.
* ``border``: 'constant' pads zeros (for max_pool too: a zero pad can win); 'ignore' leaves the
  pads out (max: -inf; averages: out of the divisor; a plain sum or convolution: the same as
  zeros); 'replicate' / 'reflect' / 'reflect-even' pad explicitly through
  ``tensor.pad_border`` before a padding-free window op.
* Pooling over N or C (size, padding, stride or dilation not trivial there) moves the pooled
  dims last and folds the others into the batch, as nnef-tools' interpreter does.
* argmax_pool's index is the position of the maximum *inside its window*, row-major over the
  window's ``size`` (all dims), the first in window order on ties; ``sample`` reads the window
  element that index names and ``desample`` writes each input value there, values landing on
  one place being summed (it is ``sample``'s transpose), padded places being dropped. This is
  the reading that makes sense of sample/desample taking the window parameters at all (a flat
  index into the input would need none); nnef-tools' interpreter instead returns PyTorch's
  flat offsets into the padded spatial plane, so tests do not compare indices with it.
* multilinear_upsample: linear interpolation, input i centred on output i*f + (f-1)/2
  ('symmetric': half-pixel, as PyTorch's align_corners=False) or on i*f ('asymmetric'),
  built as the depthwise deconvolution with fixed weights of the C++ executor (whose kernels
  are for factor 2 only); with border 'replicate' (interpolation clamped at the edge) it is
  the IR's linear resize. The other padding modes pad the input by one and crop, as the C++
  executor does; 'constant' reads zeros past the edge. nnef-tools'
  interpreter pads its constant-border deconvolutions differently for factors other than 2
  (symmetric f-1, asymmetric f//2), which shifts them against its own replicate path; nnxc
  keeps the sample positions of the method's name. 'aligned' is align-corners interpolation.
* max_pool_with_index is converted whole (argmax_pool, then sample) rather than expanded: the
  parser's shape function for ``sample`` requires index and input of one shape, so the
  expanded body fails NNEF's own shape inference (a standalone ``sample`` passes it only when
  the windows keep the input's shape, e.g. stride 1 with automatic padding).
* deconv adds its bias everywhere, also on the rows ``output_shape`` adds past the last
  window (the C++ executor fills the output with the bias first; nnef-tools' interpreter
  zero-pads after the bias). debox ``normalize`` divides by the window volume ('constant') or
  is the exact transpose of box's 'ignore' average; the C++ executor's debox normalization
  divides its input after the fact and is not followed.
* local_response_normalization over channels only is the IR lrn (its alpha / size * window
  sum is NNEF's alpha * box mean with zero padding, (n-1)//2 channels before); any other
  window is built from the box.
* avg_roi_pool, max_roi_pool and roi_resample are refused: neither reference implements them
  and their bin/coordinate conventions cannot be pinned down exactly (``REFUSED``, listed in
  the unsupported-ops report); so are avg_roi_align and max_roi_align, built on roi_resample.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from compiler.ir.graph import Value

from .registry import REFUSED, NnefContext, converter
from .tensor import pad_border

Pairs = list[tuple[int, int]]
_PADDED = ("replicate", "reflect", "reflect-even")


# -- geometry ---------------------------------------------------------------------------------
def _ints(values: Any, n: int, fill: int = 1) -> list[int]:
    return [int(v) for v in values] if values else [fill] * n


def _same(
    shape: Sequence[int], k: Sequence[int], s: Sequence[int], d: Sequence[int], out=None
) -> Pairs:
    """NNEF's automatic padding of a window op from ``shape`` to ``out`` (default
    ceil(shape / stride)): the extra pixel goes to the end."""
    out = out or [-(-i // st) for i, st in zip(shape, s)]
    pairs = []
    for i, o, kk, st, dd in zip(shape, out, k, s, d):
        total = max(0, (o - 1) * st + (kk - 1) * dd + 1 - i)
        pairs.append((total // 2, total - total // 2))
    return pairs


def _pairs(ctx: NnefContext, n: int) -> Pairs | None:
    padding = ctx.attr("padding")
    if not padding:
        return None
    pairs = [(int(p), int(q)) for p, q in padding]
    if len(pairs) != n:
        raise ctx.error(f"padding {pairs} needs {n} entries")
    if any(p < 0 or q < 0 for p, q in pairs):
        raise ctx.error(f"negative padding {pairs} is not supported")
    return pairs


def _window(ctx: NnefContext, x: Value, size_attr: str = "size"):
    """size, padding pairs, stride, dilation of a pooling op (all dims)."""
    r = len(x.shape)
    size = _ints(ctx.attr(size_attr), r)
    if len(size) != r:
        raise ctx.error(f"size {size} needs {r} entries for an input of rank {r}")
    stride, dilation = _ints(ctx.attr("stride"), r), _ints(ctx.attr("dilation"), r)
    pairs = _pairs(ctx, r) or _same(list(x.shape), size, stride, dilation)
    return size, pairs, stride, dilation


def _check_border(ctx: NnefContext, allowed: Sequence[str]) -> str:
    border = ctx.attr("border")
    if border not in allowed:
        raise ctx.error(
            f"border {border!r} is not supported here (supported: {', '.join(allowed)})"
        )
    return border


def _reshape(ctx: NnefContext, x: Value, shape: Sequence[int]) -> Value:
    if list(x.shape) == list(shape):
        return x
    return ctx.emit("reshape", x, shape=[int(s) for s in shape])


def _bias(ctx: NnefContext, channels: int) -> Value | None:
    """The IR conv bias (C,): NNEF gives [1, C], [1, 1] or a literal."""
    literal = ctx.literal("bias")
    if literal is not None:
        if float(literal) == 0.0:
            return None
        return ctx.const(np.full([channels], float(literal), np.float32), "float32")
    b = ctx.x("bias")
    size = int(np.prod(b.shape))
    if size == channels:
        return _reshape(ctx, b, [channels])
    if size == 1:
        return ctx.emit("broadcast_to", _reshape(ctx, b, [1]), shape=[channels])
    raise ctx.error(f"bias of shape {list(b.shape)} for {channels} output channels")


# -- convolution ------------------------------------------------------------------------------
@converter("conv")
def _conv(ctx: NnefContext) -> Value:
    """'ignore' is 'constant' for a weighted sum (an ignored tap adds nothing)."""
    x, w = ctx.x("input"), ctx.x("filter")
    n = len(x.shape) - 2
    if n < 1:
        raise ctx.error(f"conv needs an input (N, C, spatial...), got {list(x.shape)}")
    stride, dilation = _ints(ctx.attr("stride"), n), _ints(ctx.attr("dilation"), n)
    k = list(w.shape[2:])
    pairs = _pairs(ctx, n) or _same(list(x.shape[2:]), k, stride, dilation)
    border = _check_border(ctx, ("constant", "ignore", *_PADDED))
    groups = int(ctx.attr("groups")) or int(x.shape[1])
    if border in _PADDED:
        x = pad_border(ctx, x, [(0, 0), (0, 0), *pairs], border)
        pairs = [(0, 0)] * n
    pads = [p for p, _ in pairs] + [q for _, q in pairs]
    return ctx.emit(
        "conv",
        x,
        w,
        _bias(ctx, int(w.shape[0])),
        strides=stride,
        pads=pads,
        dilations=dilation,
        groups=groups,
    )


def _deconv_geometry(
    ctx: NnefContext, spatial: Sequence[int], k: Sequence[int], stride, dilation, out_spatial
) -> tuple[list[int], list[int]]:
    """IR conv_transpose pads and output_padding for NNEF's deconv: padding given, or the conv
    "same" padding of the output (C++ executor: computed from the actual input size)."""
    n = len(spatial)
    full = [(i - 1) * s + (kk - 1) * d + 1 for i, kk, s, d in zip(spatial, k, stride, dilation)]
    pairs = _pairs(ctx, n)
    if out_spatial is None:
        out_spatial = (
            [f - p - q for f, (p, q) in zip(full, pairs)]
            if pairs
            else [i * s for i, s in zip(spatial, stride)]
        )
    if pairs is None:
        pairs = [
            (max(0, f - o) // 2, max(0, f - o) - max(0, f - o) // 2)
            for f, o in zip(full, out_spatial)
        ]
    extra = [o - (f - p - q) for o, f, (p, q) in zip(out_spatial, full, pairs)]
    if any(e < 0 for e in extra):
        raise ctx.error(f"output_shape {out_spatial} is smaller than the deconvolution gives")
    return [p for p, _ in pairs] + [q for _, q in pairs], extra


@converter("deconv")
def _deconv(ctx: NnefContext) -> Value:
    """Transposed conv; filter [C_in, C_out/groups, k...]; groups = 0: depthwise. Only zero
    borders ('constant'; 'ignore' is the same for a sum): a padding mode has no defined
    meaning for a transposed convolution (the C++ executor refuses it too)."""
    x, w = ctx.x("input"), ctx.x("filter")
    n = len(x.shape) - 2
    _check_border(ctx, ("constant", "ignore"))
    stride, dilation = _ints(ctx.attr("stride"), n), _ints(ctx.attr("dilation"), n)
    output_shape = _ints(ctx.attr("output_shape"), 0)
    groups = int(ctx.attr("groups")) or (output_shape[1] if output_shape else int(x.shape[1]))
    pads, extra = _deconv_geometry(
        ctx, list(x.shape[2:]), list(w.shape[2:]), stride, dilation, output_shape[2:] or None
    )
    return ctx.emit(
        "conv_transpose",
        x,
        w,
        _bias(ctx, int(w.shape[1]) * groups),
        strides=stride,
        pads=pads,
        dilations=dilation,
        groups=groups,
        output_padding=extra,
    )


# -- pooling ----------------------------------------------------------------------------------
SpatialFn = Callable[[Value, list[int], Pairs, list[int], list[int]], Value]


def _on_spatial(
    ctx: NnefContext, x: Value, size, pairs: Pairs, stride, dilation, fn: SpatialFn
) -> Value:
    """``fn`` applied with the pooled dims as the spatial dims of an (N, C, ...) tensor: when N
    and C are not pooled, directly; otherwise the pooled dims go last and the rest are folded
    into the batch (C = 1), and the result is brought back."""
    r = len(x.shape)
    active = [
        size[i] != 1 or pairs[i] != (0, 0) or stride[i] != 1 or dilation[i] != 1 for i in range(r)
    ]
    if not any(active):
        return ctx.emit("identity", x)
    if r >= 3 and not active[0] and not active[1]:
        return fn(x, size[2:], pairs[2:], stride[2:], dilation[2:])
    on = [i for i in range(r) if active[i]]
    off = [i for i in range(r) if not active[i]]
    perm = off + on
    moved = ctx.emit("transpose", x, perm=perm) if perm != list(range(r)) else x
    rest = [int(x.shape[i]) for i in off]
    folded = _reshape(ctx, moved, [int(np.prod(rest)), 1, *[int(x.shape[i]) for i in on]])
    y = fn(
        folded,
        [size[i] for i in on],
        [pairs[i] for i in on],
        [stride[i] for i in on],
        [dilation[i] for i in on],
    )
    y = _reshape(ctx, y, [*rest, *y.shape[2:]])
    inverse = [perm.index(i) for i in range(r)]
    return ctx.emit("transpose", y, perm=inverse) if inverse != list(range(r)) else y


def _pads(pairs: Pairs) -> list[int]:
    return [p for p, _ in pairs] + [q for _, q in pairs]


def _prepad(ctx: NnefContext, x: Value, pairs: Pairs, border: str) -> tuple[Value, Pairs]:
    """Explicit padding of the spatial dims for 'constant' (zeros) and the padding modes."""
    if not any(p or q for p, q in pairs):
        return x, pairs
    x = pad_border(ctx, x, [(0, 0), (0, 0), *pairs], "constant" if border == "ignore" else border)
    return x, [(0, 0)] * len(pairs)


def _pool(ctx: NnefContext, kind: str, x: Value, size, pairs, stride, dilation, border: str):
    """kind 'sum', 'avg' or 'max' over all dims the NNEF way."""

    def spatial(v: Value, k: list[int], pp: Pairs, s: list[int], d: list[int]) -> Value:
        if kind == "sum":
            if border in _PADDED:
                v, pp = _prepad(ctx, v, pp, border)
            c = int(v.shape[1])
            ones = ctx.const(np.ones([c, 1, *k], np.float32), str(v.dtype))
            return ctx.emit("conv", v, ones, None, strides=s, pads=_pads(pp), dilations=d, groups=c)
        if kind == "avg":
            if border in _PADDED:
                v, pp = _prepad(ctx, v, pp, border)
            return ctx.emit(
                "avg_pool",
                v,
                kernel=k,
                strides=s,
                pads=_pads(pp),
                dilations=d,
                count_include_pad=border == "constant",
            )
        if border != "ignore":  # zeros take part in the maximum with 'constant'
            v, pp = _prepad(ctx, v, pp, border)
        return ctx.emit("max_pool", v, kernel=k, strides=s, pads=_pads(pp), dilations=d)

    return _on_spatial(ctx, x, size, pairs, stride, dilation, spatial)


_POOL_BORDERS = ("constant", "ignore", *_PADDED)


@converter("box")
def _box(ctx: NnefContext) -> Value:
    x = ctx.x("input")
    border = _check_border(ctx, _POOL_BORDERS)
    kind = "avg" if ctx.attr("normalize") else "sum"
    return _pool(ctx, kind, x, *_window(ctx, x), border)


@converter("avg_pool")
def _avg_pool(ctx: NnefContext) -> Value:
    x = ctx.x("input")
    return _pool(ctx, "avg", x, *_window(ctx, x), _check_border(ctx, _POOL_BORDERS))


@converter("max_pool")
def _max_pool(ctx: NnefContext) -> Value:
    x = ctx.x("input")
    return _pool(ctx, "max", x, *_window(ctx, x), _check_border(ctx, _POOL_BORDERS))


class _InverseWindow(NamedTuple):
    size: list[int]
    stride: list[int]
    dilation: list[int]
    out: list[int]
    pairs: Pairs
    full: list[int]
    """What the windows span, padding included."""


def _inverse_window(ctx: NnefContext, x: Value) -> _InverseWindow:
    """Window size, stride, dilation, output shape and padding of a transposed window op
    (debox, desample) on ``x``: the output is ``output_shape`` when given, else what the
    windows span less the padding; automatic padding is computed on that output."""
    r = len(x.shape)
    size = _ints(ctx.attr("size"), r)
    stride, dilation = _ints(ctx.attr("stride"), r), _ints(ctx.attr("dilation"), r)
    output_shape = _ints(ctx.attr("output_shape"), 0)
    pairs = _pairs(ctx, r)
    spans = zip(x.shape, size, stride, dilation)
    full = [(int(i) - 1) * s + (k - 1) * d + 1 for i, k, s, d in spans]
    if output_shape:
        out = output_shape
    elif pairs:
        out = [f - p - q for f, (p, q) in zip(full, pairs)]
    else:
        out = [int(i) * s for i, s in zip(x.shape, stride)]
    if pairs is None:
        pairs = _same(out, size, stride, dilation, out=[int(i) for i in x.shape])
    return _InverseWindow(size, stride, dilation, out, pairs, full)


@converter("debox")
def _debox(ctx: NnefContext) -> Value:
    """box's transpose: a depthwise deconvolution with a ones kernel (normalize: 1/volume with
    'constant'; with 'ignore' each window's value is first divided by the number of input
    cells it covers, the exact transpose of box's 'ignore' average). The C++ executor's
    normalize here divides its input after the fact and is not followed."""
    x = ctx.x("input")
    border = _check_border(ctx, ("constant", "ignore"))
    size, stride, dilation, out, pairs, full = _inverse_window(ctx, x)
    r = len(x.shape)
    normalize = bool(ctx.attr("normalize"))
    if normalize and border == "ignore":
        counts = _window_counts(out, size, pairs, stride, dilation)
        x = ctx.emit("div", x, ctx.const(counts.astype(np.float32), str(x.dtype)))
    scale = 1.0 / float(np.prod(size)) if normalize and border == "constant" else 1.0
    if size[:2] != [1, 1] or stride[:2] != [1, 1] or dilation[:2] != [1, 1] or r < 3:
        raise ctx.error("debox over the N or C dims is not supported")
    if pairs[:2] != [(0, 0), (0, 0)]:
        raise ctx.error("debox padding of the N or C dims is not supported")
    c = int(x.shape[1])
    w = ctx.const(np.full([c, 1, *size[2:]], scale, np.float32), str(x.dtype))
    extra = [o - (f - p - q) for o, f, (p, q) in zip(out, full, pairs)][2:]
    if any(e < 0 for e in extra):
        raise ctx.error(f"output_shape {out} is smaller than the debox gives")
    return ctx.emit(
        "conv_transpose",
        x,
        w,
        None,
        strides=stride[2:],
        pads=_pads(pairs[2:]),
        dilations=dilation[2:],
        groups=c,
        output_padding=extra,
    )


def _window_counts(shape, size, pairs, stride, dilation) -> np.ndarray:
    """Input cells inside each window (the divisor of an 'ignore' average), per output."""
    out = [
        (i + p + q - (k - 1) * d - 1) // s + 1
        for i, k, (p, q), s, d in zip(shape, size, pairs, stride, dilation)
    ]
    counts = np.ones([1], np.int64)
    for i, o, k, (p, _), s, d in zip(shape, out, size, pairs, stride, dilation):
        starts = np.arange(o) * s - p
        axis = sum(((starts + t * d >= 0) & (starts + t * d < i)) for t in range(k))
        counts = np.multiply.outer(counts, axis)
    return counts.reshape(out)


# -- index-based sampling ---------------------------------------------------------------------
def _pooled_shape(shape, size, pairs, stride, dilation) -> list[int]:
    return [
        (int(i) + p + q - (k - 1) * d - 1) // s + 1
        for i, k, (p, q), s, d in zip(shape, size, pairs, stride, dilation)
    ]


def _tap_table(padded: list[int], out: list[int], size, stride, dilation) -> np.ndarray:
    """[K, *out]: the flat offset into the padded tensor of tap k of every window."""
    grids = np.meshgrid(*[np.arange(o) for o in out], indexing="ij")
    rows = []
    for offs in itertools.product(*[range(k) for k in size]):
        pos = [g * s + o * d for g, s, o, d in zip(grids, stride, offs, dilation)]
        rows.append(np.ravel_multi_index(pos, padded))
    return np.stack(rows).astype(np.int64)


def _padded(ctx: NnefContext, x: Value, pairs: Pairs, border: str, value: float) -> Value:
    mode = "constant" if border == "ignore" else border
    return pad_border(ctx, x, pairs, mode, value if border == "ignore" else 0.0)


@converter("argmax_pool")
def _argmax_pool(ctx: NnefContext) -> Value:
    """Index of each window's maximum within the window (see the module docstring)."""
    x = ctx.x("input")
    return _argmax(ctx, x, _check_border(ctx, _POOL_BORDERS), *_window(ctx, x))


@converter("max_pool_with_index")
def _max_pool_with_index(ctx: NnefContext) -> list[Value]:
    """Converted whole, not expanded: the parser's shape function for the ``sample`` of its
    body wrongly requires index and input of one shape. Output = sample(input, index)."""
    x = ctx.x("input")
    border = _check_border(ctx, _POOL_BORDERS)
    window = _window(ctx, x)
    index = _argmax(ctx, x, border, *window)
    return [_sampled(ctx, x, index, border, *window), index]


def _argmax(ctx: NnefContext, x: Value, border: str, size, pairs, stride, dilation) -> Value:
    out = _pooled_shape(x.shape, size, pairs, stride, dilation)
    xp = _padded(ctx, x, pairs, border, float("-inf"))
    taps = []
    for offs in itertools.product(*[range(k) for k in size]):
        starts = [o * d for o, d in zip(offs, dilation)]
        ends = [st + (n - 1) * s + 1 for st, n, s in zip(starts, out, stride)]
        tap = ctx.emit(
            "slice", xp, axes=list(range(len(out))), starts=starts, ends=ends, steps=stride
        )
        taps.append(_reshape(ctx, tap, [1, *out]))
    stacked = taps[0] if len(taps) == 1 else ctx.emit("concat", *taps, axis=0)
    return ctx.emit("argmax", stacked, axis=0, keepdims=False)


def _flat_targets(ctx: NnefContext, index: Value, table: np.ndarray) -> Value:
    """The flat padded-tensor offset each window's index names."""
    out = list(table.shape[1:])
    k = ctx.emit("reshape", ctx.emit("cast", index, to="int64"), shape=[1, *out])
    return ctx.emit("gather_elements", ctx.const(table, "int64"), k, axis=0)


@converter("sample")
def _sample(ctx: NnefContext) -> Value:
    """The window element each index names (argmax_pool's convention)."""
    x, index = ctx.x("input"), ctx.x("index")
    return _sampled(ctx, x, index, _check_border(ctx, _POOL_BORDERS), *_window(ctx, x))


def _sampled(
    ctx: NnefContext, x: Value, index: Value, border: str, size, pairs, stride, dilation
) -> Value:
    out = _pooled_shape(x.shape, size, pairs, stride, dilation)
    if list(index.shape) != out:
        raise ctx.error(f"index of shape {list(index.shape)} for windows {out}")
    xp = _padded(ctx, x, pairs, border, 0.0)
    table = _tap_table([int(d) for d in xp.shape], out, size, stride, dilation)
    flat = _reshape(ctx, xp, [int(np.prod(xp.shape))])
    picked = ctx.emit("gather", flat, _flat_targets(ctx, index, table), axis=0)
    return _reshape(ctx, picked, out)


@converter("desample")
def _desample(ctx: NnefContext) -> Value:
    """sample's transpose: each value added where its index points; pads cropped."""
    x, index = ctx.x("input"), ctx.x("index")
    _check_border(ctx, _POOL_BORDERS)  # the padded places are cropped whatever the border
    size, stride, dilation, out, pairs, full = _inverse_window(ctx, x)
    r = len(x.shape)
    if list(index.shape) != list(x.shape):
        raise ctx.error(f"index of shape {list(index.shape)} for input {list(x.shape)}")
    padded = [o + p + q for o, (p, q) in zip(out, pairs)]
    windows = [int(i) for i in x.shape]
    table = _tap_table(padded, windows, size, stride, dilation)
    targets = _reshape(ctx, _flat_targets(ctx, index, table), [int(np.prod(windows))])
    zeros = ctx.const(np.zeros([int(np.prod(padded))], np.float32), str(x.dtype))
    values = _reshape(ctx, x, [int(np.prod(windows))])
    summed = ctx.emit("scatter_elements", zeros, targets, values, axis=0, reduction="add")
    y = _reshape(ctx, summed, padded)
    if not any(p or q for p, q in pairs):
        return y
    return ctx.emit(
        "slice",
        y,
        axes=list(range(r)),
        starts=[p for p, _ in pairs],
        ends=[p + o for (p, _), o in zip(pairs, out)],
    )


# -- up/down-sampling -------------------------------------------------------------------------
def _factor(ctx: NnefContext, x: Value) -> list[int]:
    factor = [int(f) for f in ctx.attr("factor")]
    if len(factor) != len(x.shape) - 2 or any(f < 1 for f in factor):
        raise ctx.error(f"factor {factor} needs {len(x.shape) - 2} positive entries")
    return factor


@converter("nearest_downsample")
def _nearest_downsample(ctx: NnefContext) -> Value:
    """Every factor-th element from the first (box of size 1, stride factor)."""
    x = ctx.x("input")
    factor = _factor(ctx, x)
    axes = list(range(2, len(x.shape)))
    return ctx.emit(
        "slice",
        x,
        axes=axes,
        starts=[0] * len(axes),
        ends=[int(x.shape[a]) for a in axes],
        steps=factor,
    )


@converter("area_downsample")
def _area_downsample(ctx: NnefContext) -> Value:
    x = ctx.x("input")
    factor = _factor(ctx, x)
    return ctx.emit("avg_pool", x, kernel=factor, strides=factor)


@converter("nearest_upsample")
def _nearest_upsample(ctx: NnefContext) -> Value:
    """Each element repeated factor times per axis (debox of ones, stride factor)."""
    x = ctx.x("input")
    factor = _factor(ctx, x)
    sizes = [*x.shape[:2], *[int(d) * f for d, f in zip(x.shape[2:], factor)]]
    return ctx.emit(
        "resize",
        x,
        sizes=sizes,
        scales=[1.0, 1.0, *[float(f) for f in factor]],
        mode="nearest",
        coordinate_transformation_mode="asymmetric",
        nearest_mode="floor",
    )


def _upsample_kernel(f: int, symmetric: bool) -> tuple[np.ndarray, int]:
    """The 1-D linear kernel and its front padding: input i lands on output i*f + (f-1)/2
    ('symmetric', half-pixel centres) or i*f ('asymmetric'); weight 1 - distance / f."""
    if symmetric:
        length = 2 * f - f % 2
        centre = (length - 1) / 2
        front = int(centre - (f - 1) / 2)
    else:
        length, centre, front = 2 * f - 1, f - 1, f - 1
    weights = np.array([1.0 - abs(m - centre) / f for m in range(length)])
    return weights, front


@converter("multilinear_upsample")
def _multilinear_upsample(ctx: NnefContext) -> Value:
    """'symmetric' / 'asymmetric': a depthwise deconvolution with fixed linear weights (the
    C++ executor's factor-2 kernels; for other factors the kernel that keeps the method's
    sample positions). Padding modes pad the input by one first, then crop; 'constant' reads
    zeros past the edge. 'aligned': align-corners linear interpolation."""
    x = ctx.x("input")
    factor = _factor(ctx, x)
    method = ctx.attr("method")
    border = ctx.attr("border")
    sizes = [*x.shape[:2], *[int(d) * f for d, f in zip(x.shape[2:], factor)]]
    if method == "aligned":
        return ctx.emit(
            "resize", x, sizes=sizes, mode="linear", coordinate_transformation_mode="align_corners"
        )
    if method not in ("symmetric", "asymmetric"):
        raise ctx.error(f"method {method!r} is not one of symmetric, asymmetric, aligned")
    border = _check_border(ctx, ("constant", "ignore", *_PADDED))
    if border == "replicate":
        # Linear interpolation clamped at the edge: the IR's resize, as ONNX models write it
        # (half-pixel for 'symmetric', input i at output i*f for 'asymmetric'), which the
        # backends schedule better than a deconvolution.
        mode = "half_pixel" if method == "symmetric" else "asymmetric"
        return ctx.emit(
            "resize", x, sizes=sizes, mode="linear", coordinate_transformation_mode=mode
        )
    kernels = [_upsample_kernel(f, method == "symmetric") for f in factor]
    weights = kernels[0][0]
    for k, _ in kernels[1:]:
        weights = np.multiply.outer(weights, k)
    c = int(x.shape[1])
    w = ctx.const(np.broadcast_to(weights, (c, 1, *weights.shape)).astype(np.float32), "float32")
    n = len(factor)
    front = [fr for _, fr in kernels]
    if border in _PADDED:  # pad by one, upsample, crop (the C++ executor's 'replicate')
        x = pad_border(ctx, x, [(0, 0), (0, 0), *[(1, 1)] * n], border)
        front = [fr + f for fr, f in zip(front, factor)]
    full = [(int(i) - 1) * f + len(k) for i, f, (k, _) in zip(x.shape[2:], factor, kernels)]
    back = [fl - fr - o for fl, fr, o in zip(full, front, sizes[2:])]
    return ctx.emit("conv_transpose", x, w, None, strides=factor, pads=front + back, groups=c)


# -- normalization ----------------------------------------------------------------------------
@converter("local_response_normalization")
def _lrn(ctx: NnefContext) -> Value:
    """``input / (bias + alpha * box(sqr(input), size, normalize = true)) ^ beta``: the IR lrn
    (bias + alpha/n * window sum, zero padded, (n-1)//2 channels before) when the window runs
    over channels only; otherwise built from the box."""
    x = ctx.x("input")
    alpha, beta, bias = (float(ctx.attr(a)) for a in ("alpha", "beta", "bias"))
    r = len(x.shape)
    size = _ints(ctx.attr("size"), r)
    if len(size) != r:
        raise ctx.error(f"size {size} needs {r} entries")
    if r >= 2 and all(s == 1 for i, s in enumerate(size) if i != 1):
        return ctx.emit("lrn", x, size=size[1], alpha=alpha, beta=beta, bias=bias)
    ones = [1] * r
    pairs = _same(list(x.shape), size, ones, ones)
    mean = _pool(ctx, "avg", ctx.emit("mul", x, x), size, pairs, ones, ones, "constant")
    sigma = ctx.emit(
        "add",
        ctx.const(np.float32(bias), str(x.dtype)),
        ctx.emit("mul", ctx.const(np.float32(alpha), str(x.dtype)), mean),
    )
    return ctx.emit("div", x, ctx.emit("pow", sigma, ctx.const(np.float32(beta), str(x.dtype))))


# -- regions of interest ----------------------------------------------------------------------
_ROI_UNDEFINED = (
    "neither reference implementation (the Khronos C++ executor, nnef-tools' interpreter) "
    "defines how its bins are rounded and where it samples, so nnxc cannot match it exactly"
)
REFUSED.update(
    {
        "avg_roi_pool": _ROI_UNDEFINED,
        "max_roi_pool": _ROI_UNDEFINED,
        "roi_resample": _ROI_UNDEFINED,
        # their standard bodies pool a rank-4 tensor with the 2-entry sampling_rate as size,
        # which NNEF's own shape inference rejects; and they resample with roi_resample
        "avg_roi_align": "its standard body fails NNEF's shape inference; " + _ROI_UNDEFINED,
        "max_roi_align": "its standard body fails NNEF's shape inference; " + _ROI_UNDEFINED,
    }
)
