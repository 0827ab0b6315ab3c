"""Convolution and pooling ops: conv, conv_transpose, max_pool, avg_pool (1-D to 3-D).

Layout is channels-first (N, C, spatial...). Attributes are explicit: ``pads`` lists every
spatial begin then every end; auto_pad is resolved by frontends. ``ceil_mode`` keeps its
ONNX/PyTorch meaning (a last window may hang over the end, but never starts in the end
padding); ``pool_geometry`` gives the output size and that overhang to every user.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from ..types import Dim, IRTypeError, TensorType
from ..types import dtype as dtype_of
from .registry import Attr, define

_WINDOW_ATTRS = {
    "strides": Attr("ints", [], doc="one per spatial axis; [] means all 1"),
    "pads": Attr("ints", [], doc="begin... then end...; [] means no padding"),
    "dilations": Attr("ints", [], doc="one per spatial axis; [] means all 1"),
}


def _spatial(in_types, what: str) -> int:
    x = in_types[0]
    if x.rank < 3 or x.rank > 5:
        raise IRTypeError(f"{what} needs a (N, C, spatial...) input of rank 3 to 5, got {x}")
    return x.rank - 2


def _fill_window(attrs: dict[str, Any], n: int, what: str) -> dict[str, Any]:
    """Defaults spelled out, lengths checked: strides/dilations n entries, pads 2n."""
    out = dict(attrs)
    for key, size, fill in (("strides", n, 1), ("dilations", n, 1), ("pads", 2 * n, 0)):
        v = list(out[key]) or [fill] * size
        if len(v) != size:
            raise IRTypeError(f"{what}: {key} needs {size} entries, got {v}")
        if key != "pads" and any(s < 1 for s in v):
            raise IRTypeError(f"{what}: {key} must be positive, got {v}")
        if key == "pads" and any(p < 0 for p in v):
            raise IRTypeError(f"{what}: negative pads {v} are not supported")
        out[key] = v
    return out


def _static_spatial(x: TensorType, what: str) -> list[int]:
    dims = list(x.shape[2:])
    if not all(isinstance(d, int) for d in dims):
        raise IRTypeError(f"{what} needs static spatial dims, got {x}")
    return dims


# -- conv ------------------------------------------------------------------------------------


def _conv_normalize(in_types, attrs) -> dict[str, Any]:
    n = _spatial(in_types, "conv")
    return _fill_window(attrs, n, "conv")


def _conv_infer(in_types, attrs) -> TensorType:
    x, w, b = (list(in_types) + [None])[:3]
    n = x.rank - 2
    if w.rank != x.rank:
        raise IRTypeError(f"conv: weight {w} must have the rank of the input {x}")
    if x.dtype != w.dtype or (b is not None and b.dtype != x.dtype):
        raise IRTypeError("conv: input, weight and bias must share one dtype")
    g = attrs["groups"]
    cin, m = x.shape[1], w.shape[0]
    if isinstance(cin, int) and cin != w.shape[1] * g:
        raise IRTypeError(f"conv: {cin} input channels but weight {w} with groups={g}")
    if isinstance(m, int) and m % g:
        raise IRTypeError(f"conv: {m} output channels do not split into {g} groups")
    _check_bias(b, m, "conv")
    out = []
    for i, d in enumerate(_static_spatial(x, "conv")):
        k = w.shape[2 + i]
        span = attrs["dilations"][i] * (k - 1) + 1
        size = (d + attrs["pads"][i] + attrs["pads"][n + i] - span) // attrs["strides"][i] + 1
        if size < 1:
            raise IRTypeError(f"conv: window larger than the padded input on axis {2 + i}")
        out.append(size)
    return TensorType(x.dtype, (x.shape[0], m, *out))


def _check_bias(b: TensorType | None, m: Dim, op: str) -> None:
    """The bias holds one value per output channel (the lowering adds it per channel)."""
    if b is None:
        return
    if b.rank != 1 or (isinstance(b.shape[0], int) and isinstance(m, int) and b.shape[0] != m):
        raise IRTypeError(f"{op}: bias {b} for {m} output channels; it needs shape ({m},)")


def _windows(x: np.ndarray, kernel, strides, dilations, out):
    """(kernel offset, strided view of x starting at it) for every offset in the kernel."""
    for offs in itertools.product(*[range(k) for k in kernel]):
        idx = tuple(
            slice(o * d, o * d + s * (n - 1) + 1, s)
            for o, d, s, n in zip(offs, dilations, strides, out, strict=True)
        )
        yield offs, x[(Ellipsis, *idx)]


def _pad_spatial(x: np.ndarray, pads: list[int], value: float) -> np.ndarray:
    n = len(pads) // 2
    width = [(0, 0)] * (x.ndim - n) + [(pads[i], pads[n + i]) for i in range(n)]
    return np.pad(x, width, constant_values=value)


def _conv_reference(xs, attrs) -> np.ndarray:
    x, w, b = (list(xs) + [None])[:3]
    g = attrs["groups"]
    nb, c = x.shape[:2]
    m, cg = w.shape[:2]
    xp = _pad_spatial(x, attrs["pads"], 0)
    kernel = w.shape[2:]
    out_shape = [
        (xp.shape[2 + i] - attrs["dilations"][i] * (k - 1) - 1) // attrs["strides"][i] + 1
        for i, k in enumerate(kernel)
    ]
    xg = xp.reshape(nb, g, cg, *xp.shape[2:])
    wg = w.reshape(g, m // g, cg, *kernel)
    # float16 sums in float32 and rounds once before the bias, as numpy's float16 matmul.
    acc_dtype = np.float32 if x.dtype == np.float16 else x.dtype
    acc = np.zeros((nb, g, m // g, int(np.prod(out_shape))), dtype=acc_dtype)
    for offs, win in _windows(xg, kernel, attrs["strides"], attrs["dilations"], out_shape):
        patch = win.reshape(nb, g, cg, -1).astype(acc_dtype)
        acc += np.matmul(wg[(Ellipsis, *offs)][None].astype(acc_dtype), patch)
    y = acc.reshape(nb, m, *out_shape).astype(x.dtype)
    if b is not None:
        y = y + b.reshape(1, m, *[1] * len(kernel))
    return y.astype(x.dtype)


define(
    "conv",
    inputs=["x", "w", "b?"],
    attrs={**_WINDOW_ATTRS, "groups": Attr("int", 1)},
    normalize=_conv_normalize,
    infer=_conv_infer,
    reference=_conv_reference,
    doc="N-D convolution (cross-correlation), weight (M, C/groups, k...), optional bias (M).",
)


# -- conv_transpose --------------------------------------------------------------------------


def _convt_normalize(in_types, attrs) -> dict[str, Any]:
    n = _spatial(in_types, "conv_transpose")
    out = _fill_window(attrs, n, "conv_transpose")
    op = list(out["output_padding"]) or [0] * n
    if len(op) != n or any(p < 0 for p in op):
        raise IRTypeError(f"conv_transpose: output_padding needs {n} entries >= 0, got {op}")
    out["output_padding"] = op
    return out


def convt_full_size(d: int, k: int, s: int, dil: int) -> int:
    """Length of the uncropped transposed-conv output along one axis."""
    return (d - 1) * s + dil * (k - 1) + 1


def _convt_infer(in_types, attrs) -> TensorType:
    x, w, b = (list(in_types) + [None])[:3]
    n = x.rank - 2
    if w.rank != x.rank:
        raise IRTypeError(f"conv_transpose: weight {w} must have the rank of the input {x}")
    if x.dtype != w.dtype or (b is not None and b.dtype != x.dtype):
        raise IRTypeError("conv_transpose: input, weight and bias must share one dtype")
    g = attrs["groups"]
    if isinstance(x.shape[1], int) and x.shape[1] != w.shape[0]:
        raise IRTypeError(f"conv_transpose: {x.shape[1]} input channels, weight {w}")
    _check_bias(b, w.shape[1] * g, "conv_transpose")
    out = []
    for i, d in enumerate(_static_spatial(x, "conv_transpose")):
        full = convt_full_size(d, w.shape[2 + i], attrs["strides"][i], attrs["dilations"][i])
        size = full - attrs["pads"][i] - attrs["pads"][n + i] + attrs["output_padding"][i]
        if size < 1:
            raise IRTypeError(f"conv_transpose: empty output on axis {2 + i}")
        out.append(size)
    return TensorType(x.dtype, (x.shape[0], w.shape[1] * g, *out))


def _convt_reference(xs, attrs) -> np.ndarray:
    x, w, b = (list(xs) + [None])[:3]
    g = attrs["groups"]
    nb, c = x.shape[:2]
    mg = w.shape[1]
    kernel = w.shape[2:]
    n = len(kernel)
    spatial = x.shape[2:]
    s, dil = attrs["strides"], attrs["dilations"]
    full = [convt_full_size(d, k, si, di) for d, k, si, di in zip(spatial, kernel, s, dil)]
    acc = np.zeros((nb, g, mg, *full), dtype=x.dtype)
    xg = x.reshape(nb, g, c // g, -1)
    wg = np.swapaxes(w.reshape(g, c // g, mg, *kernel), 1, 2)  # (g, mg, cg, k...)
    for offs in itertools.product(*[range(k) for k in kernel]):
        contrib = np.matmul(wg[(Ellipsis, *offs)][None], xg).reshape(nb, g, mg, *spatial)
        idx = tuple(
            slice(o * di, o * di + si * (d - 1) + 1, si)
            for o, di, si, d in zip(offs, dil, s, spatial, strict=True)
        )
        acc[(Ellipsis, *idx)] += contrib
    acc = acc.reshape(nb, g * mg, *full)
    pads, op = attrs["pads"], attrs["output_padding"]
    # Crop the begin pads; the end is cropped by pads and grown (with zeros) by output_padding.
    acc = _pad_spatial(acc, [0] * n + [max(0, p - e) for p, e in zip(op, pads[n:])], 0)
    idx = tuple(slice(pads[i], pads[i] + full[i] - pads[i] - pads[n + i] + op[i]) for i in range(n))
    y = acc[(Ellipsis, *idx)]
    if b is not None:
        y = y + b.reshape(1, -1, *[1] * n)
    return y.astype(x.dtype)


define(
    "conv_transpose",
    inputs=["x", "w", "b?"],
    attrs={
        **_WINDOW_ATTRS,
        "groups": Attr("int", 1),
        "output_padding": Attr("ints", [], doc="extra size at the end of each spatial axis"),
    },
    normalize=_convt_normalize,
    infer=_convt_infer,
    reference=_convt_reference,
    doc="N-D transposed convolution, weight (C, M/groups, k...); output size "
    "(in-1)*stride + dilation*(k-1) + 1 - pad_begin - pad_end + output_padding.",
)


# -- pooling ---------------------------------------------------------------------------------


def _pool_normalize(in_types, attrs) -> dict[str, Any]:
    n = _spatial(in_types, "pool")
    if len(attrs["kernel"]) != n or any(k < 1 for k in attrs["kernel"]):
        raise IRTypeError(f"pool: kernel needs {n} positive entries, got {attrs['kernel']}")
    return _fill_window(attrs, n, "pool")


def pool_geometry(spatial: list[int], attrs: dict[str, Any]) -> tuple[list[int], list[int]]:
    """Output sizes, and how far the last window hangs past the end padding (ceil_mode)."""
    n = len(spatial)
    out, extra = [], []
    for i, d in enumerate(spatial):
        k, s, dil = attrs["kernel"][i], attrs["strides"][i], attrs["dilations"][i]
        pb, pe = attrs["pads"][i], attrs["pads"][n + i]
        span = dil * (k - 1) + 1
        room = d + pb + pe - span
        if room < 0:
            raise IRTypeError(f"pool: window larger than the padded input on axis {2 + i}")
        size = room // s + 1
        if attrs["ceil_mode"]:
            size = -(-room // s) + 1
            if (size - 1) * s >= d + pb:  # a window must start inside the input or begin pad
                size -= 1
        out.append(size)
        extra.append(max(0, (size - 1) * s + span - (d + pb + pe)))
    return out, extra


def _pool_infer(in_types, attrs) -> TensorType:
    x = in_types[0]
    out, _ = pool_geometry(_static_spatial(x, "pool"), attrs)
    return TensorType(x.dtype, (*x.shape[:2], *out))


def _pool_windows(x: np.ndarray, attrs: dict[str, Any], value: float):
    spatial = list(x.shape[2:])
    n = len(spatial)
    out, extra = pool_geometry(spatial, attrs)
    pads = attrs["pads"][:n] + [p + e for p, e in zip(attrs["pads"][n:], extra)]
    xp = _pad_spatial(x, pads, value)
    return out, pads, _windows(xp, attrs["kernel"], attrs["strides"], attrs["dilations"], out)


def _max_pool_reference(xs, attrs) -> np.ndarray:
    x = xs[0]
    low = -np.inf if dtype_of(x.dtype).is_float else np.iinfo(x.dtype).min
    _, _, wins = _pool_windows(x, attrs, low)
    result = None
    for _, win in wins:
        result = win.copy() if result is None else np.maximum(result, win)
    return result


def _avg_pool_reference(xs, attrs) -> np.ndarray:
    x = xs[0]
    n = x.ndim - 2
    total = None
    for _, win in _pool_windows(x.astype(np.float64), attrs, 0)[2]:
        total = win.copy() if total is None else total + win
    # The divisor counts input cells, plus the explicit pads with count_include_pad, but
    # never the ceil_mode overhang.
    ones = np.ones((1, 1, *x.shape[2:]))
    if attrs["count_include_pad"]:
        ones = _pad_spatial(ones, attrs["pads"], 1)
        out, extra = pool_geometry(list(x.shape[2:]), attrs)
        onesp = _pad_spatial(ones, [0] * n + extra, 0)
        wins = _windows(onesp, attrs["kernel"], attrs["strides"], attrs["dilations"], out)
    else:
        wins = _pool_windows(ones, attrs, 0)[2]
    count = None
    for _, win in wins:
        count = win.copy() if count is None else count + win
    return (total / count).astype(x.dtype)


_POOL_ATTRS = {
    "kernel": Attr("ints"),
    **_WINDOW_ATTRS,
    "ceil_mode": Attr("bool", False),
}

define(
    "max_pool",
    inputs=["x"],
    attrs=_POOL_ATTRS,
    normalize=_pool_normalize,
    infer=_pool_infer,
    reference=_max_pool_reference,
    doc="N-D max pooling; padding never wins (acts as -inf).",
)

define(
    "avg_pool",
    inputs=["x"],
    attrs={**_POOL_ATTRS, "count_include_pad": Attr("bool", False)},
    normalize=_pool_normalize,
    infer=_pool_infer,
    reference=_avg_pool_reference,
    doc="N-D average pooling; count_include_pad counts the explicit pads in the divisor.",
)
