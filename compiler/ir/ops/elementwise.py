"""Elementwise ops: unary math and activations, broadcasting binary ops, where, cast.

Binary ops take two operands of one dtype (frontends insert casts) and broadcast like numpy.
The references spell out the semantics that formats leave to the implementation: integer
``div`` truncates toward zero, ``mod`` follows the divisor's sign unless ``fmod``, integer
``pow`` wraps around like C, ``bit_shift`` by a negative amount or by the bit width or more
gives 0 (or -1 for a right shift of a negative number), ``round`` rounds half to even.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..casting import ROUND_MODES, cast_array
from ..types import DTYPES, IRTypeError, TensorType
from ..types import dtype as dtype_of
from .registry import Attr, define
from .shapes import broadcast_shapes

Array = np.ndarray
_KINDS = {
    "float": frozenset(d for d in DTYPES if d.is_float),
    "int": frozenset(d for d in DTYPES if d.is_int),
    "number": frozenset(d for d in DTYPES if not d.is_bool),
    "signed": frozenset(d for d in DTYPES if d.is_signed),
    "bool": frozenset(d for d in DTYPES if d.is_bool),
    "any": frozenset(DTYPES),
}
"""Names of the dtype classes an op accepts, as given to ``unary``/``binary``."""


def _check(name: str, t: TensorType, kind: str) -> None:
    if t.dtype not in _KINDS[kind]:
        raise IRTypeError(f"{name} does not take {t.dtype} operands (it takes {kind} dtypes)")


def _quiet(fn: Callable[..., Array]) -> Callable[..., Array]:
    """Numpy without overflow/invalid warnings: inf and nan results are the semantics."""

    def run(*xs: Array, **attrs: Any) -> Array:
        with np.errstate(all="ignore"):
            return fn(*xs, **attrs)

    return run


def _same_dtype(fn: Callable[..., Array]) -> Callable[..., Array]:
    """``fn`` whose result is cast back to its first operand's dtype (float16 math, ints)."""

    def run(*xs: Array, **attrs: Any) -> Array:
        return np.asarray(fn(*xs, **attrs)).astype(xs[0].dtype, copy=False)

    return run


# -- unary -------------------------------------------------------------------------------


def unary(
    name: str,
    fn: Callable[..., Array],
    kind: str = "float",
    out_dtype: str | None = None,
    attrs: dict[str, Attr] | None = None,
    doc: str = "",
) -> None:
    """An op mapping each element through ``fn(x, **attrs)``; output shape = input shape,
    output dtype = ``out_dtype`` or the input's."""

    def infer(in_types: Sequence[TensorType | None], a: dict[str, Any]) -> TensorType:
        (x,) = in_types
        assert x is not None
        _check(name, x, kind)
        return x if out_dtype is None else x.with_dtype(out_dtype)

    body = _quiet(fn)
    if out_dtype is None:
        body = _same_dtype(body)
    define(
        name,
        inputs=["x"],
        attrs=attrs,
        infer=infer,
        reference=lambda xs, a: body(xs[0], **a),
        doc=doc,
    )


def _erf(x: Array) -> Array:
    return np.vectorize(math.erf, otypes=["float64"])(x.astype("float64"))


def _sigmoid(x: Array) -> Array:
    return 1.0 / (1.0 + np.exp(-x))


def _softplus(x: Array) -> Array:
    return np.logaddexp(np.zeros((), x.dtype), x)


def _where_neg(x: Array, neg: Array) -> Array:
    return np.where(x < 0, neg, x)


