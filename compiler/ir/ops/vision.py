"""Vision ops with their own kernels: grid_sample, roi_align, deform_conv, max_pool_indices.

Each is a gather at computed (often fractional) positions that no composition of the other
core ops expresses cheaply. The coordinate rules (``grid_source``, ``grid_taps``,
``roi_sample``, ``reflect``) are written once over plain arithmetic, with no numpy-only
calls, so the TVM lowering evaluates the same formulas on TE expressions.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from ..types import FLOAT_DTYPES, INT_DTYPES, IRTypeError, TensorType
from .nn_conv import _POOL_ATTRS, _fill_window, _pad_spatial, _static_spatial, pool_geometry
from .registry import Attr, define

# -- grid_sample -----------------------------------------------------------------------------

GRID_MODES = ("nearest", "linear", "cubic")
GRID_PADDING = ("zeros", "border", "reflection")
CUBIC_A = -0.75
"""Keys' cubic coefficient that GridSample (like PyTorch) fixes."""


def _work_dtype(dtype: str) -> str:
    """Coordinates and weights are computed in float32, float64 for float64 data."""
    return "float64" if dtype == "float64" else "float32"


def grid_bounds(size: int, align_corners: bool) -> tuple[float, float]:
    """The span of source coordinates inside the image: pixel centers or pixel edges."""
    return (0.0, size - 1.0) if align_corners else (-0.5, size - 0.5)


def reflect(ops: Any, x: Any, lo: float, hi: float) -> Any:
    """x folded back into [lo, hi] by reflecting at the borders, as often as needed.

    ``ops`` supplies ``where``, ``trunc``, ``floormod2`` (x mod 2 for integral x) so the
    same rule runs on numpy arrays and on TE expressions.
    """
    span = hi - lo
    if span <= 0:
        return x * 0 + lo
    below = lo - x
    above = x - hi
    dist = ops.where(x < lo, below, above)
    turns = ops.trunc(dist / span)
    rest = dist - turns * span
    even = ops.floormod2(turns) == 0
    low_side = ops.where(even, lo + rest, hi - rest)
    high_side = ops.where(even, hi - rest, lo + rest)
    return ops.where(x < lo, low_side, ops.where(x > hi, high_side, x))


def grid_unnormalize(ops: Any, u: Any, size: int, attrs: dict[str, Any]) -> Any:
    """Grid value u in pixels (align_corners: -1/1 are the corner pixels' centers, else
    their outer edges), rounded half to even for nearest (as PyTorch)."""
    if attrs["align_corners"]:
        x = (u + 1) / 2 * (size - 1)
    else:
        x = ((u + 1) * size - 1) / 2
    return ops.rint(x) if attrs["mode"] == "nearest" else x


def grid_fold(ops: Any, x: Any, size: int, attrs: dict[str, Any]) -> Any:
    """A source coordinate outside the image clamped to the pixels (border) or reflected at
    the bounds (reflection); zeros leaves it."""
    lo, hi = grid_bounds(size, attrs["align_corners"])
    if attrs["padding_mode"] == "border":
        return ops.where(ops.logical_or(x < lo, x > hi), ops.clip(x, 0.0, size - 1.0), x)
    if attrs["padding_mode"] == "reflection":
        return reflect(ops, x, lo, hi)
    return x


def grid_source(ops: Any, u: Any, size: int, attrs: dict[str, Any]) -> Any:
    """The source coordinate of normalized grid value u along an axis of ``size`` pixels."""
    return grid_fold(ops, grid_unnormalize(ops, u, size, attrs), size, attrs)


def cubic_weights(ops: Any, t: Any) -> list[Any]:
    """Keys' weights of taps floor-1 .. floor+2 for fraction t in [0, 1)."""
    a = CUBIC_A

    def near(s: Any) -> Any:
        return ((a + 2) * s - (a + 3)) * s * s + 1

    def far(s: Any) -> Any:
        return ((a * s - 5 * a) * s + 8 * a) * s - 4 * a

    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


