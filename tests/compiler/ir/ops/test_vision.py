"""vision core ops: numpy references against naive per-element loops written from the ONNX
spec text, TVM against the references, and the type errors of bad operands."""

import itertools
import math

import numpy as np
import pytest
from oputil import check_op, run_tvm, single_op_graph

from backends.tvm.lower import LoweringError
from compiler.ir.builder import Builder
from compiler.ir.graph import Graph
from compiler.ir.types import IRTypeError, TensorType

rng = np.random.default_rng(0)


def randn(*shape: int, scale: float = 1.0) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype("float32")


# -- grid_sample -----------------------------------------------------------------------------


def _reflect(x: float, lo: float, hi: float) -> float:
    span = hi - lo
    while x < lo or x > hi:  # one mirror at a time
        x = 2 * lo - x if x < lo else 2 * hi - x
        if span == 0:
            return lo
    return x


def _keys(t: float) -> float:
    a, t = -0.75, abs(t)
    if t <= 1:
        return (a + 2) * t**3 - (a + 3) * t**2 + 1
    if t < 2:
        return a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a
    return 0.0


def naive_grid_sample(x, grid, mode, padding, align):
    n, c, *spatial = x.shape
    d = len(spatial)
    out = np.zeros((n, c, *grid.shape[1:-1]))
    for b in range(n):
        for o in itertools.product(*[range(s) for s in grid.shape[1:-1]]):
            src = []
            for a, size in enumerate(spatial):
                u = float(grid[(b, *o, d - 1 - a)])
                v = (u + 1) / 2 * (size - 1) if align else ((u + 1) * size - 1) / 2
                if mode == "nearest":
                    v = float(np.rint(v))
                lo, hi = (0, size - 1) if align else (-0.5, size - 0.5)
                if v < lo or v > hi:
                    if padding == "border":
                        v = min(max(v, 0), size - 1)
                    elif padding == "reflection":
                        v = _reflect(v, lo, hi)
                src.append(v)
            taps = []
            for v in src:
                if mode == "nearest":
                    taps.append([(int(v), 1.0)])
                elif mode == "linear":
                    f = math.floor(v)
                    taps.append([(f, 1 - (v - f)), (f + 1, v - f)])
                else:
                    f = math.floor(v)
                    taps.append([(f + k, _keys(v - f - k)) for k in range(-1, 3)])
            for combo in itertools.product(*taps):
                idx, weight = [], 1.0
                for a, (i, w) in enumerate(combo):
                    size = spatial[a]
                    weight *= w
                    if padding == "zeros" and not 0 <= i < size:
                        weight = 0.0
                    elif padding == "reflection":
                        lo, hi = (0, size - 1) if align else (-0.5, size - 0.5)
                        i = int(_reflect(float(i), lo, hi))
                    idx.append(min(max(i, 0), size - 1))
                out[(b, slice(None), *o)] += weight * x[(b, slice(None), *idx)]
    return out.astype(x.dtype)


