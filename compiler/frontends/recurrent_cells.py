"""One time step of the RNN, GRU and LSTM cells, emitted as core ops.

Format-neutral: the ONNX and Core ML frontends unroll these cells over a short static
sequence length, and run them as the body of one ``loop`` over a symbolic or long one
(``recur_in_loop``). A cell gets ``x_t``, the input projection of its time step with the
biases that do not depend on the state already added (``X_t @ W^T + Wb + Rb``, computed for
every step in one matmul before the recurrence), so only ``h @ R^T`` remains per step.

Shapes are generic in their leading dims: a state is ``[..., batch, hidden]`` and the
weights ``[..., hidden, gates * hidden]``, so a frontend may stack the directions of a
bidirectional layer on a leading axis and run both in one step (a batched matmul).
Gate order within the last axis is ONNX's: ``i o f c`` (LSTM), ``z r h`` (GRU). Each gate
adds its slices of ``x_t`` and ``H @ R^T``: the matmul then stays a kernel of its own and the
slices of ``x_t`` fuse into the gate math (adding ``x_t`` to the matmul's output as one
epilogue leaves its slice out of the kernel, as a copy of its own per step).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from compiler.ir.builder import CapturingBuilder, Emitter
from compiler.ir.graph import Value
from compiler.ir.ops.control import BOOL, INDEX

from .converters import NodeContext

MAX_UNROLLED_STEPS = 256
"""Static sequences longer than this run as a ``loop`` too (``unrolls``): unrolled, a declared
length of millions of steps made a graph of millions of nodes, and the import ran for hours
(found by fuzzing). Shorter ones are unrolled, which schedules better."""


def unrolls(steps: int | str) -> bool:
    """Whether a recurrence over ``steps`` is unrolled (else it becomes a ``loop``)."""
    return isinstance(steps, int) and steps <= MAX_UNROLLED_STEPS


# -- activations ---------------------------------------------------------------------------

ACTIVATION_PARAMS: dict[str, tuple[float | None, float | None]] = {
    "relu": (None, None),
    "tanh": (None, None),
    "sigmoid": (None, None),
    "affine": (1.0, 0.0),
    "leakyrelu": (0.01, None),
    "thresholdedrelu": (1.0, None),
    "scaledtanh": (1.0, 1.0),
    "hardsigmoid": (0.2, 0.5),
    "elu": (1.0, None),
    "softsign": (None, None),
    "softplus": (None, None),
}
"""Lower-case name -> default (alpha, beta); None where the function takes no such value.

