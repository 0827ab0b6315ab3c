"""Network MIL ops against torch.nn.functional (and numpy for MIL's own resampling grids):
convolutions with every pad_type, linear algebra, normalizations, pooling, up- and
re-sampling; the common ones also in fp16."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from coremltools.converters.mil import Builder as mb
from coremltools.converters.mil.mil import types
from coremlutil import check, ct, save_program

from compiler.errors import ConversionError
from compiler.frontends.coreml.importer import import_coreml

rng = np.random.default_rng(0)


def _r(*shape: int, lo: float = -1.0, hi: float = 1.0) -> np.ndarray:
    return rng.uniform(lo, hi, shape).astype(np.float32)


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a, np.float64))


def _tol(precision: str) -> dict[str, float]:
    return {"rtol": 1e-2, "atol": 1e-2} if precision == "fp16" else {"rtol": 1e-5, "atol": 1e-5}


def _dtypes(path: Path, op: str) -> set[str]:
    graph, _ = import_coreml(path)
    return {str(n.outputs[0].dtype) for n in graph.nodes if n.op == op}


def _same_pads(size: int, k: int, s: int, d: int, lower: bool) -> tuple[int, int]:
    total = max(0, (-(-size // s) - 1) * s + d * (k - 1) + 1 - size)
    small, large = total // 2, total - total // 2
    return (large, small) if lower else (small, large)


# -- convolution -----------------------------------------------------------------------------

CONVS = [
    # spatial, kernel, pad_type, pad, strides, dilations, groups, bias, tvm
    ((9,), (3,), "valid", None, (2,), (1,), 1, True, True),
    ((7, 8), (3, 3), "same", None, (2, 2), (1, 1), 1, True, True),
    ((7, 8), (2, 3), "same_lower", None, (2, 1), (1, 2), 2, False, False),
    ((7, 8), (3, 2), "custom", (1, 2, 0, 1), (1, 2), (2, 1), 4, True, False),
    ((4, 5, 6), (2, 3, 2), "same", None, (1, 2, 2), (1, 1, 1), 1, True, True),
]


@pytest.mark.parametrize("spatial,kernel,pad_type,pad,strides,dilations,groups,bias,tvm", CONVS)
def test_conv(
    tmp_path: Path, spatial, kernel, pad_type, pad, strides, dilations, groups, bias, tvm
):
    n = len(spatial)
    w = _r(8, 4 // groups, *kernel)
    b = _r(8) if bias else None
    kw = {"strides": strides, "dilations": dilations, "groups": groups, "pad_type": pad_type}
    if pad is not None:
        kw["pad"] = pad
    if b is not None:
        kw["bias"] = b

    @mb.program(input_specs=[mb.TensorSpec(shape=(2, 4, *spatial))], opset_version=ct.target.iOS16)
    def prog(x):
        return mb.conv(x=x, weight=w, **kw)

    x = _r(2, 4, *spatial)
    if pad_type == "custom":
        pairs = [(pad[2 * i], pad[2 * i + 1]) for i in range(n)]
    elif pad_type == "valid":
        pairs = [(0, 0)] * n
    else:
        pairs = [
            _same_pads(spatial[i], kernel[i], strides[i], dilations[i], pad_type == "same_lower")
            for i in range(n)
        ]
    flat = [p for pair in reversed(pairs) for p in pair]
    conv = (F.conv1d, F.conv2d, F.conv3d)[n - 1]
    want = conv(
        F.pad(_t(x), flat), _t(w), None if b is None else _t(b), strides, 0, dilations, groups
    )
    path = save_program(prog, tmp_path, target=ct.target.iOS16)
    check(path, {"x": x}, [want.numpy()], tvm=tvm, atol=1e-5)


def test_conv_with_a_computed_weight(tmp_path: Path) -> None:
    """The weight may be an input of the program (F.conv2d with a tensor argument)."""

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 4, 5, 6)), mb.TensorSpec(shape=(6, 2, 3, 3))])
    def prog(x, w):
        return mb.conv(x=x, weight=w, pad_type="custom", pad=[1, 1, 0, 2], groups=2)

    x, w = _r(1, 4, 5, 6), _r(6, 2, 3, 3)
    want = F.conv2d(F.pad(_t(x), [0, 2, 1, 1]), _t(w), groups=2)
    check(save_program(prog, tmp_path), {"x": x, "w": w}, [want.numpy()], tvm=False, atol=1e-5)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_conv_linear_matmul_precision(tmp_path: Path, precision: str) -> None:
    """Convolution, linear and matmul keep the program's precision (fp16 computes in
    float16)."""
    w, b = _r(6, 3, 3, 3), _r(6)
    lw, lb = _r(5, 8), _r(5)

    specs = [mb.TensorSpec(shape=s) for s in [(1, 3, 6, 8), (2, 6, 8), (4, 5)]]

    @mb.program(input_specs=specs)
    def prog(x, z, y):
        c = mb.conv(x=x, weight=w, bias=b, pad_type="same")
        lin = mb.linear(x=z, weight=lw, bias=lb)
        return c, lin, mb.matmul(x=lin, y=y, transpose_y=True)

    x, z, y = _r(1, 3, 6, 8), _r(2, 6, 8), _r(4, 5)
    c = F.conv2d(_t(x), _t(w), _t(b), padding=1)
    lin = F.linear(_t(z), _t(lw), _t(lb))
    path = save_program(prog, tmp_path, precision=precision)
    want_dtype = {"float16" if precision == "fp16" else "float32"}
    for op in ("conv", "matmul"):
        assert _dtypes(path, op) == want_dtype
    want = [c.numpy(), lin.numpy(), torch.matmul(lin, _t(y).T).numpy()]
    check(path, {"x": x, "z": z, "y": y}, want, **_tol(precision))


CONV_TRANSPOSES = [
    # spatial, kernel, pad_type, pad, output_shape, strides, dilations, groups
    ((5, 6), (3, 3), "custom", (1, 1, 1, 1), (10, 12), (2, 2), (1, 1), 1),
    ((5, 6), (3, 2), "same", None, None, (2, 3), (1, 1), 2),
    ((5, 6), (2, 3), "valid", None, None, (1, 2), (2, 1), 1),
    ((7,), (3,), "custom", (2, 0), None, (3,), (1,), 2),
    ((3, 4, 2), (2, 3, 2), "same", None, None, (2, 1, 3), (1, 1, 1), 1),
]


@pytest.mark.parametrize(
    "spatial,kernel,pad_type,pad,output_shape,strides,dilations,groups", CONV_TRANSPOSES
)
def test_conv_transpose(
    tmp_path: Path, spatial, kernel, pad_type, pad, output_shape, strides, dilations, groups
) -> None:
    """The full transposed convolution, cropped by the begin padding and to the output
    size (output_shape grows the end as torch's output_padding does)."""
    n = len(spatial)
    w, b = _r(4, 6 // groups, *kernel), _r(6)
    kw = {"strides": strides, "dilations": dilations, "groups": groups, "pad_type": pad_type}
    if pad is not None:
        kw["pad"] = pad
    if output_shape is not None:
        kw["output_shape"] = (1, 6, *output_shape)

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 4, *spatial))])
    def prog(x):
        return mb.conv_transpose(x=x, weight=w, bias=b, **kw)

    x = _r(1, 4, *spatial)
    convt = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[n - 1]
    full = convt(_t(x), _t(w), None, strides, 0, 0, groups, dilations)
    if pad_type == "custom":
        begin = [pad[2 * i] for i in range(n)]
        size = [full.shape[2 + i] - pad[2 * i] - pad[2 * i + 1] for i in range(n)]
    elif pad_type == "same":
        begin = [max(0, dilations[i] * (kernel[i] - 1) + 1 - strides[i]) // 2 for i in range(n)]
        size = [spatial[i] * strides[i] for i in range(n)]
    else:
        begin, size = [0] * n, list(full.shape[2:])
    size = list(output_shape or size)
    grow = [max(0, begin[i] + size[i] - full.shape[2 + i]) for i in range(n)]
    full = F.pad(full, [p for g in reversed(grow) for p in (0, g)])
    want = full[(..., *[slice(begin[i], begin[i] + size[i]) for i in range(n)])]
    want = want + _t(b).reshape(6, *[1] * n)  # the grown end holds the bias too
    check(save_program(prog, tmp_path), {"x": x}, [want.numpy()], tvm=n == 2, atol=1e-5)


def test_matmul_shapes(tmp_path: Path) -> None:
    """numpy's rules: 1-D operands, broadcast batch axes, transposes of either operand."""
    shapes = [(4,), (3, 4, 5), (2, 1, 5, 4), (3, 6, 4), (4, 3), (4, 2)]

    @mb.program(input_specs=[mb.TensorSpec(shape=s) for s in shapes])
    def prog(a, b, c, d, e, f):
        return (
            mb.matmul(x=a, y=e),
            mb.matmul(x=c, y=b, transpose_x=True, transpose_y=True),
            mb.matmul(x=d, y=f),
            mb.matmul(x=e, y=b, transpose_x=True),
        )

    vals = {k: _r(*s) for k, s in zip("abcdef", shapes)}
    a, b, c, d, e, f = (vals[k] for k in "abcdef")
    want = [a @ e, np.swapaxes(c, -1, -2) @ np.swapaxes(b, -1, -2), d @ f, e.T @ b]
    check(save_program(prog, tmp_path), vals, want, tvm=False, atol=1e-5)


def test_matmul_of_1d_x_and_batched_y_is_refused(tmp_path: Path) -> None:
    """coremltools infers [1, 5] for (4,) @ (3, 4, 5), numpy [3, 5]: refused, not guessed."""

    @mb.program(input_specs=[mb.TensorSpec(shape=(4,)), mb.TensorSpec(shape=(3, 4, 5))])
    def prog(a, b):
        return mb.matmul(x=a, y=b)

    with pytest.raises(ConversionError, match="matmul node .*1-D x times a rank-3 y"):
        import_coreml(save_program(prog, tmp_path))


def test_einsum(tmp_path: Path) -> None:
    """MIL's two equations, any letters, with the batch axes broadcast."""

    @mb.program(
        input_specs=[
            mb.TensorSpec(shape=s) for s in [(2, 3, 4, 5), (1, 5, 4, 6), (3, 1, 5), (5, 4, 2)]
        ]
    )
    def prog(a, b, c, d):
        return mb.einsum(values=(a, b), equation="abcd,adce->abce"), mb.einsum(
            values=(c, d), equation="chw,whr->chr"
        )

    a, b, c, d = _r(2, 3, 4, 5), _r(1, 5, 4, 6), _r(3, 1, 5), _r(5, 4, 2)
    want = [
        np.einsum("abcd,adce->abce", a, np.broadcast_to(b, (2, 5, 4, 6))),
        np.einsum("chw,whr->chr", np.broadcast_to(c, (3, 4, 5)), d),
    ]
    check(save_program(prog, tmp_path), {"a": a, "b": b, "c": c, "d": d}, want, atol=1e-5)


# -- normalization ---------------------------------------------------------------------------


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_norms(tmp_path: Path, precision: str) -> None:
    mean, var = _r(4), _r(4, lo=0.5, hi=2.0)
    gamma, beta = _r(4, lo=0.5, hi=1.5), _r(4)
    g2, b2 = _r(3, 5), _r(3, 5)
    gl, bl = _r(5), _r(5)

    @mb.program(input_specs=[mb.TensorSpec(shape=(2, 4, 3, 5))])
    def prog(x):
        return (
            mb.batch_norm(x=x, mean=mean, variance=var, gamma=gamma, beta=beta, epsilon=1e-3),
            mb.batch_norm(x=x, mean=mean, variance=var),
            mb.instance_norm(x=x, gamma=gamma, beta=beta, epsilon=1e-4),
            mb.layer_norm(x=x, axes=[-1], gamma=gl, beta=bl),
            mb.layer_norm(x=x, axes=[2, 3], gamma=g2, beta=b2, epsilon=1e-3),
            mb.layer_norm(x=x, axes=[1, 3]),
            mb.layer_norm(x=x, axes=[0, 1, 2, 3]),
            mb.l2_norm(x=x, epsilon=1e-4),
            mb.local_response_norm(x=x, size=3, alpha=0.5, beta=0.6, k=1.5),
        )

    x = _r(2, 4, 3, 5, lo=-2, hi=2)
    t = _t(x)
    ln13 = (t - t.mean((1, 3), keepdim=True)) / torch.sqrt(t.var((1, 3), False, True) + 1e-5)
    want = [
        F.batch_norm(t, _t(mean), _t(var), _t(gamma), _t(beta), eps=1e-3),
        F.batch_norm(t, _t(mean), _t(var)),
        F.instance_norm(t, weight=_t(gamma), bias=_t(beta), eps=1e-4),
        F.layer_norm(t, (5,), _t(gl), _t(bl)),
        F.layer_norm(t, (3, 5), _t(g2), _t(b2), eps=1e-3),
        ln13,
        F.layer_norm(t, (2, 4, 3, 5)),
        t / torch.sqrt((t * t).sum((1, 2, 3), keepdim=True) + 1e-4),
        F.local_response_norm(t, 3, alpha=0.5, beta=0.6, k=1.5),
    ]
    path = save_program(prog, tmp_path, precision=precision)
    if precision == "fp16":
        assert _dtypes(path, "layer_norm") == {"float16"}
    check(path, {"x": x}, [w.numpy() for w in want], **_tol(precision))


def test_lrn_even_size_is_refused(tmp_path: Path) -> None:
    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 4, 2, 2))])
    def prog(x):
        return mb.local_response_norm(x=x, size=2)

    with pytest.raises(ConversionError, match="local_response_norm node .*size 2 is even"):
        import_coreml(save_program(prog, tmp_path))


