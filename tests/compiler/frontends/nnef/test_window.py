"""NNEF sliding-window ops (conv, deconv, box, debox, pools, argmax_pool/sample/desample), the
up/down-sampling ops and the local normalizations, against numpy references written here."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from nnefutil import check_nnef, write_model

from compiler.errors import ConversionError, UnsupportedOpsError
from compiler.frontends.nnef import import_nnef

RNG = np.random.default_rng(0)
X_SHAPE = (1, 2, 5, 6)
_NP_MODES = {
    "constant": "constant",
    "ignore": "constant",
    "replicate": "edge",
    "reflect": "reflect",
    "reflect-even": "symmetric",
}


def _x(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def _model(tmp_path: Path, body: str, shape=X_SHAPE, variables=None, outputs="y") -> Path:
    dims = ", ".join(str(d) for d in shape)
    text = (
        f"graph G( x ) -> ( {outputs} )\n{{\n  x = external<scalar>(shape = [{dims}]);\n{body}\n}}"
    )
    return write_model(tmp_path, text, variables)


# -- numpy references -------------------------------------------------------------------------
def np_pad(x: np.ndarray, pairs, border: str, value: float = 0.0) -> np.ndarray:
    mode = _NP_MODES[border]
    kw = {"constant_values": value} if mode == "constant" else {}
    return np.pad(x, pairs, mode=mode, **kw)


def np_same(shape, size, stride, dilation):
    pairs = []
    for i, k, s, d in zip(shape, size, stride, dilation):
        total = max(0, (-(-i // s) - 1) * s + (k - 1) * d + 1 - i)
        pairs.append((total // 2, total - total // 2))
    return pairs


def np_taps(xp: np.ndarray, size, stride, dilation, out):
    for offs in itertools.product(*[range(k) for k in size]):
        idx = tuple(
            slice(o * d, o * d + (n - 1) * s + 1, s)
            for o, d, n, s in zip(offs, dilation, out, stride)
        )
        yield xp[idx]


def np_pool(x, size, kind, border="constant", padding=None, stride=None, dilation=None):
    """kind: sum, avg, max, argmax over all dims, the NNEF way."""
    r = x.ndim
    stride, dilation = stride or [1] * r, dilation or [1] * r
    pairs = padding or np_same(x.shape, size, stride, dilation)
    out = [
        (i + p + q - (k - 1) * d - 1) // s + 1
        for i, k, (p, q), s, d in zip(x.shape, size, pairs, stride, dilation)
    ]
    fill = -np.inf if border == "ignore" and kind in ("max", "argmax") else 0.0
    vals = np.stack(list(np_taps(np_pad(x, pairs, border, fill), size, stride, dilation, out)))
    if kind == "max":
        return vals.max(0)
    if kind == "argmax":
        return vals.argmax(0)
    total = vals.sum(0)
    if kind == "sum":
        return total
    if border == "ignore":
        ones = np.pad(np.ones_like(x), pairs)
        return total / np.stack(list(np_taps(ones, size, stride, dilation, out))).sum(0)
    return total / np.prod(size)


def np_conv(x, w, b, pairs, stride, dilation, groups, border="constant"):
    n, c = x.shape[:2]
    m, k = w.shape[0], w.shape[2:]
    xp = np_pad(x, [(0, 0), (0, 0), *pairs], border)
    out = [
        (i + p + q - (kk - 1) * d - 1) // s + 1
        for i, kk, (p, q), s, d in zip(x.shape[2:], k, pairs, stride, dilation)
    ]
    y = np.zeros((n, m, *out))
    cg, mg = c // groups, m // groups
    for offs in itertools.product(*[range(kk) for kk in k]):
        idx = tuple(
            slice(o * d, o * d + (q - 1) * s + 1, s)
            for o, d, q, s in zip(offs, dilation, out, stride)
        )
        v = xp[(slice(None), slice(None), *idx)]
        for g in range(groups):
            wt = w[(slice(g * mg, (g + 1) * mg), slice(None), *offs)]
            y[:, g * mg : (g + 1) * mg] += np.einsum(
                "nc...,mc->nm...", v[:, g * cg : (g + 1) * cg], wt
            )
    return (y + b.reshape(1, m, *[1] * len(out))).astype(np.float32)


def np_deconv(x, w, b, pairs, stride, dilation, groups, out):
    n, c = x.shape[:2]
    mg = w.shape[1]
    cg = c // groups
    k = w.shape[2:]
    size = [
        max((i - 1) * s + (kk - 1) * d + 1, p + o)
        for i, kk, s, d, (p, _), o in zip(x.shape[2:], k, stride, dilation, pairs, out)
    ]
    acc = np.zeros((n, mg * groups, *size))
    for offs in itertools.product(*[range(kk) for kk in k]):
        idx = tuple(
            slice(o * d, o * d + (i - 1) * s + 1, s)
            for o, d, i, s in zip(offs, dilation, x.shape[2:], stride)
        )
        for g in range(groups):
            wt = w[(slice(g * cg, (g + 1) * cg), slice(None), *offs)]
            acc[(slice(None), slice(g * mg, (g + 1) * mg), *idx)] += np.einsum(
                "nc...,cm->nm...", x[:, g * cg : (g + 1) * cg], wt
            )
    crop = tuple(slice(p, p + o) for (p, _), o in zip(pairs, out))
    y = acc[(slice(None), slice(None), *crop)]
    return (y + b.reshape(1, -1, *[1] * len(out))).astype(np.float32)


def np_linear_upsample(x, factor, method, border):
    """Separable linear interpolation; source position (j + 0.5)/f - 0.5 (symmetric), j/f
    (asymmetric) or j*(n-1)/(nf-1) (aligned); outside the input per border."""
    y = x.astype(np.float64)
    for axis, f in enumerate(factor, start=2):
        n = y.shape[axis]
        j = np.arange(n * f)
        if method == "symmetric":
            src = (j + 0.5) / f - 0.5
        elif method == "asymmetric":
            src = j / f
        else:
            src = j * (n - 1) / (n * f - 1)
        lo = np.floor(src).astype(int)
        t = src - lo
        pads = [(0, 0)] * y.ndim
        pads[axis] = (1, 1)
        yp = np_pad(y, pads, border)
        a = np.take(yp, lo + 1, axis=axis)
        bb = np.take(yp, np.minimum(lo + 2, n + 1), axis=axis)
        shape = [1] * y.ndim
        shape[axis] = n * f
        y = a * (1 - t.reshape(shape)) + bb * t.reshape(shape)
    return y.astype(np.float32)


# -- convolution ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("attrs", "pairs", "stride", "dilation", "groups", "border"),
    [
        ("stride = [2, 2]", [(1, 1), (0, 1)], [2, 2], [1, 1], 1, "constant"),
        (
            "padding = [(1, 2), (0, 1)], dilation = [1, 2]",
            [(1, 2), (0, 1)],
            [1, 1],
            [1, 2],
            1,
            "constant",
        ),
        ("border = 'ignore'", [(1, 1), (1, 1)], [1, 1], [1, 1], 1, "constant"),
        (
            "border = 'replicate', padding = [(1, 2), (2, 0)]",
            [(1, 2), (2, 0)],
            [1, 1],
            [1, 1],
            1,
            "replicate",
        ),
        ("border = 'reflect'", [(1, 1), (1, 1)], [1, 1], [1, 1], 1, "reflect"),
        (
            "border = 'reflect-even', padding = [(2, 1), (1, 2)]",
            [(2, 1), (1, 2)],
            [1, 1],
            [1, 1],
            1,
            "reflect-even",
        ),
    ],
)
def test_conv(tmp_path: Path, attrs, pairs, stride, dilation, groups, border) -> None:
    x, w, b = _x(*X_SHAPE), _x(4, 2, 3, 3), _x(1, 4)
    folder = _model(
        tmp_path,
        "  w = variable<scalar>(shape = [4, 2, 3, 3], label = 'w');\n"
        "  b = variable<scalar>(shape = [1, 4], label = 'b');\n"
        f"  y = conv(x, w, b, {attrs});",
        variables={"w": w, "b": b},
    )
    want = np_conv(x, w, b, pairs, stride, dilation, groups, border)
    # the interpreter pads reflect-even as replicate (only right for pads <= 1) and has no
    # 'ignore' pad
    check_nnef(folder, {"x": x}, [want], oracle=border != "reflect-even" and "ignore" not in attrs)


def test_conv_groups_depthwise_and_literal_bias(tmp_path: Path) -> None:
    x, wg, wd = _x(1, 4, 5, 5), _x(6, 2, 3, 3), _x(4, 1, 3, 3)
    folder = _model(
        tmp_path,
        "  wg = variable<scalar>(shape = [6, 2, 3, 3], label = 'wg');\n"
        "  wd = variable<scalar>(shape = [4, 1, 3, 3], label = 'wd');\n"
        "  y = conv(x, wg, 0.5, groups = 2);\n  z = conv(x, wd, groups = 0, stride = [2, 2]);",
        shape=(1, 4, 5, 5),
        variables={"wg": wg, "wd": wd},
        outputs="y, z",
    )
    y = np_conv(x, wg, np.full(6, 0.5), [(1, 1)] * 2, [1, 1], [1, 1], 2)
    z = np_conv(x, wd, np.zeros(4), [(1, 1)] * 2, [2, 2], [1, 1], 4)
    check_nnef(folder, {"x": x}, [y, z])


@pytest.mark.parametrize(
    ("attrs", "pairs", "stride", "groups", "out"),
    [
        ("stride = [2, 2]", [(0, 1), (0, 1)], [2, 2], 1, [10, 12]),
        ("padding = [(1, 0), (0, 2)]", [(1, 0), (0, 2)], [1, 1], 1, [6, 6]),
        (
            "stride = [2, 2], padding = [(0, 0), (0, 1)], output_shape = [1, 6, 12, 12]",
            [(0, 0), (0, 1)],
            [2, 2],
            2,
            [12, 12],
        ),
        ("groups = 0", [(1, 1), (1, 1)], [1, 1], 2, [5, 6]),
    ],
)
def test_deconv(tmp_path: Path, attrs, pairs, stride, groups, out) -> None:
    x = _x(*X_SHAPE)
    mg = 3 if groups == 1 or "output_shape" in attrs else 1
    w, b = _x(2, mg, 3, 3), _x(1, mg * groups)
    folder = _model(
        tmp_path,
        f"  w = variable<scalar>(shape = [2, {mg}, 3, 3], label = 'w');\n"
        f"  b = variable<scalar>(shape = [1, {mg * groups}], label = 'b');\n"
        f"  y = deconv(x, w, b, {attrs}{', groups = 2' if 'output_shape' in attrs else ''});",
        variables={"w": w, "b": b},
    )
    want = np_deconv(x, w, b, pairs, stride, [1, 1], groups, out)
    # the interpreter zero-pads the rows output_shape adds after adding the bias; the C++
    # executor (and nnxc) add the bias everywhere
    check_nnef(folder, {"x": x}, [want], oracle="output_shape" not in attrs)


def test_deconv_refuses_padding_borders(tmp_path: Path) -> None:
    folder = _model(
        tmp_path,
        "  w = variable<scalar>(shape = [2, 3, 3, 3], label = 'w');\n"
        "  y = deconv(x, w, border = 'reflect');",
        variables={"w": _x(2, 3, 3, 3)},
    )
    with pytest.raises(ConversionError, match="border 'reflect' is not supported"):
        import_nnef(folder)


# -- pooling ----------------------------------------------------------------------------------
BORDERS = ["constant", "ignore", "replicate", "reflect", "reflect-even"]


@pytest.mark.parametrize("border", BORDERS)
@pytest.mark.parametrize("op", ["max_pool", "avg_pool", "box", "box_normalized"])
def test_pooling_borders(tmp_path: Path, op: str, border: str) -> None:
    x = _x(*X_SHAPE)
    name, extra = ("box", ", normalize = true") if op == "box_normalized" else (op, "")
    pad = "padding = [(0, 0), (0, 0), (1, 2), (2, 1)], " if border == "reflect-even" else ""
    folder = _model(
        tmp_path,
        f"  y = {name}(x, size = [1, 1, 3, 3], border = '{border}', {pad}"
        f"stride = [1, 1, 2, 1]{extra});",
    )
    kind = {"max_pool": "max", "box": "sum"}.get(op, "avg")
    pairs = [(0, 0), (0, 0), (1, 2), (2, 1)] if pad else None
    want = np_pool(x, [1, 1, 3, 3], kind, border, pairs, [1, 1, 2, 1])
    check_nnef(folder, {"x": x}, [want.astype(np.float32)], oracle=border != "reflect-even")


def test_pool_dilation_and_channel_window(tmp_path: Path) -> None:
    """Dilated max pooling; a box over C and a max pool over N and W (folded into the batch)."""
    x = _x(2, 3, 5, 6)
    folder = _model(
        tmp_path,
        "  y = max_pool(x, size = [1, 1, 2, 2], dilation = [1, 1, 2, 2], border = 'ignore');\n"
        "  z = box(x, size = [1, 2, 1, 1], padding = [(0, 0), (0, 1), (0, 0), (0, 0)]);\n"
        "  u = max_pool(x, size = [2, 1, 1, 3], stride = [1, 1, 1, 2], border = 'ignore');",
        shape=(2, 3, 5, 6),
        outputs="y, z, u",
    )
    y = np_pool(x, [1, 1, 2, 2], "max", "ignore", dilation=[1, 1, 2, 2])
    z = np_pool(x, [1, 2, 1, 1], "sum", padding=[(0, 0), (0, 1), (0, 0), (0, 0)])
    u = np_pool(x, [2, 1, 1, 3], "max", "ignore", stride=[1, 1, 1, 2])
    # the interpreter's box refuses windows over C; its max pool handles them
    check_nnef(folder, {"x": x}, [y, z.astype(np.float32), u], oracle=False)
    check_nnef(
        write_model(
            tmp_path / "u",
            "graph G( x ) -> ( u )\n{\n  x = external<scalar>(shape = [2, 3, 5, 6]);\n"
            "  u = max_pool(x, size = [2, 1, 1, 3], stride = [1, 1, 1, 2], border = 'ignore');\n}",
        ),
        {"x": x},
        [u],
    )


def test_rms_pool_through_expansion(tmp_path: Path) -> None:
    x = _x(*X_SHAPE)
    folder = _model(tmp_path, "  y = rms_pool(x, size = [1, 1, 2, 2], border = 'ignore');")
    want = np.sqrt(np_pool(x * x, [1, 1, 2, 2], "avg", "ignore"))
    check_nnef(folder, {"x": x}, [want.astype(np.float32)])


@pytest.mark.parametrize("border", ["constant", "ignore"])
def test_debox(tmp_path: Path, border: str) -> None:
    """debox is box's transpose: <debox(y), x> == <y, box(x)> with the same window."""
    x = _x(1, 2, 3, 3)
    folder = _model(
        tmp_path,
        f"  y = debox(x, size = [1, 1, 3, 3], stride = [1, 1, 2, 2], border = '{border}', "
        "padding = [(0, 0), (0, 0), (1, 1), (1, 0)], normalize = true);",
        shape=(1, 2, 3, 3),
    )
    (got,) = check_nnef(folder, {"x": x}, oracle=False)
    assert got.shape == (1, 2, 5, 6)
    probe = _x(1, 2, 5, 6)
    boxed = np_pool(
        probe, [1, 1, 3, 3], "avg", border, [(0, 0), (0, 0), (1, 1), (1, 0)], [1, 1, 2, 2]
    )
    np.testing.assert_allclose((got * probe).sum(), (x * boxed).sum(), rtol=1e-4)
    if border == "constant":  # the interpreter divides by the volume, as nnxc does here
        check_nnef(folder, {"x": x})


