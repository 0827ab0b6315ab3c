"""resize: nearest/linear/cubic interpolation of any axes, with ONNX's coordinate modes.

Interpolation is separable, so each resized axis is a 1-D problem: ``axis_taps`` gives, for
every output position, the input indices it reads and their weights. The reference and the
TVM lowering both apply these taps (gather, weight, sum), so they agree by construction on
every mode, antialiasing included.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..types import IRTypeError, TensorType
from .registry import Attr, define

COORD_MODES = (
    "half_pixel",
    "half_pixel_symmetric",
    "pytorch_half_pixel",
    "align_corners",
    "asymmetric",
    "tf_crop_and_resize",
)
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


def _normalize(in_types, attrs) -> dict[str, Any]:
    x = in_types[0]
    r = x.rank
    sizes = list(attrs["sizes"])
    if len(sizes) != r:
        raise IRTypeError(f"resize: sizes needs {r} entries, got {sizes}")
    scales = list(attrs["scales"])
    if not scales:
        for d, s in zip(x.shape, sizes):
            if d == s:
                scales.append(1.0)
            elif isinstance(d, int) and isinstance(s, int) and d > 0:
                scales.append(s / d)
            else:
                raise IRTypeError(f"resize of symbolic dim {d} to {s} needs static sizes")
    if len(scales) != r or any(s <= 0 for s in scales):
        raise IRTypeError(f"resize: scales needs {r} positive entries, got {scales}")
    roi = list(attrs["roi"])
    if attrs["coordinate_transformation_mode"] == "tf_crop_and_resize":
        roi = roi or [0.0] * r + [1.0] * r
        if len(roi) != 2 * r:
            raise IRTypeError(f"resize: roi needs {2 * r} entries, got {roi}")
    else:
        roi = []
    return {**attrs, "scales": scales, "roi": roi}


def _infer(in_types, attrs) -> TensorType:
    x = in_types[0]
    if not x.dtype.is_float and attrs["mode"] != "nearest":
        raise IRTypeError(f"resize mode {attrs['mode']} needs a float input, got {x}")
    return TensorType(x.dtype, tuple(attrs["sizes"]))


def resized_axes(in_shape, attrs: dict[str, Any]) -> list[int]:
    """Axes whose mapping is not the identity."""
    out = []
    for a, d in enumerate(in_shape):
        roi = attrs["roi"]
        crop = bool(roi) and (roi[a] != 0.0 or roi[len(in_shape) + a] != 1.0)
        if d != attrs["sizes"][a] or attrs["scales"][a] != 1.0 or crop:
            out.append(a)
    return out


def _source_coords(
    in_len: int, out_len: int, scale: float, mode: str, roi: tuple[float, float] | None
) -> np.ndarray:
    y = np.arange(out_len, dtype=np.float64)
    out_f = scale * in_len  # ONNX uses the unrounded output length here
    if mode == "align_corners":
        return np.zeros(out_len) if out_f == 1 else y * (in_len - 1) / (out_f - 1)
    if mode == "asymmetric":
        return y / scale
    if mode == "tf_crop_and_resize":
        start, end = roi
        if out_f == 1:
            x = np.full(out_len, (end - start) * (in_len - 1) / 2)
        else:
            x = y * (end - start) * (in_len - 1) / (out_f - 1)
        return x + start * (in_len - 1)
    if mode == "pytorch_half_pixel":
        return np.full(out_len, -0.5) if out_f == 1 else (y + 0.5) / scale - 0.5
    if mode == "half_pixel":
        return (y + 0.5) / scale - 0.5
    if mode == "half_pixel_symmetric":
        offset = in_len / 2 * (1 - out_len / out_f)
        return offset + (y + 0.5) / scale - 0.5
    raise IRTypeError(f"unknown coordinate_transformation_mode {mode!r}")


def _cubic(t: np.ndarray, a: float) -> np.ndarray:
    t = np.abs(t)
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def axis_taps(
    in_len: int, out_len: int, scale: float, attrs: dict[str, Any], roi=None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(indices [out, taps] into the input, weights [out, taps], extrapolated mask or None).

    Out-of-range taps read the edge element (ONNX's edge padding); with exclude_outside
    they get weight 0 and the rest is renormalized. The mask marks outputs that
    tf_crop_and_resize sets to extrapolation_value.
    """
    x = _source_coords(in_len, out_len, scale, attrs["coordinate_transformation_mode"], roi)
    mask = None
    if attrs["coordinate_transformation_mode"] == "tf_crop_and_resize":
        mask = (x < 0) | (x > in_len - 1)
    mode = attrs["mode"]
    if mode == "nearest":
        nm = attrs["nearest_mode"]
        is_int = x == np.floor(x)
        if nm == "round_prefer_floor":
            idx = np.ceil(x - 0.5)
        elif nm == "round_prefer_ceil":
            idx = np.floor(x + 0.5)
        elif nm == "floor":
            idx = np.floor(x)
        else:
            idx = np.ceil(x)
        idx = np.where(is_int, x, idx)
        idx = np.clip(idx, 0, in_len - 1).astype(np.int64)[:, None]
        return idx, np.ones(idx.shape), mask
    radius = 1 if mode == "linear" else 2
    s = min(scale, 1.0) if attrs["antialias"] else 1.0
    start = math.floor(-radius / s) + 1
    count = 2 - 2 * start
    base = np.floor(x).astype(np.int64)
    idx = base[:, None] + np.arange(start, start + count)[None, :]
    t = (idx - x[:, None]) * s
    if mode == "linear":
        w = np.clip(1 - np.abs(t), 0, 1)
    else:
        w = _cubic(t, attrs["cubic_coeff_a"])
    if attrs["exclude_outside"]:
        w = np.where((idx < 0) | (idx >= in_len), 0.0, w)
    total = w.sum(axis=1, keepdims=True)
    w = w / np.where(total == 0, 1.0, total)
    return np.clip(idx, 0, in_len - 1), w, mask


