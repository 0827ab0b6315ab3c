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


# -- Swish, SwiGLU ---------------------------------------------------------------------------


def _swish(ctx: NodeContext, x: Value, alpha: float) -> Value:
    """x * sigmoid(alpha * x); float16 is computed in float32 and rounded once at the end."""
    xs = ctx.emit("cast", x, to="float32") if x.dtype == "float16" else x
    scaled = xs if alpha == 1.0 else ctx.emit("mul", xs, ctx.const(np.array(alpha, xs.dtype)))
    return ctx.emit("mul", xs, ctx.emit("sigmoid", scaled))


def _float_operand(ctx: NodeContext, x: Value) -> None:
    if x.dtype not in ("float16", "float32", "float64"):
        raise ctx.error(f"needs a float input, got {x.type}")


@converter("Swish", since=24)
def swish(ctx: NodeContext) -> Value:
    x = ctx.input(0)
    _float_operand(ctx, x)
    y = _swish(ctx, x, float(ctx.attr("alpha", 1.0)))
    return y if y.dtype == x.dtype else ctx.emit("cast", y, to=x.dtype)


@converter("SwiGLU", since=28)
def swiglu(ctx: NodeContext) -> Value:
    """Swish(A) * B; A and B have one shape (the op does not broadcast)."""
    a, b = ctx.input(0), ctx.input(1)
    _float_operand(ctx, a)
    if a.type != b.type:
        raise ctx.error(f"A {a.type} and B {b.type} must have the same type and shape")
    gate = _swish(ctx, a, float(ctx.attr("alpha", 1.0)))
    bs = b if b.dtype == gate.dtype else ctx.emit("cast", b, to=gate.dtype)
    y = ctx.emit("mul", gate, bs)
    return y if y.dtype == a.dtype else ctx.emit("cast", y, to=a.dtype)


# -- RotaryEmbedding -------------------------------------------------------------------------


def _last_slice(ctx: NodeContext, x: Value, start: int, end: int, step: int = 1) -> Value:
    axis = x.type.rank - 1
    return ctx.emit("slice", x, axes=[axis], starts=[start], ends=[end], steps=[step])


@converter("RotaryEmbedding", since=23)
def rotary_embedding(ctx: NodeContext) -> Value:
    """Rotates pairs of the first rotary_embedding_dim features of each head by the cached
    angles: (x1, x2) -> (cos x1 - sin x2, sin x1 + cos x2), pairs being the two halves or,
    when ``interleaved``, the even and odd features.

    X is [batch, heads, seq, head] (4-D) or [batch, seq, heads * head] (3-D, num_heads
    given); the caches are [max_pos, rot / 2] read at position_ids [batch, seq], or
    [batch, seq, rot / 2] without position_ids. Written without reshaping X:
    y = x * C + x[partner] * S, with C and S the caches spread over the features by
    constant gathers (C = 1 and S = 0 on the features not rotated).
    """
    x, cos, sin, positions = ctx.input(0), ctx.input(1), ctx.input(2), ctx.input(3)
    _float_operand(ctx, x)
    shape = list(x.type.shape)
    if x.type.rank == 3:
        heads = int(ctx.attr("num_heads", 0))
        hidden = shape[2]
        if heads <= 0 or not isinstance(hidden, int) or hidden % heads:
            raise ctx.error(f"a 3-D input {x.type} needs num_heads dividing its last dim")
        head = hidden // heads
        cache_shape = [shape[0], shape[1]]  # batch, seq
    elif x.type.rank == 4:
        heads, head = 1, shape[3]  # heads are an axis of their own
        if not isinstance(head, int):
            raise ctx.error(f"the head size must be static, got {head!r}")
        cache_shape = [shape[0], 1, shape[2]]  # batch, (heads), seq
    else:
        raise ctx.error(f"the input must be 3-D or 4-D, got {x.type}")
    rot = int(ctx.attr("rotary_embedding_dim", 0)) or head
    if rot > head or rot % 2:
        raise ctx.error(f"rotary_embedding_dim {rot} must be even and at most the head {head}")
    half = rot // 2

    # Per feature j of one head: its pair m, its partner, and whether it comes first.
    j = np.arange(head)
    if ctx.attr("interleaved", 0):
        pair, first = j // 2, j % 2 == 0
        partner = np.where(first, j + 1, j - 1)
    else:
        pair, first = j % half, j < half
        partner = np.where(first, j + half, j - half)
    rotated = j < rot
    partner = np.where(rotated, partner, j)
    cos_index = np.where(rotated, pair, half)  # entry half of the extended cache: 1 or 0
    sin_index = np.where(rotated, np.where(first, pair + half, pair), 2 * half)  # -s, s, 0
    offsets = np.repeat(np.arange(heads) * head, head)

    def angles(cache: Value) -> Value:
        if cache.dtype != x.dtype:
            raise ctx.error(f"cos/sin caches must be {x.dtype}, got {cache.type}")
        if positions is not None:
            cache = ctx.emit("gather", cache, positions, axis=0)
        if cache.type.rank != 3 or cache.type.shape[2] != half:
            raise ctx.error(f"cache {cache.type} must give [batch, seq, {half}] angles")
        return ctx.emit("reshape", cache, shape=[*cache_shape, half])

    def spread(parts: list[Value], fill: float, index: np.ndarray) -> Value:
        """concat(parts, fill) along the last axis, gathered at ``index`` for every head."""
        lead = list(parts[0].type.shape[:-1])
        pad = ctx.emit("broadcast_to", ctx.const(np.full(1, fill, x.dtype)), shape=[*lead, 1])
        ext = ctx.emit("concat", *parts, pad, axis=len(lead))
        return ctx.emit("gather", ext, ctx.const(np.tile(index, heads)), axis=len(lead))

    c = angles(cos)
    s = angles(sin)
    cos_full = spread([c], 1.0, cos_index)
    sin_full = spread([s, ctx.emit("neg", s)], 0.0, sin_index)
    swapped = ctx.emit(
        "gather", x, ctx.const(np.tile(partner, heads) + offsets), axis=len(shape) - 1
    )
    return ctx.emit("add", ctx.emit("mul", x, cos_full), ctx.emit("mul", swapped, sin_full))