# -- index-based sampling ---------------------------------------------------------------------
def test_argmax_pool_and_max_pool_with_index(tmp_path: Path) -> None:
    """Indices within each window (row-major over size, first on ties); zeros of a
    'constant' border can win. The interpreter returns PyTorch's flat plane offsets."""
    x = _x(*X_SHAPE)
    x[0, 0, 0, :2] = 5.0  # a tie: the first in window order
    x[0, 1] = -np.abs(x[0, 1])  # all negative: the zero padding wins at the border
    folder = _model(
        tmp_path,
        "  i = argmax_pool(x, size = [1, 1, 3, 3], stride = [1, 1, 2, 2]);\n"
        "  y, j = max_pool_with_index(x, size = [1, 1, 2, 3], border = 'ignore');",
        outputs="i, y, j",
    )
    i = np_pool(x, [1, 1, 3, 3], "argmax", stride=[1, 1, 2, 2])
    j = np_pool(x, [1, 1, 2, 3], "argmax", "ignore")
    y = np_pool(x, [1, 1, 2, 3], "max", "ignore")
    check_nnef(folder, {"x": x}, [i, y, j], oracle=False)


def test_sample_and_desample(tmp_path: Path) -> None:
    """desample puts each value back where argmax_pool found it (overlaps add up), sample
    reads it again; checked against explicit loops."""
    x = _x(1, 2, 4, 5)
    folder = _model(
        tmp_path,
        "  i = argmax_pool(x, size = [1, 1, 3, 3], stride = [1, 1, 2, 2], border = 'ignore');\n"
        "  p = max_pool(x, size = [1, 1, 3, 3], stride = [1, 1, 2, 2], border = 'ignore');\n"
        "  y = desample(p, i, size = [1, 1, 3, 3], stride = [1, 1, 2, 2], border = 'ignore', "
        "output_shape = [1, 2, 4, 5]);",
        shape=(1, 2, 4, 5),
        outputs="y",
    )
    pairs = np_same(x.shape, [1, 1, 3, 3], [1, 1, 2, 2], [1, 1, 1, 1])
    idx = np_pool(x, [1, 1, 3, 3], "argmax", "ignore", stride=[1, 1, 2, 2])
    p = np_pool(x, [1, 1, 3, 3], "max", "ignore", stride=[1, 1, 2, 2])
    want = np.zeros(x.shape)
    for pos in itertools.product(*[range(d) for d in p.shape]):
        k = np.unravel_index(idx[pos], (1, 1, 3, 3))
        at = [q * s + kk - pp for q, s, kk, (pp, _) in zip(pos, [1, 1, 2, 2], k, pairs)]
        want[tuple(at)] += p[pos]
    check_nnef(folder, {"x": x}, [want.astype(np.float32)], oracle=False)


