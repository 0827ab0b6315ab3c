"""MIL reductions and ranking: reduce_*, argmax/argmin, cumsum, topk, argsort.

MIL reductions take ``axes`` (None: every axis) and ``keep_dims`` (default False); the
arg-reductions one ``axis`` (default -1). Indices come out as int32 (or the dtype that
``output_dtype``/``output_indices_dtype`` names), where the core ops give int64: a cast
follows. Ties go to the lowest index, which is what the core ops compute.
"""

from __future__ import annotations

from compiler.ir.graph import Value
from compiler.ir.ops.shapes import normalize_axis

from .registry import MilContext, mil_op

_REDUCTIONS = {
    "reduce_l1_norm": "reduce_l1",
    "reduce_l2_norm": "reduce_l2",
    "reduce_log_sum": "reduce_log_sum",
    "reduce_log_sum_exp": "reduce_log_sum_exp",
    "reduce_max": "reduce_max",
    "reduce_mean": "reduce_mean",
    "reduce_min": "reduce_min",
    "reduce_prod": "reduce_prod",
    "reduce_sum": "reduce_sum",
    "reduce_sum_square": "reduce_sum_square",
}


def _cast_to(ctx: MilContext, v: Value, index: int = 0) -> Value:
    want = ctx.out_dtype(index)
    return v if v.dtype == want else ctx.emit("cast", v, to=want)


def _reduction(core: str):
    def convert(ctx: MilContext) -> Value:
        x = ctx.x("x")
        axes = ctx.attr("axes")
        axes = list(range(x.type.rank)) if axes is None else [int(a) for a in axes]
        return ctx.emit(core, x, axes=axes, keepdims=bool(ctx.attr("keep_dims", False)))

    return convert


for _name, _core in _REDUCTIONS.items():
    mil_op(_name)(_reduction(_core))


def _arg(core: str):
    def convert(ctx: MilContext) -> Value:
        keep = bool(ctx.attr("keep_dims", False))
        out = ctx.emit(core, ctx.x("x"), axis=int(ctx.attr("axis", -1)), keepdims=keep)
        return _cast_to(ctx, out)

    return convert


mil_op("reduce_argmax")(_arg("argmax"))
mil_op("reduce_argmin")(_arg("argmin"))


@mil_op("cumsum")
def cumsum(ctx: MilContext) -> Value:
    return ctx.emit(
        "cumsum",
        ctx.x("x"),
        axis=int(ctx.attr("axis", 0)),
        exclusive=bool(ctx.attr("exclusive", False)),
        reverse=bool(ctx.attr("reverse", False)),
    )


def _axis_size(ctx: MilContext, x: Value, axis: int) -> int:
    dim = x.shape[normalize_axis(axis, x.type.rank)]
    if not isinstance(dim, int):
        raise ctx.error(f"axis {axis} of {x.type} must be static to sort along it")
    return dim


@mil_op("topk")
def topk(ctx: MilContext) -> list[Value]:
    """``ascending`` picks the smallest; ``sort=False`` allows any order, so the sorted
    result is a valid one. iOS16+ may drop the indices (``return_indices=False``)."""
    x = ctx.x("x")
    axis = int(ctx.attr("axis", -1))
    k = int(ctx.attr("k", 1))
    if k == -1:  # iOS17: every element
        k = _axis_size(ctx, x, axis)
    largest = not ctx.attr("ascending", False)
    values, indices = ctx.op("topk", [x], k=k, axis=axis, largest=largest, sorted=True)
    if ctx.num_outputs == 1:
        return [values]
    return [values, _cast_to(ctx, indices, 1)]


@mil_op("argsort")
def argsort(ctx: MilContext) -> Value:
    """Indices that sort along ``axis``, descending unless ``ascending``; equal values keep
    their order (a stable sort)."""
    x = ctx.x("x")
    axis = int(ctx.attr("axis", -1))
    n = _axis_size(ctx, x, axis)
    largest = not ctx.attr("ascending", False)
    _, indices = ctx.op("topk", [x], k=n, axis=axis, largest=largest, sorted=True)
    return _cast_to(ctx, indices)