# -- pooling ---------------------------------------------------------------------------------


def _window_sum(x: torch.Tensor, kernel, strides, pads) -> torch.Tensor:
    """Sum of each window of x padded with zeros (pads as (begin, end) pairs)."""
    n = len(kernel)
    xp = F.pad(x, [p for pair in reversed(pads) for p in pair])
    pool = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[n - 1]
    return pool(xp, kernel, strides) * float(np.prod(kernel))


def test_pools(tmp_path: Path) -> None:
    shapes = [(2, 3, 7, 8), (1, 2, 4, 5, 6), (2, 3, 8)]

    @mb.program(input_specs=[mb.TensorSpec(shape=s) for s in shapes], opset_version=ct.target.iOS16)
    def prog(x, v, u):
        same = {"kernel_sizes": [3, 2], "strides": [2, 3], "pad_type": "same"}
        ceil = {"kernel_sizes": [3, 3], "strides": [2, 2], "pad_type": "custom"}
        return (
            mb.max_pool(x=x, **same),
            mb.avg_pool(x=x, **same),
            mb.avg_pool(x=x, **same, exclude_padding_from_average=True),
            mb.max_pool(x=x, **ceil, pad=[1, 1, 1, 1], ceil_mode=True),
            mb.avg_pool(x=x, **ceil, pad=[1, 1, 0, 0], ceil_mode=True),
            mb.avg_pool(x=v, kernel_sizes=[2, 2, 3], strides=[1, 2, 2], pad_type="valid"),
            mb.max_pool(x=u, kernel_sizes=[3], strides=[2], pad_type="same_lower"),
            mb.l2_pool(
                x=x, kernel_sizes=[2, 3], strides=[2, 2], pad_type="custom", pad=[0, 1, 1, 1]
            ),
        )

    x, v, u = _r(2, 3, 7, 8), _r(1, 2, 4, 5, 6), _r(2, 3, 8)
    t = _t(x)
    pads = [_same_pads(7, 3, 2, 1, False), _same_pads(8, 2, 3, 1, False)]
    flat = [p for pair in reversed(pads) for p in pair]
    count = _window_sum(torch.ones(1, 1, 7, 8, dtype=torch.float64), [3, 2], [2, 3], pads)
    want = [
        F.max_pool2d(F.pad(t, flat, value=-np.inf), [3, 2], [2, 3]),
        _window_sum(t, [3, 2], [2, 3], pads) / 6,
        _window_sum(t, [3, 2], [2, 3], pads) / count,
        F.max_pool2d(t, 3, 2, 1, ceil_mode=True),
        F.avg_pool2d(t, 3, 2, [1, 0], ceil_mode=True),
        F.avg_pool3d(_t(v), [2, 2, 3], [1, 2, 2]),
        F.max_pool1d(F.pad(_t(u), [1, 0], value=-np.inf), 3, 2),
        torch.sqrt(_window_sum(t * t, [2, 3], [2, 2], [(0, 1), (1, 1)])),
    ]
    path = save_program(prog, tmp_path, target=ct.target.iOS16)
    check(path, {"x": x, "v": v, "u": u}, [w.numpy() for w in want], atol=1e-5)