def test_sample_reads_the_window_element_its_index_names(tmp_path: Path) -> None:
    """A given index (not one from argmax_pool): output = padded input at window start +
    unravel(index, size). Stride 1 with auto padding keeps index and input of one shape, the
    only case NNEF's shape function for sample accepts."""
    x = _x(1, 2, 4, 5)
    idx = RNG.integers(0, 4, size=x.shape).astype(np.int64)
    folder = write_model(
        tmp_path,
        "graph G( x, k ) -> ( y, z )\n{\n  x = external<scalar>(shape = [1, 2, 4, 5]);\n"
        "  k = external<integer>(shape = [1, 2, 4, 5]);\n"
        "  y = sample(x, k, size = [1, 1, 2, 2]);\n"
        "  z = sample(x, k, size = [1, 1, 2, 2], border = 'replicate', "
        "padding = [(0, 0), (0, 0), (1, 0), (1, 0)]);\n}",
    )
    want = []
    for pairs, border in (
        ([(0, 0), (0, 0), (0, 1), (0, 1)], "constant"),
        ([(0, 0), (0, 0), (1, 0), (1, 0)], "replicate"),
    ):
        xp = np_pad(x, pairs, border)
        out = np.zeros_like(x)
        for pos in itertools.product(*[range(d) for d in x.shape]):
            k = np.unravel_index(idx[pos], (1, 1, 2, 2))
            out[pos] = xp[tuple(p + kk for p, kk in zip(pos, k))]
        want.append(out)
    # the interpreter has no sample
    check_nnef(folder, {"x": x, "k": idx}, want, oracle=False)


