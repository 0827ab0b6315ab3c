"""Elementwise NNEF ops: arithmetic, comparison, logic, rounding, select, the simplifier and
activation fragments, matmul and linear, copy, cast and update.

Binary ops broadcast the NNEF way (leading axes aligned, see ``registry.aligned``).
"""

from __future__ import annotations

from compiler.ir.graph import Value

from ..converters import NodeContext
from .registry import NnefContext, aligned, converter

_UNARY = {
    "exp": "exp",
    "log": "log",
    "sin": "sin",
    "cos": "cos",
    "tan": "tan",
    "sinh": "sinh",
    "cosh": "cosh",
    "tanh": "tanh",
    "asin": "asin",
    "acos": "acos",
    "atan": "atan",
    "asinh": "asinh",
    "acosh": "acosh",
    "atanh": "atanh",
    "abs": "abs",
    "sign": "sign",
    "rcp": "reciprocal",
    "neg": "neg",
    "not": "logical_not",
    "floor": "floor",
    "ceil": "ceil",
    "relu": "relu",
    "sigmoid": "sigmoid",
    "sqrt": "sqrt",
}
_BINARY = {
    "add": "add",
    "sub": "sub",
    "mul": "mul",
    "div": "div",
    "pow": "pow",
    "lt": "less",
    "gt": "greater",
    "le": "less_equal",
    "ge": "greater_equal",
    "eq": "equal",
    "and": "logical_and",
    "or": "logical_or",
}


def _unary(core: str):
    def convert(ctx: NnefContext) -> Value:
        return ctx.emit(core, ctx.x("x"))

    return convert


def _binary(core: str):
    def convert(ctx: NnefContext) -> Value:
        return ctx.emit(core, *aligned(ctx, *_operands(ctx, "x", "y")))

    return convert


for _name, _core in _UNARY.items():
    converter(_name)(_unary(_core))
for _name, _core in _BINARY.items():
    converter(_name)(_binary(_core))


def _operands(ctx: NnefContext, *params: str) -> list[Value]:
    """Tensor parameters; literals take the dtype of the first tensor among them."""
    tensors = [ctx.x(p) for p in params if ctx.literal(p) is None]
    dtype = tensors[0].dtype if tensors else None
    return [ctx.x(p, None if ctx.literal(p) is None else dtype) for p in params]


def _scalar(ctx: NodeContext, like: Value, value: float) -> Value:
    return ctx.const(value, like.dtype)


@converter("ne")
def _ne(ctx: NnefContext) -> Value:
    return ctx.emit("logical_not", ctx.emit("equal", *aligned(ctx, *_operands(ctx, "x", "y"))))


@converter("copy")
def _copy(ctx: NnefContext) -> Value:
    return ctx.emit("identity", ctx.x("x"))


@converter("round")
def _round(ctx: NnefContext) -> Value:
    return round_half_away(ctx, ctx.x("x"))


def round_half_away(ctx: NodeContext, x: Value) -> Value:
    """Half away from zero, as the Khronos reference (``std::round``) rounds; numpy and the IR
    round half to even. Exact: the fraction of |x| is compared, not |x| + 0.5 rounded. (Also
    the rounding of the quantization fragments, see quantize.py.)"""
    mag = ctx.emit("abs", x)
    low = ctx.emit("floor", mag)
    up = ctx.emit("greater_equal", ctx.emit("sub", mag, low), _scalar(ctx, x, 0.5))
    rounded = ctx.emit("where", up, ctx.emit("add", low, _scalar(ctx, x, 1.0)), low)
    return ctx.emit("mul", ctx.emit("sign", x), rounded)


@converter("select")
def _select(ctx: NnefContext) -> Value:
    values = _operands(ctx, "true_value", "false_value")
    return ctx.emit("where", *aligned(ctx, ctx.x("condition", "bool"), *values))


@converter("cast")
def _cast(ctx: NnefContext) -> Value:
    to = ctx.generic_dtype
    if to is None:
        raise ctx.error("cast needs its target type: cast<scalar>, cast<integer> or cast<logical>")
    return ctx.emit("cast", ctx.x("input"), to=str(to))


@converter("update")
def _update(ctx: NnefContext) -> Value:
    """The variable's new value. nnxc's artifacts hold no state between runs, so the next run
    sees the variable's value from the file again (documented in docs/nnef.md)."""
    variable, value = ctx.x("variable"), ctx.x("value")
    if list(variable.shape) != list(value.shape):
        raise ctx.error(f"updates a variable of shape {variable.shape} with {value.shape}")
    return ctx.emit("identity", value)