for _name, _fn in [
    ("exp", np.exp),
    ("log", np.log),
    ("sqrt", np.sqrt),
    ("reciprocal", lambda x: np.ones((), x.dtype) / x),
    ("sin", np.sin),
    ("cos", np.cos),
    ("tan", np.tan),
    ("asin", np.arcsin),
    ("acos", np.arccos),
    ("atan", np.arctan),
    ("sinh", np.sinh),
    ("cosh", np.cosh),
    ("asinh", np.arcsinh),
    ("acosh", np.arccosh),
    ("atanh", np.arctanh),
    ("tanh", np.tanh),
    ("sigmoid", _sigmoid),
    ("erf", _erf),
    ("floor", np.floor),
    ("ceil", np.ceil),
    ("round", np.round),
    ("softplus", _softplus),
    ("softsign", lambda x: x / (1 + np.abs(x))),
    ("mish", lambda x: x * np.tanh(_softplus(x))),
    ("hard_swish", lambda x: x * np.clip(x / 6 + 0.5, 0, 1)),
]:
    unary(_name, _fn)

unary("neg", np.negative, "signed")
unary("abs", np.abs, "number")
unary("sign", np.sign, "number")
unary("relu", lambda x: np.maximum(x, np.zeros((), x.dtype)), "signed")
unary("logical_not", np.logical_not, "bool")
unary("bitwise_not", np.invert, "int")
unary("isnan", np.isnan, "float", out_dtype="bool")
unary(
    "isinf",
    lambda x, detect_positive, detect_negative: (
        np.isinf(x) & (((x > 0) & detect_positive) | ((x < 0) & detect_negative))
    ),
    "float",
    out_dtype="bool",
    attrs={"detect_positive": Attr("bool", True), "detect_negative": Attr("bool", True)},
)

unary(
    "leaky_relu",
    lambda x, alpha: _where_neg(x, alpha * x),
    attrs={"alpha": Attr("float", 0.01)},
)
unary(
    "elu",
    lambda x, alpha: _where_neg(x, alpha * (np.exp(x) - 1)),
    attrs={"alpha": Attr("float", 1.0)},
)
unary(
    "selu",
    lambda x, alpha, gamma: gamma * np.where(x <= 0, alpha * (np.exp(x) - 1), x),
    attrs={
        "alpha": Attr("float", 1.6732632423543772848170429916717),
        "gamma": Attr("float", 1.0507009873554804934193349852946),
    },
)
unary(
    "celu",
    lambda x, alpha: np.maximum(x, 0) + np.minimum(0, alpha * (np.exp(x / alpha) - 1)),
    attrs={"alpha": Attr("float", 1.0)},
)
unary(
    "hard_sigmoid",
    lambda x, alpha, beta: np.clip(alpha * x + beta, 0, 1),
    attrs={"alpha": Attr("float", 0.2), "beta": Attr("float", 0.5)},
)
unary(
    "thresholded_relu",
    lambda x, alpha: np.where(x > alpha, x, 0),
    attrs={"alpha": Attr("float", 1.0)},
)
unary(
    "shrink",
    lambda x, bias, lambd: np.where(x < -lambd, x + bias, np.where(x > lambd, x - bias, 0)),
    attrs={"bias": Attr("float", 0.0), "lambd": Attr("float", 0.5)},
)


def _gelu(x: Array, approximate: str) -> Array:
    if approximate == "tanh":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    return 0.5 * x * (1 + _erf(x / math.sqrt(2)))


unary("gelu", _gelu, attrs={"approximate": Attr("str", "none", choices=("none", "tanh"))})


def _clip_bound(bound: float | None, dtype: np.dtype) -> Any:
    """A clip bound in the operand's dtype; integer bounds round toward the allowed range."""
    if bound is None:
        return None
    if dtype_of(dtype).is_int:
        info = np.iinfo(dtype)
        return dtype.type(min(max(bound, info.min), info.max))
    return dtype.type(bound)


def _clip(x: Array, min: float | None, max: float | None) -> Array:  # noqa: A002
    lo, hi = _clip_bound(min, x.dtype), _clip_bound(max, x.dtype)
    if lo is not None:
        x = np.maximum(x, lo)
    if hi is not None:
        x = np.minimum(x, hi)  # after max: min > max gives max everywhere (ONNX)
    return x


unary(
    "clip",
    _clip,
    "number",
    attrs={"min": Attr("float?", None), "max": Attr("float?", None)},
    doc="min(max(x, min), max); a None bound is absent",
)


# -- binary ------------------------------------------------------------------------------