def test_one_dimensional_windows(tmp_path: Path) -> None:
    x, w = _x(2, 3, 7), _x(4, 3, 3)
    folder = _model(
        tmp_path,
        "  w = variable<scalar>(shape = [4, 3, 3], label = 'w');\n"
        "  y = conv(x, w, stride = [2], border = 'reflect');\n"
        "  z = avg_pool(x, size = [1, 1, 3], border = 'ignore', stride = [1, 1, 2]);",
        shape=(2, 3, 7),
        variables={"w": w},
        outputs="y, z",
    )
    y = np_conv(x, w, np.zeros(4), [(1, 1)], [2], [1], 1, "reflect")
    z = np_pool(x, [1, 1, 3], "avg", "ignore", stride=[1, 1, 2])
    check_nnef(folder, {"x": x}, [y, z.astype(np.float32)])


# -- up/down-sampling -------------------------------------------------------------------------
def test_nearest_and_area_sampling(tmp_path: Path) -> None:
    x = _x(1, 2, 4, 6)
    folder = _model(
        tmp_path,
        "  a = nearest_downsample(x, factor = [2, 3]);\n"
        "  b = area_downsample(x, factor = [2, 3]);\n"
        "  c = nearest_upsample(x, factor = [2, 3]);",
        shape=(1, 2, 4, 6),
        outputs="a, b, c",
    )
    a = x[:, :, ::2, ::3]
    b = x.reshape(1, 2, 2, 2, 2, 3).mean((3, 5))
    c = x.repeat(2, axis=2).repeat(3, axis=3)
    check_nnef(folder, {"x": x}, [a, b, c])