# -- TensorScatter ---------------------------------------------------------------------------


@converter("TensorScatter", since=24)
def tensor_scatter(ctx: NodeContext) -> Value:
    """present[b, ..., p, ...] = update[b, ..., p - w[b], ...] where 0 <= p - w[b] < seq
    (p - w[b] taken modulo max_seq in circular mode), else past: one gather_elements and
    one where over the whole cache, exact for any write_indices computed at run time."""
    past, update, writes = ctx.input(0), ctx.input(1), ctx.input(2)
    rank = past.type.rank
    axis = normalize_axis(int(ctx.attr("axis", -2)), rank)
    mode = ctx.attr("mode", "linear")
    if mode not in ("linear", "circular"):
        raise ctx.error(f"mode {mode!r} is not 'linear' or 'circular'")
    if axis == 0:
        raise ctx.error("axis must not be the batch axis 0")
    if update.dtype != past.dtype or update.type.rank != rank:
        raise ctx.error(f"update {update.type} does not match past_cache {past.type}")
    max_seq, seq = past.type.shape[axis], update.type.shape[axis]
    if not isinstance(max_seq, int) or not isinstance(seq, int) or seq > max_seq:
        raise ctx.error(f"needs static sequence dims with {seq} <= {max_seq}")
    for i, (p, u) in enumerate(zip(past.type.shape, update.type.shape)):
        if i != axis and p != u:
            raise ctx.error(f"update {update.type} differs from past_cache {past.type} in dim {i}")
    batch = past.type.shape[0]
    position_shape = [1] * rank
    position_shape[axis] = max_seq
    positions = ctx.const(np.arange(max_seq, dtype=np.int64).reshape(position_shape))
    if writes is None:
        offset = positions
    else:
        if writes.type.rank != 1 or writes.dtype not in ("int32", "int64"):
            raise ctx.error(f"write_indices must be a 1-D int tensor, got {writes.type}")
        w = writes if writes.dtype == "int64" else ctx.emit("cast", writes, to="int64")
        w = ctx.emit("reshape", w, shape=[batch] + [1] * (rank - 1))
        offset = ctx.emit("sub", positions, w)
    if mode == "circular":
        offset = ctx.emit("mod", offset, ctx.const(np.array(max_seq, np.int64)))
    zero = ctx.const(np.array(0, np.int64))
    valid = ctx.emit(
        "logical_and",
        ctx.emit("greater_equal", offset, zero),
        ctx.emit("less", offset, ctx.const(np.array(seq, np.int64))),
    )
    index = ctx.emit("where", valid, offset, zero)
    index = ctx.emit("broadcast_to", index, shape=list(past.type.shape))
    gathered = ctx.emit("gather_elements", update, index, axis=axis)
    return ctx.emit("where", valid, gathered, past)
