"""NeuralNetwork layers with weights or statistics: innerProduct, batchnorm, scale, bias,
embedding, lrn, l2normalize, mvn, layer and instance normalization.

The legacy layers among them (all but embeddingND and layerNormalization) act on the trailing
``[C, H, W]`` axes, with per-channel parameters shaped ``[C, 1, 1]`` to broadcast there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from compiler.ir.graph import Value
from compiler.ir.types import dtype as dtype_of

from .registry import NnContext, layer
from .window import from_nchw, to_nchw


def _static(ctx: NnContext, dims: Sequence[Any], what: str) -> list[int]:
    if not all(isinstance(d, int) for d in dims):
        raise ctx.error(f"needs static {what}, got {list(dims)}")
    return [int(d) for d in dims]


def _rank_at_least(ctx: NnContext, x: Value, rank: int) -> int:
    r = len(x.shape)
    if r < rank:
        raise ctx.error(f"needs an input of rank >= {rank}, got shape {list(x.shape)}")
    return r


@layer("innerProduct")
def inner_product(ctx: NnContext) -> Value:
    """``x W^T + b`` over the flattened trailing axes NeuralNetwork.proto gives per rank."""
    p = ctx.params
    if p.int8DynamicQuantize:
        raise ctx.error(
            "int8DynamicQuantize quantizes the input to int8 at run time by a rule "
            "NeuralNetwork.proto does not give; nnxc cannot compute it exactly"
        )
    cin, cout = int(p.inputChannels), int(p.outputChannels)
    x = ctx.x(0)
    w = ctx.weights(p.weights, [cout, cin], "weights")
    wt = ctx.const(np.ascontiguousarray(w.T), x.dtype)
    shape = list(x.shape)
    r = len(shape)
    if not 1 <= r <= 5:
        raise ctx.error(f"needs an input of rank 1 to 5, got shape {shape}")
    # Rank 1-3 multiply the last axis; rank 4 and 5 flatten [C, H, W] (proto's table).
    keep = {1: [], 2: shape[:1], 3: shape[:2], 4: shape[:1], 5: shape[:2]}[r]
    flat = shape[len(keep) :]
    if int(np.prod(_static(ctx, flat, "input channel dims"))) != cin:
        raise ctx.error(f"input shape {shape} does not give {cin} input channels")
    if r in (1, 4, 5):
        x = ctx.emit("reshape", x, shape=[*keep, cin] if keep else [1, cin])
    y = ctx.emit("matmul", x, wt)
    if p.hasBias:
        y = ctx.emit("add", y, ctx.weights_const(p.bias, [cout], "bias", dtype=x.dtype))
    if r == 1:
        return ctx.emit("reshape", y, shape=[cout])
    if r >= 4:
        return ctx.emit("reshape", y, shape=[*keep, cout, 1, 1])
    return y


def _channel_param(ctx: NnContext, wp: Any, c: int, what: str, dtype: Any) -> Value:
    return ctx.const(ctx.weights(wp, [c], what).reshape(c, 1, 1), dtype)


@layer("batchnorm")
def batchnorm(ctx: NnContext) -> Value:
    """Per channel (axis -3): given statistics, or computed over the batch and spatial axes
    (``computeMeanVar``), or per instance over H and W (``instanceNormalization``)."""
    p = ctx.params
    x = ctx.x(0)
    r = _rank_at_least(ctx, x, 3)
    c = int(p.channels)
    if isinstance(x.shape[-3], int) and x.shape[-3] != c:
        raise ctx.error(f"{c} channels, the input has shape {list(x.shape)}")
    eps = float(p.epsilon) or 1e-5
    if not p.computeMeanVar:
        gamma, beta, mean, var = (
            ctx.weights(getattr(p, f), [c], f).astype(np.float64)
            for f in ("gamma", "beta", "mean", "variance")
        )
        a = gamma / np.sqrt(var + eps)
        b = beta - mean * a
        y = ctx.emit("mul", x, ctx.const(a.astype(np.float32).reshape(c, 1, 1), x.dtype))
        return ctx.emit("add", y, ctx.const(b.astype(np.float32).reshape(c, 1, 1), x.dtype))
    axes = [r - 2, r - 1] if p.instanceNormalization else [a for a in range(r) if a != r - 3]
    y = _standardize(ctx, x, axes, eps, True)
    y = ctx.emit("mul", y, _channel_param(ctx, p.gamma, c, "gamma", x.dtype))
    return ctx.emit("add", y, _channel_param(ctx, p.beta, c, "beta", x.dtype))


def _standardize(ctx: NnContext, x: Value, axes: list[int], eps: float, scale: bool) -> Value:
    """``x - mean``, divided by ``sqrt(variance + eps)`` (population variance) if ``scale``."""
    mean = ctx.emit("reduce_mean", x, axes=axes, keepdims=True)
    d = ctx.emit("sub", x, mean)
    if not scale:
        return d
    var = ctx.emit("reduce_mean", ctx.emit("mul", d, d), axes=axes, keepdims=True)
    std = ctx.emit("sqrt", ctx.emit("add", var, ctx.const(np.float32(eps), x.dtype)))
    return ctx.emit("div", d, std)


def _broadcast_param(ctx: NnContext, wp: Any, shape: Sequence[int], x: Value, what: str) -> Value:
    """A scale or bias of shape ``[1]``, ``[C]``, ``[1, H, W]`` or ``[C, H, W]`` (empty:
    ``[1]``), shaped to broadcast against the trailing ``[C, H, W]`` of ``x``."""
    dims = [int(d) for d in shape] or [1]
    values = ctx.weights(wp, dims, what)
    if dims == [1]:
        return ctx.const(values.reshape(()), x.dtype)
    r = _rank_at_least(ctx, x, 3)
    c, h, w = x.shape[r - 3 :]
    full = [dims[0], 1, 1] if len(dims) == 1 else dims
    if len(full) != 3 or full[0] not in (1, c) or (len(dims) == 3 and dims[1:] != [h, w]):
        raise ctx.error(
            f"{what} of shape {dims} is not [1], [C], [1, H, W] or [C, H, W] of the input "
            f"{list(x.shape)}"
        )
    return ctx.const(values.reshape(full), x.dtype)


@layer("scale")
def scale(ctx: NnContext) -> Value:
    p = ctx.params
    x = ctx.x(0)
    y = ctx.emit("mul", x, _broadcast_param(ctx, p.scale, p.shapeScale, x, "scale"))
    if p.hasBias:
        y = ctx.emit("add", y, _broadcast_param(ctx, p.bias, p.shapeBias, x, "bias"))
    return y


@layer("bias")
def bias(ctx: NnContext) -> Value:
    p = ctx.params
    x = ctx.x(0)
    return ctx.emit("add", x, _broadcast_param(ctx, p.bias, p.shape, x, "bias"))


def _lookup(ctx: NnContext, indices: Value, wp: Any, out: int, vocab: int, bias: Any) -> Value:
    """Rows of the ``[out, vocab]`` weights (transposed to a table) for float indices."""
    table = ctx.weights(wp, [out, vocab], "weights")
    dtype = indices.dtype if dtype_of(indices.dtype).is_float else "float32"
    idx = ctx.emit("cast", indices, to="int32")  # float indices are whole numbers
    y = ctx.emit("gather", ctx.const(np.ascontiguousarray(table.T), dtype), idx, axis=0)
    if bias is not None:
        y = ctx.emit("add", y, ctx.weights_const(bias, [out], "bias", dtype=dtype))
    return y


@layer("embedding")
def embedding(ctx: NnContext) -> Value:
    """Indices ``[..., 1, 1, 1]`` -> vectors ``[..., C_out, 1, 1]``."""
    p = ctx.params
    x = ctx.x(0)
    r = _rank_at_least(ctx, x, 4)
    if list(x.shape[r - 3 :]) != [1, 1, 1]:
        raise ctx.error(f"needs indices of shape [..., 1, 1, 1], got {list(x.shape)}")
    lead = list(x.shape[: r - 3])
    idx = ctx.emit("reshape", x, shape=lead)
    out = int(p.outputChannels)
    y = _lookup(ctx, idx, p.weights, out, int(p.inputDim), p.bias if p.hasBias else None)
    return ctx.emit("reshape", y, shape=[*lead, out, 1, 1])


@layer("embeddingND")
def embedding_nd(ctx: NnContext) -> Value:
    """Indices ``[..., 1]`` -> vectors ``[..., embeddingSize]``."""
    p = ctx.params
    x = ctx.x(0)
    r = _rank_at_least(ctx, x, 2)
    if x.shape[-1] != 1:
        raise ctx.error(f"needs indices of shape [..., 1], got {list(x.shape)}")
    idx = ctx.emit("reshape", x, shape=list(x.shape[: r - 1]))
    size = int(p.embeddingSize)
    return _lookup(ctx, idx, p.weights, size, int(p.vocabSize), p.bias if p.hasBias else None)


@layer("lrn")
def lrn(ctx: NnContext) -> Value:
    """``x / (k + alpha / localSize * sum of squares over localSize channels) ^ beta``."""
    p = ctx.params
    size = int(p.localSize)
    if size < 1 or size % 2 == 0:
        raise ctx.error(
            f"localSize {size}: an odd window is centred on its channel; for an even one "
            "NeuralNetwork.proto does not say which side holds the extra channel"
        )
    x, lead = to_nchw(ctx, ctx.x(0))
    k = float(p.k) or 1.0
    y = ctx.emit("lrn", x, size=size, alpha=float(p.alpha), beta=float(p.beta), bias=k)
    return from_nchw(ctx, y, lead)


@layer("l2normalize")
def l2normalize(ctx: NnContext) -> Value:
    """``x / sqrt(sum of squares over [C, H, W] + epsilon)`` per batch item."""
    x = ctx.x(0)
    r = _rank_at_least(ctx, x, 3)
    eps = float(ctx.params.epsilon) or 1e-6
    total = ctx.emit("reduce_sum_square", x, axes=[r - 3, r - 2, r - 1], keepdims=True)
    norm = ctx.emit("sqrt", ctx.emit("add", total, ctx.const(np.float32(eps), x.dtype)))
    return ctx.emit("div", x, norm)


@layer("mvn")
def mvn(ctx: NnContext) -> Value:
    """Mean (and variance) normalization over [C, H, W] (``acrossChannels``) or [H, W];
    ``(x - mean) / sqrt(var + eps)``, as coremltools lowers MIL's layer_norm to it."""
    p = ctx.params
    x = ctx.x(0)
    r = _rank_at_least(ctx, x, 3)
    axes = [r - 3, r - 2, r - 1] if p.acrossChannels else [r - 2, r - 1]
    eps = float(p.epsilon) or 1e-6
    return _standardize(ctx, x, axes, eps, bool(p.normalizeVariance))


@layer("layerNormalization")
def layer_normalization(ctx: NnContext) -> Value:
    """Over the trailing ``normalizedShape`` axes, with gamma and beta of that shape."""
    p = ctx.params
    x = ctx.x(0)
    shape = [int(d) for d in p.normalizedShape]
    r = len(x.shape)
    if not shape or len(shape) > r or list(x.shape[r - len(shape) :]) != shape:
        raise ctx.error(f"normalizedShape {shape} is not the trailing shape of {list(x.shape)}")
    gamma = ctx.weights_const(p.gamma, shape, "gamma", dtype=x.dtype)
    beta = ctx.weights_const(p.beta, shape, "beta", dtype=x.dtype)
    return ctx.emit("layer_norm", x, gamma, beta, axis=r - len(shape), epsilon=float(p.eps))