def binary(
    name: str,
    fn: Callable[..., Array],
    kind: str = "number",
    out_dtype: str | None = None,
    attrs: dict[str, Attr] | None = None,
    doc: str = "",
) -> None:
    """A numpy-broadcasting op over two operands of one dtype; output keeps that dtype
    unless ``out_dtype`` (comparisons give bool)."""

    def infer(in_types: Sequence[TensorType | None], a: dict[str, Any]) -> TensorType:
        x, y = in_types
        assert x is not None and y is not None
        if x.dtype != y.dtype:
            raise IRTypeError(f"{name}: operand dtypes differ: {x.dtype} and {y.dtype}")
        _check(name, x, kind)
        return TensorType(out_dtype or x.dtype, broadcast_shapes(x.shape, y.shape))

    body = _quiet(fn)
    if out_dtype is None:
        body = _same_dtype(body)
    define(
        name,
        inputs=["a", "b"],
        attrs=attrs,
        infer=infer,
        reference=lambda xs, a: body(xs[0], xs[1], **a),
        doc=doc,
    )


def _div(a: Array, b: Array) -> Array:
    if dtype_of(a.dtype).is_int:
        safe = np.where(b == 0, 1, b).astype(b.dtype)
        q = np.floor_divide(a, safe)
        adjust = (np.remainder(a, safe) != 0) & ((a < 0) ^ (b < 0))
        return np.where(b == 0, 0, q + adjust.astype(q.dtype))
    return np.divide(a, b)


def _mod(a: Array, b: Array, fmod: bool) -> Array:
    return np.fmod(a, b) if fmod else np.mod(a, b)


def int_pow(a: Array, b: Array) -> Array:
    """``a ** b`` for integers with C wraparound; a negative exponent truncates ``1 / a**-b``
    (1 for a == 1, +-1 for a == -1, else 0). Square-and-multiply over the exponent's bits."""
    a, b = np.broadcast_arrays(a, b)
    result = np.ones(a.shape, a.dtype)
    base, e = a.copy(), np.abs(b)
    for _ in range(a.dtype.itemsize * 8):
        result = np.where((e & 1) == 1, result * base, result)
        base = base * base
        e = e >> 1
    if dtype_of(a.dtype).kind == "int":
        odd = (b & 1) == 1
        neg_result = np.where(a == 1, 1, np.where(a == -1, np.where(odd, -1, 1), 0))
        result = np.where(b < 0, neg_result.astype(a.dtype), result)
    return result


def _pow(a: Array, b: Array) -> Array:
    return int_pow(a, b) if dtype_of(a.dtype).is_int else np.power(a, b)


def _bit_shift(a: Array, b: Array, direction: str) -> Array:
    a, b = np.broadcast_arrays(a, b)
    bits = a.dtype.itemsize * 8
    valid = (b >= 0) & (b < bits)
    safe = np.where(valid, b, 0).astype(a.dtype)
    if direction == "left":
        u = np.dtype(f"u{a.dtype.itemsize}")
        shifted = np.left_shift(a.astype(u), safe.astype(u)).astype(a.dtype)
        return np.where(valid, shifted, 0)
    fill = np.where(a < 0, -1, 0) if dtype_of(a.dtype).kind == "int" else 0
    return np.where(valid, np.right_shift(a, safe), fill)


for _name, _fn in [
    ("add", np.add),
    ("sub", np.subtract),
    ("mul", np.multiply),
    ("div", _div),
    ("pow", _pow),
    ("maximum", np.maximum),
    ("minimum", np.minimum),
]:
    binary(_name, _fn)

binary("mod", _mod, attrs={"fmod": Attr("bool", False)}, doc="fmod: C fmod (sign of a)")
for _name, _fn in [
    ("equal", np.equal),
    ("less", np.less),
    ("less_equal", np.less_equal),
    ("greater", np.greater),
    ("greater_equal", np.greater_equal),
]:
    binary(_name, _fn, "any", out_dtype="bool")
