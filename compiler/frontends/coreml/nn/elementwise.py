"""Element-wise NeuralNetwork layers: ``activation`` with all its kinds."""

from __future__ import annotations

import numpy as np

from compiler.ir.graph import Value

from .registry import NnContext, layer


@layer("activation")
def activation(ctx: NnContext) -> Value:
    p = ctx.params
    kind = p.WhichOneof("NonlinearityType")
    x = ctx.x()
    a = getattr(p, kind)
    if kind == "ReLU":
        return ctx.emit("relu", x)
    if kind == "leakyReLU":
        return ctx.emit("leaky_relu", x, alpha=a.alpha)
    if kind == "thresholdedReLU":
        return ctx.emit("thresholded_relu", x, alpha=a.alpha)
    if kind == "tanh":
        return ctx.emit("tanh", x)
    if kind == "sigmoid":
        return ctx.emit("sigmoid", x)
    if kind == "softsign":
        return ctx.emit("softsign", x)
    if kind == "softplus":
        return ctx.emit("softplus", x)
    if kind == "ELU":
        return ctx.emit("elu", x, alpha=a.alpha)
    if kind == "linear":
        return _affine(ctx, x, a.alpha, a.beta)
    if kind == "scaledTanh":
        return _affine(ctx, ctx.emit("tanh", _affine(ctx, x, a.beta, 0.0)), a.alpha, 0.0)
    if kind == "sigmoidHard":
        return ctx.emit("clip", _affine(ctx, x, a.alpha, a.beta), min=0.0, max=1.0)
    if kind == "PReLU":
        return ctx.emit("prelu", x, _per_channel(ctx, x, a.alpha, "alpha"))
    if kind == "parametricSoftplus":
        alpha = _per_channel(ctx, x, a.alpha, "alpha")
        beta = _per_channel(ctx, x, a.beta, "beta")
        return ctx.emit("mul", alpha, ctx.emit("softplus", ctx.emit("mul", beta, x)))
    raise ctx.error(f"activation kind {kind!r} is not one Core ML defines")


def _affine(ctx: NnContext, x: Value, scale: float, shift: float) -> Value:
    if scale != 1.0:
        x = ctx.emit("mul", x, ctx.const(np.float32(scale), x.dtype))
    if shift != 0.0:
        x = ctx.emit("add", x, ctx.const(np.float32(shift), x.dtype))
    return x


def _per_channel(ctx: NnContext, x: Value, wp: object, what: str) -> Value:
    """A parameter with one value or one per channel (axis -3), shaped to broadcast."""
    n = len(wp.floatValue) or len(wp.float16Value) // 2 or 1
    data = ctx.weights(wp, [n], what)
    if n == 1:
        return ctx.const(data.reshape(()), x.dtype)
    return ctx.const(data.reshape(n, 1, 1), x.dtype)
