"""Converters of ONNX elementwise ops: math, activations, comparisons, logic, Cast, Where.

Opsets 7 and up: binary ops broadcast like numpy (the legacy ``broadcast``/``axis``
attributes of opset < 7 are refused). Variadic Sum/Mean/Max/Min chain binary ops.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from compiler.ir.casting import ROUND_MODES
from compiler.ir.graph import Value

from .registry import NodeContext, converter, onnx_dtype


def _unary(op_type: str, op: str, since: int = 1, **attrs: tuple[str, object]) -> None:
    """Register ``op_type`` -> core ``op``; ``attrs`` maps core attribute -> (ONNX name,
    default)."""

    def convert(ctx: NodeContext) -> Value:
        values = {key: ctx.attr(name, default) for key, (name, default) in attrs.items()}
        return ctx.emit(op, ctx.input(0), **values)

    convert.__name__ = op_type
    converter(op_type, since=since)(convert)


def _legacy_check(ctx: NodeContext) -> None:
    if ctx.has_attr("broadcast") or ctx.has_attr("axis"):
        raise ctx.error("the legacy 'broadcast'/'axis' attributes (opset < 7) are not supported")


def _binary(op_type: str, op: str, since: int = 1) -> None:
    def convert(ctx: NodeContext) -> Value:
        _legacy_check(ctx)
        return ctx.emit(op, ctx.input(0), ctx.input(1))

    convert.__name__ = op_type
    converter(op_type, since=since)(convert)


for _op_type, _op in [
    ("Abs", "abs"),
    ("Acos", "acos"),
    ("Acosh", "acosh"),
    ("Asin", "asin"),
    ("Asinh", "asinh"),
    ("Atan", "atan"),
    ("Atanh", "atanh"),
    ("BitwiseNot", "bitwise_not"),
    ("Ceil", "ceil"),
    ("Cos", "cos"),
    ("Cosh", "cosh"),
    ("Erf", "erf"),
    ("Exp", "exp"),
    ("Floor", "floor"),
    ("HardSwish", "hard_swish"),
    ("IsNaN", "isnan"),
    ("Log", "log"),
    ("Mish", "mish"),
    ("Neg", "neg"),
    ("Not", "logical_not"),
    ("Reciprocal", "reciprocal"),
    ("Relu", "relu"),
    ("Round", "round"),
    ("Sigmoid", "sigmoid"),
    ("Sign", "sign"),
    ("Sin", "sin"),
    ("Sinh", "sinh"),
    ("Softplus", "softplus"),
    ("Softsign", "softsign"),
    ("Sqrt", "sqrt"),
    ("Tan", "tan"),
    ("Tanh", "tanh"),
]:
    _unary(_op_type, _op)

_unary("Celu", "celu", alpha=("alpha", 1.0))
_unary("Elu", "elu", alpha=("alpha", 1.0))
_unary("Gelu", "gelu", approximate=("approximate", "none"))
_unary("HardSigmoid", "hard_sigmoid", alpha=("alpha", 0.2), beta=("beta", 0.5))
_unary("LeakyRelu", "leaky_relu", alpha=("alpha", 0.01))
_unary(
    "Selu",
    "selu",
    alpha=("alpha", 1.67326319217681884765625),
    gamma=("gamma", 1.05070102214813232421875),
)
_unary("Shrink", "shrink", bias=("bias", 0.0), lambd=("lambd", 0.5))
_unary("ThresholdedRelu", "thresholded_relu", alpha=("alpha", 1.0))

for _op_type, _op in [
    ("Add", "add"),
    ("Sub", "sub"),
    ("Mul", "mul"),
    ("Div", "div"),
    ("Equal", "equal"),
    ("Less", "less"),
    ("LessOrEqual", "less_equal"),
    ("Greater", "greater"),
    ("GreaterOrEqual", "greater_equal"),
    ("And", "logical_and"),
    ("Or", "logical_or"),
    ("Xor", "logical_xor"),
    ("BitwiseAnd", "bitwise_and"),
    ("BitwiseOr", "bitwise_or"),
    ("BitwiseXor", "bitwise_xor"),
    ("PRelu", "prelu"),
]:
    _binary(_op_type, _op)


@converter("IsInf", since=10)
def isinf(ctx: NodeContext) -> Value:
    return ctx.emit(
        "isinf",
        ctx.input(0),
        detect_positive=bool(ctx.attr("detect_positive", 1)),
        detect_negative=bool(ctx.attr("detect_negative", 1)),
    )


@converter("Mod", since=10)
def mod(ctx: NodeContext) -> Value:
    return ctx.emit("mod", ctx.input(0), ctx.input(1), fmod=bool(ctx.attr("fmod", 0)))


@converter("BitShift", since=11)
def bit_shift(ctx: NodeContext) -> Value:
    direction = ctx.attr("direction", "")
    if direction not in ("LEFT", "RIGHT"):
        raise ctx.error(f"direction {direction!r} is not LEFT or RIGHT")
    return ctx.emit("bit_shift", ctx.input(0), ctx.input(1), direction=direction.lower())


@converter("Pow", since=7)
def pow_(ctx: NodeContext) -> Value:
    """Pow-12+ lets the exponent's dtype differ: a float base casts the exponent to its
    dtype; an integer base with a float exponent computes in float64, then casts back."""
    base, exponent = ctx.input(0), ctx.input(1)
    assert base is not None and exponent is not None
    if base.dtype == exponent.dtype:
        return ctx.emit("pow", base, exponent)
    if base.dtype.startswith("float") or not exponent.dtype.startswith("float"):
        return ctx.emit("pow", base, ctx.emit("cast", exponent, to=base.dtype))
    wide = [ctx.emit("cast", v, to="float64") for v in (base, exponent)]
    return ctx.emit("cast", ctx.emit("pow", *wide), to=base.dtype)


@converter("Where", since=9)
def where(ctx: NodeContext) -> Value:
    return ctx.emit("where", ctx.input(0), ctx.input(1), ctx.input(2))


# -- Cast ----------------------------------------------------------------------------------


@converter("Cast", since=6)
def cast(ctx: NodeContext) -> Value:
    to = ctx.attr("to")
    if to is None:
        raise ctx.error("attribute 'to' is missing")
    return _cast_to(ctx, onnx_dtype(int(to)))


@converter("CastLike", since=15)
def cast_like(ctx: NodeContext) -> Value:
    target = ctx.input(1)
    assert target is not None
    return _cast_to(ctx, target.dtype)


def _cast_to(ctx: NodeContext, dtype: str) -> Value:
    """Cast-19+/CastLike-19+ take ``saturate`` (float8 targets), Cast-24+ ``round_mode``
    (float8e8m0); earlier opsets behave as the defaults."""
    x = ctx.input(0)
    assert x is not None
    if x.dtype == dtype:
        return x
    attrs: dict[str, object] = {}
    if ctx.has_attr("saturate"):
        attrs["saturate"] = bool(ctx.attr("saturate"))
    if ctx.has_attr("round_mode"):
        mode = ctx.attr("round_mode")
        if mode not in ROUND_MODES:
            raise ctx.error(f"round_mode {mode!r} is not one of {', '.join(ROUND_MODES)}")
        attrs["round_mode"] = mode
    return ctx.emit("cast", x, to=dtype, **attrs)


# -- Clip ----------------------------------------------------------------------------------


@converter("Clip", since=6)
def clip_6(ctx: NodeContext) -> Value:
    """Clip-6: bounds are float attributes whose defaults are the float range."""
    return ctx.emit("clip", ctx.input(0), min=ctx.attr("min"), max=ctx.attr("max"))


@converter("Clip", since=11)
def clip_11(ctx: NodeContext) -> Value:
    """Clip-11+: bounds are optional scalar inputs; constant ones become attributes, others
    become maximum/minimum (in that order: min > max gives max)."""
    x = ctx.input(0)
    assert x is not None
    attrs: dict[str, float] = {}
    dynamic: list[tuple[str, Value]] = []
    for i, key in ((1, "min"), (2, "max")):
        bound = ctx.input(i)
        if bound is None:
            continue
        data = ctx.value(i)
        if data is None:
            dynamic.append(("maximum" if key == "min" else "minimum", bound))
            continue
        if data.size != 1:
            raise ctx.error(f"{key} must be a scalar, got shape {list(data.shape)}")
        if np.isnan(data.astype("float64")).any():
            raise ctx.error(f"{key} is nan")
        value = data.reshape(()).item()
        if not dynamic:
            attrs[key] = value
        else:
            dynamic.append(("maximum" if key == "min" else "minimum", bound))
    y = ctx.emit("clip", x, **attrs) if attrs else x
    for op, bound in dynamic:
        y = ctx.emit(op, y, _scalar_like(ctx, bound, x))
    return y


def _scalar_like(ctx: NodeContext, bound: Value, x: Value) -> Value:
    """A bound given as a 1-element rank-1 tensor (common in exports) must not add a dim to
    a scalar ``x``."""
    if bound.type.rank <= x.type.rank:
        return bound
    return ctx.emit("reshape", bound, shape=[])


# -- variadic --------------------------------------------------------------------------------


def _variadic(op_type: str, op: str, finish: Callable[[NodeContext, Value], Value] | None) -> None:
    def convert(ctx: NodeContext) -> Value:
        values = [v for v in ctx.inputs if v is not None]
        if not values:
            raise ctx.error("needs at least one input")
        result = values[0]
        for v in values[1:]:
            result = ctx.emit(op, result, v)
        return finish(ctx, result) if finish is not None else result

    convert.__name__ = op_type
    converter(op_type, since=6)(convert)


def _mean_finish(ctx: NodeContext, total: Value) -> Value:
    n = sum(1 for v in ctx.inputs if v is not None)
    if n == 1:
        return total
    return ctx.emit("div", total, ctx.const(np.array(n, dtype=total.dtype)))


_variadic("Sum", "add", None)
_variadic("Max", "maximum", None)
_variadic("Min", "minimum", None)
_variadic("Mean", "add", _mean_finish)


@converter("BitCast", since=26)
def bitcast(ctx: NodeContext) -> Value:
    return ctx.emit("bitcast", ctx.input(0), to=onnx_dtype(ctx.attr("to")))
