"""MIL recurrent ops: lstm, gru, rnn, with the cells of ``recurrent_cells``: unrolled over a
static sequence length, a ``loop`` of one step each over a symbolic one.

MIL's layouts differ from ONNX's: ``x`` is ``[s, b, I]``, states ``[b, D*H]``, weights
``[G*H, I]`` with LSTM gates in ``i f o z`` order and GRU gates in ``r o z`` order, one bias
(input and recurrent summed). The GRU candidate is ``act(W_o x + R_o (r * h) + b_o)`` (as the
Core ML runtime computes it; the op's docstring reads otherwise). LSTM's ``clip`` bounds the
cell state after each update, not the gates' inputs as ONNX's does. A reverse direction yields
its outputs in processing order; in a bidirectional LSTM the reverse outputs are in time order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from compiler.ir.graph import Value

from ...recurrent_cells import (
    Activation,
    GRUWeights,
    LSTMWeights,
    RNNWeights,
    activate,
    gru_cell,
    lstm_cell,
    recur_in_loop,
    rnn_cell,
    unrolls,
)
from .registry import MilContext, mil_op

_ACTIVATIONS = {
    "sigmoid": Activation("sigmoid"),
    "tanh": Activation("tanh"),
    "relu": Activation("relu"),
    "scaled_tanh": Activation("scaledtanh", 1.0, 1.0),
    "hard_sigmoid": Activation("hardsigmoid", 0.2, 0.5),
    "sigmoid_hard": Activation("hardsigmoid", 0.2, 0.5),
    "linear": Activation("affine", 1.0, 0.0),
}
"""MIL activation names; MIL gives them no alpha/beta, so each takes its default."""


def _activation(ctx: MilContext, param: str, default: str) -> Activation:
    name = str(ctx.attr(param, default)).lower()
    if name not in _ACTIVATIONS:
        raise ctx.error(f"{param} {name!r} is not one of {', '.join(sorted(_ACTIVATIONS))}")
    return _ACTIVATIONS[name]


def _weight(ctx: MilContext, param: str) -> np.ndarray | None:
    """A weight input as numpy (constants, decompressed constexpr_* results included)."""
    if not ctx.has(param):
        return None
    data = ctx.x(param).const
    if data is None:
        raise ctx.error(f"{param} must be known at compile time")
    return data


def _regroup(w: np.ndarray, order: list[int], gates: int) -> np.ndarray:
    """The gate blocks of ``w``'s first axis in ``order``."""
    parts = np.split(w, gates, axis=0)
    return np.concatenate([parts[k] for k in order], axis=0)


Step = Callable[[Any, Value, tuple, Any], tuple]


def _run(
    ctx: MilContext,
    x: Value,
    initial: list[Value],
    w_ih: np.ndarray,
    bias: np.ndarray | None,
    step: Step,
    weights: Any,
    reverse: bool,
    time_order: bool = False,
) -> tuple[Value, tuple[Value, ...]]:
    """One direction over every step: the outputs ``[s, b, H]`` (in processing order, or in
    time order with ``time_order``) and the final state (each ``[1, b, H]``). ``w_ih`` and
    ``bias`` are in the cell's gate order; the input projection of every step is one matmul
    before the recurrence. A short static length is unrolled, a symbolic or long one becomes
    a ``loop``."""
    steps = x.shape[0]
    dtype = x.dtype
    xw = ctx.emit("matmul", x, ctx.const(np.ascontiguousarray(w_ih.T), dtype))
    if bias is not None and np.any(bias):
        xw = ctx.emit("add", xw, ctx.const(bias, dtype))
    state = tuple(ctx.emit("reshape", v, shape=[1, *v.shape]) for v in initial)
    if not unrolls(steps):
        return _loop(ctx, xw, state, step, weights, reverse, time_order)
    outs = []
    for s in range(steps):
        t = steps - 1 - s if reverse else s
        x_t = ctx.emit("slice", xw, axes=[0], starts=[t], ends=[t + 1], steps=[1])
        state = step(ctx, x_t, state, weights)
        outs.append(state[0])
    if reverse and time_order:
        outs = outs[::-1]
    return (outs[0] if steps == 1 else ctx.emit("concat", *outs, axis=0)), state


