"""The ND layers (spec >= 4) that compute: broadcastable binaries, unary math, comparisons and
logic, reductions, softmaxND, batchedMatmul, topK/argMax/argMin/argSort, cumSum, oneHot, band
ops, non-maximum suppression (``coreml.nms``).

A NeuralNetwork computes in floating point: every blob is a float tensor, comparisons and
logic give 1.0/0.0 (NeuralNetwork.proto: "Output is 1.0f if the condition is true"), logic
and ``whereBroadcastable`` read a nonzero value as true, and indices (argMax, topK, argSort,
oneHot inputs, categorical samples) are float values. Integer model inputs are cast to
float32 where they enter these layers. A result that would have rank 0 has shape ``[1]``:
Core ML has no rank-0 blobs (argMax of a vector, a reduction of everything without
keepDims).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from compiler.ir.graph import Value

from ..nms import non_maximum_suppression
from .registry import NnContext, layer

LayerFn = Callable[[NnContext], Value]

INDEX_DTYPE = "float32"
"""Indices and counts are float blobs, exact up to 2**24."""


# -- dtypes and shapes -----------------------------------------------------------------------


def _float(ctx: NnContext, v: Value) -> Value:
    """``v`` as a float tensor (an int32 model input is float inside the network)."""
    return v if v.dtype.is_float else ctx.emit("cast", v, to="float32")


def _pair(ctx: NnContext, a: Value, b: Value) -> tuple[Value, Value]:
    """Two operands as floats of one dtype (float32 when they differ)."""
    a, b = _float(ctx, a), _float(ctx, b)
    if a.dtype != b.dtype:
        a, b = ctx.emit("cast", a, to="float32"), ctx.emit("cast", b, to="float32")
    return a, b


def _scalar(ctx: NnContext, value: float, dtype: str) -> Value:
    return ctx.const(np.asarray(value, dtype=dtype), dtype)


def _truth(ctx: NnContext, v: Value) -> Value:
    """Nonzero as true, as bool."""
    return ctx.emit("cast", v, to="bool") if v.dtype != "bool" else v


def _as_dtype(ctx: NnContext, v: Value, dtype: str) -> Value:
    return v if v.dtype == dtype else ctx.emit("cast", v, to=dtype)


def _at_least_1d(ctx: NnContext, v: Value) -> Value:
    return ctx.emit("reshape", v, shape=[1]) if len(v.shape) == 0 else v


def _axis(ctx: NnContext, axis: int, rank: int, what: str = "axis") -> int:
    if not -rank <= axis < rank:
        raise ctx.error(f"{what} {axis} is out of range for rank {rank}")
    return axis + rank if axis < 0 else axis


def _static_dim(ctx: NnContext, x: Value, axis: int) -> int:
    d = x.shape[axis]
    if not isinstance(d, int):
        raise ctx.error(f"needs a static size along axis {axis}, got {d!r}")
    return d


def _known_int(ctx: NnContext, i: int, what: str, why: str | None = None) -> int:
    data = ctx.require_value(i, what, why).reshape(-1)
    if data.size != 1:
        raise ctx.error(f"input {what} must hold one value, got {data.size}")
    return int(data[0])


# -- unary -----------------------------------------------------------------------------------

_UNARY = {
    "ceil": "ceil",
    "floor": "floor",
    "sign": "sign",
    "round": "round",  # half to even, as MIL's round (np.round) says
    "sin": "sin",
    "cos": "cos",
    "tan": "tan",
    "asin": "asin",
    "acos": "acos",
    "atan": "atan",
    "sinh": "sinh",
    "cosh": "cosh",
    "tanh": "tanh",
    "asinh": "asinh",
    "acosh": "acosh",
    "atanh": "atanh",
    "erf": "erf",
}


def _unary(op: str) -> LayerFn:
    def convert(ctx: NnContext) -> Value:
        return ctx.emit(op, _float(ctx, ctx.x()))

    convert.__name__ = f"unary_{op}"
    convert.__doc__ = f"Elementwise {op}."
    return convert


for _kind, _op in _UNARY.items():
    layer(_kind)(_unary(_op))


@layer("exp2")
def exp2(ctx: NnContext) -> Value:
    x = _float(ctx, ctx.x())
    return ctx.emit("pow", _scalar(ctx, 2.0, x.dtype), x)


@layer("clip")
def clip(ctx: NnContext) -> Value:
    p = ctx.params
    return ctx.emit("clip", _float(ctx, ctx.x()), min=float(p.minVal), max=float(p.maxVal))


@layer("clampedReLU")
def clamped_relu(ctx: NnContext) -> Value:
    """min(beta, x) for x >= 0, min(beta, alpha * x) below."""
    p = ctx.params
    y = ctx.emit("leaky_relu", _float(ctx, ctx.x()), alpha=float(p.alpha))
    return ctx.emit("clip", y, max=float(p.beta))


@layer("gelu")
def gelu(ctx: NnContext) -> Value:
    x = _float(ctx, ctx.x())
    mode = ctx.params.mode  # EXACT 0, TANH_APPROXIMATION 1, SIGMOID_APPROXIMATION 2
    if mode == 0:
        return ctx.emit("gelu", x, approximate="none")
    if mode == 1:
        return ctx.emit("gelu", x, approximate="tanh")
    if mode == 2:
        scaled = ctx.emit("mul", x, _scalar(ctx, 1.702, x.dtype))
        return ctx.emit("mul", x, ctx.emit("sigmoid", scaled))
    raise ctx.error(f"gelu mode {mode} is not one Core ML defines")


@layer("softmaxND")
def softmax_nd(ctx: NnContext) -> Value:
    x = _float(ctx, ctx.x())
    return ctx.emit("softmax", x, axis=_axis(ctx, int(ctx.params.axis), len(x.shape)))


# -- broadcasting binaries -------------------------------------------------------------------

_BINARY = {
    "addBroadcastable": "add",
    "subtractBroadcastable": "sub",
    "multiplyBroadcastable": "mul",
    "divideBroadcastable": "div",
    "maxBroadcastable": "maximum",
    "minBroadcastable": "minimum",
    "powBroadcastable": "pow",
}


def _binary(op: str) -> LayerFn:
    def convert(ctx: NnContext) -> Value:
        return ctx.emit(op, *_pair(ctx, ctx.x(0), ctx.x(1)))

    convert.__name__ = f"binary_{op}"
    convert.__doc__ = f"Elementwise {op} with numpy broadcasting."
    return convert


for _kind, _op in _BINARY.items():
    layer(_kind)(_binary(_op))


@layer("modBroadcastable")
def mod_broadcastable(ctx: NnContext) -> Value:
    """Floor mod (the divisor's sign): MIL's ``mod`` (Python ``%``) lowers to this layer."""
    return ctx.emit("mod", *_pair(ctx, ctx.x(0), ctx.x(1)), fmod=False)


@layer("floorDivBroadcastable")
def floor_div_broadcastable(ctx: NnContext) -> Value:
    return ctx.emit("floor", ctx.emit("div", *_pair(ctx, ctx.x(0), ctx.x(1))))


# -- comparisons and logic -------------------------------------------------------------------

_COMPARE = {
    "equal": ("equal", False),
    "notEqual": ("equal", True),
    "lessThan": ("less", False),
    "lessEqual": ("less_equal", False),
    "greaterThan": ("greater", False),
    "greaterEqual": ("greater_equal", False),
}


def _compare(op: str, negate: bool) -> LayerFn:
    def convert(ctx: NnContext) -> Value:
        """1.0 where the comparison holds, else 0.0; one input compares with ``alpha``."""
        if len(ctx.inputs) == 1:
            a = _float(ctx, ctx.x(0))
            b = _scalar(ctx, float(ctx.params.alpha), a.dtype)
        else:
            a, b = _pair(ctx, ctx.x(0), ctx.x(1))
        result = ctx.emit(op, a, b)
        if negate:
            result = ctx.emit("logical_not", result)
        return ctx.emit("cast", result, to=a.dtype)

    convert.__name__ = f"compare_{op}{'_not' if negate else ''}"
    return convert


for _kind, (_op, _negate) in _COMPARE.items():
    layer(_kind)(_compare(_op, _negate))


def _logical(op: str) -> LayerFn:
    def convert(ctx: NnContext) -> Value:
        """Nonzero inputs are true; 1.0 where the result is true, else 0.0."""
        a, b = _pair(ctx, ctx.x(0), ctx.x(1))
        return ctx.emit("cast", ctx.emit(op, _truth(ctx, a), _truth(ctx, b)), to=a.dtype)

    convert.__name__ = op
    return convert


for _kind, _op in (
    ("logicalAnd", "logical_and"),
    ("logicalOr", "logical_or"),
    ("logicalXor", "logical_xor"),
):
    layer(_kind)(_logical(_op))


@layer("logicalNot")
def logical_not(ctx: NnContext) -> Value:
    x = _float(ctx, ctx.x())
    return ctx.emit("cast", ctx.emit("logical_not", _truth(ctx, x)), to=x.dtype)


@layer("whereBroadcastable")
def where_broadcastable(ctx: NnContext) -> Value:
    """Input 1 where the condition (input 0) is nonzero, else input 2; all broadcast."""
    cond = _truth(ctx, _float(ctx, ctx.x(0)))
    a, b = _pair(ctx, ctx.x(1), ctx.x(2))
    return ctx.emit("where", cond, a, b)


# -- reductions ------------------------------------------------------------------------------

_REDUCE = {
    "reduceL1": "reduce_l1",
    "reduceL2": "reduce_l2",
    "reduceMax": "reduce_max",
    "reduceMin": "reduce_min",
    "reduceSum": "reduce_sum",
    "reduceProd": "reduce_prod",
    "reduceMean": "reduce_mean",
    "reduceLogSum": "reduce_log_sum",
    "reduceSumSquare": "reduce_sum_square",
    "reduceLogSumExp": "reduce_log_sum_exp",
}


def _reduce(op: str) -> LayerFn:
    def convert(ctx: NnContext) -> Value:
        """Over ``axes``, or every axis with ``reduceAll`` (or no axes, as coremltools'
        builder writes reduce-all); a rank-0 result becomes shape [1]."""
        p = ctx.params
        x = _float(ctx, ctx.x())
        rank = len(x.shape)
        if p.reduceAll or not len(p.axes):
            axes = list(range(rank))
        else:
            axes = sorted({_axis(ctx, int(a), rank, "reduction axis") for a in p.axes})
        y = ctx.emit(op, x, axes=axes, keepdims=bool(p.keepDims))
        return _at_least_1d(ctx, y)

    convert.__name__ = op
    return convert


for _kind, _op in _REDUCE.items():
    layer(_kind)(_reduce(_op))


# -- indices: topK, argMax/argMin, argSort ---------------------------------------------------


@layer("topK")
def top_k(ctx: NnContext) -> list[Value]:
    """Values and float indices of the K largest (or smallest, ``useBottomK``) along
    ``axis``; K comes from the second input when there is one, which must be known."""
    p = ctx.params
    x = _float(ctx, ctx.x())
    axis = _axis(ctx, int(p.axis), len(x.shape))
    k = int(p.K)
    if len(ctx.inputs) > 1:
        k = _known_int(ctx, 1, "K", "it decides the output shape")
    values, indices = ctx.op("topk", [x], k=k, axis=axis, largest=not p.useBottomK)
    return [values, ctx.emit("cast", indices, to=INDEX_DTYPE)]


def _arg(op: str) -> LayerFn:
    def convert(ctx: NnContext) -> Value:
        """Float index of the extreme along ``axis`` (first on ties); ``removeDim`` drops
        the axis unless the input is a vector."""
        p = ctx.params
        x = _float(ctx, ctx.x())
        axis = _axis(ctx, int(p.axis), len(x.shape))
        keep = not p.removeDim or len(x.shape) == 1
        idx = ctx.emit(op, x, axis=axis, keepdims=keep)
        return ctx.emit("cast", idx, to=INDEX_DTYPE)

    convert.__name__ = op
    return convert


layer("argMax")(_arg("argmax"))
layer("argMin")(_arg("argmin"))


@layer("argSort")
def arg_sort(ctx: NnContext) -> Value:
    """Float indices that sort ``axis`` ascending (or descending); ties keep index order."""
    p = ctx.params
    x = _float(ctx, ctx.x())
    axis = _axis(ctx, int(p.axis), len(x.shape))
    n = _static_dim(ctx, x, axis)
    _, indices = ctx.op("topk", [x], k=n, axis=axis, largest=bool(p.descending))
    return ctx.emit("cast", indices, to=INDEX_DTYPE)


# -- batchedMatmul ---------------------------------------------------------------------------


def _swap_last(ctx: NnContext, v: Value) -> Value:
    perm = list(range(len(v.shape)))
    perm[-1], perm[-2] = perm[-2], perm[-1]
    return ctx.emit("transpose", v, perm=perm)


@layer("batchedMatmul")
def batched_matmul(ctx: NnContext) -> Value:
    """Two inputs: numpy matmul whose rank-1 operands become [1, D] / [D, 1] and stay so
    (the output rank is max(2, ranks)). One input: x @ W [X1, X2] (+ bias), W stored
    column-major."""
    p = ctx.params
    if p.int8DynamicQuantize:
        raise ctx.error(
            "int8DynamicQuantize quantizes the input at run time by a rule Core ML does not "
            "document; nnxc cannot compute it exactly"
        )
    if len(ctx.inputs) == 1:
        return _fully_connected(ctx, p)
    a, b = _pair(ctx, ctx.x(0), ctx.x(1))
    for v, flag, what in ((a, p.transposeA, "transposeA"), (b, p.transposeB, "transposeB")):
        if flag and len(v.shape) < 2:
            raise ctx.error(f"{what} of a rank-1 operand is not defined")
    if len(a.shape) == 1:
        a = ctx.emit("reshape", a, shape=[1, a.shape[0]])
    if len(b.shape) == 1:
        b = ctx.emit("reshape", b, shape=[b.shape[0], 1])
    if p.transposeA:
        a = _swap_last(ctx, a)
    if p.transposeB:
        b = _swap_last(ctx, b)
    return ctx.emit("matmul", a, b)


def _fully_connected(ctx: NnContext, p: Any) -> Value:
    x = _float(ctx, ctx.x())
    rows, cols = int(p.weightMatrixFirstDimension), int(p.weightMatrixSecondDimension)
    if x.shape[-1] != rows:
        raise ctx.error(f"input {list(x.shape)} does not end in the weight rows {rows}")
    w = ctx.weights(p.weights, [cols, rows], "weights").T  # stored [X2, X1] row-major
    y = ctx.emit("matmul", x, ctx.const(np.ascontiguousarray(w), x.dtype))
    if p.hasBias:
        y = ctx.emit("add", y, ctx.weights_const(p.bias, [cols], "bias", dtype=x.dtype))
    return y


# -- cumSum, oneHot, band parts --------------------------------------------------------------


@layer("cumSum")
def cum_sum(ctx: NnContext) -> Value:
    p = ctx.params
    x = _float(ctx, ctx.x())
    axis = int(p.axis)
    if len(ctx.inputs) > 1:
        axis = _known_int(ctx, 1, "axis")
    axis = _axis(ctx, axis, len(x.shape))
    return ctx.emit(
        "cumsum", x, axis=axis, exclusive=bool(p.excludeFinalSum), reverse=bool(p.reverse)
    )


@layer("oneHot")
def one_hot(ctx: NnContext) -> Value:
    """onValue at the index, offValue elsewhere; an index outside [0, size), negative ones
    included (NeuralNetwork.proto's example), gives a row of offValue."""
    p = ctx.params
    x = _float(ctx, ctx.x())
    depth = int(p.oneHotVectorSize)
    if len(ctx.inputs) > 1:
        depth = _known_int(ctx, 1, "oneHotVectorSize", "it decides the output shape")
    axis = _axis(ctx, int(p.axis), len(x.shape) + 1)
    outside = _scalar(ctx, float(depth), x.dtype)
    x = ctx.emit("where", ctx.emit("less", x, _scalar(ctx, 0.0, x.dtype)), outside, x)
    values = ctx.const(np.array([p.offValue, p.onValue], np.float32), "float32")
    return ctx.emit("one_hot", x, values, depth=depth, axis=axis)


@layer("matrixBandPart")
def matrix_band_part(ctx: NnContext) -> Value:
    """Keeps i - j <= numLower and j - i <= numUpper; a negative bound keeps that side."""
    p = ctx.params
    x = _float(ctx, ctx.x())
    if int(p.numLower) >= 0:
        x = ctx.emit("trilu", x, upper=True, k=-int(p.numLower))
    if int(p.numUpper) >= 0:
        x = ctx.emit("trilu", x, upper=False, k=int(p.numUpper))
    return x


@layer("lowerTriangular")
def lower_triangular(ctx: NnContext) -> Value:
    return ctx.emit("trilu", _float(ctx, ctx.x()), upper=False, k=int(ctx.params.k))


@layer("upperTriangular")
def upper_triangular(ctx: NnContext) -> Value:
    return ctx.emit("trilu", _float(ctx, ctx.x()), upper=True, k=int(ctx.params.k))


# -- NonMaximumSuppression -------------------------------------------------------------------


@layer("NonMaximumSuppression")
def nms(ctx: NnContext) -> list[Value]:
    """Run at run time (``coreml.nms``); the thresholds may be inputs, maxBoxes must be
    known (it sets the output shape). Indices and counts are float blobs."""
    p = ctx.params
    iou_t = _threshold(ctx, 2, float(p.iouThreshold))
    score_t = _threshold(ctx, 3, float(p.scoreThreshold))
    max_boxes = int(p.maxBoxes)
    if len(ctx.inputs) > 4:
        max_boxes = _known_int(ctx, 4, "maxBoxes", "it decides the output shape")
    return non_maximum_suppression(
        ctx, ctx.x(0), ctx.x(1), iou_t, score_t, max_boxes, bool(p.perClassSuppression)
    )


def _threshold(ctx: NnContext, i: int, param: float) -> Value:
    """Input i (a one-element tensor, read at run time) or the parameter."""
    if len(ctx.inputs) <= i:
        return _scalar(ctx, param, "float32")
    v = ctx.emit("cast", ctx.x(i), to="float32")
    return ctx.emit("reshape", v, shape=[])
