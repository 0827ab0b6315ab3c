"""Converter of ONNX Attention (opsets 23-25) into core ops.

Scaled dot-product attention decomposes into matmul, softmax and elementwise ops; all of
ONNX's extras end here: 3-D inputs split into heads, grouped-query heads share K/V through a
broadcasting matmul (no copy of K/V per query head), the KV cache is a concat, and the
attention bias (bool/float mask, bottom-right causal frontier, sliding window, padding from
``nonpad_kv_seqlen``) becomes one additive tensor of 0 and -inf, constant whenever it does
not depend on a run-time input. A query row whose bias is -inf everywhere attends no key:
its probabilities (and so its output row) are 0, not NaN, as the ONNX reference defines.
"""

from __future__ import annotations

import math

import numpy as np

from compiler.ir.graph import Value

from .registry import NodeContext, converter, onnx_dtype

_QK_RAW, _QK_SOFTCAP, _QK_BIAS, _QK_SOFTMAX = 0, 1, 2, 3


def _split_heads(ctx: NodeContext, x: Value, heads: int, what: str) -> Value:
    """[batch, seq, heads * size] -> [batch, heads, seq, size]."""
    batch, seq, hidden = x.shape
    if not isinstance(hidden, int) or hidden % heads:
        raise ctx.error(f"{what} hidden size {hidden} is not a multiple of {heads} heads")
    x = ctx.emit("reshape", x, shape=[batch, seq, heads, hidden // heads])
    return ctx.emit("transpose", x, perm=[0, 2, 1, 3])


def _as(ctx: NodeContext, x: Value, dtype: str) -> Value:
    return x if x.dtype == dtype else ctx.emit("cast", x, to=dtype)


def _heads_matmul(ctx: NodeContext, a: Value, b: Value) -> Value:
    """``a @ b`` per head, where b's heads may be fewer (GQA): query head h uses b's head
    ``h // (a_heads // b_heads)``, as ONNX's interleaved repeat of K/V heads does."""
    a_heads, b_heads = a.shape[1], b.shape[1]
    if a_heads == b_heads:
        return ctx.emit("matmul", a, b)
    if not (isinstance(a_heads, int) and isinstance(b_heads, int)) or a_heads % b_heads:
        raise ctx.error(f"{a_heads} query heads cannot share {b_heads} key/value heads")
    group = a_heads // b_heads
    batch = a.shape[0]
    a5 = ctx.emit("reshape", a, shape=[batch, b_heads, group, *a.shape[2:]])
    b5 = ctx.emit("reshape", b, shape=[b.shape[0], b_heads, 1, *b.shape[2:]])
    out = ctx.emit("matmul", a5, b5)
    return ctx.emit("reshape", out, shape=[batch, a_heads, *out.shape[3:]])


def _static(ctx: NodeContext, dim: int | str, what: str) -> int:
    if not isinstance(dim, int):
        raise ctx.error(f"{what} must be static, got dim {dim!r}")
    return dim


def _select_bias(ctx: NodeContext, allowed: Value, dtype: str) -> Value:
    """0 where allowed, -inf elsewhere."""
    return ctx.emit("where", allowed, ctx.const(0, dtype), ctx.const(-np.inf, dtype))


def _mask_bias(ctx: NodeContext, mask: Value, total: int | str, dtype: str) -> Value:
    """The attn_mask input as an additive bias, its last axis padded to the key count."""
    last = mask.shape[-1]
    if last != total:
        pad = _static(ctx, total, "the key count") - _static(ctx, last, "attn_mask's last dim")
        if pad < 0:
            raise ctx.error(f"attn_mask has {last} keys, more than the {total} keys")
        fill = 0.0 if mask.dtype == "bool" else -math.inf  # False or -inf: not attended
        mask = ctx.emit("pad", mask, pads=[0] * (2 * mask.type.rank - 1) + [pad], value=fill)
    if mask.dtype == "bool":
        return _select_bias(ctx, mask, dtype)
    if mask.dtype != dtype:
        raise ctx.error(f"a float attn_mask must be {dtype} like Q, got {mask.dtype}")
    return mask


def _frontier_bias(
    ctx: NodeContext,
    q_len: int | str,
    total: int | str,
    offset: Value,
    causal: bool,
    left: int,
    right: int,
    dtype: str,
) -> Value:
    """Bias of the causal frontier and sliding window: query i sits at absolute position
    ``p = i + offset`` and attends key j iff ``j <= p`` (causal), ``p - j <= left`` and
    ``j - p <= right`` (each window bound when >= 0). ``offset`` is a scalar, or [batch]
    for an external cache; then the result is [batch, 1, q, keys]."""
    q_len = _static(ctx, q_len, "the query length (causal or window mask)")
    total = _static(ctx, total, "the key count (causal or window mask)")
    i_minus_j = np.arange(q_len)[:, None] - np.arange(total)[None, :]
    per_batch = offset.type.rank == 1
    if per_batch:
        offset = ctx.emit("reshape", offset, shape=[offset.shape[0], 1, 1])
    dist = ctx.emit("add", ctx.const(i_minus_j, offset.dtype), offset)  # p - j
    allowed: Value | None = None
    conds = []
    if causal:
        conds.append(("greater_equal", 0))
    if left >= 0:
        conds.append(("less_equal", left))
    if right >= 0:
        conds.append(("greater_equal", -right))
    for op, bound in conds:
        ok = ctx.emit(op, dist, ctx.const(bound, offset.dtype))
        allowed = ok if allowed is None else ctx.emit("logical_and", allowed, ok)
    assert allowed is not None
    bias = _select_bias(ctx, allowed, dtype)
    if per_batch:
        bias = ctx.emit("reshape", bias, shape=[bias.shape[0], 1, q_len, total])
    return bias


def _add(ctx: NodeContext, a: Value | None, b: Value) -> Value:
    return b if a is None else ctx.emit("add", a, b)


@converter("Attention", since=23)
def attention(ctx: NodeContext):
    q, k, v = ctx.input(0), ctx.input(1), ctx.input(2)
    mask, past_k, past_v, nonpad = ctx.input(3), ctx.input(4), ctx.input(5), ctx.input(6)
    if (past_k is None) != (past_v is None):
        raise ctx.error("past_key and past_value must be given together")
    if nonpad is not None and past_k is not None:
        raise ctx.error("nonpad_kv_seqlen cannot be combined with past_key/past_value")
    if not q.type.rank == k.type.rank == v.type.rank:
        raise ctx.error(f"Q, K and V ranks differ: {q.type.rank}, {k.type.rank}, {v.type.rank}")
    rank = q.type.rank
    if rank == 3:
        q_heads, kv_heads = ctx.attr("q_num_heads"), ctx.attr("kv_num_heads")
        if q_heads is None or kv_heads is None:
            raise ctx.error("3-D Q/K/V need the q_num_heads and kv_num_heads attributes")
        q = _split_heads(ctx, q, q_heads, "Q")
        k = _split_heads(ctx, k, kv_heads, "K")
        v = _split_heads(ctx, v, kv_heads, "V")
    elif rank != 4:
        raise ctx.error(f"Q/K/V must be 3-D or 4-D, got rank {rank}")
    dtype = q.dtype
    if k.dtype != dtype or v.dtype != dtype:
        raise ctx.error(f"Q, K and V dtypes differ: {dtype}, {k.dtype}, {v.dtype}")
    batch, _, q_len, head_size = q.shape

    if past_k is not None:
        k = ctx.emit("concat", past_k, k, axis=2)
        v = ctx.emit("concat", past_v, v, axis=2)
    present_k, present_v = k, v
    total = k.shape[2]

    # Q and K are each scaled by sqrt(scale) (in Q's dtype) against overflow, as ONNX does.
    scale = ctx.attr("scale")
    if scale is None:
        scale = 1 / math.sqrt(_static(ctx, head_size, "the head size"))
    root = ctx.const(np.sqrt(scale), dtype)
    k_t = ctx.emit("transpose", ctx.emit("mul", k, root), perm=[0, 1, 3, 2])
    scores = _heads_matmul(ctx, ctx.emit("mul", q, root), k_t)
    raw_scores = scores
    softcap = float(ctx.attr("softcap", 0.0))
    if softcap > 0:
        cap = ctx.const(softcap, dtype)
        scores = ctx.emit("mul", ctx.emit("tanh", ctx.emit("div", scores, cap)), cap)

    # The additive bias: 0 where a key is attended, -inf where not (or the float mask).
    bias: Value | None = None
    if mask is not None:
        bias = _mask_bias(ctx, mask, total, dtype)
    causal = bool(ctx.attr("is_causal", 0))
    left, right = int(ctx.attr("left_window_size", -1)), int(ctx.attr("right_window_size", -1))
    if causal or left >= 0 or right >= 0:
        if nonpad is not None:
            offset = ctx.emit("sub", nonpad, ctx.const(q_len, nonpad.dtype))
        else:
            past = 0 if past_k is None else _static(ctx, past_k.shape[2], "the past length")
            offset = ctx.const(past, "int64")
        bias = _add(
            ctx, bias, _frontier_bias(ctx, q_len, total, offset, causal, left, right, dtype)
        )
    if nonpad is not None:
        keys = ctx.const(np.arange(_static(ctx, total, "the key count")), nonpad.dtype)
        valid = ctx.emit("less", keys, ctx.emit("reshape", nonpad, shape=[nonpad.shape[0], 1]))
        padding = _select_bias(ctx, valid, dtype)
        bias = _add(ctx, bias, ctx.emit("reshape", padding, shape=[batch, 1, 1, total]))

    biased = scores if bias is None else ctx.emit("add", scores, bias)
    precision = ctx.attr("softmax_precision")
    soft_dtype = dtype if precision is None else onnx_dtype(precision)
    probs = ctx.emit("softmax", _as(ctx, biased, soft_dtype), axis=-1)
    if bias is not None:
        # Rows whose bias is all -inf attend nothing: 0, not softmax's NaN.
        masked = ctx.emit("isinf", bias, detect_positive=False)
        empty = ctx.emit("reduce_min", masked, axes=[-1], keepdims=True)
        if empty.const is None or empty.const.any():
            probs = ctx.emit("where", empty, ctx.const(0, soft_dtype), probs)
    probs = _as(ctx, probs, dtype)
    y = _heads_matmul(ctx, probs, v)
    if rank == 3:
        y = ctx.emit("transpose", y, perm=[0, 2, 1, 3])
        y = ctx.emit(
            "reshape",
            y,
            shape=[batch, q_len, y.shape[2] * _static(ctx, y.shape[3], "V's head size")],
        )

    outputs: list[Value | None] = [y, present_k, present_v]
    if ctx.num_outputs > 3 and ctx.node.output[3]:
        mode = int(ctx.attr("qk_matmul_output_mode", _QK_RAW))
        if mode == _QK_RAW:
            outputs.append(raw_scores)
        elif mode == _QK_SOFTCAP:
            outputs.append(scores)
        elif mode == _QK_BIAS:
            outputs.append(biased)
        elif mode == _QK_SOFTMAX:
            outputs.append(probs)
        else:
            raise ctx.error(f"qk_matmul_output_mode {mode} is not supported")
    return outputs[: ctx.num_outputs]


_LINEAR_RULES = ("linear", "gated", "delta", "gated_delta")


def _per_step(ctx: NodeContext, x: Value, heads: int, what: str) -> Value:
    """decay or beta [batch, seq, heads * n] (n per head, or a per-head scalar) as float32
    [batch, heads, seq, n]; beta may also have one entry for all heads."""
    if x.type.rank != 3:
        raise ctx.error(f"{what} must be rank 3, got {x.type}")
    batch, seq, last = x.shape
    if last == heads or (what == "beta" and last == 1):
        x = ctx.emit("reshape", x, shape=[batch, seq, last, 1])
        x = ctx.emit("transpose", x, perm=[0, 2, 1, 3])
    else:
        x = _split_heads(ctx, x, heads, what)
    return _as(ctx, x, "float32")


@converter("LinearAttention", since=27)
def linear_attention(ctx: NodeContext):
    """The recurrence over time, unrolled (the sequence length must be static), in float32 as
    ONNX's reference: per step the state S [batch, kv_heads, d_k, d_v] decays by exp(g_t)
    (gated rules), v_t is corrected to beta_t (v_t - k_t S) (delta rules), S += k_t^T v_t, and
    the output row is scale * q_t S, query heads sharing their group's KV head (GQA)."""
    q, k, v = ctx.input(0), ctx.input(1), ctx.input(2)
    past, decay, beta = ctx.input(3), ctx.input(4), ctx.input(5)
    rule = ctx.attr("update_rule", "gated_delta")
    if rule not in _LINEAR_RULES:
        raise ctx.error(f"update_rule {rule!r} is not one of {', '.join(_LINEAR_RULES)}")
    gated, delta = rule in ("gated", "gated_delta"), rule in ("delta", "gated_delta")
    if gated != (decay is not None):
        raise ctx.error(f"update_rule {rule!r} {'needs' if gated else 'forbids'} decay")
    if delta != (beta is not None):
        raise ctx.error(f"update_rule {rule!r} {'needs' if delta else 'forbids'} beta")
    q_heads, kv_heads = ctx.attr("q_num_heads"), ctx.attr("kv_num_heads")
    if q_heads is None or kv_heads is None:
        raise ctx.error("the q_num_heads and kv_num_heads attributes are required")
    if q_heads <= 0 or kv_heads <= 0 or q_heads % kv_heads:
        raise ctx.error(f"q_num_heads {q_heads} is not a multiple of kv_num_heads {kv_heads}")
    for x, what in ((q, "query"), (k, "key"), (v, "value")):
        if x.type.rank != 3:
            raise ctx.error(f"{what} must be rank 3 (batch, seq, heads * size), got {x.type}")
    out_dtype = q.dtype
    batch, seq = q.shape[0], _static(ctx, q.shape[1], "the sequence length")
    q4 = _as(ctx, _split_heads(ctx, q, q_heads, "query"), "float32")
    k4 = _as(ctx, _split_heads(ctx, k, kv_heads, "key"), "float32")
    v4 = _as(ctx, _split_heads(ctx, v, kv_heads, "value"), "float32")
    d_k, d_v = q4.shape[3], v4.shape[3]
    group = q_heads // kv_heads
    g4 = None if decay is None else _per_step(ctx, decay, kv_heads, "decay")
    b4 = None if beta is None else _per_step(ctx, beta, kv_heads, "beta")
    if g4 is not None and g4.shape[3] not in (1, d_k):
        raise ctx.error(f"decay {decay.type} must have kv_num_heads or kv_num_heads * d_k")
    state_dims = [batch, kv_heads, d_k, d_v]
    if past is not None:
        if list(past.shape) != state_dims:
            raise ctx.error(f"past_state {past.type} must have shape {state_dims}")
        state, state_dtype = _as(ctx, past, "float32"), past.dtype
    else:
        state, state_dtype = None, out_dtype  # zeros: the first step starts from k^T v
    scale = float(ctx.attr("scale", 0.0)) or 1 / math.sqrt(_static(ctx, d_k, "d_k"))

    def step(x: Value, i: int) -> Value:
        return ctx.emit("slice", x, axes=[2], starts=[i], ends=[i + 1])

    rows = []
    for i in range(seq):
        k_t, v_t = step(k4, i), step(v4, i)  # [batch, kv_heads, 1, d]
        if g4 is not None and state is not None:
            g_t = step(g4, i)
            g_t = ctx.emit("reshape", g_t, shape=[batch, kv_heads, g_t.shape[3], 1])
            state = ctx.emit("mul", state, ctx.emit("exp", g_t))
        if b4 is not None:
            if state is not None:
                v_t = ctx.emit("sub", v_t, ctx.emit("matmul", k_t, state))
            v_t = ctx.emit("mul", step(b4, i), v_t)
        k_col = ctx.emit("reshape", k_t, shape=[batch, kv_heads, d_k, 1])
        outer = ctx.emit("mul", k_col, v_t)
        state = outer if state is None else ctx.emit("add", state, outer)
        q_t = ctx.emit("reshape", step(q4, i), shape=[batch, kv_heads, group, d_k])
        o_t = ctx.emit("mul", ctx.emit("matmul", q_t, state), ctx.const(scale, "float32"))
        rows.append(ctx.emit("reshape", o_t, shape=[batch, q_heads, 1, d_v]))
    if not rows:
        raise ctx.error("the sequence length is 0")
    y = rows[0] if len(rows) == 1 else ctx.emit("concat", *rows, axis=2)
    y = ctx.emit("transpose", y, perm=[0, 2, 1, 3])
    y = ctx.emit("reshape", y, shape=[batch, seq, q_heads * _static(ctx, d_v, "d_v")])
    return [_as(ctx, y, out_dtype), _as(ctx, state, state_dtype)]


def _apply_mod(ctx: NodeContext, name: str, x: Value) -> Value:
    """The graph attribute ``name`` (one tensor in, one out) applied to x, kept in x's dtype."""
    body = ctx.attr(name)
    if body is None:
        return x
    assert ctx.subgraphs is not None  # the importer always provides them
    outs = ctx.subgraphs.inline(body, [x])
    if len(outs) != 1:
        raise ctx.error(f"{name} must have exactly one output, got {len(outs)}")
    return _as(ctx, outs[0], x.dtype)


@converter("FlexAttention", since=1, domain="ai.onnx.preview")
def flex_attention(ctx: NodeContext):
    """Scaled dot-product attention with ``score_mod`` applied to the scores and ``prob_mod``
    to the probabilities, both graphs inlined; softmax and the product with V in
    ``softmax_precision`` (default float32 for float16, else Q's dtype), as ONNX's reference."""
    q, k, v = ctx.input(0), ctx.input(1), ctx.input(2)
    if not q.type.rank == k.type.rank == v.type.rank == 4:
        raise ctx.error(f"Q, K and V must be rank 4, got {q.type}, {k.type}, {v.type}")
    dtype = q.dtype
    if k.dtype != dtype or v.dtype != dtype:
        raise ctx.error(f"Q, K and V dtypes differ: {dtype}, {k.dtype}, {v.dtype}")
    if k.shape[1] != v.shape[1] or k.shape[2] != v.shape[2]:
        raise ctx.error(f"K {k.type} and V {v.type} must share heads and sequence length")
    if q.shape[3] != k.shape[3]:
        raise ctx.error(f"Q {q.type} and K {k.type} must share the head size")
    scale = ctx.attr("scale")
    if scale is None:
        scale = 1 / math.sqrt(_static(ctx, q.shape[3], "the head size"))
    root = ctx.const(np.sqrt(np.float32(scale)), dtype)  # Q and K each scaled by sqrt(scale)
    k_t = ctx.emit("transpose", ctx.emit("mul", k, root), perm=[0, 1, 3, 2])
    scores = _heads_matmul(ctx, ctx.emit("mul", q, root), k_t)
    precision = ctx.attr("softmax_precision")
    if precision is not None:
        soft_dtype = onnx_dtype(precision)
    else:
        soft_dtype = "float32" if dtype == "float16" else dtype
    scores = _apply_mod(ctx, "score_mod", _as(ctx, scores, soft_dtype))
    probs = _apply_mod(ctx, "prob_mod", ctx.emit("softmax", scores, axis=-1))
    return _as(ctx, _heads_matmul(ctx, probs, _as(ctx, v, soft_dtype)), v.dtype)
