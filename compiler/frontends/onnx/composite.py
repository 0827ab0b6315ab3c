"""Converters of ONNX ops that decompose into several core ops.

RMSNormalization, CumProd and the two losses (NegativeLogLikelihoodLoss,
SoftmaxCrossEntropyLoss) are rare enough that they get no core op of their own: each is
written here with the core ops it is made of, so every backend handles them for free.
"""

from __future__ import annotations

import numpy as np

from compiler.ir.graph import Value
from compiler.ir.ops.shapes import normalize_axis

from .registry import NodeContext, converter, onnx_dtype

# -- RMSNormalization ----------------------------------------------------------------------


@converter("RMSNormalization", since=23)
def rms_normalization(ctx: NodeContext) -> Value:
    """x / sqrt(mean(x^2 over [axis, rank)) + epsilon) * scale, computed in stash_type.

    Follows the ONNX function body: the normalization runs in ``stash_type`` (float32 by
    default) and is cast back to x's dtype before the scale is applied.
    """
    x, scale = ctx.input(0), ctx.input(1)
    axis = normalize_axis(ctx.attr("axis", -1), x.type.rank)
    stash = onnx_dtype(ctx.attr("stash_type", 1))
    if not stash.is_float:
        raise ctx.error(f"stash_type {stash} is not a float type")
    xs = x if x.dtype == stash else ctx.emit("cast", x, to=stash)
    mean_sq = ctx.emit(
        "reduce_mean",
        ctx.emit("mul", xs, xs),
        axes=list(range(axis, x.type.rank)),
        keepdims=True,
    )
    eps = ctx.const(np.array(ctx.attr("epsilon", 1e-5), stash))
    rms = ctx.emit("sqrt", ctx.emit("add", mean_sq, eps))
    normalized = ctx.emit("div", xs, rms)
    if normalized.dtype != x.dtype:
        normalized = ctx.emit("cast", normalized, to=x.dtype)
    return ctx.emit("mul", normalized, scale)


# -- CumProd -------------------------------------------------------------------------------


def _shift(ctx: NodeContext, y: Value, axis: int, n: int, s: int, reverse: bool) -> Value:
    """y moved by s places along axis (towards the end, or the start when reversed), the
    vacated places filled with 1."""
    rank = y.type.rank
    pads = [0] * (2 * rank)
    if reverse:
        kept = ctx.emit("slice", y, axes=[axis], starts=[s], ends=[n], steps=[1])
        pads[rank + axis] = s
    else:
        kept = ctx.emit("slice", y, axes=[axis], starts=[0], ends=[n - s], steps=[1])
        pads[axis] = s
    return ctx.emit("pad", kept, pads=pads, mode="constant", value=1.0)


@converter("CumProd", since=26)
def cumprod(ctx: NodeContext) -> Value:
    """Running product as a log-depth scan: y *= shift(y, s) for s = 1, 2, 4, ...

    Exact for zeros and signs (unlike exp(cumsum(log|x|))) and for integers (wrapping
    multiplication is associative); exclusive shifts the input by one place first.
    """
    x = ctx.input(0)
    axis_value = ctx.require_value(1, "axis")
    if axis_value.size != 1:
        raise ctx.error(f"axis must hold one value, got shape {list(axis_value.shape)}")
    if x.type.rank == 0:
        raise ctx.error("the input must have rank >= 1")
    axis = normalize_axis(int(axis_value.ravel()[0]), x.type.rank)
    n = x.type.shape[axis]
    if not isinstance(n, int):
        raise ctx.error(f"the scanned axis {axis} must have a static size, got {n!r}")
    if x.dtype == "bool":
        raise ctx.error("bool input is not supported")
    reverse = bool(ctx.attr("reverse", 0))
    y = x
    if ctx.attr("exclusive", 0) and n > 0:
        y = _shift(ctx, y, axis, n, 1, reverse)
    s = 1
    while s < n:
        y = ctx.emit("mul", y, _shift(ctx, y, axis, n, s, reverse))
        s *= 2
    return y if y is not x else ctx.emit("identity", x)


# -- NegativeLogLikelihoodLoss, SoftmaxCrossEntropyLoss ------------------------------------


def _insert_axis1(ctx: NodeContext, t: Value) -> Value:
    shape = t.type.shape
    return ctx.emit("reshape", t, shape=[shape[0], 1, *shape[1:]])


def _nll(ctx: NodeContext, log_prob: Value, target: Value, weight: Value | None) -> Value:
    """The loss from log-probabilities [N, C, d...] and class indices [N, d...].

    Ignored targets (``ignore_index``) are replaced by class 0 before gathering, so no
    index is out of range, and get weight 0. ``mean`` divides by the sum of the weights
    of the targets taken (their count without a weight input).
    """
    if log_prob.type.rank < 2:
        raise ctx.error(f"the input must have rank >= 2, got {log_prob.type}")
    if target.dtype not in ("int32", "int64"):
        raise ctx.error(f"target must be int32 or int64, got {target.dtype}")
    reduction = ctx.attr("reduction", "mean")
    if reduction not in ("none", "sum", "mean"):
        raise ctx.error(f"reduction {reduction!r} is not supported")
    dtype = log_prob.dtype
    zero = ctx.const(np.zeros((), dtype))
    ignore_index = ctx.attr("ignore_index")
    ignored = None
    if ignore_index is not None:
        ii = ctx.const(np.array(ignore_index, target.dtype))
        ignored = ctx.emit("equal", target, ii)
        target = ctx.emit("where", ignored, ctx.const(np.zeros((), target.dtype)), target)

    picked = ctx.emit("gather_elements", log_prob, _insert_axis1(ctx, target), axis=1)
    picked_shape = picked.type.shape
    loss = ctx.emit("neg", ctx.emit("reshape", picked, shape=[picked_shape[0], *picked_shape[2:]]))

    weights = None
    if weight is not None:
        weights = ctx.emit("gather", weight, target, axis=0)
        if ignored is not None:
            weights = ctx.emit("where", ignored, zero, weights)
    elif ignored is not None:
        weights = ctx.emit("where", ignored, zero, ctx.const(np.ones((), dtype)))
    if weights is not None:
        loss = ctx.emit("mul", loss, weights)

    all_axes = list(range(loss.type.rank))
    if reduction == "none":
        return loss
    if reduction == "sum":
        return ctx.emit("reduce_sum", loss, axes=all_axes, keepdims=False)
    if weights is None:
        return ctx.emit("reduce_mean", loss, axes=all_axes, keepdims=False)
    total = ctx.emit("reduce_sum", loss, axes=all_axes, keepdims=False)
    return ctx.emit("div", total, ctx.emit("reduce_sum", weights, axes=all_axes, keepdims=False))


@converter("NegativeLogLikelihoodLoss", since=12)
def negative_log_likelihood_loss(ctx: NodeContext) -> Value:
    return _nll(ctx, ctx.input(0), ctx.input(1), ctx.input(2))


@converter("SoftmaxCrossEntropyLoss", since=12)
def softmax_cross_entropy_loss(ctx: NodeContext) -> list[Value | None]:
    """NLL of log_softmax over the class axis 1; the optional second output is log_prob."""
    scores = ctx.input(0)
    if scores.type.rank < 2:
        raise ctx.error(f"scores must have rank >= 2, got {scores.type}")
    log_prob = ctx.emit("log_softmax", scores, axis=1)
    loss = _nll(ctx, log_prob, ctx.input(1), ctx.input(2))
    return [loss, log_prob] if ctx.num_outputs > 1 else [loss]