def test_pool_ceil_mode_window_past_the_input_is_refused(tmp_path: Path) -> None:
    """Without padding MIL keeps a last ceil_mode window that starts past the input."""

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 1, 5, 5))])
    def prog(x):
        return mb.max_pool(
            x=x, kernel_sizes=[1, 1], strides=[3, 3], pad_type="valid", ceil_mode=True
        )

    with pytest.raises(ConversionError, match="max_pool node .*starts past the input"):
        import_coreml(save_program(prog, tmp_path))


# -- up- and re-sampling ---------------------------------------------------------------------


def _grid(mode: str, n_in: int, n_out: int) -> np.ndarray:
    """MIL's sampling grid (resize_bilinear's docstring), clamped to the input."""
    i = np.arange(n_out, dtype=np.float64)
    if mode in ("STRICT_ALIGN_CORNERS", "ALIGN_CORNERS"):
        if n_out == 1:
            g = np.full(1, (n_in - 1) / 2 if mode == "ALIGN_CORNERS" else 0.0)
        else:
            g = i * (n_in - 1) / (n_out - 1)
    elif mode == "DEFAULT":
        g = i * (n_in - n_in / n_out) / (n_out - 1) if n_out > 1 else np.zeros(1)
    elif mode == "OFFSET_CORNERS":
        delta = max(1, n_in - 1) / n_out
        g = 0.5 * delta + i * delta
    else:  # UNALIGN_CORNERS
        g = i * n_in / n_out + 0.5 * n_in / n_out - 0.5
    return np.clip(g, 0, n_in - 1)


