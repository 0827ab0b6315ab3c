"""nn core ops: inferred types, numpy references against naive loops, TVM against references."""

import itertools

import numpy as np
import pytest
from oputil import check_op

from compiler.ir.ops.nn_resize import axis_taps

rng = np.random.default_rng(0)


def randn(*shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype("float32")


def naive_conv2d(x, w, b, strides, pads, dilations, groups):
    """Direct definition: one output element at a time."""
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    xp = np.pad(x, [(0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])])
    oh = (xp.shape[2] - dilations[0] * (kh - 1) - 1) // strides[0] + 1
    ow = (xp.shape[3] - dilations[1] * (kw - 1) - 1) // strides[1] + 1
    y = np.zeros((n, m, oh, ow), np.float64)
    mg = m // groups
    for b_, o, i, j in itertools.product(range(n), range(m), range(oh), range(ow)):
        g = o // mg
        for ci, ki, kj in itertools.product(range(cg), range(kh), range(kw)):
            y[b_, o, i, j] += (
                xp[
                    b_,
                    g * cg + ci,
                    i * strides[0] + ki * dilations[0],
                    j * strides[1] + kj * dilations[1],
                ]
                * w[o, ci, ki, kj]
            )
    if b is not None:
        y += b.reshape(1, -1, 1, 1)
    return y.astype(x.dtype)