@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
@pytest.mark.parametrize("padding", ["zeros", "border", "reflection"])
@pytest.mark.parametrize("align", [False, True])
def test_grid_sample_2d(mode, padding, align):
    x, grid = randn(2, 3, 4, 5), randn(2, 3, 4, 2, scale=1.6)
    attrs = dict(mode=mode, padding_mode=padding, align_corners=align)
    expected = naive_grid_sample(x, grid, mode, padding, align)
    check_op("grid_sample", [x, grid], attrs, expected=[expected], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode,padding", [("linear", "reflection"), ("nearest", "border")])
def test_grid_sample_3d(mode, padding):
    x, grid = randn(1, 2, 3, 4, 5), randn(1, 2, 3, 2, 3, scale=1.6)
    attrs = dict(mode=mode, padding_mode=padding, align_corners=False)
    expected = naive_grid_sample(x, grid, mode, padding, False)
    check_op("grid_sample", [x, grid], attrs, expected=[expected], rtol=1e-4, atol=1e-5)


def test_grid_sample_rejects_a_grid_of_the_wrong_width():
    with pytest.raises(IRTypeError, match="does not fit"):
        single_op_graph("grid_sample", [randn(1, 1, 4, 4), randn(1, 2, 2, 3)])


# -- roi_align -------------------------------------------------------------------------------


def _bilinear_roi(img, y, x):
    h, w = img.shape[-2:]
    if y < -1 or y > h or x < -1 or x > w:
        return [np.zeros(img.shape[0])] * 4
    y, x = max(y, 0.0), max(x, 0.0)
    y0, x0 = int(y), int(x)
    y1, x1 = y0 + 1, x0 + 1
    if y0 >= h - 1:
        y0 = y1 = h - 1
        y = float(y0)
    if x0 >= w - 1:
        x0 = x1 = w - 1
        x = float(x0)
    ly, lx = y - y0, x - x0
    return [
        (1 - ly) * (1 - lx) * img[:, y0, x0],
        (1 - ly) * lx * img[:, y0, x1],
        ly * (1 - lx) * img[:, y1, x0],
        ly * lx * img[:, y1, x1],
    ]


def naive_roi_align(x, rois, batch, mode, oh, ow, ratio, scale, half_pixel):
    out = np.zeros((len(rois), x.shape[1], oh, ow))
    off = 0.5 if half_pixel else 0.0
    for r, (x1, y1, x2, y2) in enumerate(rois.astype(np.float64)):
        x1, y1, x2, y2 = x1 * scale - off, y1 * scale - off, x2 * scale - off, y2 * scale - off
        rh, rw = y2 - y1, x2 - x1
        if not half_pixel:
            rh, rw = max(rh, 1.0), max(rw, 1.0)
        bh, bw = rh / oh, rw / ow
        gh = ratio or math.ceil(bh)
        gw = ratio or math.ceil(bw)
        for i, j in itertools.product(range(oh), range(ow)):
            vals = []
            for a, b in itertools.product(range(gh), range(gw)):
                taps = _bilinear_roi(
                    x[batch[r]],
                    y1 + i * bh + (a + 0.5) * bh / gh,
                    x1 + j * bw + (b + 0.5) * bw / gw,
                )
                vals.append(sum(taps) if mode == "avg" else np.max(taps, axis=0))
            if vals:
                out[r, :, i, j] = np.mean(vals, axis=0) if mode == "avg" else np.max(vals, axis=0)
    return out.astype(x.dtype)


@pytest.mark.parametrize("mode", ["avg", "max"])
@pytest.mark.parametrize("half_pixel", [False, True])
def test_roi_align(mode, half_pixel):
    x = randn(2, 3, 9, 8)
    rois = np.array([[0, 0, 7, 8], [1.5, 2.2, 4.1, 3.0], [-2, 6, 3, 11], [5, 5, 5, 5]], "float32")
    batch = np.array([0, 1, 1, 0], "int64")
    attrs = dict(mode=mode, output_height=3, output_width=2, sampling_ratio=2)
    attrs |= dict(spatial_scale=0.75, half_pixel=half_pixel)
    expected = naive_roi_align(x, rois, batch, mode, 3, 2, 2, 0.75, half_pixel)
    check_op("roi_align", [x, rois, batch], attrs, expected=[expected], rtol=1e-4, atol=1e-5)


def test_roi_align_adaptive_sampling_reference_and_lowering_error():
    x = randn(1, 2, 8, 8)
    rois = np.array([[0, 0, 7, 7], [1, 1, 4, 2]], "float32")
    batch = np.array([0, 0], "int64")
    attrs = dict(mode="avg", output_height=2, output_width=2, sampling_ratio=0)
    g = single_op_graph("roi_align", [x, rois, batch], attrs)
    from backends.reference import run_graph

    (got,) = run_graph(g, {"in0": x, "in1": rois, "in2": batch}).values()
    expected = naive_roi_align(x, rois, batch, "avg", 2, 2, 0, 1.0, True)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(LoweringError, match="sampling_ratio=0"):
        run_tvm(g, {"in0": x, "in1": rois, "in2": batch})


def test_roi_align_rejects_bad_rois():
    with pytest.raises(IRTypeError, match="rois"):
        single_op_graph("roi_align", [randn(1, 1, 4, 4), randn(2, 5), np.zeros(2, "int64")])


# -- deform_conv -----------------------------------------------------------------------------


def _sample_zero(img, y, x):
    h, w = img.shape
    y0, x0 = math.floor(y), math.floor(x)
    total = 0.0
    for r, c in itertools.product((y0, y0 + 1), (x0, x0 + 1)):
        if 0 <= r < h and 0 <= c < w:
            total += (1 - abs(y - r)) * (1 - abs(x - c)) * img[r, c]
    return total


def naive_deform_conv(x, w, offset, b, mask, strides, pads, dilations, groups, ogroups):
    n, c, _, _ = x.shape
    m, cg, kh, kw = w.shape
    oh, ow = offset.shape[2:]
    y = np.zeros((n, m, oh, ow))
    for bi, o, i, j in itertools.product(range(n), range(m), range(oh), range(ow)):
        g = o // (m // groups)
        for ci, ki, kj in itertools.product(range(cg), range(kh), range(kw)):
            ch = g * cg + ci
            tap = (ch // (c // ogroups) * kh + ki) * kw + kj
            py = i * strides[0] - pads[0] + ki * dilations[0] + offset[bi, 2 * tap, i, j]
            px = j * strides[1] - pads[1] + kj * dilations[1] + offset[bi, 2 * tap + 1, i, j]
            v = _sample_zero(x[bi, ch], py, px)
            if mask is not None:
                v *= mask[bi, tap, i, j]
            y[bi, o, i, j] += w[o, ci, ki, kj] * v
    if b is not None:
        y += b.reshape(1, -1, 1, 1)
    return y.astype(x.dtype)


@pytest.mark.parametrize(
    "groups,ogroups,strides,pads,dilations,extras",
    [
        (1, 1, [1, 1], [0, 0, 0, 0], [1, 1], False),
        (2, 2, [2, 1], [1, 0, 1, 2], [1, 2], True),
        (1, 4, [1, 1], [1, 1, 1, 1], [1, 1], True),
    ],
)
def test_deform_conv(groups, ogroups, strides, pads, dilations, extras):
    x, w = randn(2, 4, 6, 7), randn(6, 4 // groups, 3, 2)
    oh = (6 + pads[0] + pads[2] - (2 * dilations[0] + 1)) // strides[0] + 1
    ow = (7 + pads[1] + pads[3] - (dilations[1] + 1)) // strides[1] + 1
    offset = randn(2, ogroups * 12, oh, ow, scale=2.0)
    b = randn(6) if extras else None
    mask = rng.uniform(0, 1, (2, ogroups * 6, oh, ow)).astype("float32") if extras else None
    attrs = dict(strides=strides, pads=pads, dilations=dilations, groups=groups)
    attrs["offset_groups"] = ogroups
    args = (strides, pads, dilations, groups, ogroups)
    expected = naive_deform_conv(x, w, offset, b, mask, *args)
    check_op(
        "deform_conv", [x, w, offset, b, mask], attrs, expected=[expected], rtol=1e-4, atol=1e-4
    )


def test_deform_conv_rejects_an_offset_of_the_wrong_shape():
    with pytest.raises(IRTypeError, match="offset"):
        single_op_graph("deform_conv", [randn(1, 2, 5, 5), randn(3, 2, 3, 3), randn(1, 18, 4, 4)])


# -- max_pool_indices ------------------------------------------------------------------------


def naive_pool_indices(x, kernel, strides, pads, dilations, column_major, out_shape):
    n, c, *spatial = x.shape
    k = len(spatial)
    y = np.zeros((n, c, *out_shape), np.int64)
    for b, ch in itertools.product(range(n), range(c)):
        for o in itertools.product(*[range(s) for s in out_shape]):
            best, where = None, None
            for r in itertools.product(*[range(s) for s in kernel]):
                pos = [o[a] * strides[a] - pads[a] + r[a] * dilations[a] for a in range(k)]
                if all(0 <= p < s for p, s in zip(pos, spatial)):
                    v = x[(b, ch, *pos)]
                    if best is None or v > best:
                        best, where = v, pos
            axes = list(range(k))[::-1] if column_major else list(range(k))
            flat = 0
            for a in axes:
                flat = flat * spatial[a] + where[a]
            y[(b, ch, *o)] = (b * c + ch) * int(np.prod(spatial)) + flat
    return y


@pytest.mark.parametrize(
    "shape,kernel,strides,pads,dilations,ceil,column_major",
    [
        ((1, 2, 5, 5), [2, 2], [2, 2], [0, 0, 0, 0], [1, 1], False, True),
        ((2, 3, 7, 6), [3, 3], [2, 1], [1, 1, 1, 0], [1, 1], True, False),
        ((1, 2, 7, 8), [2, 3], [1, 1], [0, 1, 0, 1], [2, 2], False, True),
        ((1, 2, 5, 6, 4), [2, 2, 2], [1, 2, 1], [0, 0, 0, 0, 0, 1], [1, 1, 1], False, True),
        ((1, 2, 9), [3], [2], [1, 1], [2], False, False),
    ],
)
def test_max_pool_indices(shape, kernel, strides, pads, dilations, ceil, column_major):
    x = randn(*shape)
    x.reshape(-1)[::5] = 1.0  # ties: the first position in window order wins
    attrs = dict(kernel=kernel, strides=strides, pads=pads, dilations=dilations)
    attrs |= dict(ceil_mode=ceil, storage_order=column_major)
    (ref,) = check_op("max_pool_indices", [x], attrs)
    expected = naive_pool_indices(x, kernel, strides, pads, dilations, column_major, ref.shape[2:])
    np.testing.assert_array_equal(ref, expected)


def test_max_pool_indices_needs_a_kernel_per_spatial_axis():
    g = Graph()
    x = g.add_input("x", TensorType("float32", (1, 1, 4, 4)))
    with pytest.raises(IRTypeError, match="kernel"):
        Builder(g).op("max_pool_indices", [x], {"kernel": [2]})