def test_grid_matches_the_docstring_examples() -> None:
    np.testing.assert_allclose(_grid("UNALIGN_CORNERS", 2, 5), [0, 0.1, 0.5, 0.9, 1])
    np.testing.assert_allclose(_grid("DEFAULT", 2, 6), [0, 1 / 3, 2 / 3, 1, 1, 1])
    np.testing.assert_allclose(_grid("OFFSET_CORNERS", 2, 5), [0.1, 0.3, 0.5, 0.7, 0.9])


def _lerp(x: np.ndarray, axis: int, g: np.ndarray) -> np.ndarray:
    lo = np.floor(g).astype(int)
    hi = np.minimum(lo + 1, x.shape[axis] - 1)
    shape = [1] * x.ndim
    shape[axis] = len(g)
    f = (g - lo).reshape(shape)
    return np.take(x, lo, axis) * (1 - f) + np.take(x, hi, axis) * f


def _bilinear(x: np.ndarray, mode: str, h: int, w: int) -> np.ndarray:
    y = _lerp(x.astype(np.float64), -2, _grid(mode, x.shape[-2], h))
    return _lerp(y, -1, _grid(mode, x.shape[-1], w))


def test_resize_bilinear_modes(tmp_path: Path) -> None:
    modes = [
        "STRICT_ALIGN_CORNERS",
        "ALIGN_CORNERS",
        "DEFAULT",
        "OFFSET_CORNERS",
        "UNALIGN_CORNERS",
    ]
    sizes = [(7, 1), (1, 3), (3, 9)]

    @mb.program(input_specs=[mb.TensorSpec(shape=(2, 4, 5))])
    def prog(x):
        return tuple(
            mb.resize_bilinear(x=x, target_size_height=h, target_size_width=w, sampling_mode=m)
            for m in modes
            for h, w in sizes
        )

    x = _r(2, 4, 5)
    want = [_bilinear(x, m, h, w) for m in modes for h, w in sizes]
    check(save_program(prog, tmp_path), {"x": x}, want, atol=1e-5)


