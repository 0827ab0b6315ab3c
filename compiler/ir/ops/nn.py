"""Neural-network ops: matmul, normalizations, softmax, LRN, einsum, det.

Convolution and pooling live in ``nn_conv``, resize in ``nn_resize``; importing this module
registers all three.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..types import IRTypeError, TensorType
from . import nn_conv, nn_resize  # noqa: F401  (registration)
from .registry import Attr, define
from .shapes import broadcast_shapes, normalize_axis

# -- matmul ----------------------------------------------------------------------------------


def _matmul_infer(in_types, attrs) -> TensorType:
    a, b = in_types
    if a.dtype != b.dtype:
        raise IRTypeError(f"matmul: operand dtypes differ: {a.dtype} and {b.dtype}")
    if a.rank == 0 or b.rank == 0:
        raise IRTypeError("matmul: operands must have rank >= 1")
    sa = (1, *a.shape) if a.rank == 1 else a.shape
    sb = (*b.shape, 1) if b.rank == 1 else b.shape
    k1, k2 = sa[-1], sb[-2]
    if isinstance(k1, int) and isinstance(k2, int) and k1 != k2:
        raise IRTypeError(f"matmul: contracted dims differ: {a} @ {b}")
    batch = broadcast_shapes(sa[:-2], sb[:-2])
    out = [*batch]
    if a.rank > 1:
        out.append(sa[-2])
    if b.rank > 1:
        out.append(sb[-1])
    return TensorType(a.dtype, tuple(out))


define(
    "matmul",
    inputs=["a", "b"],
    infer=_matmul_infer,
    reference=lambda xs, a: np.matmul(xs[0], xs[1]),
    doc="numpy matmul: 1-D operands get a dim added and removed, batch dims broadcast.",
)


# -- normalizations --------------------------------------------------------------------------


def _float_input(x: TensorType, what: str) -> None:
    if not x.dtype.is_float:
        raise IRTypeError(f"{what} needs a float input, got {x}")


def _channel_params(in_types, what: str, count: int) -> TensorType:
    x = in_types[0]
    _float_input(x, what)
    if x.rank < 2:
        raise IRTypeError(f"{what} needs an (N, C, ...) input, got {x}")
    for p in in_types[1 : 1 + count]:
        if p is None:
            continue
        if p.rank != 1 or p.dtype != x.dtype:
            raise IRTypeError(f"{what}: per-channel operands must be 1-D {x.dtype}, got {p}")
        c, pc = x.shape[1], p.shape[0]
        if isinstance(c, int) and isinstance(pc, int) and c != pc:
            raise IRTypeError(f"{what}: {pc} parameters for {c} channels")
    return x


def _per_channel(p: np.ndarray, rank: int) -> np.ndarray:
    return p.reshape(1, -1, *[1] * (rank - 2))


def _batch_norm_reference(xs, attrs) -> np.ndarray:
    x, scale, bias, mean, var = xs
    a = scale / np.sqrt(var + np.asarray(attrs["epsilon"], x.dtype))
    b = bias - mean * a
    return (x * _per_channel(a, x.ndim) + _per_channel(b, x.ndim)).astype(x.dtype)


define(
    "batch_norm",
    inputs=["x", "scale", "bias", "mean", "var"],
    attrs={"epsilon": Attr("float", 1e-5)},
    infer=lambda t, a: _channel_params(t, "batch_norm", 4),
    reference=_batch_norm_reference,
    doc="Inference batch normalization over channel axis 1 with running statistics.",
)


def _instance_norm_reference(xs, attrs) -> np.ndarray:
    x, scale, bias = xs
    axes = tuple(range(2, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    y = (x - mean) / np.sqrt(var + attrs["epsilon"])
    return (y * _per_channel(scale, x.ndim) + _per_channel(bias, x.ndim)).astype(x.dtype)


define(
    "instance_norm",
    inputs=["x", "scale", "bias"],
    attrs={"epsilon": Attr("float", 1e-5)},
    infer=lambda t, a: _channel_params(t, "instance_norm", 2),
    reference=_instance_norm_reference,
    doc="Normalizes each (sample, channel) over the spatial axes, then scales per channel.",
)


def _layer_norm_normalize(in_types, attrs) -> dict[str, Any]:
    return {**attrs, "axis": normalize_axis(attrs["axis"], in_types[0].rank)}


def _layer_norm_infer(in_types, attrs) -> TensorType:
    x, scale, bias = (list(in_types) + [None])[:3]
    _float_input(x, "layer_norm")
    tail = x.shape[attrs["axis"] :]
    for p in (scale, bias):
        if p is None:
            continue
        if p.dtype != x.dtype:
            raise IRTypeError(f"layer_norm: scale/bias dtype {p.dtype} differs from {x.dtype}")
        if p.rank > len(tail) or broadcast_shapes(tail, p.shape) != tuple(tail):
            raise IRTypeError(f"layer_norm: {p} does not broadcast to the normalized {tail}")
    return x


def _layer_norm_reference(xs, attrs) -> np.ndarray:
    x, scale, bias = (list(xs) + [None])[:3]
    axes = tuple(range(attrs["axis"], x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    y = (x - mean) / np.sqrt(var + attrs["epsilon"]) * scale
    if bias is not None:
        y = y + bias
    return y.astype(x.dtype)


define(
    "layer_norm",
    inputs=["x", "scale", "bias?"],
    attrs={"axis": Attr("int", -1), "epsilon": Attr("float", 1e-5)},
    normalize=_layer_norm_normalize,
    infer=_layer_norm_infer,
    reference=_layer_norm_reference,
    doc="Normalizes over axes [axis, rank); scale/bias broadcast against those axes.",
)


# -- softmax ---------------------------------------------------------------------------------


def _axis_normalize(in_types, attrs) -> dict[str, Any]:
    return {**attrs, "axis": normalize_axis(attrs["axis"], in_types[0].rank)}


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _log_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    s = x - x.max(axis=axis, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=axis, keepdims=True))


def _float_same(in_types, attrs) -> TensorType:
    _float_input(in_types[0], "softmax")
    return in_types[0]


for _name, _fn in (("softmax", _softmax), ("log_softmax", _log_softmax)):
    define(
        _name,
        inputs=["x"],
        attrs={"axis": Attr("int", -1)},
        normalize=_axis_normalize,
        infer=_float_same,
        reference=lambda xs, a, fn=_fn: fn(xs[0], a["axis"]).astype(xs[0].dtype),
        doc="Along one axis (frontends rewrite ONNX's old flatten-to-2-D semantics).",
    )


# -- LRN -------------------------------------------------------------------------------------


def lrn_window(size: int) -> tuple[int, int]:
    """Channels summed before and after each channel: floor((size-1)/2), ceil((size-1)/2)."""
    return (size - 1) // 2, size // 2


def _lrn_reference(xs, attrs) -> np.ndarray:
    x = xs[0]
    before, after = lrn_window(attrs["size"])
    c = x.shape[1]
    sq = np.pad(x * x, [(0, 0), (before, after)] + [(0, 0)] * (x.ndim - 2))
    total = sum(sq[:, j : j + c] for j in range(attrs["size"]))
    scale = attrs["bias"] + attrs["alpha"] / attrs["size"] * total
    return (x / scale ** attrs["beta"]).astype(x.dtype)


def _lrn_infer(in_types, attrs) -> TensorType:
    x = in_types[0]
    _float_input(x, "lrn")
    if x.rank < 2 or attrs["size"] < 1:
        raise IRTypeError(f"lrn needs an (N, C, ...) input and size >= 1, got {x}")
    return x


define(
    "lrn",
    inputs=["x"],
    attrs={
        "size": Attr("int"),
        "alpha": Attr("float", 1e-4),
        "beta": Attr("float", 0.75),
        "bias": Attr("float", 1.0),
    },
    infer=_lrn_infer,
    reference=_lrn_reference,
    doc="Local response normalization across channels (axis 1), as in ONNX/AlexNet.",
)


# -- einsum ----------------------------------------------------------------------------------


def parse_einsum(equation: str, ranks: list[int]) -> tuple[list[str], str]:
    """Operand subscripts and output subscripts with '...' expanded to capital letters."""
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        raise IRTypeError(f"einsum {equation!r} names {len(terms)} operands, got {len(ranks)}")
    ell_rank = 0
    for t, r in zip(terms, ranks):
        if "..." in t:
            ell_rank = max(ell_rank, r - (len(t) - 3))
    ell = "".join(chr(ord("A") + i) for i in range(ell_rank))
    expanded = []
    for t, r in zip(terms, ranks):
        if "..." in t:
            n = r - (len(t) - 3)
            t = t.replace("...", ell[ell_rank - n :])
        if len(t) != r or not all(ch.isalpha() for ch in t):
            raise IRTypeError(f"einsum term {t!r} does not fit an operand of rank {r}")
        expanded.append(t)
    if arrow:
        out = rhs.replace("...", ell)
    else:
        letters = "".join(expanded)
        out = ell + "".join(
            sorted(ch for ch in set(letters) if ch.islower() and letters.count(ch) == 1)
        )
    return expanded, out


def _einsum_infer(in_types, attrs) -> TensorType:
    dtypes = {t.dtype for t in in_types}
    if len(dtypes) != 1:
        raise IRTypeError(f"einsum operands must share one dtype, got {sorted(dtypes)}")
    terms, out = parse_einsum(attrs["equation"], [t.rank for t in in_types])
    sizes: dict[str, Any] = {}
    for t, ty in zip(terms, in_types):
        for ch, d in zip(t, ty.shape):
            prev = sizes.get(ch)
            if prev is None or prev == 1 or isinstance(prev, str) and isinstance(d, int) and d != 1:
                sizes[ch] = d
            elif isinstance(prev, int) and isinstance(d, int) and d not in (1, prev):
                raise IRTypeError(f"einsum: subscript {ch!r} has sizes {prev} and {d}")
    if any(ch not in sizes for ch in out):
        raise IRTypeError(f"einsum {attrs['equation']!r}: output names an unknown subscript")
    return TensorType(in_types[0].dtype, tuple(sizes[ch] for ch in out))


define(
    "einsum",
    inputs=["xs*"],
    attrs={"equation": Attr("str")},
    infer=_einsum_infer,
    reference=lambda xs, a: np.asarray(np.einsum(a["equation"], *xs)).astype(xs[0].dtype),
    doc="Einstein summation with numpy's equation syntax (including '...').",
)


# -- det -------------------------------------------------------------------------------------


def _det_infer(in_types, attrs) -> TensorType:
    (x,) = in_types
    _float_input(x, "det")
    if x.rank < 2:
        raise IRTypeError(f"det needs a [..., n, n] input, got {x}")
    m, n = x.shape[-2:]
    if m != n and isinstance(m, int) and isinstance(n, int):
        raise IRTypeError(f"det needs square matrices in the last two axes, got {x}")
    return x.with_shape(x.shape[:-2])


def _det_reference(xs, attrs) -> np.ndarray:
    x = xs[0]
    work = x.astype(np.float32) if x.dtype == np.float16 else x  # numpy has no float16 LU
    return np.asarray(np.linalg.det(work)).astype(x.dtype)


define(
    "det",
    inputs=["x"],
    infer=_det_infer,
    reference=_det_reference,
    doc="Determinant of each matrix in the last two axes (LU with partial pivoting).",
)
