"""Lowering of elementwise ops to Relax.

Most ops map to one Relax op. Where TVM's op differs from the IR's reference semantics
(clip's order of bounds, floor mod of floats with infinities, shifts past the bit width,
integer pow, nan in sign) the rule composes Relax ops instead, so the result matches the
reference bit for bit on integers and TVM's fusion still sees plain elementwise ops.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from tvm import relax, topi

from .checks import checked_divisor
from .dtypes import convert
from .registry import LowerContext, lowers

op = relax.op
Expr = relax.Expr


def _dtype(ctx: LowerContext, i: int = 0) -> str:
    v = ctx.node.inputs[i]
    assert v is not None
    return v.type.dtype


def _c(value: Any, dtype: str) -> relax.Constant:
    return relax.const(np.array(value).astype(dtype), dtype)


def _simple(table: dict[str, Callable[..., Expr]]) -> None:
    for name, fn in table.items():
        lowers(name)(lambda ctx, args, fn=fn: fn(*args))


_simple(
    {
        "exp": op.exp,
        "log": op.log,
        "sqrt": op.sqrt,
        "sin": op.sin,
        "cos": op.cos,
        "tan": op.tan,
        "asin": op.asin,
        "acos": op.acos,
        "atan": op.atan,
        "asinh": op.asinh,
        "acosh": op.acosh,
        "atanh": op.atanh,
        "sigmoid": op.sigmoid,
        "erf": op.erf,
        "floor": op.floor,
        "ceil": op.ceil,
        "round": op.round,
        "logical_not": op.logical_not,
        "bitwise_not": op.bitwise_not,
        "isnan": op.isnan,
        "add": op.add,
        "sub": op.subtract,
        "mul": op.multiply,
        "maximum": op.maximum,
        "minimum": op.minimum,
        "logical_and": op.logical_and,
        "logical_or": op.logical_or,
        "logical_xor": op.logical_xor,
        "bitwise_and": op.bitwise_and,
        "bitwise_or": op.bitwise_or,
        "bitwise_xor": op.bitwise_xor,
        "where": op.where,
    }
)


# -- unary -------------------------------------------------------------------------------
def _exp_pair(ctx: LowerContext, x: relax.Expr) -> tuple[relax.Expr, relax.Expr]:
    return ctx.emit(op.exp(x)), ctx.emit(op.exp(op.negative(x)))


@lowers("sinh")
def _sinh(ctx: LowerContext, args: list) -> relax.Expr:
    """Through exp: LLVM has no vector sinh, and our schedules vectorize elementwise code."""
    pos, neg = _exp_pair(ctx, args[0])
    return op.multiply(op.subtract(pos, neg), relax.const(0.5, ctx.out_types[0].dtype))


@lowers("cosh")
def _cosh(ctx: LowerContext, args: list) -> relax.Expr:
    """Through exp: LLVM has no vector cosh, and our schedules vectorize elementwise code."""
    pos, neg = _exp_pair(ctx, args[0])
    return op.multiply(op.add(pos, neg), relax.const(0.5, ctx.out_types[0].dtype))


@lowers("neg")
def _neg(ctx: LowerContext, args: list) -> Expr:
    return op.negative(args[0])


@lowers("abs")
def _abs(ctx: LowerContext, args: list) -> Expr:
    if _dtype(ctx).startswith("uint"):
        return args[0]
    return op.abs(args[0])


@lowers("sign")
def _sign(ctx: LowerContext, args: list) -> Expr:
    (x,) = args
    if _dtype(ctx).startswith("uint"):
        return op.astype(op.greater(x, _c(0, _dtype(ctx))), _dtype(ctx))
    s = op.sign(x)
    if _dtype(ctx).startswith("float"):
        return op.where(op.isnan(x), x, ctx.emit(s))  # TVM's sign(nan) is 0
    return s


@lowers("tanh")
def _tanh_rule(ctx: LowerContext, args: list) -> Expr:
    return _tanh(ctx, args[0])


def _tanh(ctx: LowerContext, x: Expr) -> Expr:
    """TVM's tanh loses relative precision near 0 (1 - e^-2x cancels: 1e-4 at x = 1e-5 in
    float32); below ``cut`` the odd Taylor series to x^9 is exact to the dtype instead."""
    dt = _dtype(ctx)
    cut = 0.04 if dt == "float64" else 0.25
    x2 = ctx.emit(op.multiply(x, x))
    poly: Expr = _c(62 / 2835, dt)
    for coeff in (-17 / 315, 2 / 15, -1 / 3, 1.0):
        poly = ctx.emit(op.add(op.multiply(poly, x2), _c(coeff, dt)))
    small = ctx.emit(op.less(op.abs(x), _c(cut, dt)))
    return op.where(small, ctx.emit(op.multiply(x, poly)), ctx.emit(op.tanh(x)))


@lowers("reciprocal")
def _reciprocal(ctx: LowerContext, args: list) -> Expr:
    return op.divide(_c(1, _dtype(ctx)), args[0])


@lowers("relu")
def _relu(ctx: LowerContext, args: list) -> Expr:
    return op.nn.relu(args[0])


@lowers("softplus")
def _softplus(ctx: LowerContext, args: list) -> Expr:
    # log(1 + exp(x)) written stably: max(x, 0) + log1p(exp(-|x|)).
    (x,) = args
    tail = _log1p(ctx, ctx.emit(op.exp(op.negative(op.abs(x)))))
    return op.add(ctx.emit(op.nn.relu(x)), tail)


def _log1p(ctx: LowerContext, u: Expr) -> Expr:
    """log(1 + u) accurate for tiny u (Relax has no log1p): log(w) * u / (w - 1), w = 1 + u,
    which cancels the rounding of w; u itself where w rounds to 1."""
    dt = _dtype(ctx)
    one = _c(1, dt)
    w = ctx.emit(op.add(one, u))
    ratio = ctx.emit(op.divide(op.multiply(op.log(w), u), op.subtract(w, one)))
    return ctx.emit(op.where(ctx.emit(op.equal(w, one)), u, ratio))


@lowers("softsign")
def _softsign(ctx: LowerContext, args: list) -> Expr:
    (x,) = args
    return op.divide(x, ctx.emit(op.add(_c(1, _dtype(ctx)), op.abs(x))))


@lowers("mish")
def _mish(ctx: LowerContext, args: list) -> Expr:
    (x,) = args
    return op.multiply(x, ctx.emit(_tanh(ctx, ctx.emit(_softplus(ctx, args)))))


@lowers("hard_sigmoid")
def _hard_sigmoid(ctx: LowerContext, args: list) -> Expr:
    return _hard_sigmoid_expr(ctx, args[0], ctx.attrs["alpha"], ctx.attrs["beta"])


def _hard_sigmoid_expr(ctx: LowerContext, x: Expr, alpha: float, beta: float) -> Expr:
    dt = _dtype(ctx)
    y = ctx.emit(op.add(op.multiply(x, _c(alpha, dt)), _c(beta, dt)))
    return op.minimum(ctx.emit(op.maximum(y, _c(0, dt))), _c(1, dt))


@lowers("hard_swish")
def _hard_swish(ctx: LowerContext, args: list) -> Expr:
    (x,) = args
    return op.multiply(x, ctx.emit(_hard_sigmoid_expr(ctx, x, 1 / 6, 0.5)))


@lowers("isinf")
def _isinf(ctx: LowerContext, args: list) -> Expr:
    (x,) = args
    pos, neg = ctx.attrs["detect_positive"], ctx.attrs["detect_negative"]
    inf = op.isinf(x)
    if pos and neg:
        return inf
    if not (pos or neg):
        return op.zeros(ctx.out_shape(), "bool")
    zero = _c(0, _dtype(ctx))
    side = op.greater(x, zero) if pos else op.less(x, zero)
    return op.logical_and(ctx.emit(inf), ctx.emit(side))


def _where_negative(ctx: LowerContext, x: Expr, neg: Expr, strict: bool = True) -> Expr:
    zero = _c(0, _dtype(ctx))
    cond = op.less(x, zero) if strict else op.less_equal(x, zero)
    return op.where(ctx.emit(cond), ctx.emit(neg), x)


@lowers("leaky_relu")
def _leaky_relu(ctx: LowerContext, args: list) -> Expr:
    return op.nn.leakyrelu(args[0], ctx.attrs["alpha"])


def _expm1_scaled(ctx: LowerContext, x: Expr, alpha: float) -> Expr:
    dt = _dtype(ctx)
    return op.multiply(_c(alpha, dt), ctx.emit(op.subtract(op.exp(x), _c(1, dt))))


@lowers("elu")
def _elu(ctx: LowerContext, args: list) -> Expr:
    (x,) = args
    return _where_negative(ctx, x, _expm1_scaled(ctx, x, ctx.attrs["alpha"]))


@lowers("selu")
def _selu(ctx: LowerContext, args: list) -> Expr:
    (x,) = args
    a = ctx.attrs
    y = ctx.emit(_where_negative(ctx, x, _expm1_scaled(ctx, x, a["alpha"]), strict=False))
    return op.multiply(_c(a["gamma"], _dtype(ctx)), y)


@lowers("celu")
def _celu(ctx: LowerContext, args: list) -> Expr:
    (x,) = args
    dt, alpha = _dtype(ctx), ctx.attrs["alpha"]
    neg = ctx.emit(_expm1_scaled(ctx, ctx.emit(op.divide(x, _c(alpha, dt))), alpha))
    return op.add(ctx.emit(op.nn.relu(x)), ctx.emit(op.minimum(neg, _c(0, dt))))


@lowers("thresholded_relu")
def _thresholded_relu(ctx: LowerContext, args: list) -> Expr:
    (x,) = args
    dt = _dtype(ctx)
    return op.where(ctx.emit(op.greater(x, _c(ctx.attrs["alpha"], dt))), x, _c(0, dt))


@lowers("shrink")
def _shrink(ctx: LowerContext, args: list) -> Expr:
    (x,) = args
    dt, bias, lambd = _dtype(ctx), ctx.attrs["bias"], ctx.attrs["lambd"]
    above = ctx.emit(
        op.where(op.greater(x, _c(lambd, dt)), op.subtract(x, _c(bias, dt)), _c(0, dt))
    )
    below = ctx.emit(op.less(x, _c(-lambd, dt)))
    return op.where(below, ctx.emit(op.add(x, _c(bias, dt))), above)


@lowers("gelu")
def _gelu(ctx: LowerContext, args: list) -> Expr:
    (x,) = args
    dt = _dtype(ctx)
    if ctx.attrs["approximate"] == "tanh":
        cube = ctx.emit(op.multiply(op.multiply(x, x), x))
        inner = ctx.emit(op.add(x, op.multiply(_c(0.044715, dt), cube)))
        t = ctx.emit(_tanh(ctx, ctx.emit(op.multiply(_c(math.sqrt(2 / math.pi), dt), inner))))
    else:
        t = ctx.emit(op.erf(op.multiply(x, _c(1 / math.sqrt(2), dt))))
    half_x = ctx.emit(op.multiply(_c(0.5, dt), x))
    return op.multiply(half_x, ctx.emit(op.add(_c(1, dt), t)))


@lowers("clip")
def _clip(ctx: LowerContext, args: list) -> Expr:
    # TOPI's clip applies max last; the IR (like ONNX) applies min last.
    (x,) = args
    dt = np.dtype(_dtype(ctx))
    for key, fn in (("min", op.maximum), ("max", op.minimum)):
        bound = ctx.attrs[key]
        if bound is None:
            continue
        if dt.kind in "iu":
            info = np.iinfo(dt)
            bound = min(max(bound, info.min), info.max)
        x = ctx.emit(fn(x, _c(bound, dt.name)))
    return x


# -- binary ------------------------------------------------------------------------------


_COMPARE = {
    "equal": op.equal,
    "less": op.less,
    "less_equal": op.less_equal,
    "greater": op.greater,
    "greater_equal": op.greater_equal,
}


@lowers(*_COMPARE)
def _compare(ctx: LowerContext, args: list) -> Expr:
    a, b = args
    if _dtype(ctx) == "bool":  # TVM emits a float compare of i1 values: compare as uint8
        a, b = ctx.emit(op.astype(a, "uint8")), ctx.emit(op.astype(b, "uint8"))
    return _COMPARE[ctx.node.op](a, b)


def _safe_divisor(ctx: LowerContext, b: Expr) -> tuple[Expr, Expr | None]:
    """An integer divisor that cannot trap, and where it was -1 (None: nowhere).

    Zeros raise an error at run time (onnxruntime raises too). A signed -1 becomes 1:
    ``min / -1`` traps in x86's idiv; ``x / -1`` is then ``-x`` (``min`` wrapping to itself)
    and ``x % -1`` is 0, as ``x % 1``. Both happen in the check kernel, whose result LLVM
    cannot see through (a ``where`` in the dividing kernel itself does not do: TVM's
    simplifier folds an int32 ``a == min`` to false, and LLVM divides before selecting), or
    at compile time for a constant divisor without zeros. Without checks: ``b`` as it is."""
    dt = np.dtype(_dtype(ctx))
    signed = dt.kind == "i"
    const = ctx.node.inputs[1].const
    if const is not None and const.all():
        if not signed or not (const == -1).any():
            return b, None
        safe = np.where(const == -1, 1, const).astype(dt)
        return relax.const(safe, dt.name), relax.const(const == -1, "bool")
    if not ctx.checks:
        return b, None
    safe = checked_divisor(ctx, b, minus_one_to_one=signed)
    if not signed:
        return safe, None
    return safe, ctx.emit(op.equal(b, _c(-1, dt.name)))


@lowers("div")
def _div(ctx: LowerContext, args: list) -> Expr:
    # Relax divide truncates integers toward zero, as the IR does.
    a, b = args
    if _dtype(ctx).startswith("float"):
        return op.divide(a, b)
    b, minus_one = _safe_divisor(ctx, b)
    quotient = op.divide(a, b)
    if minus_one is None:
        return quotient
    return op.where(minus_one, ctx.emit(op.negative(a)), ctx.emit(quotient))


@lowers("mod")
def _mod(ctx: LowerContext, args: list) -> Expr:
    a, b = args
    dt = _dtype(ctx)
    if not dt.startswith("float"):
        b, _ = _safe_divisor(ctx, b)
    if ctx.attrs["fmod"]:
        return op.mod(a, b)
    if not dt.startswith("float"):
        return op.floor_mod(a, b)
    # Python's float %: fmod, moved by b when the signs differ; a zero takes b's sign.
    # (floor_mod computes a - floor(a / b) * b, which is nan for an infinite b.)
    zero = _c(0, dt)
    r = ctx.emit(op.mod(a, b))
    b_neg = ctx.emit(op.less(b, zero))
    differ = ctx.emit(
        op.logical_and(op.not_equal(r, zero), op.logical_xor(op.less(r, zero), b_neg))
    )
    r = ctx.emit(op.where(differ, ctx.emit(op.add(r, b)), r))
    signed_zero = ctx.emit(op.where(b_neg, _c(-0.0, dt), zero))
    return op.where(ctx.emit(op.equal(r, zero)), signed_zero, r)


@lowers("pow")
def _pow(ctx: LowerContext, args: list) -> Expr:
    a, b = args
    dt = _dtype(ctx)
    if dt.startswith("float"):
        return op.power(a, b)
    exponent = ctx.node.inputs[1]
    assert exponent is not None
    return _int_pow(ctx, a, b, np.dtype(dt), exponent.const)


def _int_pow(ctx: LowerContext, a: Expr, b: Expr, dt: np.dtype, b_data: np.ndarray | None) -> Expr:
    """Square-and-multiply over the exponent's bits (TVM's power takes floats only); a
    constant exponent needs only as many steps as it has bits."""
    name = dt.name
    one, zero = _c(1, name), _c(0, name)
    steps = dt.itemsize * 8
    if b_data is not None:
        e_max = int(np.max(np.abs(b_data.astype("int64")), initial=0))
        steps = max(e_max.bit_length(), 1)
    shape = ctx.out_shape()
    result: Expr = ctx.emit(op.broadcast_to(one, shape))
    base = ctx.emit(op.broadcast_to(a, shape))
    e = ctx.emit(op.broadcast_to(op.abs(b) if dt.kind == "i" else b, shape))
    for step in range(steps):
        bit = ctx.emit(op.equal(op.bitwise_and(e, one), one))
        result = ctx.emit(op.where(bit, ctx.emit(op.multiply(result, base)), result))
        if step + 1 < steps:
            base = ctx.emit(op.multiply(base, base))
            e = ctx.emit(op.right_shift(e, one))
    if dt.kind == "i":
        odd = ctx.emit(op.equal(op.bitwise_and(b, one), one))
        minus_one = _c(-1, name)
        sign_of_minus_one = ctx.emit(op.where(odd, minus_one, one))
        neg = ctx.emit(
            op.where(
                ctx.emit(op.equal(a, one)),
                one,
                ctx.emit(op.where(ctx.emit(op.equal(a, minus_one)), sign_of_minus_one, zero)),
            )
        )
        result = op.where(ctx.emit(op.less(b, zero)), neg, result)
    return result


@lowers("bit_shift")
def _bit_shift(ctx: LowerContext, args: list) -> Expr:
    # LLVM leaves shifts by >= the bit width undefined: shift by 0 there, then patch.
    a, b = args
    dt = np.dtype(_dtype(ctx))
    zero = _c(0, dt.name)
    valid = ctx.emit(op.less(b, _c(dt.itemsize * 8, dt.name)))
    if dt.kind == "i":
        valid = ctx.emit(op.logical_and(valid, ctx.emit(op.greater_equal(b, zero))))
    safe = ctx.emit(op.where(valid, b, zero))
    if ctx.attrs["direction"] == "left":
        return op.where(valid, ctx.emit(op.left_shift(a, safe)), zero)
    fill: Expr = zero
    if dt.kind == "i":
        fill = ctx.emit(op.where(ctx.emit(op.less(a, zero)), _c(-1, dt.name), zero))
    return op.where(valid, ctx.emit(op.right_shift(a, safe)), fill)


@lowers("prelu")
def _prelu(ctx: LowerContext, args: list) -> Expr:
    x, slope = args
    negative = ctx.emit(op.less(x, _c(0, _dtype(ctx))))
    return op.where(negative, ctx.emit(op.multiply(x, slope)), x)


@lowers("cast")
def _cast(ctx: LowerContext, args: list) -> Expr:
    a = ctx.attrs
    src = _dtype(ctx)
    return convert(
        ctx.bb, args[0], src, a["to"], a.get("saturate", True), a.get("round_mode", "up")
    )


@lowers("bitcast")
def _bitcast(ctx: LowerContext, args: list) -> Expr:
    to = ctx.attrs["to"]
    if to == "bool" or _dtype(ctx) == "bool":  # TVM's bool is one bit wide: cast instead
        return op.astype(args[0], to)
    return ctx.bb.call_te(topi.reinterpret, args[0], to, primfunc_name_hint="bitcast")