def plan(in_shape, attrs: dict[str, Any]) -> list[tuple[int, np.ndarray, np.ndarray, Any]]:
    """(axis, indices, weights, mask) for every resized axis, in axis order."""
    r = len(in_shape)
    steps = []
    for a in resized_axes(in_shape, attrs):
        d = in_shape[a]
        if not isinstance(d, int):
            raise IRTypeError(f"resize of axis {a} needs a static size, got {d}")
        roi = (attrs["roi"][a], attrs["roi"][r + a]) if attrs["roi"] else None
        idx, w, mask = axis_taps(d, attrs["sizes"][a], attrs["scales"][a], attrs, roi)
        steps.append((a, idx, w, mask))
    return steps


def _reference(xs, attrs) -> np.ndarray:
    x = xs[0]
    y = x.astype(np.float64)
    for a, idx, w, mask in plan(x.shape, attrs):
        shape = [1] * y.ndim
        shape[a] = idx.shape[0]
        acc = None
        for t in range(idx.shape[1]):
            term = np.take(y, idx[:, t], axis=a) * w[:, t].reshape(shape)
            acc = term if acc is None else acc + term
        if mask is not None:
            acc = np.where(mask.reshape(shape), attrs["extrapolation_value"], acc)
        y = acc
    if x.dtype.kind != "f":
        y = np.round(y)
    return y.astype(x.dtype)


define(
    "resize",
    inputs=["x"],
    attrs={
        "sizes": Attr("dims", doc="output shape, every axis"),
        "scales": Attr("floats", [], doc="per axis, used by the coordinate transform"),
        "roi": Attr("floats", [], doc="starts then ends, tf_crop_and_resize only"),
        "mode": Attr("str", "nearest", ("nearest", "linear", "cubic")),
        "coordinate_transformation_mode": Attr("str", "half_pixel", COORD_MODES),
        "nearest_mode": Attr("str", "round_prefer_floor", NEAREST_MODES),
        "cubic_coeff_a": Attr("float", -0.75),
        "exclude_outside": Attr("bool", False),
        "extrapolation_value": Attr("float", 0.0),
        "antialias": Attr("bool", False),
    },
    normalize=_normalize,
    infer=_infer,
    reference=_reference,
    doc="ONNX Resize semantics with sizes resolved; scales kept for coordinate transforms.",
)
