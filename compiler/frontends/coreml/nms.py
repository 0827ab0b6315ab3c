"""Non-maximum suppression as Core ML defines it, for the NeuralNetwork layer
(``NonMaximumSuppression``) and the MIL op (``non_maximum_suppression``), computed at run time.

A box's score is its best class score; boxes below the score threshold are dropped; in order of
falling score (the lower index first on ties) a box is kept unless its IoU with a kept box (of
the same best class, per class) exceeds the IoU threshold; the first ``max_boxes`` kept are
given, padded with 0 (index -1). With no survivor, the best box is given with count 1.

Greedy suppression is sequential; here it is the fixed point of ``keep[i] = valid[i] and no
earlier kept j overlaps i``, iterated in a ``loop`` until nothing changes (at most N rounds:
after r rounds the first r boxes are final).
"""

from __future__ import annotations

import numpy as np

from compiler.ir.builder import CapturingBuilder
from compiler.ir.graph import Value
from compiler.ir.ops.control import BOOL, INDEX

from ..converters import NodeContext

F32 = "float32"


def non_maximum_suppression(
    ctx: NodeContext,
    boxes: Value,
    scores: Value,
    iou_threshold: Value,
    score_threshold: Value,
    max_boxes: int,
    per_class: bool,
) -> list[Value]:
    """Boxes ``[B, N, 4]`` (centre x, centre y, width, height) and scores ``[B, N, C]`` ->
    kept boxes ``[B, M, 4]``, their scores ``[B, M, C]``, their indices ``[B, M]`` and the
    counts ``[B]`` (float32; ``M = max_boxes``). The thresholds are float32 scalars."""
    boxes = _f32(ctx, boxes)
    scores = _f32(ctx, scores)
    shapes = [list(boxes.shape), list(scores.shape)]
    if not all(isinstance(d, int) for s in shapes for d in s):
        raise ctx.error(f"needs static box and score shapes, got {shapes}")
    if len(shapes[0]) != 3 or shapes[0][2] != 4 or len(shapes[1]) != 3:
        raise ctx.error(f"boxes {shapes[0]} and scores {shapes[1]} need (B, N, 4), (B, N, C)")
    b, n, _ = shapes[0]
    if shapes[1][:2] != [b, n] or n < 1:
        raise ctx.error(f"scores {shapes[1]} do not match boxes {shapes[0]}")
    best = ctx.emit("reduce_max", scores, axes=[2], keepdims=False)
    ranked, order = ctx.op("topk", [best], k=n, axis=1, largest=True)
    over = _overlaps(ctx, _take(ctx, boxes, order), iou_threshold)
    if per_class:
        label = ctx.emit("argmax", scores, axis=2, keepdims=False)
        label = ctx.emit("gather_elements", label, order, axis=1)
        same = ctx.emit(
            "equal",
            ctx.emit("reshape", label, shape=[b, n, 1]),
            ctx.emit("reshape", label, shape=[b, 1, n]),
        )
        over = ctx.emit("logical_and", over, same)
    valid = ctx.emit("cast", ctx.emit("greater_equal", ranked, score_threshold), to=F32)
    keep = _suppress(ctx, ctx.emit("cast", over, to=F32), valid)
    return _select(ctx, boxes, scores, order, keep, max_boxes)


def scalar(ctx: NodeContext, value: float) -> Value:
    return ctx.const(np.asarray(value, dtype=F32), F32)


def _f32(ctx: NodeContext, v: Value) -> Value:
    return v if v.dtype == F32 else ctx.emit("cast", v, to=F32)


def _take(ctx: NodeContext, data: Value, idx: Value) -> Value:
    """Rows ``idx`` [B, K] of ``data`` [B, N, W] per batch: [B, K, W]."""
    b, k = idx.shape
    width = data.shape[2]
    rows = ctx.emit("reshape", idx, shape=[b, k, 1])
    spread = ctx.emit("broadcast_to", rows, shape=[b, k, width])
    return ctx.emit("gather_elements", data, spread, axis=1)


