"""Relax-level conv2d rewrite: constant OIHW weights pre-packed at compile time.

``relax.nn.conv2d`` (NCHW data, OIHW constant weight, float32, static shapes) is legalized
into nnxc's own TE compute whose weight is packed as ``[O // bn, I / groups, KH, KW, bn]``
(``bn`` output channels contiguous, ``bn`` = the target's float32 vector lanes, or twice that),
so ``conv.py`` can vectorize over output channels with contiguous weight loads. Data and
output stay NCHW, so the rest of the graph (bias, ReLU, residual adds) fuses as before.
The packing is done in numpy here: the packed weight is a constant of the built module.

Stride-1 1x1 convs, grouped or not, get their own compute (``conv2d_pointwise_te``):
``W[O, I] @ X[I, H*W]`` vectorized over pixels, as onnxruntime's MLAS does it (one thread,
64->256 channels at 56x56: 1.51 -> 1.12 ms; 16->96 at 112x112: 1.03 -> 0.77 ms; 1024->256
at 14x14: 1.56 -> 1.20 ms, against the output-channel vectorized kernel; ShuffleNet's
136-channel 4-group conv at 28x28: 0.19 -> 0.10 ms against the width-vectorized one).

Depthwise convolutions (one input channel per group, as many groups as channels) get their
own NCHW compute (``depthwise_te``), vectorized over output width by ``conv.py``; so do
grouped convs (not 1x1) whose groups have no multiple of the vector width in output
channels (``conv2d_wvec_te``), when their width stride is 1. Both
computes round the output width up to a multiple of the register tile and crop it after, so
the scheduled loops have no tails. Anything else keeps TVM's legalization.

Pipeline use: ``legalize_map(target)`` joins ``backends/tvm/legalize.py``'s rules for
``LegalizeOps``.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax, te, topi

from .target_info import vector_lanes

CONV_BLOCK = "nnxc_conv2d_packed"
"""Name of the TE compute (and so of the reduction block) ``conv.py`` looks for."""

CONV_ATTR = "nnxc.conv2d_packed"
"""Block annotation carrying the output-channel block size ``bn``."""

DEPTHWISE_BLOCK = "nnxc_depthwise_conv2d"
DEPTHWISE_ATTR = "nnxc.depthwise_tile"
"""Block annotation of the depthwise conv: its register tile width (output pixels)."""

DEPTHWISE_CHANNELS_ATTR = "nnxc.depthwise_channels"
"""Block annotation of the depthwise conv: channels per register tile."""

WVEC_BLOCK = "nnxc_conv2d_wvec"
WVEC_ATTR = "nnxc.conv2d_wvec_rows"
"""Block annotation of the width-vectorized conv: output channels per register tile."""

POINTWISE_BLOCK = "nnxc_conv2d_pointwise"
POINTWISE_ATTR = "nnxc.conv2d_pointwise_rows"
"""Block annotation of the pointwise conv: output channels per register tile."""

TILE_ATTR = "nnxc.conv2d_tile"
"""Block annotation carrying the register tile width (output pixels)."""


def oc_block(out_per_group: int, lanes: int) -> int | None:
    """Output-channel block: two vectors when they divide the group's channels, else one, else
    a part of one (ShuffleNet's groups of 68 or 34 channels); None below two channels."""
    for bn in (2 * lanes, lanes, lanes // 2, lanes // 4):
        if bn >= 2 and out_per_group % bn == 0:
            return bn
    return None


_HALF_WIDE_LANES = 8
"""float32 lanes of a 256-bit block: half a 512-bit vector."""


def _padded_channels(out_c: int, bn: int, groups: int, lanes: int) -> tuple[int, int]:
    """Output channels to compute and their block, the zero weights' outputs being cropped:

    - rounded up to two vectors when only one (or less) divides them and the waste is small,
      as for SqueezeNet's 1000-class 1x1 conv on 13x13 (AVX2: bn 8 leaves too few accumulators
      for narrow maps; measured 3.40 -> 3.09 ms on one thread);
    - with 512-bit vectors, 64 to 127 channels that only a 256-bit block divides, up to one
      vector (72 -> 80 on znver5, one thread, against the width-vectorized kernel these went
      to: 16->72 channels at 12x13 0.043 -> 0.024 ms, 72->72 at 14x14 0.39 -> 0.11 ms,
      64->72 at 28x28 0.83 -> 0.57 ms; at 56x56 from 15% slower (32 inputs) to 9% faster (64);
      two vectors, 96 channels, were slower). The measurements were on a shared machine.
    """
    if groups != 1 or bn >= 2 * lanes:
        return out_c, bn
    if out_c >= 8 * lanes:
        return -(-out_c // (2 * lanes)) * (2 * lanes), 2 * lanes
    if _HALF_WIDE_LANES <= bn < lanes and out_c >= 4 * lanes:
        return -(-out_c // lanes) * lanes, lanes
    return out_c, bn


def _width_vectorized(out_c: int, groups: int, lanes: int) -> bool:
    """Whether a conv (width stride 1) goes to the width-vectorized kernel: its groups have no
    vector of output channels, and no padding turns a block of at least 256 bits into whole
    vectors (with 512-bit vectors: 72 channels, padded to 80; 136, padded to 160: on znver5, one
    thread, 64->136 channels at 14x14 1.13 -> 0.58 ms, at 7x7 0.57 -> 0.05 ms, 32->136 at 56x56
    5.5 -> 4.6 ms). Blocks below 256 bits stay width-vectorized, as measured with AVX2."""
    per_group = out_c // groups
    if per_group % lanes == 0:
        return False
    bn = oc_block(per_group, lanes)
    if bn is None or bn < _HALF_WIDE_LANES:
        return True
    return _padded_channels(out_c, bn, groups, lanes)[1] % lanes != 0


def pack_weight(w: np.ndarray, bn: int) -> np.ndarray:
    """OIHW -> [O // bn, I, KH, KW, bn]."""
    o, i, kh, kw = w.shape
    return np.ascontiguousarray(w.reshape(o // bn, bn, i, kh, kw).transpose(0, 2, 3, 4, 1))


def register_tile(width: int, bn: int, lanes: int) -> int:
    """Output pixels per register tile: ``tile x bn`` accumulators fit the vector registers.

    The width is rounded up to a multiple of the tile; the tile is the one with the fewest
    estimated cycles per row and input channel (FMAs, loads, and FMA latency: at least 8
    accumulators are needed to keep two FMA pipes busy), the widest on ties.
    """
    rows = max(1, bn // lanes)
    max_tile = min(width, max(1, (12 if lanes <= 8 else 24) // rows))

    def cycles(t: int) -> float:
        return -(-width // t) * max(t * rows / 2, (t + rows) / 2, 4)

    return min(range(1, max_tile + 1), key=lambda t: (cycles(t), -t))


def depthwise_tile(width: int, lanes: int) -> int:
    """Output pixels per depthwise register tile: one or two vectors, whichever pads the width
    least (two on ties). Measured on one thread: 56x56 0.46 -> 0.40 ms, 14x14 0.18 -> 0.14 ms
    against always two vectors."""
    if width <= lanes:
        return lanes
    return min((2 * lanes, lanes), key=lambda t: (-(-width // t) * t, -t))


def depthwise_channels(channels: int, tile: int, lanes: int, strided: bool) -> int:
    """Channels per depthwise register tile: independent accumulators hide the FMA latency.
    Four, or eight when the tile is one vector and the conv has stride 1 (7x7 maps: 0.098 ->
    0.060 ms on one thread; strided convs lose, their input rows are longer)."""
    if tile <= lanes and channels % 8 == 0 and not strided:
        return 8
    return next(t for t in (4, 2, 1) if channels % t == 0)


def _out_size(h: int, w: int, kh: int, kw: int, strides, padding, dilation) -> tuple[int, int]:
    """Output height and width of a conv2d/pool window over an NCHW input."""
    (sh, sw), (dh, dw), (pt, pl, pb, pr) = strides, dilation, padding
    return (h + pt + pb - (kh - 1) * dh - 1) // sh + 1, (w + pl + pr - (kw - 1) * dw - 1) // sw + 1


def _pad_for_tiles(
    x: te.Tensor,
    kh: int,
    kw: int,
    strides,
    padding,
    dilation,
    oh: int,
    owp: int,
    min_width: int = 0,
) -> te.Tensor:
    """The input padded as the conv asks, plus the zero columns (and rows) that the output
    width rounded up to ``owp`` reads; at least ``min_width`` columns in all."""
    _, _, h, w = (int(d) for d in x.shape)
    (sh, sw), (dh, dw), (pt, pl, pb, pr) = strides, dilation, padding
    pr = max(pr, (owp - 1) * sw + (kw - 1) * dw + 1 - w - pl, min_width - w - pl)
    pb = max(pb, (oh - 1) * sh + (kh - 1) * dh + 1 - h - pt)
    if any((pt, pl, pb, pr)):
        return topi.nn.pad(x, [0, 0, pt, pl], [0, 0, pb, pr], name="pad_temp")
    return x


def _crop(y: te.Tensor, ow: int) -> te.Tensor:
    """``y`` without the columns past ``ow`` that the register tiling added."""
    n, c, oh, owp = (int(d) for d in y.shape)
    if owp == ow:
        return y
    return te.compute((n, c, oh, ow), lambda *i: y(*i), name="crop")


def depthwise_te(
    x: te.Tensor,
    w: te.Tensor,
    strides: tuple[int, int],
    padding: tuple[int, int, int, int],
    dilation: tuple[int, int],
    lanes: int,
) -> te.Tensor:
    """NCHW depthwise conv2d (``w``: ``[C, 1, KH, KW]``), width padded to the tile, cropped."""
    n, c, h, w_ = (int(d) for d in x.shape)
    _, _, kh, kw = (int(d) for d in w.shape)
    sh, sw = strides
    dh, dw = dilation
    oh, ow = _out_size(h, w_, kh, kw, strides, padding, dilation)
    tw = depthwise_tile(ow, lanes)
    owp = -(-ow // tw) * tw
    # Strided: the padded input is split by column phase (``q * sw + p`` -> ``[p, q]``), so
    # each tap reads contiguous vectors.
    nq = owp + ((kw - 1) * dw) // sw + 1
    min_width = nq * sw if sw > 1 else 0
    xp = _pad_for_tiles(x, kh, kw, strides, padding, dilation, oh, owp, min_width)
    ry = te.reduce_axis((0, kh), name="ry")
    rx = te.reduce_axis((0, kw), name="rx")
    if sw > 1:
        hp = int(xp.shape[2])
        xs = te.compute(
            (n, c, hp, sw, nq), lambda a, b, i, p, q: xp[a, b, i, q * sw + p], name="phase_split"
        )

        def tap(a, b, i, j):
            return xs[a, b, i * sh + ry * dh, (rx * dw) % sw, j + (rx * dw) // sw]
    else:

        def tap(a, b, i, j):
            return xp[a, b, i * sh + ry * dh, j + rx * dw]

    y = te.compute(
        (n, c, oh, owp),
        lambda a, b, i, j: te.sum(tap(a, b, i, j) * w[b, 0, ry, rx], axis=[ry, rx]),
        name=DEPTHWISE_BLOCK,
        tag="depthwise_conv2d_nchw",
        attrs={
            DEPTHWISE_ATTR: tw,
            DEPTHWISE_CHANNELS_ATTR: depthwise_channels(c, tw, lanes, sw > 1),
        },
    )
    return _crop(y, ow)


def _direct_conv(
    xp: te.Tensor,
    weight,
    kernel: tuple[int, int, int, int],
    groups: int,
    strides: tuple[int, int],
    dilation: tuple[int, int],
    out_hw: tuple[int, int],
    name: str,
    attrs: dict,
) -> te.Tensor:
    """The grouped NCHW conv both tiled computes share, over the already padded input ``xp``:
    ``weight(oc, rc, ry, rx)`` reads the weight in whatever layout it was packed;
    ``kernel`` is ``(out channels, in channels per group, KH, KW)``."""
    out_c, icg, kh, kw = kernel
    sh, sw = strides
    dh, dw = dilation
    per_group = out_c // groups
    rc = te.reduce_axis((0, icg), name="rc")
    ry = te.reduce_axis((0, kh), name="ry")
    rx = te.reduce_axis((0, kw), name="rx")

    def body(nn, oc, yy, xx):
        ch = rc if groups == 1 else (oc // per_group) * icg + rc
        return te.sum(
            xp[nn, ch, yy * sh + ry * dh, xx * sw + rx * dw] * weight(oc, rc, ry, rx),
            axis=[rc, ry, rx],
        )

    n = int(xp.shape[0])
    return te.compute((n, out_c, *out_hw), body, name=name, tag="conv2d_nchw", attrs=attrs)


def conv2d_packed_te(
    x: te.Tensor,
    wp: te.Tensor,
    strides: tuple[int, int],
    padding: tuple[int, int, int, int],
    dilation: tuple[int, int],
    groups: int,
    lanes: int,
) -> te.Tensor:
    """NCHW conv2d with a packed weight ``[O // bn, I / groups, KH, KW, bn]``.

    The output width is rounded up to a multiple of the register tile (the input gets extra
    zero columns on the right) and cropped by a last copy stage, so the tiled loops have no
    tails; a strided 1x1 conv first subsamples its input.
    """
    n, c, h, w = (int(d) for d in x.shape)
    ob, icg, kh, kw, bn = (int(d) for d in wp.shape)
    out_c = ob * bn
    sh, sw = strides
    oh, ow = _out_size(h, w, kh, kw, strides, padding, dilation)
    tw = register_tile(ow, bn, lanes)
    owp = -(-ow // tw) * tw
    xp = _pad_for_tiles(x, kh, kw, strides, padding, dilation, oh, owp)
    if kh == kw == 1 and (sh, sw) != (1, 1):
        xp = te.compute(
            (n, c, oh, owp),
            lambda a, b, i, j: xp[a, b, i * sh, j * sw],
            name="subsample",
        )
        sh = sw = 1
    y = _direct_conv(
        xp,
        lambda oc, rc, ry, rx: wp[oc // bn, rc, ry, rx, oc % bn],
        (out_c, icg, kh, kw),
        groups,
        (sh, sw),
        dilation,
        (oh, owp),
        name=CONV_BLOCK,
        attrs={CONV_ATTR: bn, TILE_ATTR: tw},
    )
    return _crop(y, ow)


def conv2d_wvec_te(
    x: te.Tensor,
    w: te.Tensor,
    strides: tuple[int, int],
    padding: tuple[int, int, int, int],
    dilation: tuple[int, int],
    groups: int,
    lanes: int,
) -> te.Tensor:
    """NCHW conv2d (OIHW weight as is) to be vectorized over output width, for groups whose
    output channels are no multiple of the vector (1x1 ones go pointwise): ``rows`` output
    channels (of one group or two) x ``tw`` pixels per register tile; width padded to the
    tile, cropped."""
    _, _, h, w_ = (int(d) for d in x.shape)
    out_c, icg, kh, kw = (int(d) for d in w.shape)
    rows = next(r for r in (4, 2, 1) if out_c % r == 0)
    oh, ow = _out_size(h, w_, kh, kw, strides, padding, dilation)
    tw = min((2 * lanes, lanes), key=lambda t: (-(-ow // t) * t, -t))
    owp = -(-ow // tw) * tw
    xp = _pad_for_tiles(x, kh, kw, strides, padding, dilation, oh, owp)
    y = _direct_conv(
        xp,
        lambda oc, rc, ry, rx: w[oc, rc, ry, rx],
        (out_c, icg, kh, kw),
        groups,
        strides,
        dilation,
        (oh, owp),
        name=WVEC_BLOCK,
        attrs={WVEC_ATTR: rows, TILE_ATTR: tw},
    )
    return _crop(y, ow)


def pointwise_tile(pixels: int, lanes: int) -> tuple[int, int]:
    """Pixels per pointwise register tile, and the pixel count rounded up to it: three or two
    vectors when they divide the map (no padding), else two vectors and the map padded
    (14x14, 7x7: still 10-25% faster than the channel-vectorized kernel; one vector leaves
    too few accumulators, three padded were slower)."""
    tw = next((t * lanes for t in (3, 2) if pixels % (t * lanes) == 0), 2 * lanes)
    return tw, -(-pixels // tw) * tw


def pack_rows(w: np.ndarray, rows: int) -> np.ndarray:
    """A 1x1 conv's ``[O, I, 1, 1]`` weight as ``[O // rows, I, rows]``: the ``rows`` weights
    one input channel contributes to a register tile are contiguous."""
    o, i = w.shape[:2]
    return np.ascontiguousarray(w.reshape(o // rows, rows, i).transpose(0, 2, 1))


def conv2d_pointwise_te(x: te.Tensor, wp: te.Tensor, lanes: int, groups: int = 1) -> te.Tensor:
    """A stride-1 1x1 NCHW conv2d as the matrix product ``W[O, I] @ X[I, H*W]``, vectorized
    over pixels, ``rows`` output channels per register tile (weights broadcast); the input is
    first packed into panels ``[P / tw, I, tw]`` so each step loads contiguous vectors.

    ``P`` is the pixel count rounded up to the tile (zeros packed past the map); the rounded
    product is then copied out without its padding by the last stage. Grouped: each output
    channel reads its group's input channels (a tile's rows may span two groups)."""
    n, c, h, w = (int(d) for d in x.shape)
    ob, icg, rows = (int(d) for d in wp.shape)
    per_group = ob * rows // groups
    pixels = h * w
    tw, padded = pointwise_tile(pixels, lanes)
    zero = tvm.tirx.const(0, x.dtype)

    def pack(a, q, k, i):
        p = q * tw + i
        if padded == pixels:
            return x[a, k, p // w, p % w]
        return tvm.tirx.if_then_else(p < pixels, x[a, k, p // w, p % w], zero)

    panels = te.compute((n, padded // tw, c, tw), pack, name="pointwise_panels")
    rc = te.reduce_axis((0, icg), name="rc")

    def channel(o):
        return rc if groups == 1 else (o // per_group) * icg + rc

    flat = te.compute(
        (n, ob * rows, padded),
        lambda a, o, p: te.sum(
            panels[a, p // tw, channel(o), p % tw] * wp[o // rows, rc, o % rows], axis=rc
        ),
        name=POINTWISE_BLOCK,
        tag="conv2d_nchw",
        attrs={POINTWISE_ATTR: rows, TILE_ATTR: tw},
    )
    return te.compute((n, ob * rows, h, w), lambda a, o, i, j: flat[a, o, i * w + j], name="unflat")


def _pointwise_rows(out_c: int) -> int | None:
    """Output channels per pointwise register tile: four (with two or three vectors of
    pixels, 8 or 12 accumulators), else two. (Six measured no better on ResNet/MobileNet
    shapes.)"""
    return next((r for r in (4, 2) if out_c % r == 0), None)


def _static_shape(expr: relax.Expr) -> list[int] | None:
    ty = expr.ty
    if not isinstance(ty, relax.TensorType) or not isinstance(ty.shape, relax.ShapeExpr):
        return None
    dims = []
    for d in ty.shape.values:
        if not isinstance(d, tvm.tirx.IntImm):
            return None
        dims.append(int(d))
    return dims


def _our_shapes(call: relax.Call, kernel_layout: str) -> tuple[list[int], list[int]] | None:
    """The data and weight shapes of a conv2d / conv2d_transpose call our computes take
    (float32, NCHW data of static shape, a constant weight in ``kernel_layout``), else None."""
    a = call.attrs
    x, w = call.args
    xs, ws = _static_shape(x), _static_shape(w)
    ours = (
        isinstance(w, tvm.ir.expr.Constant)
        and xs is not None
        and ws is not None
        and len(xs) == 4
        and a.data_layout == "NCHW"
        and a.kernel_layout == kernel_layout
        and a.out_layout == "NCHW"
        and x.ty.dtype == "float32"
        and w.ty.dtype == "float32"
        and (a.out_dtype is None or str(a.out_dtype) in ("", "float32"))
    )
    return (xs, ws) if ours else None


def _legalize_conv2d(lanes: int):
    default = tvm.ir.Op.get("relax.nn.conv2d").get_attr("FLegalize")

    def legalize(bb: relax.BlockBuilder, call: relax.Call) -> relax.Expr:
        a = call.attrs
        x, w = call.args
        shapes = _our_shapes(call, "OIHW")
        ok = shapes is not None
        xs, ws = shapes or ([], [])
        groups = int(a.groups)
        geometry = {
            "strides": tuple(int(s) for s in a.strides),
            "padding": tuple(int(p) for p in a.padding),
            "dilation": tuple(int(d) for d in a.dilation),
        }
        if ok and ws[1] == 1 and groups == xs[1] == ws[0] and groups > 1:
            return bb.call_te(
                depthwise_te, x, w, **geometry, lanes=lanes, primfunc_name_hint="depthwise_conv2d"
            )
        if ok:
            out_c, icg = ws[0], ws[1]
            ok = xs[1] == icg * groups and out_c % groups == 0 and not (icg == 1 and groups > 1)
        pointwise = (
            ok
            and ws[2] == ws[3] == 1
            and geometry["strides"] == (1, 1)
            and not any(geometry["padding"])
            and _pointwise_rows(ws[0]) is not None
        )
        if pointwise:
            wp = relax.const(pack_rows(w.value.numpy(), _pointwise_rows(ws[0])), "float32")
            return bb.call_te(
                conv2d_pointwise_te,
                x,
                wp,
                lanes=lanes,
                groups=groups,
                primfunc_name_hint="conv2d_pointwise",
            )
        if ok and geometry["strides"][1] == 1 and _width_vectorized(ws[0], groups, lanes):
            return bb.call_te(
                conv2d_wvec_te,
                x,
                w,
                **geometry,
                groups=groups,
                lanes=lanes,
                primfunc_name_hint="conv2d_wvec",
            )
        bn = oc_block(ws[0] // groups, lanes) if ok else None
        if bn is None:
            return default(bb, call)
        wt = w.value.numpy()
        out_c = ws[0]
        padded, bn = _padded_channels(out_c, bn, groups, lanes)
        if padded != out_c:
            wt = np.concatenate([wt, np.zeros((padded - out_c, *ws[1:]), wt.dtype)])
        wp = relax.const(pack_weight(wt, bn), "float32")
        y = bb.call_te(
            conv2d_packed_te,
            x,
            wp,
            **geometry,
            groups=groups,
            lanes=lanes,
            primfunc_name_hint="conv2d_packed",
        )
        if padded == out_c:
            return y
        # A separate op: FuseOps then fuses the bias/activation into the crop, not the conv.
        y = bb.emit(y)
        return relax.op.strided_slice(y, axes=[1], begin=[0], end=[out_c])

    return legalize


def transpose_conv_weight(w: np.ndarray, groups: int) -> np.ndarray:
    """A transposed conv's ``[I, O / groups, KH, KW]`` weight as the OIHW weight of the
    equivalent stride-1 conv over the dilated input: channels swapped per group, taps flipped."""
    i, og, kh, kw = w.shape
    w = w.reshape(groups, i // groups, og, kh, kw).transpose(0, 2, 1, 3, 4)
    return np.ascontiguousarray(w.reshape(groups * og, i // groups, kh, kw)[:, :, ::-1, ::-1])


def dilate_te(x: te.Tensor, strides: tuple[int, int]) -> te.Tensor:
    """``x`` with ``stride - 1`` zeros between neighbouring pixels."""
    n, c, h, w = (int(d) for d in x.shape)
    sh, sw = strides
    if (sh, sw) == (1, 1):
        return x
    zero = tvm.tirx.const(0, x.dtype)

    def f(a, b, i, j):
        on_grid = tvm.tirx.all(i % sh == 0, j % sw == 0)
        return tvm.tirx.if_then_else(on_grid, x[a, b, i // sh, j // sw], zero)

    return te.compute((n, c, (h - 1) * sh + 1, (w - 1) * sw + 1), f, name="dilate")


def conv2d_transpose_packed_te(
    x: te.Tensor,
    wp: te.Tensor,
    strides: tuple[int, int],
    padding: tuple[int, int, int, int],
    dilation: tuple[int, int],
    groups: int,
    lanes: int,
) -> te.Tensor:
    """A transposed conv2d as the stride-1 packed conv2d of its dilated input (``padding`` is
    the equivalent conv's). Costs ``stride**2`` times the multiplies of a direct transposed
    conv, most of them by zeros, yet runs through the scheduled conv kernel."""
    return conv2d_packed_te(dilate_te(x, strides), wp, (1, 1), padding, dilation, groups, lanes)


def _legalize_conv2d_transpose(lanes: int):
    default = tvm.ir.Op.get("relax.nn.conv2d_transpose").get_attr("FLegalize")

    def legalize(bb: relax.BlockBuilder, call: relax.Call) -> relax.Expr:
        a = call.attrs
        x, w = call.args
        shapes = _our_shapes(call, "IOHW")
        if shapes is None:
            return default(bb, call)
        xs, ws = shapes
        groups = int(a.groups)
        kh, kw = ws[2], ws[3]
        dh, dw = (int(d) for d in a.dilation)
        pt, pl, pb, pr = (int(p) for p in a.padding)
        oph, opw = (int(p) for p in a.output_padding)
        # The equivalent conv pads by the kernel's reach minus the transposed conv's pads.
        pads = (
            dh * (kh - 1) - pt,
            dw * (kw - 1) - pl,
            dh * (kh - 1) - pb + oph,
            dw * (kw - 1) - pr + opw,
        )
        bn = oc_block(ws[1], lanes)
        if bn is None or min(pads) < 0 or xs[1] != ws[0] or ws[0] % groups:
            return default(bb, call)
        wc = transpose_conv_weight(w.value.numpy(), groups)
        wp = relax.const(pack_weight(wc, bn), "float32")
        return bb.call_te(
            conv2d_transpose_packed_te,
            x,
            wp,
            strides=tuple(int(s) for s in a.strides),
            padding=pads,
            dilation=(dh, dw),
            groups=groups,
            lanes=lanes,
            primfunc_name_hint="conv2d_transpose_packed",
        )

    return legalize


def legalize_map(target: tvm.target.Target | None = None) -> dict:
    """Legalization rules for conv2d and conv2d_transpose into the packed-weight forms (see
    module doc), for ``relax.transform.LegalizeOps``."""
    lanes = vector_lanes(target)
    return {
        "relax.nn.conv2d": _legalize_conv2d(lanes),
        "relax.nn.conv2d_transpose": _legalize_conv2d_transpose(lanes),
    }
