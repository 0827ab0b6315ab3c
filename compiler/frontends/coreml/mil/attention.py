"""MIL scaled_dot_product_attention (iOS18): ``softmax(Q K^T / sqrt(E) + mask) V``.

A bool mask says which scores take part (the others become -inf before the softmax); a float
mask is added to the scores. A row whose scores are all masked gives NaN, as the op's
definition (and PyTorch) does.
"""

from __future__ import annotations

import math

import numpy as np

from compiler.ir.graph import Value

from .registry import MilContext, mil_op


@mil_op("scaled_dot_product_attention")
def scaled_dot_product_attention(ctx: MilContext) -> Value:
    q, k, v = ctx.x("query"), ctx.x("key"), ctx.x("value")
    embed = q.shape[-1]
    if not isinstance(embed, int):
        raise ctx.error(f"the embedding size {embed!r} of the query must be static")
    rank = k.type.rank
    perm = [*range(rank - 2), rank - 1, rank - 2]
    scores = ctx.emit("matmul", q, ctx.emit("transpose", k, perm=perm))
    scale = ctx.const(np.array(1 / math.sqrt(embed), dtype=q.dtype))
    scores = ctx.emit("mul", scores, scale)
    if ctx.has("attn_mask"):
        mask = ctx.x("attn_mask")
        if mask.dtype == "bool":
            masked = ctx.const(np.array(-np.inf, dtype=q.dtype))
            scores = ctx.emit("where", mask, scores, masked)
        else:
            if mask.dtype != q.dtype:
                mask = ctx.emit("cast", mask, to=q.dtype)
            scores = ctx.emit("add", scores, mask)
    weights = ctx.emit("softmax", scores, axis=-1)
    return ctx.emit("matmul", weights, v)
