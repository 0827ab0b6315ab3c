"""Random sampling shared by the NeuralNetwork random layers and the MIL random ops: seeds and
categorical draws, on the IR's counter-based generator (samples differ from Apple's, their
distributions agree)."""

from __future__ import annotations

import numpy as np

from compiler.ir.graph import Value

from ..converters import NodeContext


def seed(value: int) -> float | None:
    """-1 (coremltools' default) asks for fresh randomness; any other seed reproduces."""
    return None if int(value) == -1 else float(value)


def categorical(ctx: NodeContext, probs: Value, samples: int, seed: float | None) -> Value:
    """``samples`` class indices per distribution of the last axis of ``probs`` (normalized),
    drawn with replacement, in ``probs``' dtype: the count of cumulative probabilities at or
    below a uniform (inverse-CDF sampling), capped at the last class."""
    shape = list(probs.shape)
    classes, last = shape[-1], len(shape) - 1
    cdf = ctx.emit("cumsum", probs, axis=last)
    cdf = ctx.emit("reshape", cdf, shape=[*shape[:-1], 1, classes])
    corner = ctx.emit("slice", cdf, axes=[last + 1], starts=[0], ends=[1])
    like = ctx.emit("broadcast_to", corner, shape=[*shape[:-1], samples, 1])
    u = ctx.emit("random_uniform", like, dtype=probs.dtype, seed=seed)
    below = ctx.emit("cast", ctx.emit("less_equal", cdf, u), to=probs.dtype)
    count = ctx.emit("reduce_sum", below, axes=[last + 1], keepdims=False)
    top = ctx.const(np.asarray(classes - 1, dtype=str(probs.dtype)), probs.dtype)
    return ctx.emit("minimum", count, top)