def grid_taps(ops: Any, x: Any, attrs: dict[str, Any]) -> list[tuple[Any, Any]]:
    """(integer tap position, weight) along one axis for source coordinate x."""
    if attrs["mode"] == "nearest":
        return [(ops.to_int(ops.trunc(x)), None)]
    base = ops.floor(x)
    t = x - base
    first = ops.to_int(base)
    if attrs["mode"] == "linear":
        return [(first, 1 - t), (first + 1, t)]
    return [(first + k - 1, w) for k, w in enumerate(cubic_weights(ops, t))]


def grid_pixel(ops: Any, i: Any, size: int, attrs: dict[str, Any]) -> tuple[Any, Any]:
    """(in-range index to read, validity or None) of tap position i under the padding mode:
    zeros reads nothing outside, border the nearest edge pixel, reflection the mirrored one."""
    mode = attrs["padding_mode"]
    if mode == "zeros":
        return ops.clip(i, 0, size - 1), ops.logical_and(i >= 0, i < size)
    if mode == "reflection":
        align = attrs["align_corners"]
        # The source coordinate is already folded into the bounds, so taps overshoot the
        # image by at most 1 (2 for cubic): one mirror, in integers, unless the image is
        # too small for that.
        reach = 2 if attrs["mode"] == "cubic" else 1
        if reach <= (size - 1 if align else size):
            below = -i if align else -1 - i
            above = 2 * (size - 1) - i if align else 2 * size - 1 - i
            i = ops.where(i < 0, below, ops.where(i > size - 1, above, i))
        else:
            lo, hi = grid_bounds(size, align)
            i = ops.to_int(ops.trunc(reflect(ops, ops.to_float(i), lo, hi)))
    return ops.clip(i, 0, size - 1), None


class _NumpyOps:
    """The arithmetic the shared coordinate rules use, on numpy arrays."""

    def __init__(self, dtype: str) -> None:
        self.dtype = np.dtype(dtype)

    where = staticmethod(np.where)
    trunc = staticmethod(np.trunc)
    floor = staticmethod(np.floor)
    rint = staticmethod(np.rint)
    logical_or = staticmethod(np.logical_or)
    logical_and = staticmethod(np.logical_and)

    @staticmethod
    def clip(x: Any, lo: Any, hi: Any) -> Any:
        return np.clip(x, lo, hi)

    @staticmethod
    def floormod2(x: Any) -> Any:
        return np.mod(x, 2)

    @staticmethod
    def to_int(x: Any) -> Any:
        return np.asarray(x).astype(np.int64)

    def to_float(self, x: Any) -> Any:
        return np.asarray(x).astype(self.dtype)


def _grid_sample_infer(in_types, attrs) -> TensorType:
    x, grid = in_types
    if x.dtype not in FLOAT_DTYPES or grid.dtype not in FLOAT_DTYPES:
        raise IRTypeError(f"grid_sample needs float input and grid, got {x} and {grid}")
    d = x.rank - 2
    if d < 1 or grid.rank != x.rank or grid.shape[-1] != d:
        raise IRTypeError(f"grid_sample: grid {grid} does not fit input {x}: needs (N, ..., {d})")
    _static_spatial(x, "grid_sample")
    nb, gb = x.shape[0], grid.shape[0]
    if isinstance(nb, int) and isinstance(gb, int) and nb != gb:
        raise IRTypeError(f"grid_sample: batch sizes differ: {x} and {grid}")
    return TensorType(x.dtype, (x.shape[0], x.shape[1], *grid.shape[1:-1]))


def _grid_sample_reference(xs, attrs) -> np.ndarray:
    x, grid = xs
    work = _work_dtype(x.dtype.name)
    ops = _NumpyOps(work)
    spatial = x.shape[2:]
    d = len(spatial)
    g = grid.astype(work)
    # Axis 2 + i of x is addressed by grid[..., d - 1 - i] (the grid lists x, y, z).
    axes = []
    for i, size in enumerate(spatial):
        src = grid_source(ops, g[..., d - 1 - i], size, attrs)
        axes.append([(*grid_pixel(ops, p, size, attrs), w) for p, w in grid_taps(ops, src, attrs)])
    xt = np.moveaxis(x.astype(work), 1, -1)  # (N, spatial..., C)
    batch = np.arange(x.shape[0]).reshape(-1, *[1] * (grid.ndim - 2))
    out = np.zeros((*grid.shape[:-1], x.shape[1]), work)
    for combo in itertools.product(*axes):
        vals = xt[(batch, *[idx for idx, _, _ in combo])]
        weight = np.ones(grid.shape[:-1], work)
        for _, valid, w in combo:
            if w is not None:
                weight = weight * w
            if valid is not None:
                weight = np.where(valid, weight, 0)
        out = out + vals * weight[..., None]
    return np.moveaxis(out, -1, 1).astype(x.dtype)