def test_upsample_bilinear(tmp_path: Path) -> None:
    """align_corners True/False as torch's interpolate (scale recomputed from the sizes);
    iOS16's half_pixel_centers=False samples at i * in / out."""

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 2, 3, 4))], opset_version=ct.target.iOS16)
    def prog(x):
        return (
            mb.upsample_bilinear(x=x, scale_factor_height=2.0, scale_factor_width=1.5),
            mb.upsample_bilinear(
                x=x, scale_factor_height=2.5, scale_factor_width=2.0, align_corners=False
            ),
            mb.upsample_bilinear(
                x=x,
                scale_factor_height=2,
                scale_factor_width=3,
                align_corners=False,
                half_pixel_centers=False,
            ),
        )

    x = _r(1, 2, 3, 4)
    t = _t(x)
    want = [
        F.interpolate(t, size=(6, 6), mode="bilinear", align_corners=True),
        F.interpolate(t, size=(7, 8), mode="bilinear", align_corners=False),
        torch.from_numpy(_bilinear(x, "DEFAULT", 6, 12)),
    ]
    path = save_program(prog, tmp_path, target=ct.target.iOS16)
    check(path, {"x": x}, [w.numpy() for w in want], tvm=False, atol=1e-5)


def test_upsample_bilinear_with_both_alignments_is_refused(tmp_path: Path) -> None:
    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 1, 2, 2))], opset_version=ct.target.iOS16)
    def prog(x):
        return mb.upsample_bilinear(
            x=x,
            scale_factor_height=2,
            scale_factor_width=2,
            align_corners=True,
            half_pixel_centers=True,
        )

    with pytest.raises(ConversionError, match="upsample_bilinear node .*both set"):
        import_coreml(save_program(prog, tmp_path, target=ct.target.iOS16))


