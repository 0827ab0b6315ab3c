"""Converters of ONNX reductions, ArgMax/ArgMin, CumSum, TopK and LpNormalization.

The Reduce* ops took ``axes`` as an attribute until opset 13 (ReduceSum) or 18 (the rest)
and as an optional input since; missing axes mean every axis, unless
``noop_with_empty_axes`` asks for no reduction, which the core ops express as empty axes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from compiler.ir.graph import Value

from .registry import NodeContext, converter

REDUCTIONS = {
    "ReduceSum": ("reduce_sum", 13),
    "ReduceMean": ("reduce_mean", 18),
    "ReduceMax": ("reduce_max", 18),
    "ReduceMin": ("reduce_min", 18),
    "ReduceProd": ("reduce_prod", 18),
    "ReduceL1": ("reduce_l1", 18),
    "ReduceL2": ("reduce_l2", 18),
    "ReduceLogSum": ("reduce_log_sum", 18),
    "ReduceLogSumExp": ("reduce_log_sum_exp", 18),
    "ReduceSumSquare": ("reduce_sum_square", 18),
}
"""ONNX op -> (core op, the opset from which axes is an input)."""


def _emit_reduce(ctx: NodeContext, core: str, axes: list[int] | None, noop: bool) -> Value:
    x = ctx.input(0)
    if not axes:
        axes = [] if noop else list(range(x.type.rank))
    return ctx.emit(core, x, axes=axes, keepdims=bool(ctx.attr("keepdims", 1)))


def _reduce_axes_attr(core: str) -> Callable[[NodeContext], Value]:
    def convert(ctx: NodeContext) -> Value:
        return _emit_reduce(ctx, core, ctx.attr("axes"), noop=False)

    return convert


def _reduce_axes_input(core: str) -> Callable[[NodeContext], Value]:
    def convert(ctx: NodeContext) -> Value:
        axes = None
        if ctx.input(1) is not None:
            axes = [int(a) for a in ctx.require_value(1, "axes").ravel()]
        return _emit_reduce(ctx, core, axes, noop=bool(ctx.attr("noop_with_empty_axes", 0)))

    return convert


for _op_type, (_core, _since) in REDUCTIONS.items():
    converter(_op_type, since=1)(_reduce_axes_attr(_core))
    converter(_op_type, since=_since)(_reduce_axes_input(_core))


def _arg(core: str) -> Callable[[NodeContext], Value]:
    def convert(ctx: NodeContext) -> Value:
        return ctx.emit(
            core,
            ctx.input(0),
            axis=ctx.attr("axis", 0),
            keepdims=bool(ctx.attr("keepdims", 1)),
            select_last_index=bool(ctx.attr("select_last_index", 0)),
        )

    return convert


converter("ArgMax", since=1)(_arg("argmax"))
converter("ArgMin", since=1)(_arg("argmin"))


@converter("CumSum", since=11)
def cumsum(ctx: NodeContext) -> Value:
    axis = ctx.require_value(1, "axis")
    if axis.size != 1:
        raise ctx.error(f"axis must hold one value, got shape {list(axis.shape)}")
    return ctx.emit(
        "cumsum",
        ctx.input(0),
        axis=int(axis.ravel()[0]),
        exclusive=bool(ctx.attr("exclusive", 0)),
        reverse=bool(ctx.attr("reverse", 0)),
    )


def _topk(ctx: NodeContext, k: int) -> list[Value]:
    return ctx.op(
        "topk",
        [ctx.input(0)],
        k=k,
        axis=ctx.attr("axis", -1),
        largest=bool(ctx.attr("largest", 1)),
        sorted=bool(ctx.attr("sorted", 1)),
    )


@converter("TopK", since=1)
def topk_v1(ctx: NodeContext) -> list[Value]:
    return _topk(ctx, int(ctx.attr("k")))


@converter("TopK", since=10)
def topk_v10(ctx: NodeContext) -> list[Value]:
    """k became an input (one int64); largest and sorted came in opset 11."""
    k = ctx.require_value(1, "k")
    if k.size != 1:
        raise ctx.error(f"k must hold one value, got shape {list(k.shape)}")
    return _topk(ctx, int(k.ravel()[0]))


@converter("LpNormalization", since=1)
def lp_normalization(ctx: NodeContext) -> Value:
    """x / ||x||_p along axis, and 0 where the norm is 0 (as onnxruntime gives)."""
    x = ctx.input(0)
    p = ctx.attr("p", 2)
    if p not in (1, 2):
        raise ctx.error(f"p={p} is not supported (only 1 and 2)")
    norm = ctx.emit(f"reduce_l{p}", x, axes=[ctx.attr("axis", -1)], keepdims=True)
    zero = ctx.const(np.zeros((), x.dtype))
    is_zero = ctx.emit("equal", norm, zero)
    return ctx.emit("where", is_zero, zero, ctx.emit("div", x, norm))
