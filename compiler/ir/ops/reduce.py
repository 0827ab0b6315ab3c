"""Reductions (sum, mean, max, norms, log-sum-exp...), arg-reductions, cumsum and top-k.

A reduction's ``axes`` are non-negative and sorted; reducing everything lists every axis.
Empty ``axes`` reduce over nothing, as numpy does with ``axis=()``: the op then acts
elementwise (``reduce_sum`` is the identity, ``reduce_l1`` is ``abs``), which is exactly
ONNX's ``noop_with_empty_axes``. Reducing over a zero-size axis gives the reduction's
identity (0 for sums, 1 for prod, -inf/+inf or the integer extremes for max/min, -inf for
the log-sums, NaN for mean), as ONNX 18+ defines it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..types import IRTypeError, TensorType
from ..types import dtype as dtype_of
from .registry import Attr, define
from .shapes import normalize_axes, normalize_axis

# -- reductions ----------------------------------------------------------------------------


def _normalize_axes(in_types, attrs) -> dict[str, Any]:
    return {**attrs, "axes": sorted(normalize_axes(attrs["axes"], in_types[0].rank))}


def reduced_shape(shape: tuple, axes: list[int], keepdims: bool) -> tuple:
    """The shape after reducing ``axes``: kept as 1 or dropped."""
    out: list = []
    for i, d in enumerate(shape):
        if i not in axes:
            out.append(d)
        elif keepdims:
            out.append(1)
    return tuple(out)


def reduce_identity(op: str, dtype: str) -> float | int | bool:
    """What ``op`` gives over an empty set of elements of ``dtype`` (ONNX 18+)."""
    kind = dtype_of(dtype)
    if op in ("reduce_max", "reduce_min"):
        is_max = op == "reduce_max"
        if dtype == "bool":
            return not is_max
        if kind.is_int:
            info = np.iinfo(kind.np)
            return int(info.min if is_max else info.max)
        return -np.inf if is_max else np.inf
    if op == "reduce_mean":  # 0/0
        return 0 if kind.is_int else np.nan
    return {
        "reduce_prod": 1,
        "reduce_log_sum": -np.inf,
        "reduce_log_sum_exp": -np.inf,
    }.get(op, 0)


def _max(x: np.ndarray, axes: tuple, keepdims: bool) -> np.ndarray:
    return np.max(x, axis=axes, keepdims=keepdims, initial=reduce_identity("reduce_max", x.dtype))


def _min(x: np.ndarray, axes: tuple, keepdims: bool) -> np.ndarray:
    return np.min(x, axis=axes, keepdims=keepdims, initial=reduce_identity("reduce_min", x.dtype))


def _mean(x: np.ndarray, axes: tuple, keepdims: bool) -> np.ndarray:
    count = int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
    total = np.sum(x, axis=axes, keepdims=keepdims, dtype=x.dtype)
    if count == 0:
        return np.full_like(total, reduce_identity("reduce_mean", x.dtype))
    if dtype_of(x.dtype).is_int:
        # An integer mean truncates toward zero (C division), as TVM computes it.
        q = np.abs(total.astype(np.int64)) // count
        return (np.sign(total) * q).astype(x.dtype)
    acc = np.float32 if x.dtype == np.float16 else x.dtype
    return np.mean(x, axis=axes, keepdims=keepdims, dtype=acc)


def _l2(x: np.ndarray, axes: tuple, keepdims: bool) -> np.ndarray:
    return np.sqrt(np.sum(np.square(x), axis=axes, keepdims=keepdims, dtype=x.dtype))


def _log_sum(x: np.ndarray, axes: tuple, keepdims: bool) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(np.sum(x, axis=axes, keepdims=keepdims))


def _log_sum_exp(x: np.ndarray, axes: tuple, keepdims: bool) -> np.ndarray:
    """log(sum(exp(x))) computed as m + log(sum(exp(x - m))), m the finite max (else 0)."""
    m = np.max(x, axis=axes, keepdims=True, initial=-np.inf)
    m = np.where(np.isfinite(m), m, np.zeros((), x.dtype))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        s = np.sum(np.exp(x - m), axis=axes, keepdims=True)
        out = np.log(s) + m
    return out if keepdims else np.squeeze(out, axis=axes)


_REDUCTIONS: dict[str, Callable[[np.ndarray, tuple, bool], np.ndarray]] = {
    "reduce_sum": lambda x, a, k: np.sum(x, axis=a, keepdims=k, dtype=x.dtype),
    "reduce_mean": _mean,
    "reduce_max": _max,
    "reduce_min": _min,
    "reduce_prod": lambda x, a, k: np.prod(x, axis=a, keepdims=k, dtype=x.dtype),
    "reduce_l1": lambda x, a, k: np.sum(np.abs(x), axis=a, keepdims=k, dtype=x.dtype),
    "reduce_l2": _l2,
    "reduce_log_sum": _log_sum,
    "reduce_log_sum_exp": _log_sum_exp,
    "reduce_sum_square": lambda x, a, k: np.sum(np.square(x), axis=a, keepdims=k, dtype=x.dtype),
}

FLOAT_ONLY = frozenset({"reduce_log_sum", "reduce_log_sum_exp"})
"""Reductions defined through exp/log: integer inputs are refused."""

BOOL_OK = frozenset({"reduce_max", "reduce_min"})


def _reduction(name: str, fn: Callable[[np.ndarray, tuple, bool], np.ndarray]) -> None:
    def infer(in_types, attrs) -> TensorType:
        x = in_types[0]
        if x.dtype == "bool" and name not in BOOL_OK:
            raise IRTypeError(f"{name} does not take bool input")
        if name in FLOAT_ONLY and not x.dtype.is_float:
            raise IRTypeError(f"{name} needs a float input, got {x.dtype}")
        return x.with_shape(reduced_shape(x.shape, attrs["axes"], attrs["keepdims"]))

    def reference(xs, attrs) -> np.ndarray:
        x = xs[0]
        out = fn(x, tuple(attrs["axes"]), attrs["keepdims"])
        return np.asarray(out).astype(x.dtype, copy=False)

    define(
        name,
        inputs=["x"],
        attrs={"axes": Attr("ints"), "keepdims": Attr("bool", True)},
        normalize=_normalize_axes,
        infer=infer,
        reference=reference,
        doc=f"{name} over ``axes``; empty axes reduce nothing (elementwise).",
    )


for _name, _fn in _REDUCTIONS.items():
    _reduction(_name, _fn)


# -- argmax / argmin -----------------------------------------------------------------------


def _normalize_axis(in_types, attrs) -> dict[str, Any]:
    return {**attrs, "axis": normalize_axis(attrs["axis"], in_types[0].rank)}


def _arg_infer(in_types, attrs) -> TensorType:
    x = in_types[0]
    if x.rank == 0:
        raise IRTypeError("argmax/argmin need an input of rank >= 1")
    if x.shape[attrs["axis"]] == 0:
        raise IRTypeError("argmax/argmin over a zero-size axis have no result")
    return TensorType("int64", reduced_shape(x.shape, [attrs["axis"]], attrs["keepdims"]))


def _arg(fn: Callable[..., np.ndarray]) -> Callable[[list, dict], np.ndarray]:
    def reference(xs, attrs) -> np.ndarray:
        x, axis = xs[0], attrs["axis"]
        if attrs["select_last_index"]:
            idx = x.shape[axis] - 1 - fn(np.flip(x, axis), axis=axis, keepdims=True)
        else:
            idx = fn(x, axis=axis, keepdims=True)
        if not attrs["keepdims"]:
            idx = np.squeeze(idx, axis=axis)
        return idx.astype(np.int64)

    return reference


_ARG_ATTRS = {
    "axis": Attr("int", 0),
    "keepdims": Attr("bool", True),
    "select_last_index": Attr("bool", False),
}
for _name, _fn in (("argmax", np.argmax), ("argmin", np.argmin)):
    define(
        _name,
        inputs=["x"],
        attrs=_ARG_ATTRS,
        normalize=_normalize_axis,
        infer=_arg_infer,
        reference=_arg(_fn),
        doc="int64 index of the extreme along ``axis``; ties: first (or last) index.",
    )


# -- cumsum --------------------------------------------------------------------------------


def _cumsum_infer(in_types, attrs) -> TensorType:
    if in_types[0].dtype == "bool":
        raise IRTypeError("cumsum does not take bool input")
    return in_types[0]


def _cumsum(xs, attrs) -> np.ndarray:
    x, axis = xs[0], attrs["axis"]
    if attrs["reverse"]:
        x = np.flip(x, axis)
    out = np.cumsum(x, axis=axis, dtype=x.dtype)
    if attrs["exclusive"]:
        out = out - x  # exact for integers; for floats it matches ONNX's own reference
    if attrs["reverse"]:
        out = np.flip(out, axis)
    return np.ascontiguousarray(out)


define(
    "cumsum",
    inputs=["x"],
    attrs={
        "axis": Attr("int", 0),
        "exclusive": Attr("bool", False),
        "reverse": Attr("bool", False),
    },
    normalize=_normalize_axis,
    infer=_cumsum_infer,
    reference=_cumsum,
    doc="Running sum along ``axis``; exclusive leaves out the element itself.",
)


# -- topk ----------------------------------------------------------------------------------


def _normalize_topk(in_types, attrs) -> dict[str, Any]:
    x = in_types[0]
    if x.rank == 0:
        raise IRTypeError("topk needs an input of rank >= 1")
    axis = normalize_axis(attrs["axis"], x.rank)
    n = x.shape[axis]
    if attrs["k"] < 0 or (isinstance(n, int) and attrs["k"] > n):
        raise IRTypeError(f"topk: k={attrs['k']} is out of range for axis size {n}")
    return {**attrs, "axis": axis}


def _topk_infer(in_types, attrs) -> list[TensorType]:
    x = in_types[0]
    shape = list(x.shape)
    shape[attrs["axis"]] = attrs["k"]
    return [x.with_shape(shape), TensorType("int64", tuple(shape))]


def _topk(xs, attrs) -> list[np.ndarray]:
    """Stable order: among equal values the lower index comes first (as ONNX asks)."""
    x, k, axis = xs[0], attrs["k"], attrs["axis"]
    keys = -x if attrs["largest"] and dtype_of(x.dtype).is_float else x
    if attrs["largest"] and not dtype_of(x.dtype).is_float:
        # Negation overflows for integers: sort the reversed array ascending instead.
        n = x.shape[axis]
        rev = np.argsort(np.flip(x, axis), axis=axis, kind="stable")
        order = np.flip(n - 1 - rev, axis)
    else:
        order = np.argsort(keys, axis=axis, kind="stable")
    idx = np.take(order, np.arange(k), axis=axis)
    return [np.take_along_axis(x, idx, axis=axis), idx.astype(np.int64)]


define(
    "topk",
    inputs=["x"],
    attrs={
        "k": Attr("int"),
        "axis": Attr("int", -1),
        "largest": Attr("bool", True),
        "sorted": Attr("bool", True),
    },
    normalize=_normalize_topk,
    infer=_topk_infer,
    reference=_topk,
    num_outputs=2,
    doc="The k largest (or smallest) values along ``axis`` and their int64 indices.",
)
