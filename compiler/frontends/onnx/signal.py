"""Converters of ONNX signal ops: DFT, STFT, the Hann/Hamming/Blackman windows, MelWeightMatrix.

None needs a core op of its own. A DFT of length L along one axis is a matmul with constant
[N, K] cosine and sine matrices (computed in float64, stored in the input's dtype), which
TVM schedules like any matmul; STFT gathers its frames and applies that DFT. The windows
and the mel filter bank depend only on their (compile-time) scalar inputs, so they are
computed here with numpy and become constants.
"""

from __future__ import annotations

import numpy as np

from compiler.ir.graph import Value
from compiler.ir.ops.shapes import normalize_axis

from .registry import NodeContext, converter, onnx_dtype

# -- the DFT as matmuls ----------------------------------------------------------------------


def _scalar(ctx: NodeContext, i: int, what: str) -> int:
    value = ctx.require_value(i, what)
    if value.size != 1:
        raise ctx.error(f"{what} must hold one value, got shape {list(value.shape)}")
    return int(value.ravel()[0])


def _angles(n: int, k: int, length: int) -> np.ndarray:
    """2*pi*n*k/L for n in [0, n), k in [0, k), with n*k reduced mod L first (exact)."""
    nk = np.outer(np.arange(n, dtype=np.int64), np.arange(k, dtype=np.int64)) % length
    return 2 * np.pi * nk / length


