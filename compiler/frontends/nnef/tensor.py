"""NNEF tensor-shape ops (reshape, transpose, concat, split, slice, squeeze, unsqueeze, stack,
unstack, tile, pad, gather) and ``pad_border``, the one place NNEF's border modes become IR
ops (pooling and convolution use it too)."""

from __future__ import annotations

from collections.abc import Sequence

from compiler.ir.graph import Value

from ..converters import NodeContext

BORDERS = ("constant", "ignore", "replicate", "reflect", "reflect-even")
_IR_PAD_MODES = {"constant": "constant", "replicate": "edge", "reflect": "reflect"}


def pad_border(
    ctx: NodeContext,
    x: Value,
    pairs: Sequence[tuple[int, int]],
    border: str,
    value: float = 0.0,
) -> Value:
    """``x`` padded by ``pairs`` (one (front, back) per dim) the way NNEF's ``border`` says:
    ``constant`` with ``value``, ``replicate`` repeats the edge, ``reflect`` mirrors without
    the edge, ``reflect-even`` mirrors with it (numpy's ``symmetric``; the IR pad has no such
    mode, so it is built from reversed slices). ``ignore`` is not a padding: callers that
    support it handle it before."""
    pairs = [(int(a), int(b)) for a, b in pairs]
    if not any(a or b for a, b in pairs):
        return x
    if any(a < 0 or b < 0 for a, b in pairs):
        raise ctx.error(f"negative padding {pairs}")
    if border in _IR_PAD_MODES:
        pads = [a for a, _ in pairs] + [b for _, b in pairs]
        mode = _IR_PAD_MODES[border]
        return ctx.emit(
            "pad", x, pads=pads, mode=mode, value=float(value) if mode == "constant" else 0.0
        )
    if border != "reflect-even":
        raise ctx.error(f"border {border!r} is not a padding mode ({', '.join(BORDERS)})")
    for axis, (front, back) in enumerate(pairs):
        if not front and not back:
            continue
        size = x.shape[axis]
        if not isinstance(size, int) or max(front, back) > size:
            raise ctx.error(f"reflect-even padding {pairs} needs dim {axis} of {x.type} >= it")
        parts = []
        if front:  # elements front-1 down to 0
            parts.append(_reversed(ctx, x, axis, front - 1, front))
        parts.append(x)
        if back:  # elements size-1 down to size-back
            parts.append(_reversed(ctx, x, axis, size - 1, back))
        x = ctx.emit("concat", *parts, axis=axis)
    return x


def _reversed(ctx: NodeContext, x: Value, axis: int, start: int, count: int) -> Value:
    """``count`` elements of ``x`` along ``axis``, from index ``start`` downwards."""
    end = start - count if start - count >= 0 else -x.shape[axis] - 1
    return ctx.emit("slice", x, axes=[axis], starts=[start], ends=[end], steps=[-1])