def test_nearest_neighbor(tmp_path: Path) -> None:
    """Output i reads input floor(i / scale), or floor(i * in / out) for target sizes."""

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 2, 4, 5))])
    def prog(x):
        return (
            mb.upsample_nearest_neighbor(x=x, scale_factor_height=2, scale_factor_width=3),
            mb.upsample_nearest_neighbor(x=x, scale_factor_height=1.5, scale_factor_width=0.5),
            mb.resize_nearest_neighbor(x=x, target_size_height=7, target_size_width=3),
        )

    x = _r(1, 2, 4, 5)

    def pick(hi: np.ndarray, wi: np.ndarray) -> np.ndarray:
        return x[:, :, hi][:, :, :, wi]

    want = [
        pick(np.arange(8) // 2, np.arange(15) // 3),
        pick(np.floor(np.arange(6) / 1.5).astype(int), np.arange(2) * 2),
        pick(np.arange(7) * 4 // 7, np.arange(3) * 5 // 3),
    ]
    check(save_program(prog, tmp_path), {"x": x}, want)


def test_resize_ios17(tmp_path: Path) -> None:
    """iOS17 resize: the last resized_dims axes, linear with MIL's grids or nearest."""

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 2, 3, 4))], opset_version=ct.target.iOS17)
    def prog(x):
        return (
            mb.resize(
                x=x,
                shape=np.array([5, 0, 7], np.int32),
                resized_dims=np.uint32(3),
                sampling_mode="UNALIGN_CORNERS",
            ),
            mb.resize(
                x=x,
                shape=np.array([4, 6], np.int32),
                resized_dims=np.uint32(2),
                sampling_mode="OFFSET_CORNERS",
            ),
            mb.resize(
                x=x,
                shape=np.array([7, 3], np.int32),
                resized_dims=np.uint32(2),
                interpolation_mode="NEAREST_NEIGHBOR",
            ),
        )

    x = _r(1, 2, 3, 4)
    first = _lerp(x.astype(np.float64), 1, _grid("UNALIGN_CORNERS", 2, 5))
    first = _lerp(
        _lerp(first, 2, _grid("UNALIGN_CORNERS", 3, 3)), 3, _grid("UNALIGN_CORNERS", 4, 7)
    )
    want = [
        first,
        _bilinear(x, "OFFSET_CORNERS", 4, 6),
        x[:, :, np.arange(7) * 3 // 7][:, :, :, np.arange(3) * 4 // 3],
    ]
    check(save_program(prog, tmp_path, target=ct.target.iOS17), {"x": x}, want, atol=1e-5)


def test_resize_nearest_with_a_grid_mode_is_refused(tmp_path: Path) -> None:
    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 2, 3, 4))], opset_version=ct.target.iOS17)
    def prog(x):
        return mb.resize(
            x=x,
            shape=np.array([6, 8], np.int32),
            resized_dims=np.uint32(2),
            interpolation_mode="NEAREST_NEIGHBOR",
            sampling_mode="ALIGN_CORNERS",
        )

    with pytest.raises(ConversionError, match="resize node .*NEAREST_NEIGHBOR with sampling_mode"):
        import_coreml(save_program(prog, tmp_path, target=ct.target.iOS17))


RESAMPLES = [
    # sampling, padding, value, coordinates_mode, align, torch padding
    ("bilinear", "constant", 0.0, "normalized_minus_one_to_one", False, "zeros"),
    ("bilinear", "constant", 0.5, "normalized_minus_one_to_one", True, "zeros"),
    ("nearest", "border", 0.0, "normalized_minus_one_to_one", True, "border"),
    ("bilinear", "reflection", 0.0, "normalized_zero_to_one", True, "reflection"),
    ("bilinear", "symmetric", 0.0, "normalized_minus_one_to_one", False, "reflection"),
    ("bilinear", "border", 0.0, "unnormalized", False, "border"),
]


def test_resample(tmp_path: Path) -> None:
    """resample is PyTorch's grid_sample; padding_value v pads with v."""

    @mb.program(input_specs=[mb.TensorSpec(shape=(2, 3, 4, 5)), mb.TensorSpec(shape=(2, 3, 6, 2))])
    def prog(x, g):
        return tuple(
            mb.resample(
                x=x,
                coordinates=g,
                sampling_mode=s,
                padding_mode=p,
                padding_value=v,
                coordinates_mode=c,
                align_corners=a,
            )
            for s, p, v, c, a, _ in RESAMPLES
        )

    x, g = _r(2, 3, 4, 5), _r(2, 3, 6, 2, lo=-1.3, hi=1.3)
    want = []
    for s, _, v, c, a, tp in RESAMPLES:
        grid = _t(g)
        if c == "normalized_zero_to_one":
            grid = 2 * grid - 1
        elif c == "unnormalized":  # pixels: 0 and size - 1 are the corner pixels' centers
            grid, a = grid * torch.tensor([2 / 4, 2 / 3], dtype=torch.float64) - 1, True
        mode = "bilinear" if s == "bilinear" else "nearest"
        want.append((F.grid_sample(_t(x) - v, grid, mode, tp, a) + v).numpy())
    check(save_program(prog, tmp_path), {"x": x, "g": g}, want, atol=1e-5)