def dft_matrices(
    n: int, length: int, inverse: bool, onesided: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(rr, ir, ri, ii) with out_real = xr @ rr + xi @ ir, out_imag = xr @ ri + xi @ ii.

    ``n`` input points along the axis, ``length`` the DFT length: rows past ``length`` are
    zero (the input is truncated), missing rows mean zero padding. The inverse with
    ``onesided`` (irfft) reads n one-sided bins and has a real output only (ri = ii = None):
    bins past length // 2 are ignored, the others count twice except DC and, for an even
    length, the Nyquist bin, whose imaginary parts drop out (as in numpy's irfft).
    """
    rows = min(n, length)
    if inverse and onesided:
        bins = min(n, length // 2 + 1)
        theta = _angles(bins, length, length)
        weight = np.full((bins, 1), 2.0)
        weight[0] = 1.0
        if length % 2 == 0 and bins > length // 2:
            weight[length // 2] = 1.0
        rr = np.zeros((n, length))
        ir = np.zeros((n, length))
        rr[:bins] = weight * np.cos(theta) / length
        ir[:bins] = -weight * np.sin(theta) / length
        return rr, ir, None, None
    k = length // 2 + 1 if onesided else length
    theta = _angles(rows, k, length)
    cos, sin = np.zeros((n, k)), np.zeros((n, k))
    cos[:rows], sin[:rows] = np.cos(theta), np.sin(theta)
    if inverse:  # e^{+i theta} / L
        return cos / length, -sin / length, sin / length, cos / length
    return cos, sin, -sin, cos  # e^{-i theta}


def _along_last(ctx: NodeContext, x: Value, axis: int, m: np.ndarray) -> Value:
    """x (complex dim dropped) contracted with m over ``axis``, the result in its place."""
    rank = x.type.rank
    perm = [a for a in range(rank) if a != axis] + [axis]
    moved = x if axis == rank - 1 else ctx.emit("transpose", x, perm=perm)
    y = ctx.emit("matmul", moved, ctx.const(m.astype(x.dtype)))
    if axis == rank - 1:
        return y
    back = [0] * rank
    for i, p in enumerate(perm):
        back[p] = i
    return ctx.emit("transpose", y, perm=back)


def _part(ctx: NodeContext, x: Value, index: int) -> Value:
    """Component ``index`` of the trailing complex dim, that dim removed."""
    rank = x.type.rank
    piece = ctx.emit("slice", x, axes=[rank - 1], starts=[index], ends=[index + 1], steps=[1])
    return ctx.emit("reshape", piece, shape=list(x.type.shape[:-1]))


def _with_trailing(ctx: NodeContext, parts: list[Value]) -> Value:
    shaped = [ctx.emit("reshape", p, shape=[*p.type.shape, 1]) for p in parts]
    if len(shaped) == 1:
        return shaped[0]
    return ctx.emit("concat", *shaped, axis=shaped[0].type.rank - 1)


def _add(ctx: NodeContext, a: Value | None, b: Value | None) -> Value:
    if a is None:
        assert b is not None
        return b
    return a if b is None else ctx.emit("add", a, b)


def emit_dft(
    ctx: NodeContext, x: Value, axis: int, length: int | None, inverse: bool, onesided: bool
) -> Value:
    """ONNX DFT of x [..., 1 or 2] along ``axis`` (not the last, the complex one)."""
    rank = x.type.rank
    if x.dtype not in ("float16", "float32", "float64"):
        raise ctx.error(f"the input must be a float tensor, got {x.type}")
    if rank < 2 or x.type.shape[-1] not in (1, 2):
        raise ctx.error(f"the input's last dim must be 1 (real) or 2 (complex), got {x.type}")
    if axis == rank - 1:
        raise ctx.error("axis must not be the last (complex) dim")
    n = x.type.shape[axis]
    if not isinstance(n, int):
        raise ctx.error(f"the transformed axis {axis} must have a static size, got {n!r}")
    if length is None:
        length = 2 * (n - 1) if inverse and onesided else n
    if length < 1:
        raise ctx.error(f"dft_length must be positive, got {length}")
    if onesided and not inverse and x.type.shape[-1] == 2:
        raise ctx.error("onesided=1 needs a real input (last dim 1)")
    if onesided and inverse and x.type.shape[-1] == 1:
        raise ctx.error("an inverse one-sided DFT needs a complex input (last dim 2)")
    rr, ir, ri, ii = dft_matrices(n, length, inverse, onesided)
    xr = _part(ctx, x, 0)
    xi = _part(ctx, x, 1) if x.type.shape[-1] == 2 else None

    def combine(mr: np.ndarray, mi: np.ndarray) -> Value:
        a = _along_last(ctx, xr, axis, mr)
        b = None if xi is None else _along_last(ctx, xi, axis, mi)
        return _add(ctx, a, b)

    real = combine(rr, ir)
    if ri is None or ii is None:
        return _with_trailing(ctx, [real])
    return _with_trailing(ctx, [real, combine(ri, ii)])


def _dft(ctx: NodeContext, axis: int) -> Value:
    x = ctx.input(0)
    length = None if ctx.input(1) is None else _scalar(ctx, 1, "dft_length")
    axis = normalize_axis(axis, x.type.rank)
    inverse, onesided = bool(ctx.attr("inverse", 0)), bool(ctx.attr("onesided", 0))
    return emit_dft(ctx, x, axis, length, inverse, onesided)


@converter("DFT", since=17)
def dft_v17(ctx: NodeContext) -> Value:
    return _dft(ctx, int(ctx.attr("axis", 1)))


@converter("DFT", since=20)
def dft_v20(ctx: NodeContext) -> Value:
    """Opset 20 moved axis into an input (default -2: the axis before the complex dim)."""
    axis = -2 if ctx.input(2) is None else _scalar(ctx, 2, "axis")
    return _dft(ctx, axis)


# -- STFT ------------------------------------------------------------------------------------


@converter("STFT", since=17)
def stft(ctx: NodeContext) -> Value:
    """Frames [batch, frames, length, 1|2] gathered by index, windowed, DFT'd along axis 2."""
    x, window = ctx.input(0), ctx.input(2)
    if x.type.rank != 3:
        raise ctx.error(f"signal must be [batch, length, 1 or 2], got {x.type}")
    step = _scalar(ctx, 1, "frame_step")
    if window is not None and window.type.rank != 1:
        raise ctx.error(f"window must be 1-D, got {window.type}")
    if ctx.input(3) is not None:
        length = _scalar(ctx, 3, "frame_length")
    elif window is not None and isinstance(window.type.shape[0], int):
        length = window.type.shape[0]
    else:
        raise ctx.error("needs frame_length or a window of static size")
    if window is not None and window.type.shape[0] not in (length,):
        raise ctx.error(f"window {window.type} does not have frame_length {length} entries")
    total = x.type.shape[1]
    if not isinstance(total, int):
        raise ctx.error(f"the signal length must be static, got {total!r}")
    if step < 1 or length < 1 or length > total:
        raise ctx.error(f"frame_step {step} / frame_length {length} do not fit {total} samples")
    frames = 1 + (total - length) // step
    index = (np.arange(frames)[:, None] * step + np.arange(length)[None, :]).astype(np.int64)
    framed = ctx.emit("gather", x, ctx.const(index), axis=1)  # [batch, frames, length, c]
    if window is not None:
        w = window if window.dtype == x.dtype else ctx.emit("cast", window, to=x.dtype)
        framed = ctx.emit("mul", framed, ctx.emit("reshape", w, shape=[length, 1]))
    onesided = bool(ctx.attr("onesided", 1))
    return emit_dft(ctx, framed, 2, length, False, onesided)


# -- windows ---------------------------------------------------------------------------------


def _window(ctx: NodeContext, terms: list[float]) -> Value:
    """sum_j terms[j] * cos(2 pi j n / N), N = size (periodic) or size - 1 (symmetric)."""
    size = _scalar(ctx, 0, "size")
    if size < 0:
        raise ctx.error(f"size must be >= 0, got {size}")
    dtype = onnx_dtype(ctx.attr("output_datatype", 1))
    denominator = size if ctx.attr("periodic", 1) else size - 1
    n = np.arange(size, dtype=np.float64)
    with np.errstate(all="ignore"):  # size 1 symmetric: 0/0, as in the reference
        w = sum(c * np.cos(2 * np.pi * j * n / denominator) for j, c in enumerate(terms))
    return ctx.const(np.asarray(w, np.float64).astype(dtype))


@converter("HannWindow", since=17)
def hann_window(ctx: NodeContext) -> Value:
    return _window(ctx, [0.5, -0.5])


@converter("HammingWindow", since=17)
def hamming_window(ctx: NodeContext) -> Value:
    return _window(ctx, [25 / 46, -21 / 46])


@converter("BlackmanWindow", since=17)
def blackman_window(ctx: NodeContext) -> Value:
    return _window(ctx, [0.42, -0.5, 0.08])


# -- MelWeightMatrix -------------------------------------------------------------------------


def mel_weight_matrix(bins: int, dft_length: int, rate: int, low: float, high: float) -> np.ndarray:
    """[dft_length // 2 + 1, bins] triangular filters, evenly spaced on the mel scale.

    Follows the ONNX definition: bins + 2 edges spaced by (high - low) / (bins + 2) mel,
    each mapped to an FFT bin index floor((dft_length + 1) * hz / rate).
    """
    spectrogram_bins = dft_length // 2 + 1
    low_mel = 2595 * np.log1p(low / 700) / np.log(10)
    high_mel = 2595 * np.log1p(high / 700) / np.log(10)
    step = (high_mel - low_mel) / (bins + 2)
    hz = 700 * np.expm1((np.arange(bins + 2) * step + low_mel) / 2595 * np.log(10))
    edges = np.floor((dft_length + 1) * hz / rate).astype(np.int64)
    out = np.zeros((spectrogram_bins, bins))
    for i in range(bins):
        left, center, right = edges[i], edges[i + 1], edges[i + 2]
        if center == left:
            out[center, i] = 1
        else:
            j = np.arange(left, center + 1)
            out[j, i] = (j - left) / (center - left)
        if right > center:
            j = np.arange(center, right)
            out[j, i] = (right - j) / (right - center)
    return out


@converter("MelWeightMatrix", since=17)
def mel_weight(ctx: NodeContext) -> Value:
    bins = _scalar(ctx, 0, "num_mel_bins")
    dft_length = _scalar(ctx, 1, "dft_length")
    rate = _scalar(ctx, 2, "sample_rate")
    low = float(ctx.require_value(3, "lower_edge_hertz").ravel()[0])
    high = float(ctx.require_value(4, "upper_edge_hertz").ravel()[0])
    if bins < 1 or dft_length < 1 or rate < 1 or not 0 <= low < high <= rate / 2:
        raise ctx.error(
            f"needs num_mel_bins, dft_length, sample_rate >= 1 and 0 <= lower < upper <= "
            f"sample_rate / 2, got {bins}, {dft_length}, {rate}, {low}, {high}"
        )
    matrix = mel_weight_matrix(bins, dft_length, rate, low, high)
    return ctx.const(matrix.astype(onnx_dtype(ctx.attr("output_datatype", 1))))
