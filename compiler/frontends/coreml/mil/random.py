"""The random MIL ops: random_uniform, random_normal, random_bernoulli, random_categorical, on
the IR's seeded generator (``coreml.sampling``); seed -1 is unseeded."""

from __future__ import annotations

from typing import Any

import numpy as np

from compiler.ir.graph import Value

from .. import sampling
from .registry import MilContext, mil_op
from .tensor import need


def _random(ctx: MilContext, op: str, **attrs: Any) -> Value:
    shape = [int(d) for d in need(ctx, "shape", "it is the output's shape").reshape(-1)]
    seed = sampling.seed(ctx.attr("seed", -1))
    return ctx.emit(op, dtype=ctx.out_dtype(), shape=shape, seed=seed, **attrs)


@mil_op("random_uniform")
def random_uniform(ctx: MilContext) -> Value:
    low, high = float(ctx.attr("low", 0.0)), float(ctx.attr("high", 1.0))
    return _random(ctx, "random_uniform", low=low, high=high)


@mil_op("random_normal")
def random_normal(ctx: MilContext) -> Value:
    mean, std = float(ctx.attr("mean", 0.0)), float(ctx.attr("stddev", 1.0))
    return _random(ctx, "random_normal", mean=mean, scale=std)


@mil_op("random_bernoulli")
def random_bernoulli(ctx: MilContext) -> Value:
    """1 where a uniform in [0, 1) is below prob."""
    dtype = ctx.out_dtype()
    u = _random(ctx, "random_uniform")
    prob = ctx.const(np.asarray(ctx.attr("prob", 0.5), dtype=dtype), dtype)
    return ctx.emit("cast", ctx.emit("less", u, prob), to=dtype)


@mil_op("random_categorical")
def random_categorical(ctx: MilContext) -> Value:
    """``size`` class indices per distribution (the last axis); ``probs`` are normalized,
    ``logits`` softmaxed."""
    x = ctx.x("x")
    if not x.shape or not isinstance(x.shape[-1], int):
        raise ctx.error(f"the class axis of {x.type} must be static")
    last = x.type.rank - 1
    mode = ctx.attr("mode", "logits")
    if mode == "logits":
        probs = ctx.emit("softmax", x, axis=last)
    elif mode == "probs":
        probs = ctx.emit("div", x, ctx.emit("reduce_sum", x, axes=[last], keepdims=True))
    else:
        raise ctx.error(f"mode {mode!r} is not supported (logits, probs)")
    drawn = sampling.categorical(
        ctx, probs, int(ctx.attr("size", 1)), sampling.seed(ctx.attr("seed", -1))
    )
    want = ctx.out_dtype()
    return drawn if drawn.dtype == want else ctx.emit("cast", drawn, to=want)
