"""Element-wise MIL ops: arithmetic and comparison (numpy broadcasting, as MIL defines it),
unary math, activations, ``softmax``, ``cast``.

Everything computes in the dtype of ``x`` (an fp16 program stays in float16). Scalar
parameters (``alpha``, ``epsilon``...) become constants of that dtype; from iOS17 they may be
given in another float type, which only changes how they are stored.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from compiler.ir.graph import Value

from .registry import MilContext, mil_op

_BINARY = {
    "add": "add",
    "sub": "sub",
    "mul": "mul",
    "pow": "pow",
    "maximum": "maximum",
    "minimum": "minimum",
    "equal": "equal",
    "less": "less",
    "less_equal": "less_equal",
    "greater": "greater",
    "greater_equal": "greater_equal",
    "logical_and": "logical_and",
    "logical_or": "logical_or",
    "logical_xor": "logical_xor",
}
_UNARY = {
    "abs": "abs",
    "acos": "acos",
    "asin": "asin",
    "atan": "atan",
    "atanh": "atanh",
    "ceil": "ceil",
    "cos": "cos",
    "cosh": "cosh",
    "erf": "erf",
    "exp": "exp",
    "floor": "floor",
    "round": "round",
    "sign": "sign",
    "sin": "sin",
    "sinh": "sinh",
    "sqrt": "sqrt",
    "tan": "tan",
    "tanh": "tanh",
    "logical_not": "logical_not",
    "relu": "relu",
    "sigmoid": "sigmoid",
    "softplus": "softplus",
    "softsign": "softsign",
}


def scalar(ctx: MilContext, value: float, like: Value) -> Value:
    """A 0-d constant of ``like``'s dtype."""
    return ctx.const(np.asarray(value, dtype=like.dtype.np))


def operands(ctx: MilContext) -> tuple[Value, Value]:
    """``x`` and ``y`` in one dtype: the result's, or for a comparison the float (else the
    wider) operand's. MIL programs give both in one type; this guards pymil's promotion."""
    x, y = ctx.x("x"), ctx.x("y")
    if x.dtype != y.dtype:
        want = ctx.out_dtype()
        if want == "bool":
            want = str(max(x, y, key=lambda v: (v.dtype.is_float, v.dtype.np.itemsize)).dtype)
        x, y = (v if v.dtype == want else ctx.emit("cast", v, to=want) for v in (x, y))
    return x, y


def _binary(core: str) -> Callable[[MilContext], Value]:
    def convert(ctx: MilContext) -> Value:
        return ctx.emit(core, *operands(ctx))

    return convert


def _unary(core: str) -> Callable[[MilContext], Value]:
    def convert(ctx: MilContext) -> Value:
        return ctx.emit(core, ctx.x("x"))

    return convert


for _name, _core in _BINARY.items():
    mil_op(_name)(_binary(_core))
for _name, _core in _UNARY.items():
    mil_op(_name)(_unary(_core))


# -- binary ------------------------------------------------------------------------------


@mil_op("not_equal")
def not_equal(ctx: MilContext) -> Value:
    return ctx.emit("logical_not", ctx.emit("equal", *operands(ctx)))


@mil_op("real_div")
def real_div(ctx: MilContext) -> Value:
    """x / y; int32 operands truncate toward zero (pymil's folding casts the quotient)."""
    return ctx.emit("div", *operands(ctx))


@mil_op("floor_div")
def floor_div(ctx: MilContext) -> Value:
    """Division rounded toward -inf (Python's //): floor(x / y) for floats; for integers
    (x - x mod y) / y, which divides exactly, with mod taking the divisor's sign."""
    x, y = operands(ctx)
    if x.dtype.is_float:
        return ctx.emit("floor", ctx.emit("div", x, y))
    return ctx.emit("div", ctx.emit("sub", x, ctx.emit("mod", x, y)), y)


@mil_op("mod")
def mod(ctx: MilContext) -> Value:
    """Python's %: the remainder takes the divisor's sign."""
    return ctx.emit("mod", *operands(ctx), fmod=False)


# -- unary -------------------------------------------------------------------------------


@mil_op("exp2")
def exp2(ctx: MilContext) -> Value:
    x = ctx.x("x")
    return ctx.emit("pow", scalar(ctx, 2, x), x)


@mil_op("square")
def square(ctx: MilContext) -> Value:
    x = ctx.x("x")
    return ctx.emit("mul", x, x)


def _plus_epsilon(ctx: MilContext, default: float) -> Value:
    x = ctx.x("x")
    eps = scalar(ctx, ctx.attr("epsilon", default), x)
    return x if eps.const == 0 else ctx.emit("add", x, eps)


@mil_op("inverse")
def inverse(ctx: MilContext) -> Value:
    """1 / (x + epsilon), epsilon 1e-4 by default."""
    t = _plus_epsilon(ctx, 1e-4)
    return ctx.emit("div", scalar(ctx, 1, t), t)


@mil_op("log")
def log(ctx: MilContext) -> Value:
    """log(x + epsilon), epsilon 1e-45 by default (0 in float16)."""
    return ctx.emit("log", _plus_epsilon(ctx, 1e-45))


@mil_op("rsqrt")
def rsqrt(ctx: MilContext) -> Value:
    """1 / sqrt(x + epsilon), epsilon 1e-12 by default."""
    t = ctx.emit("sqrt", _plus_epsilon(ctx, 1e-12))
    return ctx.emit("div", scalar(ctx, 1, t), t)