# -- simplifier fragments ----------------------------------------------------------------------
def _power(exponent: float):
    def convert(ctx: NnefContext) -> Value:
        x = ctx.x("x")
        if exponent == 2.0:
            return ctx.emit("mul", x, x)
        return ctx.emit("pow", x, _scalar(ctx, x, exponent))

    return convert


converter("sqr")(_power(2.0))
converter("rsqr")(_power(-2.0))


@converter("rsqrt")
def _rsqrt(ctx: NnefContext) -> Value:
    return ctx.emit("reciprocal", ctx.emit("sqrt", ctx.x("x")))


@converter("log2")
def _log2(ctx: NnefContext) -> Value:
    x = ctx.x("x")
    return ctx.emit("div", ctx.emit("log", x), _scalar(ctx, x, float(__import__("math").log(2.0))))


@converter("min")
def _min(ctx: NnefContext) -> Value:
    """The fragment is ``select(x < y, x, y)``; nnxc's ``minimum`` differs only for a NaN x
    (NaN, not y). A select reads each operand twice, and chains of them grow TVM's fused
    expressions exponentially (seen: over 100 s to build two chained clamps)."""
    return ctx.emit("minimum", *aligned(ctx, *_operands(ctx, "x", "y")))


@converter("max")
def _max(ctx: NnefContext) -> Value:
    """``select(x > y, x, y)``, as ``maximum`` (see ``_min``)."""
    return ctx.emit("maximum", *aligned(ctx, *_operands(ctx, "x", "y")))


@converter("clamp")
def _clamp(ctx: NnefContext) -> Value:
    """``max(min(x, b), a)``; constant scalar bounds become one clip."""
    x, a, b = _operands(ctx, "x", "a", "b")
    if a.const is not None and b.const is not None and a.const.size == 1 and b.const.size == 1:
        return ctx.emit("clip", x, min=float(a.const.reshape(())), max=float(b.const.reshape(())))
    x, a, b = aligned(ctx, x, a, b)
    return ctx.emit("maximum", ctx.emit("minimum", x, b), a)


# -- activation fragments ----------------------------------------------------------------------
@converter("softplus")
def _softplus(ctx: NnefContext) -> Value:
    return ctx.emit("softplus", ctx.x("x"))


@converter("elu")
def _elu(ctx: NnefContext) -> Value:
    return ctx.emit("elu", ctx.x("x"), alpha=float(ctx.attr("alpha")))


@converter("selu")
def _selu(ctx: NnefContext) -> Value:
    return ctx.emit(
        "selu", ctx.x("x"), alpha=float(ctx.attr("alpha")), gamma=float(ctx.attr("lambda"))
    )


@converter("gelu")
def _gelu(ctx: NnefContext) -> Value:
    """NNEF defines gelu as ``x * sigmoid(1.702 * x)`` (not the erf form other formats use)."""
    x = ctx.x("x")
    return ctx.emit("mul", x, ctx.emit("sigmoid", ctx.emit("mul", x, _scalar(ctx, x, 1.702))))


@converter("silu")
def _silu(ctx: NnefContext) -> Value:
    x = ctx.x("x")
    return ctx.emit("mul", x, ctx.emit("sigmoid", x))


@converter("prelu")
def _prelu(ctx: NnefContext) -> Value:
    x, alpha = aligned(ctx, *_operands(ctx, "x", "alpha"))
    return ctx.emit("prelu", x, alpha)


@converter("leaky_relu")
def _leaky_relu(ctx: NnefContext) -> Value:
    return ctx.emit("leaky_relu", ctx.x("x"), alpha=float(ctx.attr("alpha")))


# -- matrix products ---------------------------------------------------------------------------
def _transposed(ctx: NnefContext, v: Value) -> Value:
    perm = list(range(len(v.shape)))
    perm[-2:] = perm[-1], perm[-2]
    return ctx.emit("transpose", v, perm=perm)


@converter("matmul")
def _matmul(ctx: NnefContext) -> Value:
    a, b = ctx.x("A"), ctx.x("B")
    if len(a.shape) < 2 or len(b.shape) < 2:
        raise ctx.error(f"matmul needs operands of rank 2 or more, got {a.type} and {b.type}")
    if ctx.attr("transposeA"):
        a = _transposed(ctx, a)
    if ctx.attr("transposeB"):
        b = _transposed(ctx, b)
    return ctx.emit("matmul", a, b)


@converter("linear")
def _linear(ctx: NnefContext) -> Value:
    """``matmul(input, filter, transposeB = true) + bias``, bias ``[1, C]`` or a literal."""
    x, w = ctx.x("input"), ctx.x("filter")
    y = ctx.emit("matmul", x, _transposed(ctx, w))
    if ctx.literal("bias") == 0.0:
        return y
    return ctx.emit("add", *aligned(ctx, y, ctx.x("bias", str(y.dtype))))