define(
    "grid_sample",
    inputs=["x", "grid"],
    attrs={
        "mode": Attr("str", "linear", GRID_MODES),
        "padding_mode": Attr("str", "zeros", GRID_PADDING),
        "align_corners": Attr("bool", False),
    },
    infer=_grid_sample_infer,
    reference=_grid_sample_reference,
    doc="Samples x (N, C, spatial...) at the normalized positions grid (N, out..., D), as "
    "ONNX GridSample-22: nearest/linear/cubic taps, zeros/border/reflection padding.",
)


# -- roi_align -------------------------------------------------------------------------------


def roi_box(ops: Any, roi: list[Any], attrs: dict[str, Any]) -> tuple[Any, Any, Any, Any]:
    """(start_h, start_w, bin_h, bin_w) of one region (x1, y1, x2, y2) in input pixels."""
    offset = 0.5 if attrs["half_pixel"] else 0.0
    scale = attrs["spatial_scale"]
    x1, y1, x2, y2 = (r * scale - offset for r in roi)
    height, width = y2 - y1, x2 - x1
    if not attrs["half_pixel"]:  # legacy mode: regions at least one pixel large
        height, width = ops.maximum(height, 1.0), ops.maximum(width, 1.0)
    return y1, x1, height / attrs["output_height"], width / attrs["output_width"]


def roi_sample(ops: Any, y: Any, x: Any, height: int, width: int) -> list[tuple[Any, Any, Any]]:
    """Bilinear taps (row, column, weight) of one sample point, as ONNX RoiAlign reads them:
    points more than a pixel outside get weight 0, the rest is clamped to the edge pixels."""
    outside = ops.logical_or(
        ops.logical_or(y < -1.0, y > float(height)), ops.logical_or(x < -1.0, x > float(width))
    )
    taps = []
    for pos, size in ((y, height), (x, width)):
        pos = ops.maximum(pos, 0.0)
        low = ops.to_int(ops.floor(pos))
        edge = low >= size - 1
        low = ops.where(edge, size - 1, low)
        high = ops.where(edge, size - 1, low + 1)
        frac = ops.where(edge, 0.0, pos - ops.to_float(low))
        taps.append(((low, 1 - frac), (high, frac)))
    out = []
    for (r, wy), (c, wx) in itertools.product(*taps):
        out.append((r, c, ops.where(outside, 0.0, wy * wx)))
    return out


class _RoiNumpyOps(_NumpyOps):
    maximum = staticmethod(np.maximum)


def _roi_align_normalize(in_types, attrs) -> dict[str, Any]:
    if attrs["output_height"] < 1 or attrs["output_width"] < 1 or attrs["sampling_ratio"] < 0:
        raise IRTypeError(
            f"roi_align: output size {attrs['output_height']}x{attrs['output_width']} and "
            f"sampling_ratio {attrs['sampling_ratio']} must be positive"
        )
    return attrs


def _roi_align_infer(in_types, attrs) -> TensorType:
    x, rois, idx = in_types
    if x.rank != 4 or x.dtype not in FLOAT_DTYPES:
        raise IRTypeError(f"roi_align needs a float (N, C, H, W) input, got {x}")
    if rois.rank != 2 or rois.shape[1] != 4 or rois.dtype != x.dtype:
        raise IRTypeError(f"roi_align: rois must be (R, 4) {x.dtype}, got {rois}")
    if idx.rank != 1 or idx.dtype not in INT_DTYPES:
        raise IRTypeError(f"roi_align: batch_indices must be a 1-D integer tensor, got {idx}")
    r, ri = rois.shape[0], idx.shape[0]
    if isinstance(r, int) and isinstance(ri, int) and r != ri:
        raise IRTypeError(f"roi_align: {r} rois but {ri} batch indices")
    _static_spatial(x, "roi_align")
    return TensorType(x.dtype, (r, x.shape[1], attrs["output_height"], attrs["output_width"]))