def _overlaps(ctx: NodeContext, boxes: Value, iou_t: Value) -> Value:
    """[B, N, N] bool: box j comes before box i and their IoU exceeds the threshold."""
    b, n, _ = boxes.shape
    cx, cy, w, h = ctx.op("split", [boxes], axis=2, sizes=[1, 1, 1, 1])
    half = scalar(ctx, 0.5)
    lo = [ctx.emit("sub", c, ctx.emit("mul", s, half)) for c, s in ((cx, w), (cy, h))]
    hi = [ctx.emit("add", c, ctx.emit("mul", s, half)) for c, s in ((cx, w), (cy, h))]

    def row(v: Value) -> Value:
        return ctx.emit("reshape", v, shape=[b, 1, n])

    sides = []
    for low, high in zip(lo, hi):
        side = ctx.emit(
            "sub",
            ctx.emit("minimum", high, row(high)),
            ctx.emit("maximum", low, row(low)),
        )
        sides.append(ctx.emit("clip", side, min=0.0))
    inter = ctx.emit("mul", *sides)
    area = ctx.emit("mul", ctx.emit("sub", hi[0], lo[0]), ctx.emit("sub", hi[1], lo[1]))
    union = ctx.emit("sub", ctx.emit("add", area, row(area)), inter)
    zero, one = scalar(ctx, 0.0), scalar(ctx, 1.0)
    positive = ctx.emit("greater", union, zero)
    iou = ctx.emit(
        "where", positive, ctx.emit("div", inter, ctx.emit("where", positive, union, one)), zero
    )
    earlier = ctx.const(np.tril(np.ones((n, n), bool), -1))
    return ctx.emit("logical_and", ctx.emit("greater", iou, iou_t), earlier)


def _suppress(ctx: NodeContext, over: Value, valid: Value) -> Value:
    """The fixed point of ``keep = valid * (no kept earlier overlapping box)``, [B, N]."""
    b, n = valid.shape
    graph = ctx.builder.graph
    region = graph.region([INDEX, BOOL, valid.type], ["i", "go", "keep"])
    body = CapturingBuilder(graph, region)
    _, _, keep = region.inputs
    hits = body.emit("matmul", over, body.emit("reshape", keep, shape=[b, n, 1]))
    free = body.emit("less", body.emit("reshape", hits, shape=[b, n]), body.const(np.float32(0.5)))
    new = body.emit("mul", valid, body.emit("cast", free, to=F32))
    changed = body.emit("logical_not", body.emit("equal", new, keep))
    go = body.emit("reduce_max", changed, axes=[0, 1], keepdims=False)
    region.outputs = [go, new]
    (out,) = ctx.builder.op(
        "loop",
        [ctx.const(np.array(n, np.int64)), ctx.const(np.array(True)), valid, *body.captures],
        {"num_carried": 1},
        node_name=ctx.name,
        regions=[region],
    )
    return out


def _select(
    ctx: NodeContext,
    boxes: Value,
    scores: Value,
    order: Value,
    keep: Value,
    max_boxes: int,
) -> list[Value]:
    """The four outputs from the kept mask over the ranked boxes."""
    b, n = keep.shape
    k = min(max_boxes, n)
    first = ctx.const(np.arange(n, 0, -1).astype(np.float32))  # earlier ranks weigh more
    weight, pos = ctx.op("topk", [ctx.emit("mul", keep, first)], k=k, axis=1, largest=True)
    picked = ctx.emit("gather_elements", order, pos, axis=1)  # [B, k] box indices
    count = ctx.emit("reduce_sum", keep, axes=[1], keepdims=False)
    count = ctx.emit("minimum", count, scalar(ctx, float(max_boxes)))
    filled = ctx.emit("greater", weight, scalar(ctx, 0.0))
    if k:  # no survivor: the best box, counted once
        none = ctx.emit("equal", count, scalar(ctx, 0.0))
        slot0 = ctx.const(np.arange(k) == 0)
        fallback = ctx.emit("logical_and", ctx.emit("reshape", none, shape=[b, 1]), slot0)
        filled = ctx.emit("logical_or", filled, fallback)
        count = ctx.emit("maximum", count, scalar(ctx, 1.0))
    mask = ctx.emit("reshape", filled, shape=[b, k, 1])
    zero = scalar(ctx, 0.0)
    out_boxes = ctx.emit("where", mask, _take(ctx, boxes, picked), zero)
    out_scores = ctx.emit("where", mask, _take(ctx, scores, picked), zero)
    indices = ctx.emit("where", filled, ctx.emit("cast", picked, to=F32), scalar(ctx, -1.0))
    if max_boxes > k:
        grow = max_boxes - k
        out_boxes = ctx.emit("pad", out_boxes, pads=[0, 0, 0, 0, grow, 0])
        out_scores = ctx.emit("pad", out_scores, pads=[0, 0, 0, 0, grow, 0])
        indices = ctx.emit("pad", indices, pads=[0, 0, 0, grow], value=-1.0)
    return [out_boxes, out_scores, indices, count]
