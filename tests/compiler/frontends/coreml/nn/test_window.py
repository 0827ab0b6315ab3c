"""Windowed NeuralNetwork layers (convolution, deconvolution, pooling, padding, upsample,
resizeBilinear, crop, their 3-D forms) against PyTorch and against numpy written from the
formulas of NeuralNetwork.proto, under the rank-5 mapping and EXACT."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from coremlutil import check, nn_builder, save_nn

from compiler.errors import ConversionError
from compiler.frontends.coreml.importer import import_coreml

RNG = np.random.default_rng(7)


def _rand(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


def _same(d: int, k: int, s: int, top_left: bool) -> tuple[int, int]:
    """(begin, end) pads of ``same`` padding as NeuralNetwork.proto gives them."""
    total = max(0, (math.ceil(d / s) - 1) * s + k - d)
    small, big = total // 2, total - total // 2
    return (big, small) if top_left else (small, big)


def _io(exact: bool, shape: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Declared input shape and the array fed: EXACT [N, C, H, W]; rank-5 mapping [C, H, W]."""
    return (shape, shape) if exact else (shape[1:], shape[1:])


# -- convolution ----------------------------------------------------------------------------

CONV_CASES = {
    "valid_pads_bias": dict(k=(3, 2), s=(1, 2), d=(1, 1), g=1, mode="valid", pads=(1, 0, 2, 1)),
    "same_bottom_right": dict(k=(3, 4), s=(2, 2), d=(1, 1), g=1, mode="same", heavy="BR"),
    "same_top_left": dict(k=(4, 3), s=(2, 3), d=(1, 1), g=1, mode="same", heavy="TL"),
    "groups_dilation": dict(k=(3, 3), s=(1, 1), d=(2, 1), g=2, mode="valid", pads=(0, 0, 0, 0)),
    "depthwise_same_dilated": dict(k=(3, 3), s=(1, 1), d=(2, 2), g=4, mode="same", heavy="BR"),
}


def _conv_expected(x: np.ndarray, w: np.ndarray, b: np.ndarray, c: dict) -> np.ndarray:
    h, wd = x.shape[-2:]
    if c["mode"] == "same":
        span = [(k - 1) * d + 1 for k, d in zip(c["k"], c["d"])]
        top, bottom = _same(h, span[0], c["s"][0], c["heavy"] == "TL")
        left, right = _same(wd, span[1], c["s"][1], c["heavy"] == "TL")
    else:
        top, left, bottom, right = c["pads"]
    xp = F.pad(_t(x), (left, right, top, bottom))
    y = F.conv2d(xp, _t(w), _t(b), stride=c["s"], dilation=c["d"], groups=c["g"])
    return y.numpy()


