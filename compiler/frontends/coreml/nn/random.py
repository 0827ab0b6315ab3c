"""The random NeuralNetwork layers: randomNormal/Uniform/Bernoulli (Like, Static, Dynamic) and
categoricalDistribution, on the IR's seeded generator (``coreml.sampling``). A NeuralNetwork
computes in float: samples and drawn class indices are float32 blobs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from compiler.ir.graph import Value

from .. import sampling
from .registry import NnContext, layer

LayerFn = Callable[[NnContext], Value]


def _shape_source(ctx: NnContext, kind: str) -> dict[str, Any]:
    """The shape of a random layer's output: ``like`` an input, static, or a known input."""
    if kind.endswith("Like"):
        return {"like": ctx.x()}
    if kind.endswith("Static"):
        return {"shape": [int(d) for d in ctx.params.outputShape]}
    data = ctx.require_value(0, "shape", "it decides the output shape").reshape(-1)
    return {"shape": [int(d) for d in data]}


def _sample(ctx: NnContext, op: str, kind: str, **attrs: Any) -> Value:
    src = _shape_source(ctx, kind)
    like = src.pop("like", None)
    args = [like] if like is not None else []
    seed = sampling.seed(ctx.params.seed)
    return ctx.emit(op, *args, dtype="float32", seed=seed, **src, **attrs)


def _normal(kind: str) -> LayerFn:
    def convert(ctx: NnContext) -> Value:
        p = ctx.params
        return _sample(ctx, "random_normal", kind, mean=float(p.mean), scale=float(p.stdDev))

    convert.__name__ = kind
    return convert


def _uniform(kind: str) -> LayerFn:
    def convert(ctx: NnContext) -> Value:
        p = ctx.params
        return _sample(ctx, "random_uniform", kind, low=float(p.minVal), high=float(p.maxVal))

    convert.__name__ = kind
    return convert


def _bernoulli(kind: str) -> LayerFn:
    def convert(ctx: NnContext) -> Value:
        """1.0 where a uniform in [0, 1) is below ``prob``: probability prob exactly."""
        u = _sample(ctx, "random_uniform", kind)
        prob = ctx.const(np.float32(ctx.params.prob), "float32")
        return ctx.emit("cast", ctx.emit("less", u, prob), to="float32")

    convert.__name__ = kind
    return convert


for _suffix in ("Like", "Static", "Dynamic"):
    layer(f"randomNormal{_suffix}")(_normal(f"randomNormal{_suffix}"))
    layer(f"randomUniform{_suffix}")(_uniform(f"randomUniform{_suffix}"))
    layer(f"randomBernoulli{_suffix}")(_bernoulli(f"randomBernoulli{_suffix}"))


@layer("categoricalDistribution")
def categorical_distribution(ctx: NnContext) -> Value:
    """numSamples class indices (float) per distribution of the last axis, drawn with
    replacement. Logits are softmaxed; probabilities are normalized by their sum."""
    p = ctx.params
    temperature = float(p.temperature) or 1.0
    if temperature != 1.0:
        raise ctx.error(
            f"temperature {temperature}: Core ML does not document how it applies; nnxc "
            "converts temperature 1"
        )
    x = ctx.emit("cast", ctx.x(), to="float32") if ctx.x().dtype != "float32" else ctx.x()
    shape = list(x.shape)
    if not shape:
        raise ctx.error("the input needs rank >= 1")
    samples = int(p.numSamples)
    if not isinstance(shape[-1], int) or samples < 1:
        raise ctx.error(f"needs a static class axis and numSamples >= 1, got {shape}, {samples}")
    last = len(shape) - 1
    if p.isLogits:
        probs = ctx.emit("softmax", x, axis=last)
    else:
        probs = ctx.emit("div", x, ctx.emit("reduce_sum", x, axes=[last], keepdims=True))
    return sampling.categorical(ctx, probs, samples, sampling.seed(p.seed))