def _loop(
    ctx: MilContext,
    xw: Value,
    state: tuple[Value, ...],
    step: Step,
    weights: Any,
    reverse: bool,
    time_order: bool,
) -> tuple[Value, tuple[Value, ...]]:
    """``_run`` over a symbolic number of steps T: a ``loop`` whose body is one step reading
    the projection at time i (T - 1 - i in reverse), scanning out each step's output."""
    run = recur_in_loop(ctx, [xw], [reverse], state, step, weights, want_y=True)
    y = run.y
    if reverse and time_order:
        y = ctx.emit("gather", y, run.order, axis=0)  # row k: the step that read time k
    return y, run.final


def _inputs(ctx: MilContext, gates: int) -> tuple[Value, int, int]:
    """``x``, the number of steps and the hidden size (checked)."""
    x = ctx.x("x")
    steps = x.shape[0]
    if steps == 0:
        raise ctx.error("the sequence length is 0")
    w_hh = ctx.x("weight_hh")
    hidden = w_hh.shape[1]
    if w_hh.shape[0] != gates * hidden:
        raise ctx.error(f"weight_hh has shape {list(w_hh.shape)}, expected [{gates}*H, H]")
    return x, steps, hidden


def _sequence(ctx: MilContext, outs: Value, final: Value) -> Value:
    """The first output: every step's output (``[s, b, H]``), or only the final one."""
    return outs if ctx.attr("output_sequence", False) else final


def _flat(ctx: MilContext, v: Value) -> Value:
    """``[1, b, H]`` -> ``[b, H]``."""
    return ctx.emit("reshape", v, shape=list(v.shape[1:]))


@mil_op("rnn")
def rnn(ctx: MilContext) -> list[Value]:
    x, _, hidden = _inputs(ctx, 1)
    act = _activation(ctx, "activation", "tanh")
    w_hh = _weight(ctx, "weight_hh")
    weights = RNNWeights(r_t=ctx.const(np.ascontiguousarray(w_hh.T), x.dtype), f=act)
    reverse = ctx.attr("direction", "forward") == "reverse"
    outs, (h,) = _run(
        ctx,
        x,
        [ctx.x("initial_h")],
        _weight(ctx, "weight_ih"),
        _weight(ctx, "bias"),
        rnn_cell,
        weights,
        reverse,
    )
    return [_sequence(ctx, outs, h), _flat(ctx, h)]


_GRU_ORDER = [2, 0, 1]
"""MIL's ``r o z`` gate blocks in the cell's ``z r h`` order."""


@mil_op("gru")
def gru(ctx: MilContext) -> list[Value]:
    """Without ``reset_after`` the reset gate scales the state before ``R_o``, and every
    bias adds to the input projection. With it (iOS18) the candidate is PyTorch's
    ``act(W_o x + b_io + r * (R_o h + b_ho))``: ``bias`` holds the recurrent biases and
    ``input_bias`` the input ones."""
    x, _, n = _inputs(ctx, 3)
    f = _activation(ctx, "recurrent_activation", "sigmoid")
    g = _activation(ctx, "activation", "tanh")
    w_hh = _regroup(_weight(ctx, "weight_hh"), _GRU_ORDER, 3)
    r_t = ctx.const(np.ascontiguousarray(w_hh.T), x.dtype)  # [H, 3H] in z r h order
    biases = [_weight(ctx, "bias"), _weight(ctx, "input_bias")]
    z_r_h = [
        np.zeros(3 * n, np.float32) if b is None else _regroup(b, _GRU_ORDER, 3) for b in biases
    ]
    bias = z_r_h[0] + z_r_h[1]
    if ctx.attr("reset_after", False):
        b_ho = z_r_h[0][2 * n :]
        bias = np.concatenate([bias[: 2 * n], z_r_h[1][2 * n :]])
        weights = GRUWeights(
            r_t=r_t,
            f=f,
            g=g,
            hidden=n,
            linear_before_reset=True,
            rb_h=ctx.const(b_ho.reshape(1, n), x.dtype) if np.any(b_ho) else None,
        )
    else:
        weights = GRUWeights(
            r_t=_take(ctx, r_t, 0, 2 * n),
            f=f,
            g=g,
            hidden=n,
            r_h_t=_take(ctx, r_t, 2 * n, 3 * n),
        )
    outs, (h,) = _run(
        ctx,
        x,
        [ctx.x("initial_h")],
        _regroup(_weight(ctx, "weight_ih"), _GRU_ORDER, 3),
        bias,
        gru_cell,
        weights,
        ctx.attr("direction", "forward") == "reverse",
    )
    return [_sequence(ctx, outs, h), _flat(ctx, h)]


