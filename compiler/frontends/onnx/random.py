"""Converters of ONNX random ops: RandomUniform/Normal(Like), Bernoulli, Multinomial.

The samples come from the core ``random_uniform``/``random_normal`` ops (a counter-based
generator: reproducible for a given seed, though not the values onnxruntime or numpy draw).
Bernoulli compares uniforms with the probabilities; Multinomial counts how many entries of
the cumulative softmax lie at or below a uniform, which is inverse-CDF sampling.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from compiler.ir.graph import Value

from .registry import NodeContext, converter, onnx_dtype

_FLOATS = ("float16", "float32", "float64")


def _seed(ctx: NodeContext) -> float | None:
    seed = ctx.attr("seed")
    return None if seed is None else float(seed)


def _sample_dtype(ctx: NodeContext, like: Value | None) -> str:
    if ctx.has_attr("dtype"):
        dtype = onnx_dtype(ctx.attr("dtype"))
    elif like is not None:
        dtype = like.dtype
    else:
        dtype = "float32"
    if dtype not in _FLOATS:
        raise ctx.error(f"samples must be float16, float32 or float64, not {dtype}")
    return dtype


def _random(ctx: NodeContext, op: str, like: Value | None, **attrs: Any) -> Value:
    dtype = _sample_dtype(ctx, like)
    if like is None:
        shape = [int(d) for d in ctx.attr("shape")]
        return ctx.emit(op, dtype=dtype, shape=shape, seed=_seed(ctx), **attrs)
    return ctx.emit(op, like, dtype=dtype, seed=_seed(ctx), **attrs)


def _uniform_attrs(ctx: NodeContext) -> dict[str, float]:
    return {"low": float(ctx.attr("low", 0.0)), "high": float(ctx.attr("high", 1.0))}


def _normal_attrs(ctx: NodeContext) -> dict[str, float]:
    return {"mean": float(ctx.attr("mean", 0.0)), "scale": float(ctx.attr("scale", 1.0))}


@converter("RandomUniform", since=1)
def random_uniform(ctx: NodeContext) -> Value:
    return _random(ctx, "random_uniform", None, **_uniform_attrs(ctx))


@converter("RandomUniformLike", since=1)
def random_uniform_like(ctx: NodeContext) -> Value:
    return _random(ctx, "random_uniform", ctx.input(0), **_uniform_attrs(ctx))


@converter("RandomNormal", since=1)
def random_normal(ctx: NodeContext) -> Value:
    return _random(ctx, "random_normal", None, **_normal_attrs(ctx))


@converter("RandomNormalLike", since=1)
def random_normal_like(ctx: NodeContext) -> Value:
    return _random(ctx, "random_normal", ctx.input(0), **_normal_attrs(ctx))


@converter("Bernoulli", since=15)
def bernoulli(ctx: NodeContext) -> Value:
    """1 where a uniform in [0, 1) is below p: probability p exactly (0 and 1 included)."""
    p = ctx.input(0)
    if p.dtype not in _FLOATS:
        raise ctx.error(f"the input must hold float probabilities, got {p.type}")
    dtype = onnx_dtype(ctx.attr("dtype")) if ctx.has_attr("dtype") else p.dtype
    u = ctx.emit("random_uniform", p, dtype=p.dtype, seed=_seed(ctx))
    return ctx.emit("cast", ctx.emit("less", u, p), to=dtype)


@converter("Multinomial", since=7)
def multinomial(ctx: NodeContext) -> Value:
    """sample_size class indices per row of unnormalized log-probabilities [batch, classes]."""
    x = ctx.input(0)
    if x.type.rank != 2 or x.dtype not in _FLOATS:
        raise ctx.error(f"the input must be float [batch, classes], got {x.type}")
    dtype = onnx_dtype(ctx.attr("dtype", 6))
    if dtype not in ("int32", "int64"):
        raise ctx.error(f"dtype must be int32 or int64, not {dtype}")
    samples = int(ctx.attr("sample_size", 1))
    if samples < 1:
        raise ctx.error(f"sample_size must be >= 1, got {samples}")
    batch, classes = x.type.shape
    if not isinstance(classes, int):
        raise ctx.error(f"the class dim must be static, got {classes!r}")
    cdf = ctx.emit("cumsum", ctx.emit("softmax", x, axis=1), axis=1)
    cdf = ctx.emit("reshape", cdf, shape=[batch, 1, classes])
    # The uniforms [batch, samples, 1] take their shape from x, so a run-time batch works.
    corner = ctx.emit("slice", cdf, axes=[2], starts=[0], ends=[1])
    like = ctx.emit("broadcast_to", corner, shape=[batch, samples, 1])
    u = ctx.emit("random_uniform", like, dtype=x.dtype, seed=_seed(ctx))
    below = ctx.emit("cast", ctx.emit("less_equal", cdf, u), to=dtype)
    count = ctx.emit("reduce_sum", below, axes=[2], keepdims=False)
    return ctx.emit("minimum", count, ctx.const(np.array(classes - 1, dtype)))