@pytest.mark.parametrize(
    ("method", "border", "factor"),
    [
        ("symmetric", "replicate", [2, 2]),
        ("symmetric", "replicate", [3, 4]),
        ("symmetric", "constant", [2, 3]),
        ("asymmetric", "constant", [2, 2]),
        ("asymmetric", "replicate", [3, 2]),
        ("symmetric", "reflect", [2, 2]),
        ("aligned", "replicate", [2, 3]),
    ],
)
def test_multilinear_upsample(tmp_path: Path, method: str, border: str, factor) -> None:
    x = _x(1, 2, 3, 4)
    folder = _model(
        tmp_path,
        f"  y = multilinear_upsample(x, factor = {factor}, method = '{method}', "
        f"border = '{border}');",
        shape=(1, 2, 3, 4),
    )
    want = np_linear_upsample(x, factor, method, border)
    # the interpreter's deconvolution paths fail on numpy 2 (np.reshape(newshape=)); its
    # symmetric-replicate and aligned paths are PyTorch's interpolate
    oracle = (method, border) in (("symmetric", "replicate"), ("aligned", "replicate"))
    check_nnef(folder, {"x": x}, [want], oracle=oracle)


# -- normalization ----------------------------------------------------------------------------
def test_local_response_normalization(tmp_path: Path) -> None:
    """Across channels (the IR lrn) and over a spatial window (built from the box)."""
    x = _x(1, 5, 3, 4)
    folder = _model(
        tmp_path,
        "  y = local_response_normalization(x, size = [1, 3, 1, 1], alpha = 0.5, beta = 0.75, "
        "bias = 2.0);\n"
        "  z = local_response_normalization(x, size = [1, 2, 2, 1], alpha = 0.3);",
        shape=(1, 5, 3, 4),
        outputs="y, z",
    )
    y = x / (2.0 + 0.5 * np_pool(x * x, [1, 3, 1, 1], "avg")) ** 0.75
    z = x / (1.0 + 0.3 * np_pool(x * x, [1, 2, 2, 1], "avg")) ** 0.5
    # the interpreter's box refuses windows over C
    check_nnef(folder, {"x": x}, [y.astype(np.float32), z.astype(np.float32)], oracle=False)