def _roi_align_reference(xs, attrs) -> np.ndarray:
    x, rois, batch_indices = xs
    work = _work_dtype(x.dtype.name)
    ops = _RoiNumpyOps(work)
    _, c, height, width = x.shape
    oh, ow = attrs["output_height"], attrs["output_width"]
    out = np.zeros((rois.shape[0], c, oh, ow), work)
    for r in range(rois.shape[0]):
        img = x[int(batch_indices[r])].astype(work)
        y0, x0, bin_h, bin_w = roi_box(ops, list(rois[r].astype(work)), attrs)
        gh = attrs["sampling_ratio"] or int(math.ceil(bin_h))
        gw = attrs["sampling_ratio"] or int(math.ceil(bin_w))
        if gh * gw == 0:  # an empty region with adaptive sampling: no samples, output 0
            continue
        ph = np.arange(oh, dtype=work)[:, None, None, None]
        pw = np.arange(ow, dtype=work)[None, :, None, None]
        iy = np.arange(gh, dtype=work)[None, None, :, None]
        ix = np.arange(gw, dtype=work)[None, None, None, :]
        ys = y0 + ph * bin_h + (iy + 0.5) * bin_h / gh  # (oh, 1, gh, 1)
        xs_ = x0 + pw * bin_w + (ix + 0.5) * bin_w / gw  # (1, ow, 1, gw)
        ys, xs_ = np.broadcast_arrays(ys, xs_)
        terms = [img[:, i, j] * w for i, j, w in roi_sample(ops, ys, xs_, height, width)]
        if attrs["mode"] == "avg":
            out[r] = sum(terms).sum(axis=(-1, -2)) / (gh * gw)
        else:
            out[r] = np.maximum.reduce(terms).max(axis=(-1, -2))
    return out.astype(x.dtype)


define(
    "roi_align",
    inputs=["x", "rois", "batch_indices"],
    attrs={
        "mode": Attr("str", "avg", ("avg", "max")),
        "output_height": Attr("int", 1),
        "output_width": Attr("int", 1),
        "sampling_ratio": Attr("int", 0, doc="samples per bin and axis; 0: ceil(bin size)"),
        "spatial_scale": Attr("float", 1.0),
        "half_pixel": Attr("bool", True, doc="False: output_half_pixel (opset 10)"),
    },
    normalize=_roi_align_normalize,
    infer=_roi_align_infer,
    reference=_roi_align_reference,
    doc="ONNX RoiAlign: bilinear samples averaged (or ONNX's max of weighted taps) per bin.",
)


# -- deform_conv -----------------------------------------------------------------------------


def _deform_normalize(in_types, attrs) -> dict[str, Any]:
    x = in_types[0]
    if x.rank != 4:
        raise IRTypeError(f"deform_conv supports 2-D (N, C, H, W) inputs only, got {x}")
    return _fill_window(attrs, 2, "deform_conv")


def deform_out_size(spatial: list[int], kernel, attrs: dict[str, Any]) -> list[int]:
    out = []
    for i, d in enumerate(spatial):
        span = attrs["dilations"][i] * (kernel[i] - 1) + 1
        size = (d + attrs["pads"][i] + attrs["pads"][2 + i] - span) // attrs["strides"][i] + 1
        if size < 1:
            raise IRTypeError(f"deform_conv: window larger than the padded input on axis {2 + i}")
        out.append(size)
    return out