def test_resample_reflection_without_align_corners_is_refused(tmp_path: Path) -> None:
    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 1, 4, 5)), mb.TensorSpec(shape=(1, 3, 6, 2))])
    def prog(x, g):
        return mb.resample(
            x=x,
            coordinates=g,
            sampling_mode="bilinear",
            padding_mode="reflection",
            padding_value=0.0,
            coordinates_mode="normalized_minus_one_to_one",
            align_corners=False,
        )

    with pytest.raises(ConversionError, match="resample node .*reflection with align_corners"):
        import_coreml(save_program(prog, tmp_path))


@pytest.mark.parametrize("align", [True, False])
def test_affine(tmp_path: Path, align: bool) -> None:
    """affine is PyTorch's affine_grid + grid_sample; one matrix for every batch entry."""
    theta = np.array([[0.8, -0.3, 0.1, 0.2, 1.1, -0.2]], np.float32)

    @mb.program(input_specs=[mb.TensorSpec(shape=(2, 3, 5, 6))])
    def prog(x):
        return mb.affine(
            x=x,
            transform_matrix=theta,
            output_height=4,
            output_width=7,
            sampling_mode="bilinear",
            padding_mode="constant",
            padding_value=0.0,
            coordinates_mode="normalized_minus_one_to_one",
            align_corners=align,
        )

    x = _r(2, 3, 5, 6)
    grid = F.affine_grid(_t(theta).reshape(1, 2, 3).expand(2, 2, 3), [2, 3, 4, 7], align)
    want = F.grid_sample(_t(x), grid, "bilinear", "zeros", align)
    check(save_program(prog, tmp_path), {"x": x}, [want.numpy()], tvm=align, atol=1e-5)


def _crop_and_resize(
    x: np.ndarray, box: np.ndarray, out: tuple[int, int], pad: float, centre: bool
):
    """TensorFlow's crop_and_resize of one image [C, H, W] and box (h1, w1, h2, w2) in pixels."""
    _, h, w = x.shape
    pos = []
    for a, b, n in ((box[0], box[2], out[0]), (box[1], box[3], out[1])):
        t = np.arange(n) / (n - 1) if n > 1 else np.full(1, 0.5 if centre else 0.0)
        pos.append(a + (b - a) * t)
    res = np.full((x.shape[0], *out), pad, np.float64)
    for i, py in enumerate(pos[0]):
        for j, px in enumerate(pos[1]):
            if 0 <= py <= h - 1 and 0 <= px <= w - 1:
                y0, x0 = int(np.floor(py)), int(np.floor(px))
                y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
                fy, fx = py - y0, px - x0
                top = x[:, y0, x0] * (1 - fx) + x[:, y0, x1] * fx
                bottom = x[:, y1, x0] * (1 - fx) + x[:, y1, x1] * fx
                res[:, i, j] = top * (1 - fy) + bottom * fy
    return res


def test_crop_resize_ios17(tmp_path: Path) -> None:
    """Boxes in pixels with image indices; samples outside the image are pad_value."""

    @mb.program(
        input_specs=[mb.TensorSpec(shape=(2, 3, 6, 7)), mb.TensorSpec(shape=(3, 4))],
        opset_version=ct.target.iOS17,
    )
    def prog(x, boxes):
        return mb.crop_resize(
            x=x,
            boxes=boxes,
            box_indices=np.array([1, 0, 1], np.int32),
            target_height=4,
            target_width=5,
            sampling_mode="ALIGN_CORNERS",
            pad_value=-2.0,
        )

    x = _r(2, 3, 6, 7)
    boxes = np.array([[0.5, 1, 4.5, 6], [-1, 2, 3, 7.5], [2, 2.5, 2.5, 3]], np.float32)
    want = np.stack(
        [_crop_and_resize(x[i], boxes[k], (4, 5), -2.0, True) for k, i in enumerate([1, 0, 1])]
    )
    path = save_program(prog, tmp_path, target=ct.target.iOS17)
    check(path, {"x": x, "boxes": boxes}, [want], atol=1e-5)