def _take(ctx: MilContext, v: Value, start: int, stop: int) -> Value:
    """Columns ``start:stop`` of a constant matrix."""
    return ctx.const(v.const[:, start:stop], v.dtype)


_LSTM_ORDER = [0, 2, 1, 3]
"""MIL's ``i f o z`` gate blocks in the cell's ``i o f c`` order."""


def _clipped_lstm_step(
    b: Any, x_t: Value, state: tuple[Value, Value], w: LSTMWeights, clip: float
) -> tuple[Value, Value]:
    """MIL's LSTM step with ``clip``: the new cell state is clipped to ``[-clip, clip]``
    before the output gate's peephole and the output read it."""
    h, c = state
    n = w.hidden
    rec = b.emit("matmul", h, w.r_t)

    def pre(index: int, peephole: Value | None, cell: Value) -> Value:
        start = index * n
        sl = {"axes": [-1], "starts": [start], "ends": [start + n], "steps": [1]}
        x = b.emit("add", b.emit("slice", x_t, **sl), b.emit("slice", rec, **sl))
        return x if peephole is None else b.emit("add", x, b.emit("mul", peephole, cell))

    i = activate(b, w.f, pre(0, w.p_i, c))
    f = activate(b, w.f, pre(2, w.p_f, c))
    cand = activate(b, w.g, pre(3, None, c))
    c_new = b.emit("add", b.emit("mul", f, c), b.emit("mul", i, cand))
    c_new = b.emit("clip", c_new, min=-clip, max=clip)
    o = activate(b, w.f, pre(1, w.p_o, c_new))
    return b.emit("mul", o, activate(b, w.h, c_new)), c_new


@mil_op("lstm")
def lstm(ctx: MilContext) -> list[Value]:
    x, _, n = _inputs(ctx, 4)
    direction = ctx.attr("direction", "forward")
    acts = [
        _activation(ctx, "recurrent_activation", "sigmoid"),
        _activation(ctx, "cell_activation", "tanh"),
        _activation(ctx, "activation", "tanh"),
    ]
    clip = ctx.attr("clip")
    step: Step = lstm_cell
    if clip is not None:
        if not clip > 0:
            raise ctx.error(f"clip must be positive, got {clip}")

        def step(b: Any, x_t: Value, state: tuple, w: Any) -> tuple:
            return _clipped_lstm_step(b, x_t, state, w, float(clip))

    dirs = [("", direction == "reverse")]
    if direction == "bidirectional":
        dirs = [("", False), ("_back", True)]
    states = [ctx.x("initial_h"), ctx.x("initial_c")]
    seqs, finals = [], []
    for k, (suffix, reverse) in enumerate(dirs):
        w_ih = _weight(ctx, "weight_ih" + suffix)
        w_hh = _weight(ctx, "weight_hh" + suffix)
        if w_ih is None or w_hh is None:
            raise ctx.error(f"a bidirectional lstm needs weight_ih{suffix} and weight_hh{suffix}")
        bias = _weight(ctx, "bias" + suffix)
        peep = _weight(ctx, "peephole" + suffix)
        p_i = p_o = p_f = None
        if peep is not None and np.any(peep):
            p_i, p_f, p_o = (ctx.const(p.reshape(1, n), x.dtype) for p in np.split(peep, 3))
        weights = LSTMWeights(
            r_t=ctx.const(np.ascontiguousarray(_regroup(w_hh, _LSTM_ORDER, 4).T), x.dtype),
            f=acts[0],
            g=acts[1],
            h=acts[2],
            hidden=n,
            p_i=p_i,
            p_o=p_o,
            p_f=p_f,
        )
        initial = [
            ctx.emit("slice", s, axes=[1], starts=[k * n], ends=[(k + 1) * n], steps=[1])
            for s in states
        ]
        outs, final = _run(
            ctx,
            x,
            initial,
            _regroup(w_ih, _LSTM_ORDER, 4),
            None if bias is None else _regroup(bias, _LSTM_ORDER, 4),
            step,
            weights,
            reverse,
            time_order=len(dirs) == 2,  # a bidirectional layer's reverse outputs
        )
        seqs.append(_sequence(ctx, outs, final[0]))
        finals.append(final)
    results = []
    for parts in (seqs, [_flat(ctx, f[0]) for f in finals], [_flat(ctx, f[1]) for f in finals]):
        results.append(parts[0] if len(parts) == 1 else ctx.emit("concat", *parts, axis=-1))
    return results