def _deform_infer(in_types, attrs) -> TensorType:
    x, w, offset, b, mask = (list(in_types) + [None, None])[:5]
    if x.dtype not in FLOAT_DTYPES or any(
        t is not None and t.dtype != x.dtype for t in (w, offset, b, mask)
    ):
        raise IRTypeError("deform_conv: all operands must share one float dtype")
    if not (w.is_static and offset.is_static):
        raise IRTypeError(f"deform_conv needs static weight and offset shapes: {w}, {offset}")
    c, (m, cg, kh, kw) = x.shape[1], w.shape
    g, og = attrs["groups"], attrs["offset_groups"]
    if w.rank != 4 or (isinstance(c, int) and (c != cg * g or c % og)) or m % g:
        raise IRTypeError(f"deform_conv: weight {w} does not fit input {x} with groups {g}/{og}")
    out = deform_out_size(_static_spatial(x, "deform_conv"), (kh, kw), attrs)
    if offset.shape != (x.shape[0], og * kh * kw * 2, *out):
        want = ", ".join(str(d) for d in out)
        raise IRTypeError(f"deform_conv: offset {offset} must be (N, {og * kh * kw * 2}, {want})")
    if mask is not None and mask.shape != (x.shape[0], og * kh * kw, *out):
        want = ", ".join(str(d) for d in out)
        raise IRTypeError(f"deform_conv: mask {mask} must be (N, {og * kh * kw}, {want})")
    if b is not None and b.shape != (m,):
        raise IRTypeError(f"deform_conv: bias {b} must be ({m},)")
    return TensorType(x.dtype, (x.shape[0], m, *out))


def bilinear_zero(ops: Any, y: Any, x: Any, height: int, width: int) -> list[tuple]:
    """(row, column, weight, in range) of the 4 taps of point (y, x); outside reads 0."""
    y0, x0 = ops.floor(y), ops.floor(x)
    fy, fx = y - y0, x - x0
    r0, c0 = ops.to_int(y0), ops.to_int(x0)
    taps = []
    for r, wy in ((r0, 1 - fy), (r0 + 1, fy)):
        for c, wx in ((c0, 1 - fx), (c0 + 1, fx)):
            valid = ops.logical_and(
                ops.logical_and(r >= 0, r < height), ops.logical_and(c >= 0, c < width)
            )
            taps.append((ops.clip(r, 0, height - 1), ops.clip(c, 0, width - 1), wy * wx, valid))
    return taps


