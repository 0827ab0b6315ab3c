"""Lowering of tensor ops (shape and data movement) to Relax manipulation ops."""

from __future__ import annotations

from tvm import relax

from .registry import LowerContext, lowers


def _empty(ctx: LowerContext, i: int = 0) -> relax.Expr | None:
    """Zeros for an output with a zero dim, else None (rules return it when it is not None).

    Relax's reshape reads a 0 as "copy this dim", and TVM kernels over zero-extent buffers
    are fragile; an empty result needs no data from the operands anyway.
    """
    t = ctx.out_types[i]
    if 0 in t.shape:
        return relax.op.zeros(ctx.out_shape(i), t.dtype)
    return None


@lowers("reshape")
def _reshape(ctx: LowerContext, args: list) -> relax.Expr:
    empty = _empty(ctx)
    return relax.op.reshape(args[0], ctx.out_shape()) if empty is None else empty


@lowers("transpose")
def _transpose(ctx: LowerContext, args: list) -> relax.Expr:
    empty = _empty(ctx)
    return relax.op.permute_dims(args[0], ctx.attrs["perm"]) if empty is None else empty


@lowers("concat")
def _concat(ctx: LowerContext, args: list) -> relax.Expr:
    axis = ctx.attrs["axis"]
    # Empty operands add nothing; leaving them out spares TVM zero-extent buffers.
    parts = [a for a, v in zip(args, ctx.node.inputs) if v.shape[axis] != 0]
    empty = _empty(ctx)
    if empty is not None:
        return empty
    if len(parts) == 1:
        return parts[0]
    return relax.op.concat(parts, axis=axis)


@lowers("split")
def _split(ctx: LowerContext, args: list) -> list[relax.Expr]:
    axis, sizes = ctx.attrs["axis"], ctx.attrs["sizes"]
    if len(sizes) == 1:
        return [args[0]]
    # One strided slice per output: Relax's split has no zero-size sections.
    outs, start = [], 0
    for size in sizes:
        empty = _empty(ctx, len(outs))
        if empty is None:
            empty = relax.op.strided_slice(args[0], [axis], [start], [start + size])
        outs.append(empty)
        start += size
    return outs


@lowers("slice")
def _slice(ctx: LowerContext, args: list) -> relax.Expr:
    a = ctx.attrs
    if not a["axes"]:
        return args[0]
    # Normalized bounds are in range; an end of -dim-1 reads as "through index 0" here too.
    empty = _empty(ctx)
    if empty is not None:
        return empty
    return relax.op.strided_slice(args[0], a["axes"], a["starts"], a["ends"], a["steps"])


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}


@lowers("pad")
def _pad(ctx: LowerContext, args: list) -> relax.Expr:
    empty = _empty(ctx)
    if empty is not None:
        return empty
    x = args[0]
    in_type = ctx.node.inputs[0].type
    r, pads = in_type.rank, ctx.attrs["pads"]
    begin, end = pads[:r], pads[r:]
    if any(p < 0 for p in pads):
        # Negative pads crop: slice them off first, then pad what is left.
        axes = [i for i in range(r) if begin[i] < 0 or end[i] < 0]
        starts = [max(-begin[i], 0) for i in axes]
        ends = [in_type.shape[i] - max(-end[i], 0) for i in axes]
        x = ctx.emit(relax.op.strided_slice(x, axes, starts, ends))
    width = []
    for b, e in zip(begin, end):
        width += [max(b, 0), max(e, 0)]
    if not any(width):
        return x
    mode = _PAD_MODES[ctx.attrs["mode"]]
    return relax.op.nn.pad(x, width, mode, ctx.attrs["value"])


@lowers("tile")
def _tile(ctx: LowerContext, args: list) -> relax.Expr:
    empty = _empty(ctx)
    return relax.op.tile(args[0], ctx.attrs["repeats"]) if empty is None else empty


@lowers("broadcast_to")
def _broadcast_to(ctx: LowerContext, args: list) -> relax.Expr:
    empty = _empty(ctx)
    return relax.op.broadcast_to(args[0], ctx.out_shape()) if empty is None else empty


@lowers("shape")
def _shape(ctx: LowerContext, args: list) -> relax.Expr:
    # Reached only when some dim is symbolic (static shapes fold away before lowering).
    dims = ctx.node.inputs[0].type.shape[ctx.attrs["start"] : ctx.attrs["end"]]
    return relax.op.shape_to_tensor(relax.ShapeExpr(ctx.shape_of(dims)))


@lowers("identity", "dropout")
def _identity(ctx: LowerContext, args: list) -> relax.Expr:
    return args[0]