for _name, _fn in [
    ("logical_and", np.logical_and),
    ("logical_or", np.logical_or),
    ("logical_xor", np.logical_xor),
]:
    binary(_name, _fn, "bool", out_dtype="bool")
for _name, _fn in [
    ("bitwise_and", np.bitwise_and),
    ("bitwise_or", np.bitwise_or),
    ("bitwise_xor", np.bitwise_xor),
]:
    binary(_name, _fn, "int")
binary(
    "bit_shift",
    _bit_shift,
    "int",
    attrs={"direction": Attr("str", choices=("left", "right"))},
)


def _prelu_infer(in_types: Sequence[TensorType | None], a: dict[str, Any]) -> TensorType:
    x, slope = in_types
    assert x is not None and slope is not None
    if x.dtype != slope.dtype:
        raise IRTypeError(f"prelu: operand dtypes differ: {x.dtype} and {slope.dtype}")
    _check("prelu", x, "signed")
    if broadcast_shapes(x.shape, slope.shape) != x.shape:
        raise IRTypeError(f"prelu: slope {slope.shape} does not broadcast to x {x.shape}")
    return x


define(
    "prelu",
    inputs=["x", "slope"],
    infer=_prelu_infer,
    reference=lambda xs, a: np.where(xs[0] < 0, xs[0] * xs[1], xs[0]).astype(xs[0].dtype),
    doc="x where x >= 0 else slope * x; slope broadcasts to x (one way)",
)


# -- where, cast -------------------------------------------------------------------------


def _where_infer(in_types: Sequence[TensorType | None], a: dict[str, Any]) -> TensorType:
    cond, x, y = in_types
    assert cond is not None and x is not None and y is not None
    if cond.dtype != "bool":
        raise IRTypeError(f"where: condition must be bool, not {cond.dtype}")
    if x.dtype != y.dtype:
        raise IRTypeError(f"where: operand dtypes differ: {x.dtype} and {y.dtype}")
    return TensorType(x.dtype, broadcast_shapes(cond.shape, x.shape, y.shape))


define(
    "where",
    inputs=["cond", "a", "b"],
    infer=_where_infer,
    reference=lambda xs, a: np.where(*xs).astype(xs[1].dtype, copy=False),
)


def _cast_reference(xs: Sequence[Array | None], a: dict[str, Any]) -> Array:
    (x,) = xs
    assert x is not None
    return cast_array(x, a["to"], a["saturate"], a["round_mode"])


define(
    "cast",
    inputs=["x"],
    attrs={
        "to": Attr("dtype"),
        "saturate": Attr("bool", True, doc="to float8/e8m0: out of range -> largest finite"),
        "round_mode": Attr("str", "up", choices=ROUND_MODES, doc="to float8_e8m0fnu only"),
    },
    infer=lambda ts, a: ts[0].with_dtype(a["to"]),
    reference=_cast_reference,
    doc="numpy astype: to bool is x != 0; float to int truncates (out of range: undefined); "
    "narrow types as compiler/ir/casting.py says",
)


def _bitcast_infer(ts: Sequence[TensorType | None], a: dict[str, Any]) -> TensorType:
    (x,) = ts
    assert x is not None
    if np.dtype(x.dtype).itemsize != np.dtype(a["to"]).itemsize:
        raise IRTypeError(f"bitcast {x.dtype} -> {a['to']}: the bit widths differ")
    return x.with_dtype(a["to"])


def _bitcast_reference(xs: Sequence[Array | None], a: dict[str, Any]) -> Array:
    (x,) = xs
    assert x is not None
    if a["to"] == "bool" or x.dtype == np.bool_:
        return x.astype(a["to"])  # a byte other than 0/1 is no valid bool: read as x != 0
    return np.ascontiguousarray(x).view(a["to"])


define(
    "bitcast",
    inputs=["x"],
    attrs={"to": Attr("dtype")},
    infer=_bitcast_infer,
    reference=_bitcast_reference,
    doc="The same bits read as another dtype of the same width (little endian); to or from "
    "bool it is a cast (bool is one byte, 0 or 1)",
)