def _deform_reference(xs, attrs) -> np.ndarray:
    x, w, offset, b, mask = (list(xs) + [None, None])[:5]
    work = _work_dtype(x.dtype.name)
    ops = _NumpyOps(work)
    n, c, height, width = x.shape
    m, cg, kh, kw = w.shape
    og = attrs["offset_groups"]
    oh, ow = offset.shape[2:]
    off = offset.astype(work).reshape(n, og, kh, kw, 2, oh, ow)
    msk = None if mask is None else mask.astype(work).reshape(n, og, kh, kw, oh, ow)
    sh, sw = attrs["strides"]
    dh, dw = attrs["dilations"]
    base_h = (np.arange(oh) * sh - attrs["pads"][0]).astype(work)[:, None]
    base_w = (np.arange(ow) * sw - attrs["pads"][1]).astype(work)[None, :]
    xw = x.astype(work).reshape(n, og, c // og, height, width)
    bidx = np.arange(n)[:, None, None, None, None]
    gidx = np.arange(og)[None, :, None, None, None]
    cidx = np.arange(c // og)[None, None, :, None, None]
    cols = np.zeros((n, og, c // og, kh, kw, oh, ow), work)
    for i, j in itertools.product(range(kh), range(kw)):
        py = base_h + i * dh + off[:, :, i, j, 0]  # (n, og, oh, ow)
        px = base_w + j * dw + off[:, :, i, j, 1]
        acc = np.zeros((n, og, c // og, oh, ow), work)
        for r, cc, wt, valid in bilinear_zero(ops, py, px, height, width):
            vals = xw[bidx, gidx, cidx, r[:, :, None], cc[:, :, None]]
            acc += vals * np.where(valid, wt, 0)[:, :, None]
        if msk is not None:
            acc *= msk[:, :, None, i, j]
        cols[:, :, :, i, j] = acc
    cols = cols.reshape(n, attrs["groups"], cg, kh, kw, oh, ow)
    wg = w.astype(work).reshape(attrs["groups"], m // attrs["groups"], cg, kh, kw)
    y = np.einsum("gocij,ngcijhw->ngohw", wg, cols).reshape(n, m, oh, ow)
    if b is not None:
        y = y + b.astype(work).reshape(1, m, 1, 1)
    return y.astype(x.dtype)


define(
    "deform_conv",
    inputs=["x", "w", "offset", "b?", "mask?"],
    attrs={
        "strides": Attr("ints", []),
        "pads": Attr("ints", []),
        "dilations": Attr("ints", []),
        "groups": Attr("int", 1),
        "offset_groups": Attr("int", 1),
    },
    normalize=_deform_normalize,
    infer=_deform_infer,
    reference=_deform_reference,
    doc="2-D deformable convolution (ONNX DeformConv): each kernel tap reads x bilinearly at "
    "its position plus a learned offset (zeros outside), times an optional mask.",
)


# -- max_pool_indices ------------------------------------------------------------------------


def _mpi_normalize(in_types, attrs) -> dict[str, Any]:
    x = in_types[0]
    if x.rank < 3 or x.rank > 5:
        raise IRTypeError(f"max_pool_indices needs a (N, C, spatial...) input, got {x}")
    n = x.rank - 2
    if len(attrs["kernel"]) != n:
        raise IRTypeError(f"max_pool_indices: kernel {attrs['kernel']} needs {n} entries")
    return _fill_window(attrs, n, "max_pool_indices")


def _mpi_infer(in_types, attrs) -> TensorType:
    x = in_types[0]
    if not x.is_static:
        raise IRTypeError(f"max_pool_indices needs a static input shape, got {x}")
    out, _ = pool_geometry(list(x.shape[2:]), attrs)
    return TensorType("int64", (*x.shape[:2], *out))


def flat_index(pos: list[Any], spatial: list[int], column_major: bool) -> Any:
    """Offset of a spatial position inside one (n, c) image, rows first or columns first."""
    order = list(range(len(spatial)))
    if column_major:  # ONNX storage_order=1: the first axis varies fastest
        order.reverse()
    index = 0
    stride = 1
    for a in reversed(order):
        index = index + pos[a] * stride
        stride *= spatial[a]
    return index


def _mpi_reference(xs, attrs) -> np.ndarray:
    x = xs[0]
    spatial = list(x.shape[2:])
    n = len(spatial)
    out, extra = pool_geometry(spatial, attrs)
    pads = attrs["pads"][:n] + [p + e for p, e in zip(attrs["pads"][n:], extra)]
    xp = _pad_spatial(x.astype(np.float64), pads, -np.inf)
    best = np.full((*x.shape[:2], *out), -np.inf)
    index = np.full(best.shape, -1, np.int64)
    found = np.zeros(best.shape, bool)
    grids = np.meshgrid(*[np.arange(o) for o in out], indexing="ij")
    for offs in itertools.product(*[range(k) for k in attrs["kernel"]]):
        pos = [
            g * s - p + o * d
            for g, s, p, o, d in zip(grids, attrs["strides"], pads, offs, attrs["dilations"])
        ]
        inside = np.ones(best.shape[2:], bool)
        for q, size in zip(pos, spatial):
            inside &= (q >= 0) & (q < size)
        sl = tuple(
            np.clip(q + p, 0, xp.shape[2 + a] - 1) for a, (q, p) in enumerate(zip(pos, pads))
        )
        vals = xp[(slice(None), slice(None), *sl)]
        take = inside & (~found | (vals > best))
        best = np.where(take, vals, best)
        index = np.where(take, flat_index(pos, spatial, attrs["storage_order"]), index)
        found |= take
    plane = int(np.prod(spatial))
    images = np.arange(x.shape[0] * x.shape[1]).reshape(x.shape[0], x.shape[1], *[1] * n)
    return np.where(index >= 0, index + images * plane, -1).astype(np.int64)


define(
    "max_pool_indices",
    inputs=["x"],
    attrs={**_POOL_ATTRS, "storage_order": Attr("bool", False)},
    normalize=_mpi_normalize,
    infer=_mpi_infer,
    reference=_mpi_reference,
    doc="Where max_pool's maximum is: the first (in window order) input element holding it, "
    "as an offset into the flattened input (ONNX MaxPool's Indices; storage_order=1: the "
    "spatial axes column-major).",
)
