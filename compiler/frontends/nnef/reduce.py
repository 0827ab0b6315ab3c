"""NNEF reductions (they keep the reduced axes as size 1, ``nnef.shapes.reduce_shape``), softmax
and the normalization fragments nnxc converts whole (batch and l2 normalization).

Empty ``axes`` reduce nothing: the reduction is the identity, as the shape function says.
"""

from __future__ import annotations

import numpy as np

from compiler.ir.graph import Value

from .registry import NnefContext, converter, to_rank


def _axes(ctx: NnefContext, x: Value) -> list[int]:
    axes = [int(a) for a in ctx.attr("axes")]
    if any(not 0 <= a < len(x.shape) for a in axes) or len(set(axes)) != len(axes):
        raise ctx.error(f"axes {axes} must be distinct axes of {x.type}")
    return sorted(axes)


def _reduce(ctx: NnefContext, core: str, x: Value, axes: list[int]) -> Value:
    if not axes:
        return ctx.emit("identity", x)
    return ctx.emit(core, x, axes=axes, keepdims=True)


def _simple(core: str):
    def convert(ctx: NnefContext) -> Value:
        x = ctx.x("input")
        return _reduce(ctx, core, x, _axes(ctx, x))

    return convert


converter("max_reduce")(_simple("reduce_max"))
converter("min_reduce")(_simple("reduce_min"))
converter("mean_reduce")(_simple("reduce_mean"))


@converter("sum_reduce")
def _sum_reduce(ctx: NnefContext) -> Value:
    """``normalize = true`` divides by the count: the mean."""
    x = ctx.x("input")
    core = "reduce_mean" if ctx.attr("normalize") else "reduce_sum"
    return _reduce(ctx, core, x, _axes(ctx, x))


def _logical(core: str):
    """any/all of a logical tensor: max/min of it as 0/1 integers."""

    def convert(ctx: NnefContext) -> Value:
        x = ctx.x("input", "bool")
        axes = _axes(ctx, x)
        if not axes:
            return ctx.emit("identity", x)
        ints = ctx.emit("cast", x, to="int32")
        return ctx.emit("cast", ctx.emit(core, ints, axes=axes, keepdims=True), to="bool")

    return convert


converter("any_reduce")(_logical("reduce_max"))
converter("all_reduce")(_logical("reduce_min"))


def _arg(core: str):
    """The index of the first extreme; over several axes, its row-major index into the block
    of reduced axes (as nnef-tools' interpreter flattens them; the C++ executor does one axis
    only). The reduced axes move to the back, are flattened, and reduced as one."""

    def convert(ctx: NnefContext) -> Value:
        x = ctx.x("input")
        axes = _axes(ctx, x)
        dims = list(x.shape)
        if not all(isinstance(d, int) for d in dims):
            raise ctx.error(f"needs a static shape, got {x.type}")
        if not axes:
            return ctx.const(np.zeros(dims, np.int64), "int64")
        if len(axes) == 1:
            return ctx.emit(core, x, axis=axes[0], keepdims=True)
        kept = [a for a in range(len(dims)) if a not in axes]
        moved = ctx.emit("transpose", x, perm=kept + axes)
        flat = ctx.emit(
            "reshape",
            moved,
            shape=[dims[a] for a in kept] + [int(np.prod([dims[a] for a in axes]))],
        )
        index = ctx.emit(core, flat, axis=len(kept), keepdims=False)
        return ctx.emit("reshape", index, shape=[1 if a in axes else d for a, d in enumerate(dims)])

    return convert


converter("argmax_reduce")(_arg("argmax"))
converter("argmin_reduce")(_arg("argmin"))


@converter("moments")
def _moments(ctx: NnefContext) -> list[Value]:
    """``mean = mean_reduce(x)``, ``variance = mean_reduce(sqr(x - mean))``."""
    x = ctx.x("input")
    axes = _axes(ctx, x)
    mean = _reduce(ctx, "reduce_mean", x, axes)
    centered = ctx.emit("sub", x, mean)
    return [mean, _reduce(ctx, "reduce_mean", ctx.emit("mul", centered, centered), axes)]


@converter("softmax")
def _softmax(ctx: NnefContext) -> Value:
    """One axis: the IR softmax. Several (or none): the fragment's body, ``exp(x - max)``
    over its sum (with no axes that is 1 everywhere, as the fragment computes)."""
    x = ctx.x("x")
    axes = _axes(ctx, x)
    if len(axes) == 1:
        return ctx.emit("softmax", x, axis=axes[0])
    e = ctx.emit("exp", ctx.emit("sub", x, _reduce(ctx, "reduce_max", x, axes)))
    return ctx.emit("div", e, _reduce(ctx, "reduce_sum", e, axes))


def _channel_vector(ctx: NnefContext, param: str, x: Value) -> Value | None:
    """Parameter ``param`` as a ``[C]`` vector for the IR batch_norm when it is per channel
    of ``x`` the NNEF way (``[1, C]``, trailing 1s allowed) or a literal; else None."""
    channels = x.shape[1]
    literal = ctx.literal(param)
    if literal is not None:
        return ctx.const(np.full([channels], literal, x.dtype.np), str(x.dtype))
    v = ctx.x(param)
    shape = list(v.shape)
    if v.dtype != x.dtype or len(shape) < 2 or shape[:2] != [1, channels]:
        return None
    if any(d != 1 for d in shape[2:]) or len(shape) > len(x.shape):
        return None
    return ctx.emit("reshape", v, shape=[channels])


@converter("batch_normalization")
def _batch_normalization(ctx: NnefContext) -> Value:
    """``offset + scale * (input - mean) / sqrt(variance + epsilon)``: the IR batch_norm where
    every parameter is per channel; otherwise the fragment's body, broadcast the NNEF way."""
    x = ctx.x("input")
    params = ("scale", "offset", "mean", "variance")
    eps = float(ctx.attr("epsilon"))
    if len(x.shape) >= 2 and isinstance(x.shape[1], int):
        vectors = [_channel_vector(ctx, p, x) for p in params]
        if all(v is not None for v in vectors):
            return ctx.emit("batch_norm", x, *vectors, epsilon=eps)
    scale, offset, mean, variance = (ctx.x(p, str(x.dtype)) for p in params)
    rank = max(len(v.shape) for v in (x, scale, offset, mean, variance))
    x, scale, offset, mean, variance = (
        to_rank(ctx, v, rank) for v in (x, scale, offset, mean, variance)
    )
    eps_c = ctx.const(np.asarray(eps, x.dtype.np), str(x.dtype))
    norm = ctx.emit(
        "div",
        ctx.emit("mul", scale, ctx.emit("sub", x, mean)),
        ctx.emit("sqrt", ctx.emit("add", variance, eps_c)),
    )
    return ctx.emit("add", offset, norm)


@converter("l2_normalization")
def _l2_normalization(ctx: NnefContext) -> Value:
    """``input / max(sqrt(sum_reduce(sqr(input))) + bias, epsilon)`` (NNEF's max: select)."""
    x = ctx.x("input")
    axes = _axes(ctx, x)
    sigma = ctx.emit("sqrt", _reduce(ctx, "reduce_sum", ctx.emit("mul", x, x), axes))
    bias = ctx.const(np.asarray(float(ctx.attr("bias")), x.dtype.np), str(x.dtype))
    eps = ctx.const(np.asarray(float(ctx.attr("epsilon")), x.dtype.np), str(x.dtype))
    sigma = ctx.emit("add", sigma, bias)
    denom = ctx.emit("where", ctx.emit("greater", sigma, eps), sigma, eps)
    return ctx.emit("div", x, denom)