The defaults are those of the ONNX operators of the same name (Affine's and ScaledTanh's
from the retired experimental ops), as the ONNX RNN spec says; onnxruntime uses 0 for the
alpha/beta of Affine, ScaledTanh and ThresholdedRelu when a model leaves them out.
"""


@dataclass(frozen=True)
class Activation:
    """An activation function of a cell: lower-case name and its alpha/beta (or None)."""

    name: str
    alpha: float | None = None
    beta: float | None = None


def activations_from(
    names: Sequence[str], alphas: Sequence[float], betas: Sequence[float]
) -> list[Activation]:
    """Activations from the ONNX-style lists: each function takes the next alpha (beta) only
    if it has one, in the order of ``names``; once a list runs out, defaults apply.

    Raises ValueError naming an unknown function.
    """
    alpha_it, beta_it = iter(alphas), iter(betas)
    out = []
    for name in names:
        key = name.lower()
        if key not in ACTIVATION_PARAMS:
            known = ", ".join(sorted(ACTIVATION_PARAMS))
            raise ValueError(f"unknown activation function {name!r} (known: {known})")
        default_alpha, default_beta = ACTIVATION_PARAMS[key]
        alpha = None if default_alpha is None else float(next(alpha_it, default_alpha))
        beta = None if default_beta is None else float(next(beta_it, default_beta))
        out.append(Activation(key, alpha, beta))
    return out


def _scalar(b: Emitter, value: float, like: Value) -> Value:
    return b.const(np.array(value, dtype=like.dtype))


def activate(b: Emitter, act: Activation, x: Value) -> Value:
    """``act`` applied to ``x``, with the core ops that compute it."""
    name = act.name
    if name in ("relu", "tanh", "sigmoid", "softsign", "softplus"):
        return b.emit(name, x)
    if name == "leakyrelu":
        return b.emit("leaky_relu", x, alpha=act.alpha)
    if name == "thresholdedrelu":
        return b.emit("thresholded_relu", x, alpha=act.alpha)
    if name == "elu":
        return b.emit("elu", x, alpha=act.alpha)
    if name == "hardsigmoid":
        return b.emit("hard_sigmoid", x, alpha=act.alpha, beta=act.beta)
    assert act.alpha is not None and act.beta is not None
    if name == "affine":
        scaled = b.emit("mul", x, _scalar(b, act.alpha, x))
        return b.emit("add", scaled, _scalar(b, act.beta, x))
    if name == "scaledtanh":
        inner = b.emit("tanh", b.emit("mul", x, _scalar(b, act.beta, x)))
        return b.emit("mul", inner, _scalar(b, act.alpha, x))
    raise ValueError(f"unknown activation function {name!r}")


def _clipped_act(b: Emitter, act: Activation, x: Value, clip: float | None) -> Value:
    """The activation of a gate; ``clip`` bounds its input to [-clip, clip] first."""
    if clip is not None:
        x = b.emit("clip", x, min=-clip, max=clip)
    return activate(b, act, x)


def _gate(b: Emitter, x: Value, index: int, hidden: int) -> Value:
    """Gate ``index`` of a ``[..., gates * hidden]`` tensor."""
    start = index * hidden
    return b.emit("slice", x, axes=[-1], starts=[start], ends=[start + hidden], steps=[1])


# -- cells ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RNNWeights:
    """``r_t``: R transposed, ``[..., hidden, hidden]``; ``f`` the activation."""

    r_t: Value
    f: Activation
    clip: float | None = None


def rnn_cell(b: Emitter, x_t: Value, state: tuple[Value], w: RNNWeights) -> tuple[Value]:
    """``H = f(x_t + H @ R^T)``."""
    (h,) = state
    pre = b.emit("add", x_t, b.emit("matmul", h, w.r_t))
    return (_clipped_act(b, w.f, pre, w.clip),)


@dataclass(frozen=True)
class GRUWeights:
    """``r_t``: the transposed recurrence weights multiplied with ``H``: ``[..., hidden,
    2 * hidden]`` (z, r) when not ``linear_before_reset``, else ``[..., hidden, 3 * hidden]``
    (z, r, h). ``r_h_t``: ``Rh^T`` ``[..., hidden, hidden]``, only without
    ``linear_before_reset`` (it multiplies ``r (.) H``). ``rb_h``: ``Rbh`` ``[..., 1, hidden]``,
    only with ``linear_before_reset`` (where it is scaled by ``r``; otherwise it belongs in
    ``x_t``)."""

    r_t: Value
    f: Activation
    g: Activation
    hidden: int
    linear_before_reset: bool = False
    r_h_t: Value | None = None
    rb_h: Value | None = None
    clip: float | None = None


def gru_cell(b: Emitter, x_t: Value, state: tuple[Value], w: GRUWeights) -> tuple[Value]:
    """``z = f(..), r = f(..), h~ = g(..), H' = h~ + z (.) (H - h~)``, i.e.
    ``(1 - z) (.) h~ + z (.) H``."""
    (h,) = state
    n = w.hidden
    rec = b.emit("matmul", h, w.r_t)
    z = _clipped_act(b, w.f, b.emit("add", _gate(b, x_t, 0, n), _gate(b, rec, 0, n)), w.clip)
    r = _clipped_act(b, w.f, b.emit("add", _gate(b, x_t, 1, n), _gate(b, rec, 1, n)), w.clip)
    if w.linear_before_reset:
        h_rec = _gate(b, rec, 2, n)
        if w.rb_h is not None:
            h_rec = b.emit("add", h_rec, w.rb_h)
        h_rec = b.emit("mul", r, h_rec)
    else:
        if w.r_h_t is None:
            raise ValueError("gru_cell: r_h_t is needed without linear_before_reset")
        h_rec = b.emit("matmul", b.emit("mul", r, h), w.r_h_t)
    cand = _clipped_act(b, w.g, b.emit("add", _gate(b, x_t, 2, n), h_rec), w.clip)
    return (b.emit("add", cand, b.emit("mul", z, b.emit("sub", h, cand))),)


@dataclass(frozen=True)
class LSTMWeights:
    """``r_t``: R transposed, ``[..., hidden, 4 * hidden]``; ``p_i, p_o, p_f``: peepholes
    ``[..., 1, hidden]`` (or None); ``f, g, h``: the gate, cell and output activations;
    ``cell_clip`` bounds the new cell state to [-cell_clip, cell_clip] (Core ML's
    ``cellClipThreshold``; ``clip`` bounds the gates' inputs)."""

    r_t: Value
    f: Activation
    g: Activation
    h: Activation
    hidden: int
    p_i: Value | None = None
    p_o: Value | None = None
    p_f: Value | None = None
    input_forget: bool = False
    clip: float | None = None
    cell_clip: float | None = None


def lstm_cell(
    b: Emitter, x_t: Value, state: tuple[Value, Value], w: LSTMWeights
) -> tuple[Value, Value]:
    """``i = f(.. + Pi (.) C), f = f(.. + Pf (.) C)`` (or ``1 - i`` with ``input_forget``),
    ``c = g(..)``, ``C' = f (.) C + i (.) c``, ``o = f(.. + Po (.) C')``, ``H' = o (.) h(C')``."""
    h, c = state
    n = w.hidden
    rec = b.emit("matmul", h, w.r_t)

    def pre(index: int, peephole: Value | None, cell: Value) -> Value:
        x = b.emit("add", _gate(b, x_t, index, n), _gate(b, rec, index, n))
        return x if peephole is None else b.emit("add", x, b.emit("mul", peephole, cell))

    i = _clipped_act(b, w.f, pre(0, w.p_i, c), w.clip)
    if w.input_forget:
        f = b.emit("sub", _scalar(b, 1.0, i), i)
    else:
        f = _clipped_act(b, w.f, pre(2, w.p_f, c), w.clip)
    cand = _clipped_act(b, w.g, pre(3, None, c), w.clip)
    c_new = b.emit("add", b.emit("mul", f, c), b.emit("mul", i, cand))
    if w.cell_clip is not None:
        c_new = b.emit("clip", c_new, min=-w.cell_clip, max=w.cell_clip)
    o = _clipped_act(b, w.f, pre(1, w.p_o, c_new), w.clip)
    return b.emit("mul", o, activate(b, w.h, c_new)), c_new


def masked(
    b: Emitter, keep: Value | None, new: Sequence[Value], old: Sequence[Value]
) -> tuple[Value, ...]:
    """The new state where ``keep`` (bool, broadcasting to the state) holds, else the old one:
    how steps past a sequence's length leave its state unchanged."""
    if keep is None:
        return tuple(new)
    return tuple(b.emit("where", keep, n, o) for n, o in zip(new, old, strict=True))


# -- a recurrence over a symbolic number of steps ---------------------------------------------

Cell = Callable[[Emitter, Value, tuple[Value, ...], Any], tuple[Value, ...]]
KeepFn = Callable[[Emitter, list[Value]], Value | None]


@dataclass
class LoopResult:
    """What ``recur_in_loop`` gives: each step's first state output stacked in processing order
    (``[T, ...]``; None unless asked for), the reverse index ``T-1 .. 0`` (to put a reverse
    direction's outputs back in time order with a gather), and the final state."""

    y: Value | None
    order: Value | None
    final: tuple[Value, ...]


def recur_in_loop(
    ctx: NodeContext,
    parts: Sequence[Value],
    reverse: Sequence[bool],
    state: tuple[Value, ...],
    cell: Cell,
    weights: Any,
    want_y: bool,
    keep: KeepFn | None = None,
) -> LoopResult:
    """The recurrence over a symbolic number of steps T (the first axis of each of ``parts``,
    one per direction) as a ``loop`` whose body is one cell step: at iteration i a forward
    direction reads its part at time i, a reverse one at T - 1 - i; the directions' reads are
    concatenated on axis 1. ``keep`` (given the emitter and each direction's time index)
    may give a mask under which the state advances (steps past a sequence's length)."""
    steps = parts[0].shape[0]
    count = ctx.emit("reshape", ctx.emit("shape", parts[0], start=0, end=1), shape=[])
    graph = ctx.builder.graph
    region = graph.region([INDEX, BOOL, *(v.type for v in state)], ["t", "go"])
    b = CapturingBuilder(graph, region, ctx.builder.fold)
    i, go, *carried = region.inputs
    backwards = b.emit("sub", b.emit("sub", count, b.const(np.array(1, np.int64))), i)
    times = [backwards if rev else i for rev in reverse]
    reads = [
        b.emit("gather", p, b.emit("reshape", t, shape=[1]), axis=0) for p, t in zip(parts, times)
    ]
    x_t = reads[0] if len(reads) == 1 else b.emit("concat", *reads, axis=1)
    new = cell(b, x_t, tuple(carried), weights)
    mask = keep(b, times) if keep is not None else None
    region.outputs = [go, *masked(b, mask, new, tuple(carried))]
    if want_y:
        zero = b.const(np.zeros((), new[0].dtype))
        region.outputs.append(new[0] if mask is None else b.emit("where", mask, new[0], zero))
        region.outputs.append(backwards)  # stacked: T-1 .. 0
    outs = ctx.builder.op(
        "loop",
        [count, None, *state, *b.captures],
        {"num_carried": len(state), "iterations": steps},
        node_name=ctx.name,
        regions=[region],
    )
    final = tuple(outs[: len(state)])
    if not want_y:
        return LoopResult(None, None, final)
    y, order = outs[len(state)], outs[len(state) + 1]  # [T, 1, ...], [T]
    return LoopResult(ctx.emit("reshape", y, shape=[steps, *y.shape[2:]]), order, final)