@pytest.mark.parametrize(
    "strides,pads,dilations,groups",
    [([1, 1], [0, 0, 0, 0], [1, 1], 1), ([2, 1], [1, 0, 2, 1], [1, 2], 2)],
)
def test_conv2d(strides, pads, dilations, groups):
    x, w, b = randn(2, 4, 7, 6), randn(6, 4 // groups, 3, 3), randn(6)
    attrs = dict(strides=strides, pads=pads, dilations=dilations, groups=groups)
    expected = naive_conv2d(x, w, b, strides, pads, dilations, groups)
    check_op("conv", [x, w, b], attrs, expected=[expected], rtol=1e-4, atol=1e-4)


def test_conv1d_and_3d_without_bias():
    x, w = randn(1, 2, 9), randn(3, 2, 3)
    expected = np.stack(
        [
            np.convolve(x[0, 0], w[o, 0, ::-1], "valid")
            + np.convolve(x[0, 1], w[o, 1, ::-1], "valid")
            for o in range(3)
        ]
    )[None]
    check_op("conv", [x, w, None], expected=[expected], rtol=1e-4, atol=1e-5)
    check_op(
        "conv",
        [randn(1, 2, 4, 5, 6), randn(2, 2, 2, 3, 1), None],
        {"pads": [1, 0, 0, 0, 1, 0]},
        rtol=1e-4,
        atol=1e-4,
    )


def naive_conv_transpose2d(x, w, strides, pads, output_padding, groups):
    n, c, h, wd = x.shape
    _, mg, kh, kw = w.shape
    cg = c // groups
    full = np.zeros((n, mg * groups, (h - 1) * strides[0] + kh, (wd - 1) * strides[1] + kw + 8))
    for b_, ci, i, j, o, ki, kj in itertools.product(
        range(n), range(c), range(h), range(wd), range(mg), range(kh), range(kw)
    ):
        g = ci // cg
        full[b_, g * mg + o, i * strides[0] + ki, j * strides[1] + kj] += (
            x[b_, ci, i, j] * w[ci, o, ki, kj]
        )
    oh = (h - 1) * strides[0] + kh - pads[0] - pads[2] + output_padding[0]
    ow = (wd - 1) * strides[1] + kw - pads[1] - pads[3] + output_padding[1]
    full = np.pad(full, [(0, 0), (0, 0), (0, 8), (0, 0)])
    return full[:, :, pads[0] : pads[0] + oh, pads[1] : pads[1] + ow].astype(x.dtype)


@pytest.mark.parametrize("output_padding", [[1, 0], [3, 2]])
def test_conv_transpose2d(output_padding):
    x, w = randn(1, 4, 3, 4), randn(4, 3, 3, 2)
    attrs = dict(strides=[2, 3], pads=[1, 0, 0, 1], output_padding=output_padding, groups=2)
    expected = naive_conv_transpose2d(x, w, [2, 3], [1, 0, 0, 1], output_padding, 2)
    check_op("conv_transpose", [x, w, None], attrs, expected=[expected], rtol=1e-4, atol=1e-4)


def naive_pool(x, kernel, strides, pads, ceil_mode, kind, count_include_pad=False):
    """PyTorch's definition: windows may hang past the end (ceil) but not start there."""
    n, c, h, w = x.shape
    sizes = []
    for d, k, s, pb, pe in zip((h, w), kernel, strides, pads[:2], pads[2:]):
        room = d + pb + pe - k
        o = (-(-room // s) if ceil_mode else room // s) + 1
        if ceil_mode and (o - 1) * s >= d + pb:
            o -= 1
        sizes.append(o)
    y = np.zeros((n, c, *sizes), np.float64)
    for i, j in itertools.product(range(sizes[0]), range(sizes[1])):
        r0, c0 = i * strides[0] - pads[0], j * strides[1] - pads[1]
        r1, c1 = r0 + kernel[0], c0 + kernel[1]
        win = x[:, :, max(r0, 0) : min(r1, h), max(c0, 0) : min(c1, w)]
        if kind == "max":
            y[:, :, i, j] = win.max(axis=(2, 3))
        else:
            if count_include_pad:
                cnt = (min(r1, h + pads[2]) - r0) * (min(c1, w + pads[3]) - c0)
            else:
                cnt = win.shape[2] * win.shape[3]
            y[:, :, i, j] = win.sum(axis=(2, 3)) / cnt
    return y.astype(x.dtype)


@pytest.mark.parametrize("ceil_mode", [False, True])
def test_max_pool(ceil_mode):
    x = randn(1, 3, 8, 7)
    attrs = dict(kernel=[3, 2], strides=[2, 2], pads=[0, 1, 1, 0], ceil_mode=ceil_mode)
    expected = naive_pool(x, [3, 2], [2, 2], [0, 1, 1, 0], ceil_mode, "max")
    check_op("max_pool", [x], attrs, expected=[expected])


@pytest.mark.parametrize(
    "ceil_mode,count_include_pad", [(False, False), (True, True), (True, False)]
)
def test_avg_pool(ceil_mode, count_include_pad):
    x = randn(2, 2, 8, 7)
    attrs = dict(
        kernel=[3, 3],
        strides=[2, 2],
        pads=[1, 1, 1, 0],
        ceil_mode=ceil_mode,
        count_include_pad=count_include_pad,
    )
    expected = naive_pool(x, [3, 3], [2, 2], [1, 1, 1, 0], ceil_mode, "avg", count_include_pad)
    check_op("avg_pool", [x], attrs, expected=[expected], rtol=1e-5, atol=1e-6)


def test_pool_1d_and_3d_dilated():
    check_op("max_pool", [randn(1, 2, 10)], dict(kernel=[3], dilations=[2], strides=[2]))
    check_op(
        "avg_pool", [randn(1, 1, 5, 6, 7)], dict(kernel=[2, 2, 2], dilations=[2, 1, 2]), rtol=1e-5
    )


@pytest.mark.parametrize(
    "sa,sb",
    [
        ((3, 4), (4, 5)),
        ((2, 1, 3, 4), (5, 4, 2)),
        ((4,), (2, 4, 3)),
        ((2, 3, 4), (4,)),
        ((4,), (4,)),
    ],
)
def test_matmul(sa, sb):
    a, b = randn(*sa), randn(*sb)
    check_op("matmul", [a, b], expected=[np.matmul(a, b)], rtol=1e-4, atol=1e-5)


def test_batch_norm():
    x, s, b, m, v = randn(2, 3, 4, 5), randn(3), randn(3), randn(3), np.abs(randn(3))
    expected = (x - m.reshape(1, 3, 1, 1)) / np.sqrt(v.reshape(1, 3, 1, 1) + 1e-3) * s.reshape(
        1, 3, 1, 1
    ) + b.reshape(1, 3, 1, 1)
    check_op(
        "batch_norm", [x, s, b, m, v], {"epsilon": 1e-3}, expected=[expected], rtol=1e-4, atol=1e-5
    )


def test_instance_norm():
    x, s, b = randn(2, 3, 4, 5), randn(3), randn(3)
    mean = x.mean(axis=(2, 3), keepdims=True)
    var = x.var(axis=(2, 3), keepdims=True)
    expected = (x - mean) / np.sqrt(var + 1e-5) * s.reshape(1, 3, 1, 1) + b.reshape(1, 3, 1, 1)
    check_op("instance_norm", [x, s, b], expected=[expected], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "axis,scale_shape,bias", [(-1, (5,), True), (1, (4, 5), False), (2, (5,), True)]
)
def test_layer_norm(axis, scale_shape, bias):
    x, s = randn(2, 3, 4, 5), randn(*scale_shape)
    b = randn(*scale_shape) if bias else None
    axes = tuple(range(axis % 4, 4))
    expected = (
        (x - x.mean(axis=axes, keepdims=True)) / np.sqrt(x.var(axis=axes, keepdims=True) + 1e-5) * s
    )
    if bias:
        expected = expected + b
    check_op("layer_norm", [x, s, b], {"axis": axis}, expected=[expected], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_softmax_and_log_softmax(axis):
    x = randn(3, 4, 5) * 10
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    sm = e / e.sum(axis=axis, keepdims=True)
    check_op("softmax", [x], {"axis": axis}, expected=[sm], rtol=1e-5, atol=1e-6)
    check_op("log_softmax", [x], {"axis": axis}, expected=[np.log(sm)], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("size", [2, 3, 5])
def test_lrn(size):
    x = randn(2, 6, 3, 3)
    sq = np.zeros_like(x)
    for c in range(6):
        lo, hi = max(0, c - (size - 1) // 2), min(5, c + size // 2)
        sq[:, c] = (x[:, lo : hi + 1] ** 2).sum(axis=1)
    expected = x / (2.0 + 1e-3 / size * sq) ** 0.75
    check_op("lrn", [x], dict(size=size, alpha=1e-3, bias=2.0), expected=[expected], rtol=1e-5)


@pytest.mark.parametrize(
    "equation,shapes",
    [
        ("ij,jk->ik", [(3, 4), (4, 5)]),
        ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
        ("...ii->...i", [(2, 3, 3)]),
        ("ij", [(3, 4)]),
        ("i,i", [(5,), (5,)]),
    ],
)
def test_einsum(equation, shapes):
    xs = [randn(*s) for s in shapes]
    check_op(
        "einsum",
        xs,
        {"equation": equation},
        expected=[np.einsum(equation, *xs)],
        rtol=1e-4,
        atol=1e-5,
    )


def test_resize_nearest_asymmetric_floor_is_repeat():
    x = randn(1, 2, 3, 4)
    attrs = dict(
        sizes=[1, 2, 6, 12],
        mode="nearest",
        coordinate_transformation_mode="asymmetric",
        nearest_mode="floor",
    )
    expected = x.repeat(2, axis=2).repeat(3, axis=3)
    check_op("resize", [x], attrs, expected=[expected])


def test_resize_linear_half_pixel_matches_formula():
    x = randn(1, 1, 4, 5)
    attrs = dict(sizes=[1, 1, 8, 3], mode="linear")
    out = np.zeros((8, 3))
    for i, j in itertools.product(range(8), range(3)):
        yi = min(max((i + 0.5) / 2 - 0.5, 0), 3)
        xj = min(max((j + 0.5) * 5 / 3 - 0.5, 0), 4)
        i0, j0 = int(np.floor(yi)), int(np.floor(xj))
        i1, j1 = min(i0 + 1, 3), min(j0 + 1, 4)
        fi, fj = yi - i0, xj - j0
        img = x[0, 0]
        out[i, j] = (1 - fi) * ((1 - fj) * img[i0, j0] + fj * img[i0, j1]) + fi * (
            (1 - fj) * img[i1, j0] + fj * img[i1, j1]
        )
    check_op("resize", [x], attrs, expected=[out[None, None]], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode,antialias", [("cubic", False), ("cubic", True), ("linear", True)])
def test_resize_weights_sum_to_one(mode, antialias):
    attrs = dict(
        mode=mode,
        antialias=antialias,
        coordinate_transformation_mode="half_pixel",
        cubic_coeff_a=-0.5,
        exclude_outside=True,
    )
    idx, w, mask = axis_taps(10, 4, 0.4, attrs)
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    assert mask is None and idx.min() >= 0 and idx.max() <= 9
    x = randn(1, 2, 10, 3)
    check_op(
        "resize",
        [x],
        dict(sizes=[1, 2, 4, 3], mode=mode, antialias=antialias),
        rtol=1e-4,
        atol=1e-5,
    )


def test_resize_tf_crop_and_resize_extrapolates():
    x = randn(1, 1, 4, 4)
    attrs = dict(
        sizes=[1, 1, 3, 3],
        mode="linear",
        coordinate_transformation_mode="tf_crop_and_resize",
        roi=[0, 0, 0.4, 0.6, 1, 1, 1.2, 1.7],
        extrapolation_value=10.0,
    )
    (y,) = check_op("resize", [x], attrs, rtol=1e-5, atol=1e-5)
    assert (y[0, 0, :, 2] == 10.0).all()


def test_resize_int_nearest():
    x = rng.integers(0, 255, (1, 3, 4, 4)).astype("uint8")
    check_op("resize", [x], dict(sizes=[1, 3, 2, 8], mode="nearest"))


# -- det -------------------------------------------------------------------------------------


def _lu_det(a: np.ndarray) -> float:
    """Reference by cofactor expansion along the first row (exact enough for small n)."""
    if a.shape[0] == 0:
        return 1.0
    return sum(
        (-1) ** j * a[0, j] * _lu_det(np.delete(np.delete(a, 0, 0), j, 1))
        for j in range(a.shape[0])
    )


@pytest.mark.parametrize("shape", [(1, 1), (3, 3), (2, 4, 4), (2, 3, 5, 5)])
def test_det_batches_against_cofactor_expansion(shape):
    x = randn(*shape)
    flat = x.reshape(-1, *shape[-2:]).astype(np.float64)
    expected = np.array([_lu_det(m) for m in flat]).reshape(shape[:-2])
    check_op("det", [x], expected=[expected], rtol=1e-4, atol=1e-5)


def test_det_needs_pivoting_and_handles_singular_matrices():
    """A zero leading pivot (the swap flips the sign), a singular and a scaled matrix."""
    x = np.array(
        [
            [[0, 1, 2], [1, 0, 3], [4, -3, 8]],  # det -2, first pivot 0
            [[1, 2, 3], [2, 4, 6], [1, 0, 1]],  # rows 1 and 2 dependent: det 0
            [[2, 0, 0], [0, 3, 0], [0, 0, -4]],
        ],
        "float64",
    )
    check_op("det", [x], expected=[np.array([-2.0, 0.0, -24.0])], atol=1e-12)


def test_det_float16_and_large_n():
    x = (randn(12, 12) + 4 * np.eye(12, dtype="float32")).astype("float16")
    check_op("det", [x], rtol=2e-3)
    big = randn(2, 40, 40) / 4 + np.eye(40, dtype="float32")
    check_op("det", [big], expected=[np.linalg.det(big.astype(np.float64))], rtol=1e-3)


def test_det_rejects_non_square():
    from compiler.ir.ops import get_op
    from compiler.ir.types import IRTypeError, TensorType

    with pytest.raises(IRTypeError, match="square"):
        get_op("det").infer_types([TensorType("float32", (2, 3, 4))], {})


def test_float16_matmul_conv_softmax_sum_in_float32():
    """Long float16 sums: one rounding at the end (numpy's float16 matmul sums in float32),
    so TVM matches the float32 result rounded once, within one float16 ulp."""
    a, b = randn(3, 512).astype("float16"), randn(512, 4).astype("float16")
    once = (a.astype("float32") @ b.astype("float32")).astype("float16")
    check_op("matmul", [a, b], expected=[once], rtol=1e-3, atol=2e-3)
    x, w, bias = randn(1, 64, 9).astype("float16"), randn(8, 64, 5).astype("float16"), randn(8)
    bias = bias.astype("float16")
    wide = np.stack(
        [np.einsum("cl,ocl->o", x[0, :, i : i + 5].astype("float32"), w) for i in range(5)], -1
    )
    conv_once = wide.astype("float16")[None] + bias[None, :, None]
    check_op("conv", [x, w, bias], expected=[conv_once], rtol=1e-3, atol=2e-3)
    s = (randn(2, 3000) * 0.1).astype("float16")
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    sm = e / e.astype("float32").sum(axis=-1, keepdims=True).astype("float16")
    check_op("softmax", [s], {"axis": -1}, expected=[sm], rtol=2e-3, atol=1e-6)


def test_int32_matmul_and_conv_are_exact():
    a = rng.integers(-255, 255, (2, 700)).astype("int32")
    b = rng.integers(-255, 255, (700, 3)).astype("int32")
    check_op("matmul", [a, b], expected=[a @ b], rtol=0, atol=0)
    x = rng.integers(-255, 255, (1, 300, 4)).astype("int32")
    w = rng.integers(-255, 255, (2, 300, 1)).astype("int32")
    check_op(
        "conv", [x, w, None], expected=[np.einsum("ncl,oc->nol", x, w[:, :, 0])], rtol=0, atol=0
    )


@pytest.mark.parametrize("op, w", [("conv", (4, 3, 3, 3)), ("conv_transpose", (3, 4, 3, 3))])
def test_conv_bias_must_match_output_channels(op, w):
    from compiler.ir.ops import get_op
    from compiler.ir.types import IRTypeError, TensorType

    definition = get_op(op)
    x, weight = TensorType("float32", (1, 3, 8, 8)), TensorType("float32", w)
    attrs = definition.prepare([x, weight], {})
    assert definition.infer_types([x, weight, TensorType("float32", (4,))], attrs)
    for bias in ((16,), (1, 4)):
        with pytest.raises(IRTypeError, match="4 output channels"):
            definition.infer_types([x, weight, TensorType("float32", bias)], attrs)