@pytest.mark.parametrize("exact", [True, False], ids=["exact", "rank5"])
@pytest.mark.parametrize("case", list(CONV_CASES))
def test_convolution(tmp_path: Path, case: str, exact: bool) -> None:
    c = CONV_CASES[case]
    cin, cout = 4, 6 if c["g"] != 4 else 8
    declared, _ = _io(exact, (2 if exact else 1, cin, 9, 10))
    x = _rand(*(((2,) if exact else (1,)) + (cin, 9, 10)))
    w = _rand(cout, cin // c["g"], *c["k"])
    bias = _rand(cout)
    b = nn_builder([("x", declared)], [("y", None)], exact=exact)
    pads = c.get("pads", (0, 0, 0, 0))
    b.add_convolution(
        "conv",
        kernel_channels=cin // c["g"],
        output_channels=cout,
        height=c["k"][0],
        width=c["k"][1],
        stride_height=c["s"][0],
        stride_width=c["s"][1],
        border_mode=c["mode"],
        groups=c["g"],
        W=w.transpose(2, 3, 1, 0),  # the builder takes [kH, kW, C_in / groups, C_out]
        b=bias,
        has_bias=True,
        input_name="x",
        output_name="y",
        dilation_factors=list(c["d"]),
        padding_top=pads[0],
        padding_left=pads[1],
        padding_bottom=pads[2],
        padding_right=pads[3],
        same_padding_asymmetry_mode="TOP_LEFT_HEAVY"
        if c.get("heavy") == "TL"
        else "BOTTOM_RIGHT_HEAVY",
    )
    want = _conv_expected(x, w, bias, c)
    feed = x if exact else x[0]
    check(
        save_nn(b, tmp_path),
        {"x": feed},
        [want if exact else want[0]],
        atol=1e-4,
        tvm=case == "groups_dilation" and exact,
    )


def test_convolution_weights_from_second_input(tmp_path: Path) -> None:
    """Spec 4: the second input blob holds the weights [C_out, C_in / groups, kH, kW]."""
    x, w = _rand(1, 4, 6, 7), _rand(6, 2, 3, 3)
    b = nn_builder([("x", x.shape), ("w", w.shape)], [("y", None)])
    b.add_convolution(
        "conv",
        2,
        6,
        3,
        3,
        1,
        1,
        "same",
        2,
        None,
        None,
        False,
        input_name=["x", "w"],
        output_name="y",
    )
    want = F.conv2d(F.pad(_t(x), (1, 1, 1, 1)), _t(w), groups=2).numpy()
    check(save_nn(b, tmp_path), {"x": x, "w": w}, [want], atol=1e-4)


# -- deconvolution --------------------------------------------------------------------------

DECONV_CASES = {
    "valid": dict(k=(3, 3), s=(2, 2), g=1, mode="valid", out=None, pads=(0, 0, 0, 0)),
    "valid_pads": dict(k=(4, 3), s=(2, 1), g=1, mode="valid", out=None, pads=(1, 0, 2, 1)),
    "same": dict(k=(4, 3), s=(2, 2), g=2, mode="same", out=None),
    "same_top_left": dict(k=(3, 3), s=(2, 2), g=1, mode="same", out=None, heavy="TL"),
    "output_shape_grows": dict(k=(3, 3), s=(2, 2), g=1, mode="valid", out=(12, 12)),
}


@pytest.mark.parametrize("case", list(DECONV_CASES))
def test_deconvolution(tmp_path: Path, case: str) -> None:
    c = DECONV_CASES[case]
    cin, cout, h, wd = 4, 6, 5, 5
    x = _rand(1, cin, h, wd)
    w = _rand(cin, cout // c["g"], *c["k"])  # the spec's [C_in, C_out / groups, kH, kW]
    bias = _rand(cout)
    pads = c.get("pads", (0, 0, 0, 0))
    b = nn_builder([("x", x.shape)], [("y", None)])
    b.add_convolution(
        "deconv",
        kernel_channels=cin,
        output_channels=cout,
        height=c["k"][0],
        width=c["k"][1],
        stride_height=c["s"][0],
        stride_width=c["s"][1],
        border_mode=c["mode"],
        groups=c["g"],
        W=w.transpose(2, 3, 0, 1),  # the builder takes [kH, kW, C_in, C_out / groups]
        b=bias,
        has_bias=True,
        is_deconv=True,
        output_shape=c["out"],
        input_name="x",
        output_name="y",
        padding_top=pads[0],
        padding_left=pads[1],
        padding_bottom=pads[2],
        padding_right=pads[3],
        same_padding_asymmetry_mode="TOP_LEFT_HEAVY"
        if c.get("heavy") == "TL"
        else "BOTTOM_RIGHT_HEAVY",
    )
    full = F.conv_transpose2d(_t(x), _t(w), stride=c["s"], groups=c["g"]).numpy()
    fh, fw = full.shape[-2:]
    if c["mode"] == "same":
        crops = []
        for f, d, s in ((fh, h, c["s"][0]), (fw, wd, c["s"][1])):
            total = f - d * s
            first = total - total // 2 if c.get("heavy") == "TL" else total // 2
            crops.append((first, first + d * s))
        want = full[..., crops[0][0] : crops[0][1], crops[1][0] : crops[1][1]]
    elif c["out"]:
        oh, ow = c["out"]
        want = np.zeros((1, cout, oh, ow), np.float32)
        want[..., :fh, :fw] = full
    else:
        want = full[..., pads[0] : fh - pads[2], pads[1] : fw - pads[3]]
    want = want + bias.reshape(1, -1, 1, 1)
    check(save_nn(b, tmp_path), {"x": x}, [want], atol=1e-4, tvm=case == "same")


def test_deconvolution_rank5_mapping(tmp_path: Path) -> None:
    """[C, H, W] is [1, 1, C, H, W]: the two leading axes are batch axes."""
    x, w = _rand(2, 3, 4), _rand(2, 3, 2, 2)
    b = nn_builder([("x", x.shape)], [("y", None)], exact=False)
    b.add_convolution(
        "dc",
        2,
        3,
        2,
        2,
        2,
        2,
        "valid",
        1,
        w.transpose(2, 3, 0, 1),
        None,
        False,
        is_deconv=True,
        input_name="x",
        output_name="y",
    )
    want = F.conv_transpose2d(_t(x[None]), _t(w), stride=2).numpy()[0]
    check(save_nn(b, tmp_path), {"x": x}, [want], atol=1e-5, tvm=False)


# -- pooling --------------------------------------------------------------------------------


def _pool_expected(
    x: np.ndarray, kind: str, kernel, strides, pads, ceil: bool = False, exclude: bool = False
) -> np.ndarray:
    """Direct loops over NeuralNetwork.proto's windows; pads [top, left, bottom, right].
    Average divides by the window cut at the end of the padding (Caffe), or by the input cells
    it holds (avgPoolExcludePadding)."""
    dims = x.shape[-2:]
    outs = []
    for a in range(2):
        d, k, s, pb, pe = dims[a], kernel[a], strides[a], pads[a], pads[2 + a]
        if ceil:
            o = math.ceil((d + pb + pe - k) / s) + 1
            if any(pads) and (o - 1) * s >= d + pb:
                o -= 1
        else:
            o = (d + pb + pe - k) // s + 1
        outs.append(o)
    y = np.zeros((*x.shape[:-2], *outs), np.float64)
    for i in range(outs[0]):
        for j in range(outs[1]):
            h0, w0 = i * strides[0] - pads[0], j * strides[1] - pads[1]
            h1, w1 = h0 + kernel[0], w0 + kernel[1]
            cells = x[..., max(h0, 0) : min(h1, dims[0]), max(w0, 0) : min(w1, dims[1])]
            cells = cells.astype(np.float64)
            if kind == "MAX":
                y[..., i, j] = cells.max(axis=(-2, -1))
            elif kind == "L2":
                y[..., i, j] = np.sqrt((cells**2).sum(axis=(-2, -1)))
            else:
                count = cells.shape[-2] * cells.shape[-1]
                if not exclude:
                    hh = min(h1, dims[0] + pads[2]) - h0
                    ww = min(w1, dims[1] + pads[3]) - w0
                    count = hh * ww
                y[..., i, j] = cells.sum(axis=(-2, -1)) / count
    return y.astype(np.float32)


POOL_CASES = {
    "valid": dict(k=(3, 3), s=(2, 2), mode="VALID", pads=(0, 0, 0, 0)),
    "valid_pads": dict(k=(3, 2), s=(2, 1), mode="VALID", pads=(1, 0, 2, 1)),
    "same": dict(k=(3, 4), s=(2, 3), mode="SAME", heavy="BR"),
    "same_top_left": dict(k=(2, 4), s=(2, 2), mode="SAME", heavy="TL"),
    "last_pixel": dict(k=(3, 3), s=(2, 2), mode="INCLUDE_LAST_PIXEL", pads=(1, 1, 1, 1)),
    "last_pixel_drop": dict(k=(2, 3), s=(3, 2), mode="INCLUDE_LAST_PIXEL", pads=(1, 0, 1, 0)),
    "last_pixel_no_pad": dict(k=(3, 2), s=(2, 2), mode="INCLUDE_LAST_PIXEL", pads=(0, 0, 0, 0)),
    "last_pixel_overhang": dict(k=(4, 3), s=(3, 2), mode="INCLUDE_LAST_PIXEL", pads=(1, 1, 1, 1)),
}


OVERHANG = {"last_pixel_no_pad", "last_pixel_overhang"}
"""includeLastPixel cases whose last window hangs past the end padding (on a 9 x 11 input)."""


def _add_pooling(b, name, kind, c, exclude, inp="x", out="y") -> None:
    pads = c.get("pads", (0, 0, 0, 0))
    b.add_pooling(
        name,
        height=c["k"][0],
        width=c["k"][1],
        stride_height=c["s"][0],
        stride_width=c["s"][1],
        layer_type=kind,
        padding_type=c["mode"],
        input_name=inp,
        output_name=out,
        exclude_pad_area=exclude,
        padding_top=pads[0],
        padding_left=pads[1],
        padding_bottom=pads[2],
        padding_right=pads[3],
        same_padding_asymmetry_mode="TOP_LEFT_HEAVY"
        if c.get("heavy") == "TL"
        else "BOTTOM_RIGHT_HEAVY",
    )


@pytest.mark.parametrize("exact", [True, False], ids=["exact", "rank5"])
@pytest.mark.parametrize("case", list(POOL_CASES))
def test_pooling(tmp_path: Path, case: str, exact: bool) -> None:
    """MAX, AVERAGE (with and without the padding in the divisor) and L2 in one model."""
    c = POOL_CASES[case]
    shape = (2, 3, 9, 11) if exact else (3, 9, 11)
    x = _rand(*shape)
    kinds = [("MAX", False), ("AVERAGE", False), ("AVERAGE", True), ("L2", False)]
    names = [f"y{i}" for i in range(len(kinds))]
    b = nn_builder([("x", shape)], [(n, None) for n in names], exact=exact)
    want = []
    if c["mode"] == "SAME":
        tl = c["heavy"] == "TL"
        (t, bo), (le, r) = (_same(d, k, s, tl) for d, k, s in zip(shape[-2:], c["k"], c["s"]))
        pads = (t, le, bo, r)
    else:
        pads = c["pads"]
    ceil = c["mode"] == "INCLUDE_LAST_PIXEL"
    for (kind, exclude), n in zip(kinds, names):
        if ceil and kind == "AVERAGE" and not exclude and case in OVERHANG:
            kind, exclude = "AVERAGE", True  # refused, see test_pooling_overhang_...
        _add_pooling(b, n, kind, c, exclude, out=n)
        want.append(_pool_expected(x, kind, c["k"], c["s"], pads, ceil, exclude))
    check(save_nn(b, tmp_path), {"x": x}, want, atol=1e-5, tvm=case == "last_pixel" and exact)


def test_pooling_last_pixel_agrees_with_torch_ceil_mode(tmp_path: Path) -> None:
    """includeLastPixel with symmetric pads is PyTorch's ceil_mode (average counting pads)."""
    x = _rand(1, 2, 9, 7)
    c = dict(k=(3, 2), s=(2, 2), mode="INCLUDE_LAST_PIXEL", pads=(1, 1, 1, 1))
    b = nn_builder([("x", x.shape)], [("m", None), ("a", None)])
    _add_pooling(b, "m", "MAX", c, False, out="m")
    _add_pooling(b, "a", "AVERAGE", c, False, out="a")
    kw = dict(kernel_size=(3, 2), stride=2, padding=1, ceil_mode=True)
    want = [F.max_pool2d(_t(x), **kw).numpy(), F.avg_pool2d(_t(x), **kw).numpy()]
    check(save_nn(b, tmp_path), {"x": x}, want, tvm=False)


@pytest.mark.parametrize("case", sorted(OVERHANG))
def test_pooling_overhang_counted_in_the_average_is_refused(tmp_path: Path, case: str) -> None:
    """The divisor of a window past the end padding: Caffe leaves the overhang out, Core ML's
    ML Program runtime counts it (coremltools#2772); the proto does not say."""
    b = nn_builder([("x", (1, 3, 9, 11))], [("y", None)])
    _add_pooling(b, "p", "AVERAGE", POOL_CASES[case], False)
    with pytest.raises(ConversionError, match="pooling node 'p': AVERAGE pooling with includeL"):
        import_coreml(save_nn(b, tmp_path))


def test_pooling_past_input_without_padding_is_refused(tmp_path: Path) -> None:
    b = nn_builder([("x", (1, 1, 5, 5))], [("y", None)])
    c = dict(k=(1, 1), s=(3, 3), mode="INCLUDE_LAST_PIXEL", pads=(0, 0, 0, 0))
    _add_pooling(b, "p", "MAX", c, False)
    with pytest.raises(ConversionError, match="pooling node 'p': includeLastPixel without pad"):
        import_coreml(save_nn(b, tmp_path))


@pytest.mark.parametrize("exact", [True, False], ids=["exact", "rank5"])
def test_global_pooling(tmp_path: Path, exact: bool) -> None:
    shape = (2, 3, 4, 5) if exact else (3, 4, 5)
    x = _rand(*shape)
    b = nn_builder([("x", shape)], [(n, None) for n in "mal"], exact=exact)
    for n, kind in zip("mal", ("MAX", "AVERAGE", "L2")):
        b.add_pooling(n, 0, 0, 0, 0, kind, "VALID", "x", n, is_global=True)
    want = [
        x.max(axis=(-2, -1), keepdims=True),
        x.mean(axis=(-2, -1), keepdims=True),
        np.sqrt((x**2).sum(axis=(-2, -1), keepdims=True)),
    ]
    check(save_nn(b, tmp_path), {"x": x}, want, tvm=not exact)


# -- padding and crop -----------------------------------------------------------------------


@pytest.mark.parametrize("exact", [True, False], ids=["exact", "rank5"])
def test_padding(tmp_path: Path, exact: bool) -> None:
    shape = (2, 3, 4, 5) if exact else (3, 4, 5)
    x = _rand(*shape)
    b = nn_builder([("x", shape)], [(n, None) for n in ("c", "f", "e")], exact=exact)
    amounts = dict(top=2, bottom=1, left=0, right=3)
    b.add_padding("c", value=1.5, input_name="x", output_name="c", **amounts)
    b.add_padding("f", input_name="x", output_name="f", padding_type="reflection", **amounts)
    b.add_padding("e", input_name="x", output_name="e", padding_type="replication", **amounts)
    width = [(0, 0)] * (len(shape) - 2) + [(2, 1), (0, 3)]
    want = [
        np.pad(x, width, constant_values=1.5),
        np.pad(x, width, mode="reflect"),
        np.pad(x, width, mode="edge"),
    ]
    check(save_nn(b, tmp_path), {"x": x}, want, tvm=exact)


def test_padding_2d_input(tmp_path: Path) -> None:
    x = _rand(4, 5)
    b = nn_builder([("x", x.shape)], [("y", None)])
    b.add_padding("p", left=1, right=2, top=3, bottom=0, input_name="x", output_name="y")
    check(save_nn(b, tmp_path), {"x": x}, [np.pad(x, [(3, 0), (1, 2)])], tvm=False)


@pytest.mark.parametrize("exact", [True, False], ids=["exact", "rank5"])
def test_crop(tmp_path: Path, exact: bool) -> None:
    shape = (2, 3, 8, 9) if exact else (3, 8, 9)
    ref_shape = (2, 3, 4, 5) if exact else (3, 4, 5)
    x, r = _rand(*shape), _rand(*ref_shape)
    b = nn_builder([("x", shape), ("r", ref_shape)], [("a", None), ("o", None)], exact=exact)
    b.add_crop(
        "a", left=1, right=2, top=3, bottom=0, offset=[0, 0], input_names=["x"], output_name="a"
    )
    b.add_crop("o", 0, 0, 0, 0, offset=[2, 3], input_names=["x", "r"], output_name="o")
    want = [x[..., 3:8, 1:7], x[..., 2:6, 3:8]]
    check(save_nn(b, tmp_path), {"x": x, "r": r}, want, tvm=exact)


# -- upsample and resizeBilinear ------------------------------------------------------------


def _bilinear(x: np.ndarray, gy: np.ndarray, gx: np.ndarray) -> np.ndarray:
    """Bilinear samples of x's last two axes at grid points (clamped to the input)."""

    def taps(g: np.ndarray, n: int):
        g = np.clip(g, 0, n - 1)
        lo = np.floor(g).astype(np.int64)
        return lo, np.minimum(lo + 1, n - 1), g - lo

    (ly, hy, fy), (lx, hx, fx) = taps(gy, x.shape[-2]), taps(gx, x.shape[-1])
    xd = x.astype(np.float64)
    rows = xd[..., ly, :] * (1 - fy)[:, None] + xd[..., hy, :] * fy[:, None]
    return (rows[..., lx] * (1 - fx) + rows[..., hx] * fx).astype(np.float32)


def _upsample_grid(x_in: int, x_out: int, mode: str) -> np.ndarray:
    """UpsampleLayerParams.LinearUpsampleMode's grid."""
    i = np.arange(x_out, dtype=np.float64)
    if mode == "DEFAULT":
        return i * (x_in - x_in / x_out) / (x_out - 1)
    if mode == "ALIGN_CORNERS_TRUE":
        return i * (x_in - 1) / (x_out - 1)
    sp = x_in / x_out
    return np.maximum(0, i * sp + 0.5 * sp - 0.5)


UPSAMPLE_CASES = [
    ("NN", "DEFAULT", 2, 3),
    ("BILINEAR", "DEFAULT", 3, 2),
    ("BILINEAR", "ALIGN_CORNERS_TRUE", 2, 2),
    ("BILINEAR", "ALIGN_CORNERS_FALSE", 2, 3),
    ("BILINEAR", "ALIGN_CORNERS_TRUE", 1.5, 2.5),
    ("BILINEAR", "ALIGN_CORNERS_FALSE", 1.75, 1.5),
]


@pytest.mark.parametrize("exact", [True, False], ids=["exact", "rank5"])
def test_upsample(tmp_path: Path, exact: bool) -> None:
    """Every mode in one model, expected values from the proto's grid formulas."""
    shape = (2, 3, 4, 5) if exact else (3, 4, 5)
    x = _rand(*shape)
    names = [f"y{i}" for i in range(len(UPSAMPLE_CASES))]
    b = nn_builder([("x", shape)], [(n, None) for n in names], exact=exact)
    want = []
    for n, (mode, linear, fh, fw) in zip(names, UPSAMPLE_CASES):
        b.add_upsample(n, fh, fw, "x", n, mode=mode, linear_upsample_mode=linear)
        oh, ow = math.floor(4 * fh), math.floor(5 * fw)
        if mode == "NN":
            want.append(x.repeat(fh, axis=-2).repeat(fw, axis=-1))
        else:
            want.append(_bilinear(x, _upsample_grid(4, oh, linear), _upsample_grid(5, ow, linear)))
    check(save_nn(b, tmp_path), {"x": x}, want, atol=1e-5, tvm=exact)


def test_upsample_agrees_with_torch(tmp_path: Path) -> None:
    x = _rand(1, 2, 3, 4)
    modes = ("ALIGN_CORNERS_TRUE", "ALIGN_CORNERS_FALSE")
    b = nn_builder([("x", x.shape)], [(m, None) for m in modes])
    for m in modes:
        b.add_upsample(m, 2, 3, "x", m, mode="BILINEAR", linear_upsample_mode=m)
    want = [
        F.interpolate(_t(x), size=(6, 12), mode="bilinear", align_corners=a).numpy()
        for a in (True, False)
    ]
    check(save_nn(b, tmp_path), {"x": x}, want, tvm=False)


def _sampling_grid(x_in: int, n: int, mode: str) -> np.ndarray:
    """SamplingMode.Method's grid, as the proto writes it with numpy.linspace."""
    if mode == "STRICT_ALIGN_ENDPOINTS_MODE":
        return np.linspace(0, x_in - 1, n)
    if mode == "ALIGN_ENDPOINTS_MODE":
        return np.full(1, (x_in - 1) / 2) if n == 1 else np.linspace(0, x_in - 1, n)
    if mode == "UPSAMPLE_MODE":
        return np.minimum(x_in - 1, np.linspace(0, x_in - x_in / n, n))
    spacing = max(1, x_in - 1) / n
    start = 0.5 * spacing
    return np.minimum(x_in - 1, np.linspace(start, start + (n - 1) * spacing, n))


SAMPLING_MODES = [
    "STRICT_ALIGN_ENDPOINTS_MODE",
    "ALIGN_ENDPOINTS_MODE",
    "UPSAMPLE_MODE",
    "ROI_ALIGN_MODE",
]


@pytest.mark.parametrize("target", [(7, 3), (1, 1), (5, 6)])
@pytest.mark.parametrize("exact", [True, False], ids=["exact", "rank5"])
def test_resize_bilinear(tmp_path: Path, exact: bool, target: tuple[int, int]) -> None:
    shape = (2, 3, 5, 6) if exact else (3, 5, 6)
    x = _rand(*shape)
    b = nn_builder([("x", shape)], [(m, None) for m in SAMPLING_MODES], exact=exact)
    want = []
    for m in SAMPLING_MODES:
        b.add_resize_bilinear(m, "x", m, target[0], target[1], mode=m)
        gy, gx = _sampling_grid(5, target[0], m), _sampling_grid(6, target[1], m)
        want.append(_bilinear(x, gy, gx))
    tvm = exact and target == (7, 3)
    check(save_nn(b, tmp_path), {"x": x}, want, atol=1e-5, tvm=tvm)


# -- 3-D ------------------------------------------------------------------------------------


@pytest.mark.parametrize("padding", ["custom", "valid", "same"])
def test_convolution3d(tmp_path: Path, padding: str) -> None:
    x = _rand(1, 4, 5, 6, 7)
    w = _rand(6, 2, 3, 2, 3)
    bias = _rand(6)
    b = nn_builder([("x", x.shape)], [("y", None)])
    custom = dict(
        padding_front=1,
        padding_back=0,
        padding_top=2,
        padding_bottom=1,
        padding_left=0,
        padding_right=1,
    )
    b.add_convolution3d(
        "c3",
        4,
        6,
        3,
        2,
        3,
        w,
        bias,
        True,
        groups=2,
        stride_depth=2,
        stride_height=1,
        stride_width=2,
        dilation_depth=1,
        dilation_height=2,
        dilation_width=1,
        padding_mode=padding,
        input_name="x",
        output_name="y",
        **custom,
    )
    if padding == "custom":
        pads = (0, 1, 2, 1, 1, 0)  # F.pad order: W (left, right), H, D
    elif padding == "same":
        spans = (3, 3, 3)
        dd, hh, ww = (_same(d, k, s, False) for d, k, s in zip((5, 6, 7), spans, (2, 1, 2)))
        pads = (*ww, *hh, *dd)
    else:
        pads = (0,) * 6
    want = F.conv3d(
        F.pad(_t(x), pads), _t(w), _t(bias), stride=(2, 1, 2), dilation=(1, 2, 1), groups=2
    ).numpy()
    check(save_nn(b, tmp_path), {"x": x}, [want], atol=1e-4, tvm=padding == "same")


def test_deconvolution3d(tmp_path: Path) -> None:
    x = _rand(1, 4, 3, 4, 3)
    w = _rand(4, 3, 2, 3, 2)  # torch's [C_in, C_out / groups, k...]
    b = nn_builder([("x", x.shape)], [("y", None)])
    b.add_convolution3d(
        "d3",
        4,
        6,
        2,
        3,
        2,
        w.transpose(1, 0, 2, 3, 4),
        None,
        False,
        groups=2,
        stride_depth=2,
        stride_height=2,
        stride_width=1,
        is_deconv=True,
        padding_mode="custom",
        padding_front=1,
        padding_back=0,
        padding_top=0,
        padding_bottom=1,
        input_name="x",
        output_name="y",
    )
    full = F.conv_transpose3d(_t(x), _t(w), stride=(2, 2, 1), groups=2).numpy()
    check(save_nn(b, tmp_path), {"x": x}, [full[:, :, 1:, :-1, :]], atol=1e-4, tvm=False)


@pytest.mark.parametrize("padding", ["custom", "valid", "same"])
def test_pooling3d(tmp_path: Path, padding: str) -> None:
    x = _rand(2, 3, 5, 6, 7)
    b = nn_builder([("x", x.shape)], [(n, None) for n in ("m", "a", "e", "gm", "ga")])
    custom = dict(
        custom_padding_front=1,
        custom_padding_back=1,
        custom_padding_top=0,
        custom_padding_bottom=0,
        custom_padding_left=1,
        custom_padding_right=1,
    )
    for n, kind, excl in (("m", "MAX", False), ("a", "AVERAGE", False), ("e", "AVERAGE", True)):
        b.add_pooling3d(
            n,
            "x",
            n,
            kind,
            3,
            2,
            3,
            2,
            2,
            1,
            padding_mode=padding,
            average_pooling_count_excludes_padding=excl,
            **custom,
        )
    b.add_global_pooling3d("gm", "x", "gm", "MAX")
    b.add_global_pooling3d("ga", "x", "ga", "AVERAGE")
    if padding == "custom":
        pad = (1, 0, 1)
        kw = dict(kernel_size=(3, 2, 3), stride=(2, 2, 1), padding=pad)
        xin = _t(x)
    else:
        pads = (0,) * 6
        if padding == "same":
            dd, hh, ww = (_same(d, k, s, False) for d, k, s in zip((5, 6, 7), (3, 2, 3), (2, 2, 1)))
            pads = (*ww, *hh, *dd)
        kw = dict(kernel_size=(3, 2, 3), stride=(2, 2, 1))
        xin = F.pad(_t(x), pads)
    ninf = F.pad(_t(x), pads, value=-np.inf) if padding != "custom" else xin
    want = [
        F.max_pool3d(ninf, **kw).numpy(),
        F.avg_pool3d(xin, count_include_pad=True, **kw).numpy(),
    ]
    if padding == "custom":
        want.append(F.avg_pool3d(xin, count_include_pad=False, **kw).numpy())
    else:  # exclude the padding: the sum over the cells divided by their count
        ones = F.pad(torch.ones_like(_t(x)), pads)
        want.append((F.avg_pool3d(xin, **kw) / F.avg_pool3d(ones, **kw)).numpy())
    want += [x.max(axis=(2, 3, 4), keepdims=True), x.mean(axis=(2, 3, 4), keepdims=True)]
    check(save_nn(b, tmp_path), {"x": x}, want, atol=1e-5, tvm=padding == "custom")


def test_dilated_deconvolution_is_refused(tmp_path: Path) -> None:
    b = nn_builder([("x", (1, 2, 4, 4))], [("y", None)])
    b.add_convolution(
        "dc",
        2,
        2,
        3,
        3,
        1,
        1,
        "valid",
        1,
        _rand(3, 3, 2, 2),
        None,
        False,
        is_deconv=True,
        input_name="x",
        output_name="y",
        dilation_factors=[2, 2],
    )
    with pytest.raises(ConversionError, match="convolution node 'dc': deconvolution with dil"):
        import_coreml(save_nn(b, tmp_path))


# -- cropResize -----------------------------------------------------------------------------


def _crop_resize_expected(x, boxes, target, mode, box_mode, normalized, scale):
    """Per box: corners from the coordinate mode, scaled, then linspace grids (clamped)."""
    _, nb, c, h, w = x.shape
    out = []
    for box in boxes:
        coords, images = (box[1:], [x[0, int(box[0])]]) if len(box) == 5 else (box, list(x[0]))
        a, b_, cc, d = coords
        if box_mode in ("CORNERS_WIDTH_FIRST", "CENTER_SIZE_WIDTH_FIRST"):
            a, b_, cc, d = b_, a, d, cc
        if box_mode.startswith("CENTER"):
            hs, ws, he, we = a - cc / 2, b_ - d / 2, a + cc / 2, b_ + d / 2
        else:
            hs, ws, he, we = a, b_, cc, d
        fh, fw = (scale * (h - 1), scale * (w - 1)) if normalized else (scale, scale)
        hs, he, ws, we = hs * fh, he * fh, ws * fw, we * fw

        def grid(s, e, n, size):
            g = np.full(1, (s + e) / 2) if n == 1 and mode == "ALIGN_ENDPOINTS_MODE" else None
            g = np.linspace(s, e, n) if g is None else g
            return np.clip(g, 0, size - 1)

        gy, gx = grid(hs, he, target[0], h), grid(ws, we, target[1], w)
        out.append(np.stack([_bilinear(img, gy, gx) for img in images]))
    return np.stack(out)


CROP_RESIZE_CASES = [
    ("STRICT_ALIGN_ENDPOINTS_MODE", "CORNERS_HEIGHT_FIRST", False, 1.0, 4, (3, 4)),
    ("ALIGN_ENDPOINTS_MODE", "CORNERS_WIDTH_FIRST", True, 1.0, 5, (1, 3)),
    ("STRICT_ALIGN_ENDPOINTS_MODE", "CENTER_SIZE_HEIGHT_FIRST", False, 0.5, 5, (2, 2)),
    ("ALIGN_ENDPOINTS_MODE", "CENTER_SIZE_WIDTH_FIRST", True, 1.0, 4, (4, 1)),
]


@pytest.mark.parametrize("case", range(len(CROP_RESIZE_CASES)))
def test_crop_resize(tmp_path: Path, case: int) -> None:
    mode, box_mode, normalized, scale, k, target = CROP_RESIZE_CASES[case]
    x = _rand(1, 2, 3, 6, 7)
    corners = RNG.uniform(0, 1 if normalized else 5, size=(3, 4)).astype(np.float32)
    if k == 5:
        corners = np.concatenate([np.array([[1], [0], [1]], np.float32), corners], axis=1)
    rois = corners.reshape(3, 1, k, 1, 1)
    b = nn_builder([("x", x.shape), ("r", rois.shape)], [("y", None)])
    b.add_crop_resize(
        "cr",
        ["x", "r"],
        "y",
        target[0],
        target[1],
        mode=mode,
        normalized_roi=normalized,
        box_indices_mode=box_mode,
        spatial_scale=scale,
    )
    want = _crop_resize_expected(x, corners, target, mode, box_mode, normalized, scale)
    check(save_nn(b, tmp_path), {"x": x, "r": rois}, [want], atol=1e-5, tvm=case == 0)


def test_crop_resize_roi_align_mode_is_refused(tmp_path: Path) -> None:
    b = nn_builder([("x", (1, 1, 2, 4, 4)), ("r", (2, 1, 4, 1, 1))], [("y", None)])
    b.add_crop_resize("cr", ["x", "r"], "y", 2, 2, mode="ROI_ALIGN_MODE")
    with pytest.raises(ConversionError, match="cropResize node 'cr': sampling mode 3"):
        import_coreml(save_nn(b, tmp_path))


def test_convolution_and_pooling_of_a_rank3_input(tmp_path: Path) -> None:
    """EXACT [C, H, W]: no batch axis, the layers still act on the trailing three."""
    x, w = _rand(2, 5, 6), _rand(3, 2, 3, 3)
    b = nn_builder([("x", x.shape)], [("c", None), ("p", None)])
    b.add_convolution(
        "conv",
        2,
        3,
        3,
        3,
        1,
        1,
        "valid",
        1,
        w.transpose(2, 3, 1, 0),
        None,
        False,
        input_name="x",
        output_name="c",
    )
    b.add_pooling("p", 2, 2, 2, 2, "MAX", "VALID", "x", "p")
    want = [
        F.conv2d(_t(x[None]), _t(w)).numpy()[0],
        _pool_expected(x, "MAX", (2, 2), (2, 2), (0, 0, 0, 0)),
    ]
    check(save_nn(b, tmp_path), {"x": x}, want, atol=1e-5, tvm=False)


@pytest.mark.parametrize(
    "output_shape, message",
    [
        ((8, 8), r"outputShape \[8, 8\] crops the full output \[9, 9\] with valid padding"),
        ((11, 11), r"outputShape \[11, 11\] is larger than the full output \[9, 9\] by a stride"),
    ],
)
def test_deconvolution_output_shape_that_is_not_defined_is_refused(
    tmp_path: Path, output_shape: tuple, message: str
) -> None:
    b = nn_builder([("x", (1, 2, 4, 4))], [("y", None)])
    b.add_convolution(
        "dc",
        2,
        2,
        3,
        3,
        2,
        2,
        "valid",
        1,
        _rand(3, 3, 2, 2),
        None,
        False,
        is_deconv=True,
        output_shape=output_shape,
        input_name="x",
        output_name="y",
    )
    with pytest.raises(ConversionError, match=f"convolution node 'dc': {message}"):
        import_coreml(save_nn(b, tmp_path))


def test_fractional_nearest_upsample_is_refused(tmp_path: Path) -> None:
    b = nn_builder([("x", (1, 2, 4, 4))], [("y", None)])
    b.add_upsample(
        "up", 1.5, 1.5, "x", "y", mode="BILINEAR", linear_upsample_mode="ALIGN_CORNERS_TRUE"
    )
    b.spec.neuralNetwork.layers[0].upsample.mode = 0  # NN
    with pytest.raises(ConversionError, match="upsample node 'up': fractional scaling factors"):
        import_coreml(save_nn(b, tmp_path))


def test_float16_model_computes_in_float16(tmp_path: Path) -> None:
    """FLOAT16 arrays (spec 7): weights follow the input's dtype, nothing is widened."""
    x, w = _rand(1, 2, 6, 6).astype(np.float16), _rand(3, 2, 3, 3)
    b = nn_builder([("x", x.shape)], [("y", None)])
    b.add_convolution(
        "conv",
        2,
        3,
        3,
        3,
        1,
        1,
        "same",
        1,
        w.transpose(2, 3, 1, 0),
        None,
        False,
        input_name="x",
        output_name="c",
    )
    b.add_pooling("p", 2, 2, 2, 2, "AVERAGE", "VALID", "c", "y")
    # Input and output FLOAT16: an output declared DOUBLE would be cast to float32.
    for feature in (b.spec.description.input[0], b.spec.description.output[0]):
        array = feature.type.multiArrayType
        array.dataType = array.FLOAT16
    conv = F.conv2d(F.pad(_t(x.astype(np.float32)), (1, 1, 1, 1)), _t(w))
    want = F.avg_pool2d(conv, 2).numpy()
    path = save_nn(b, tmp_path)
    (got,) = check(path, {"x": x}, [want], rtol=1e-2, atol=1e-2)
    assert got.dtype == np.float16
    graph, _ = import_coreml(path)
    floats = {str(v.dtype) for v in graph.values() if "float" in str(v.dtype)}
    assert floats == {"float16"}