def test_crop_resize_roi_on_every_image(tmp_path: Path) -> None:
    """Before iOS17 a 4-element roi crops every image; normalized centre/size boxes."""
    roi = np.array([[0.5, 0.4, 0.6, 0.5], [0.3, 0.6, 0.4, 0.8]], np.float32).reshape(2, 1, 4, 1, 1)

    @mb.program(input_specs=[mb.TensorSpec(shape=(2, 3, 6, 7))], opset_version=ct.target.iOS16)
    def prog(x):
        return mb.crop_resize(
            x=x,
            roi=roi,
            target_height=1,
            target_width=3,
            normalized_coordinates=True,
            box_coordinate_mode="CENTER_SIZE_WIDTH_FIRST",
            sampling_mode="STRICT_ALIGN_CORNERS",
        )

    x = _r(2, 3, 6, 7)
    want = np.zeros((2, 2, 3, 1, 3))
    for k in range(2):
        wc, hc, bw, bh = roi[k].reshape(4)
        box = np.array([(hc - bh / 2) * 5, (wc - bw / 2) * 6, (hc + bh / 2) * 5, (wc + bw / 2) * 6])
        for i in range(2):
            want[k, i] = _crop_and_resize(x[i], box, (1, 3), 0.0, False)
    path = save_program(prog, tmp_path, target=ct.target.iOS16)
    check(path, {"x": x}, [want], tvm=False, atol=1e-5)


def test_crop_resize_default_grid_is_refused(tmp_path: Path) -> None:
    @mb.program(
        input_specs=[mb.TensorSpec(shape=(1, 1, 4, 4)), mb.TensorSpec(shape=(1, 4))],
        opset_version=ct.target.iOS17,
    )
    def prog(x, boxes):
        return mb.crop_resize(x=x, boxes=boxes, target_height=2, target_width=2)

    with pytest.raises(ConversionError, match="crop_resize node .*sampling_mode DEFAULT"):
        import_coreml(save_program(prog, tmp_path, target=ct.target.iOS17))


def test_ios17_parameters_in_another_float_type(tmp_path: Path) -> None:
    """From iOS17 weights and norm parameters may be fp32 for an fp16 x: they are cast, and
    the ops compute in float16."""
    w, b = _r(2, 3, 3), _r(2)
    g, lw = _r(5, lo=0.5, hi=1.5), _r(4, 5)

    @mb.program(
        input_specs=[mb.TensorSpec(shape=(1, 3, 5), dtype=types.fp16)],
        opset_version=ct.target.iOS17,
    )
    def prog(x):
        return (
            mb.conv(x=x, weight=w, bias=b),
            mb.layer_norm(x=x, axes=[-1], gamma=g, epsilon=np.float32(1e-3)),
            mb.linear(x=x, weight=lw),
        )

    x = _r(1, 3, 5).astype(np.float16)
    path = save_program(prog, tmp_path, target=ct.target.iOS17)
    assert _dtypes(path, "conv") == _dtypes(path, "layer_norm") == {"float16"}
    t = _t(x)
    want = [
        F.conv1d(t, _t(w), _t(b)),
        F.layer_norm(t, (5,), _t(g), eps=1e-3),
        t @ _t(lw).T,
    ]
    check(path, {"x": x}, [v.numpy() for v in want], tvm=False, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_converted_torch_network(tmp_path: Path, precision: str) -> None:
    """What ct.convert emits for a small PyTorch CNN (conv + folded batch norm, ceil-mode
    pooling, "same" grouped conv, gelu, hardswish, upsampling, transposed conv, silu,
    instance norm, softmax) computes what PyTorch does."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=2, padding=1),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(3, 2, 1, ceil_mode=True),
        torch.nn.Conv2d(8, 8, 3, padding="same", groups=2),
        torch.nn.GELU(),
        torch.nn.Hardswish(),
        torch.nn.Upsample(scale_factor=2, mode="bilinear"),
        torch.nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1),
        torch.nn.SiLU(),
        torch.nn.AvgPool2d(3, 2, 1, count_include_pad=False),
        torch.nn.InstanceNorm2d(4, affine=True),
        torch.nn.LeakyReLU(0.2),
        torch.nn.Upsample(scale_factor=2, mode="nearest"),
        torch.nn.Softmax(1),
    ).eval()
    with torch.no_grad():
        net[1].running_mean.uniform_(-0.5, 0.5)
        net[1].running_var.uniform_(0.5, 2.0)
        x = torch.rand(1, 3, 32, 32)
        want = net(x).numpy()
    model = ct.convert(
        torch.jit.trace(net, x),
        inputs=[ct.TensorType(name="x", shape=x.shape)],
        convert_to="mlprogram",
        compute_precision=ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32,
    )
    path = tmp_path / "net.mlpackage"
    model.save(str(path))
    tol = 2e-2 if precision == "fp16" else 1e-4
    check(path, {"x": x.numpy()}, [want], rtol=tol, atol=tol)