def test_local_normalizations_through_expansion(tmp_path: Path) -> None:
    x = _x(1, 2, 4, 5)
    folder = _model(
        tmp_path,
        "  a = local_mean_normalization(x, size = [1, 1, 3, 3]);\n"
        "  b = local_variance_normalization(x, size = [1, 1, 3, 3], bias = 0.5, epsilon = 0.1);\n"
        "  c = local_contrast_normalization(x, size = [1, 1, 2, 2], bias = 0.5);",
        shape=(1, 2, 4, 5),
        outputs="a, b, c",
    )
    a = x - np_pool(x, [1, 1, 3, 3], "avg")
    b = x / np.maximum(np.sqrt(np_pool(x * x, [1, 1, 3, 3], "avg")) + 0.5, 0.1)
    cen = x - np_pool(x, [1, 1, 2, 2], "avg")
    c = cen / np.maximum(np.sqrt(np_pool(cen * cen, [1, 1, 2, 2], "avg")) + 0.5, 0.0)
    check_nnef(folder, {"x": x}, [v.astype(np.float32) for v in (a, b, c)])


def test_separable_conv_and_deconv_through_expansion(tmp_path: Path) -> None:
    x, plane, point, b = _x(*X_SHAPE), _x(2, 1, 3, 3), _x(4, 2, 1, 1), _x(1, 4)
    folder = _model(
        tmp_path,
        "  pl = variable<scalar>(shape = [2, 1, 3, 3], label = 'pl');\n"
        "  pt = variable<scalar>(shape = [4, 2, 1, 1], label = 'pt');\n"
        "  b = variable<scalar>(shape = [1, 4], label = 'b');\n"
        "  y = separable_conv(x, pl, pt, b, stride = [2, 2]);\n"
        "  pt2 = variable<scalar>(shape = [2, 2, 1, 1], label = 'pt2');\n"
        "  z = separable_deconv(x, pl, pt2, stride = [2, 1]);",
        variables={"pl": plane, "pt": point, "b": b, "pt2": point[:2]},
        outputs="y, z",
    )
    mid = np_conv(x, plane, np.zeros(2), [(1, 1), (0, 1)], [2, 2], [1, 1], 2)
    y = np_conv(mid, point, b, [(0, 0)] * 2, [1, 1], [1, 1], 1)
    mid2 = np_deconv(x, point[:2], np.zeros(2), [(0, 0)] * 2, [1, 1], [1, 1], 1, [5, 6])
    z = np_deconv(mid2, plane, np.zeros(2), [(0, 1), (1, 1)], [2, 1], [1, 1], 2, [10, 6])
    check_nnef(folder, {"x": x}, [y, z])


# -- regions of interest ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "expr",
    [
        "avg_roi_pool(x, r, i, output_size = [2, 2])",
        "max_roi_pool(x, r, i, output_size = [2, 2])",
        "roi_resample(x, r, i, output_size = [2, 2])",
        "avg_roi_align(x, r, i, output_size = [2, 2], sampling_rate = [2, 2])",
        "max_roi_align(x, r, i, output_size = [2, 2], sampling_rate = [2, 2])",
    ],
)
def test_roi_ops_are_refused(tmp_path: Path, expr: str) -> None:
    """Refused before conversion, in the unsupported-ops report, with the reason."""
    folder = _model(
        tmp_path,
        "  r = variable<scalar>(shape = [1, 4], label = 'r');\n"
        "  i = constant<integer>(shape = [1], value = [0]);\n"
        f"  y = {expr};",
        variables={"r": np.array([[0, 0, 3, 3]], np.float32)},
    )
    op = expr.split("(")[0]
    with pytest.raises(UnsupportedOpsError, match=f"{op} x1 .*neither reference implementation"):
        import_nnef(folder)