@mil_op("clip")
def clip(ctx: MilContext) -> Value:
    """min(max(x, alpha), beta)."""
    return ctx.emit("clip", ctx.x("x"), min=ctx.attr("alpha"), max=ctx.attr("beta"))


@mil_op("threshold")
def threshold(ctx: MilContext) -> Value:
    """max(x, alpha): alpha is a lower bound."""
    x = ctx.x("x")
    return ctx.emit("maximum", x, scalar(ctx, ctx.attr("alpha"), x))


# -- activations -------------------------------------------------------------------------


@mil_op("relu6")
def relu6(ctx: MilContext) -> Value:
    return ctx.emit("clip", ctx.x("x"), min=0.0, max=6.0)


@mil_op("silu")
def silu(ctx: MilContext) -> Value:
    x = ctx.x("x")
    return ctx.emit("mul", x, ctx.emit("sigmoid", x))


@mil_op("sigmoid_hard")
def sigmoid_hard(ctx: MilContext) -> Value:
    """min(max(alpha * x + beta, 0), 1)."""
    return ctx.emit("hard_sigmoid", ctx.x("x"), alpha=ctx.attr("alpha"), beta=ctx.attr("beta"))


@mil_op("elu")
def elu(ctx: MilContext) -> Value:
    return ctx.emit("elu", ctx.x("x"), alpha=ctx.attr("alpha"))


@mil_op("leaky_relu")
def leaky_relu(ctx: MilContext) -> Value:
    return ctx.emit("leaky_relu", ctx.x("x"), alpha=ctx.attr("alpha"))


def per_channel(ctx: MilContext, param: str, x: Value) -> Value:
    """A [C] parameter shaped [1, C, 1, ...] against x (channel axis 1), in x's dtype."""
    p = ctx.x(param)
    if p.dtype != x.dtype:
        p = ctx.emit("cast", p, to=x.dtype)
    return ctx.emit("reshape", p, shape=[1, p.shape[0], *[1] * (len(x.shape) - 2)])


@mil_op("prelu")
def prelu(ctx: MilContext) -> Value:
    """x if x > 0 else alpha[c] * x, alpha per channel (axis 1)."""
    x = ctx.x("x")
    return ctx.emit("prelu", x, per_channel(ctx, "alpha", x))


@mil_op("softplus_parametric")
def softplus_parametric(ctx: MilContext) -> Value:
    """alpha[c] * log(1 + exp(beta[c] * x)), parameters per channel (axis 1)."""
    x = ctx.x("x")
    t = ctx.emit("softplus", ctx.emit("mul", x, per_channel(ctx, "beta", x)))
    return ctx.emit("mul", t, per_channel(ctx, "alpha", x))


@mil_op("thresholded_relu")
def thresholded_relu(ctx: MilContext) -> Value:
    """x if x >= alpha else 0 (MIL keeps x == alpha; the core op, as ONNX, does not)."""
    x = ctx.x("x")
    keep = ctx.emit("greater_equal", x, scalar(ctx, ctx.attr("alpha"), x))
    return ctx.emit("where", keep, x, scalar(ctx, 0, x))


@mil_op("clamped_relu")
def clamped_relu(ctx: MilContext) -> Value:
    """min(beta, x) for x >= 0, min(beta, alpha * x) otherwise."""
    y = ctx.emit("leaky_relu", ctx.x("x"), alpha=ctx.attr("alpha"))
    return ctx.emit("clip", y, max=ctx.attr("beta"))


@mil_op("scaled_tanh")
def scaled_tanh(ctx: MilContext) -> Value:
    """alpha * tanh(beta * x)."""
    x = ctx.x("x")
    t = ctx.emit("tanh", ctx.emit("mul", x, scalar(ctx, ctx.attr("beta"), x)))
    return ctx.emit("mul", t, scalar(ctx, ctx.attr("alpha"), x))


@mil_op("linear_activation")
def linear_activation(ctx: MilContext) -> Value:
    """alpha * x + beta."""
    x = ctx.x("x")
    t = ctx.emit("mul", x, scalar(ctx, ctx.attr("alpha"), x))
    return ctx.emit("add", t, scalar(ctx, ctx.attr("beta"), x))


@mil_op("gelu")
def gelu(ctx: MilContext) -> Value:
    """EXACT (erf), TANH_APPROXIMATION, or SIGMOID_APPROXIMATION x * sigmoid(1.702 x)."""
    x = ctx.x("x")
    mode = ctx.attr("mode", "EXACT")
    if mode == "EXACT":
        return ctx.emit("gelu", x, approximate="none")
    if mode == "TANH_APPROXIMATION":
        return ctx.emit("gelu", x, approximate="tanh")
    if mode == "SIGMOID_APPROXIMATION":
        s = ctx.emit("sigmoid", ctx.emit("mul", x, scalar(ctx, 1.702, x)))
        return ctx.emit("mul", x, s)
    raise ctx.error(f"unknown mode {mode!r}")


@mil_op("softmax")
def softmax(ctx: MilContext) -> Value:
    return ctx.emit("softmax", ctx.x("x"), axis=ctx.attr("axis", -1))


@mil_op("cast")
def cast(ctx: MilContext) -> Value:
    return ctx.emit("cast", ctx.x("x"), to=ctx.out_dtype())
