"""Recurrent NeuralNetwork layers: simpleRecurrent, gru, uniDirectionalLSTM, biDirectionalLSTM
(rank-5 sequences [Seq, Batch, C, 1, 1]).

Each layer becomes the cells of ``recurrent_cells`` unrolled over a static sequence length
(a flexible one becomes a ``loop`` whose body is one step, as in the ONNX frontend): the input
projection ``x @ W^T + b`` of every step (and direction) is one matmul before the recurrence,
each step does ``h @ R^T`` and the gate math. The two directions of a biDirectionalLSTM run
stacked on a leading axis (one batched matmul per step). Activations follow the ``activation``
layer's math; PReLU and parametricSoftplus (per channel) are refused.

Facts from NeuralNetwork.proto and coremltools' own tests that shape the numbers:
* every gate's input is clipped to [-50, 50] (the proto's ``clip()``), and an LSTM's cell
  state to ``cellClipThreshold`` (0 means 50);
* ``reverseInput`` runs the sequence from its end, and the output sequence stays in that
  processing order (coremltools checks it against a network run on the flipped input); the
  backward half of a biDirectionalLSTM is put back in input order, as the proto shows;
* ``sequenceOutput`` false gives the final output ``[1, Batch, H, 1, 1]``, for a
  bidirectional layer ``[forward final, backward final]``;
* ``forgetBias`` adds 1 to the forget gate's bias (to 0 when there are no biases).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from compiler.ir.graph import Value

from ...recurrent_cells import (
    Activation,
    GRUWeights,
    LSTMWeights,
    RNNWeights,
    gru_cell,
    lstm_cell,
    recur_in_loop,
    rnn_cell,
    unrolls,
)
from .registry import NnContext, layer

GATE_CLIP = 50.0
"""The bound of every gate's input (the proto's ``clip()``)."""

DEFAULT_CELL_CLIP = 50.0
"""An LSTM's ``cellClipThreshold`` when the field is 0."""


# -- activations ---------------------------------------------------------------------------

_PLAIN = {
    "sigmoid": "sigmoid",
    "tanh": "tanh",
    "ReLU": "relu",
    "softsign": "softsign",
    "softplus": "softplus",
}
_WITH_ALPHA = {"leakyReLU": "leakyrelu", "thresholdedReLU": "thresholdedrelu", "ELU": "elu"}


def _activation(ctx: NnContext, params: Any) -> Activation:
    """An ``ActivationParams`` as a cell activation, with the activation layer's math.

    coremltools writes ``linear``, ``sigmoidHard`` and ``scaledTanh`` with unset (zero)
    parameters; its tests expect ``x`` and ``min(max(0.2 x + 0.5, 0), 1)`` for the first two
    (the proto's documented values), while for ``scaledTanh`` the proto's 1.7159 tanh(2/3 x)
    and the tests' tanh(x) disagree, so that one needs its parameters written out.
    """
    kind = params.WhichOneof("NonlinearityType")
    if kind is None:
        raise ctx.error("an activation is not set")
    if kind in _PLAIN:
        return Activation(_PLAIN[kind])
    if kind in _WITH_ALPHA:
        return Activation(_WITH_ALPHA[kind], float(getattr(params, kind).alpha))
    if kind in ("linear", "sigmoidHard", "scaledTanh"):
        a = getattr(params, kind)
        alpha, beta = float(a.alpha), float(a.beta)
        unset = alpha == 0.0 and beta == 0.0
        if kind == "linear":
            return Activation("affine", *((1.0, 0.0) if unset else (alpha, beta)))
        if kind == "sigmoidHard":
            return Activation("hardsigmoid", *((0.2, 0.5) if unset else (alpha, beta)))
        if unset:
            raise ctx.error(
                "scaledTanh without alpha and beta is ambiguous in a recurrent layer (the "
                "proto says 1.7159 tanh(2/3 x), coremltools' tests expect tanh(x)); write "
                "them out"
            )
        return Activation("scaledtanh", alpha, beta)
    raise ctx.error(
        f"activation {kind!r} cannot be a recurrent layer's activation (one value per "
        "channel); Core ML's recurrent layers take linear, sigmoid, tanh, ReLU, scaledTanh "
        "and sigmoidHard"
    )


def _activations(ctx: NnContext, params: Any, count: int, what: str) -> list[Activation]:
    acts = [_activation(ctx, a) for a in params]
    if len(acts) != count:
        raise ctx.error(f"{what} lists {len(acts)} activation(s), the layer needs {count}")
    return acts


# -- one direction's weights in the cells' gate order ----------------------------------------


@dataclass
class _Direction:
    """One direction: input weights ``w`` [G*H, I], recursion ``r`` [G*H, H], bias [G*H]
    (or None), LSTM peepholes (p_i, p_o, p_f) each [H] (or None), initial state inputs."""

    w: np.ndarray
    r: np.ndarray
    bias: np.ndarray | None
    peepholes: tuple[np.ndarray, ...] | None
    reverse: bool
    initial: list[Value | None]


def _stack(ctx: NnContext, wps: list[Any], shape: list[int], what: list[str]) -> np.ndarray:
    """The gate matrices (or vectors) ``wps`` stacked along their first axis."""
    return np.concatenate([ctx.weights(wp, shape, w) for wp, w in zip(wps, what)], axis=0)


def _gates(
    ctx: NnContext, p: Any, prefixes: list[str], suffix: str, shape: list[int]
) -> np.ndarray:
    names = [f"{g}{suffix}" for g in prefixes]
    return _stack(ctx, [getattr(p, n) for n in names], shape, names)


def _inputs(ctx: NnContext, first: int, count: int) -> list[Value | None]:
    """The optional initial-state inputs ``first .. first + count - 1``."""
    return [ctx.input(i) if i < len(ctx.inputs) else None for i in range(first, first + count)]


_LSTM_GATES = ["inputGate", "outputGate", "forgetGate", "blockInput"]
"""The proto's LSTM matrices in the cell's gate order (i, o, f, c)."""


def _lstm_direction(
    ctx: NnContext, wp: Any, lp: Any, size: tuple[int, int], reverse: bool, initial: list
) -> _Direction:
    n, i = size
    w = _gates(ctx, wp, _LSTM_GATES, "WeightMatrix", [n, i])
    r = _gates(ctx, wp, _LSTM_GATES, "RecursionMatrix", [n, n])
    bias = _gates(ctx, wp, _LSTM_GATES, "BiasVector", [n]) if lp.hasBiasVectors else None
    if lp.forgetBias:
        bias = np.zeros(4 * n, np.float32) if bias is None else bias.copy()
        bias[2 * n : 3 * n] += 1.0
    peepholes = None
    if lp.hasPeepholeVectors:
        names = ["inputGatePeepholeVector", "outputGatePeepholeVector", "forgetGatePeepholeVector"]
        peepholes = tuple(ctx.weights(getattr(wp, k), [n], k) for k in names)
    return _Direction(w, r, bias, peepholes, reverse, initial)


# -- the recurrence --------------------------------------------------------------------------


def _sequence(ctx: NnContext, in_size: int) -> tuple[Value, int | str, int]:
    """The input as ``[Seq * Batch, I]`` (``[Seq, Batch, I]`` for a symbolic Seq) with its
    Seq and static Batch."""
    x = ctx.x(0)
    shape = list(x.shape)
    if len(shape) != 5 or shape[2:] != [in_size, 1, 1]:
        raise ctx.error(f"the input has shape {shape}, expected [Seq, Batch, {in_size}, 1, 1]")
    steps, batch = shape[0], shape[1]
    if not isinstance(batch, int):
        raise ctx.error(f"the batch size must be known at compile time, got {batch!r}")
    if steps == 0:
        raise ctx.error("the sequence is empty")
    rows = [steps * batch] if isinstance(steps, int) else [steps, batch]
    return ctx.emit("reshape", x, shape=[*rows, in_size]), steps, batch


def _initial_state(ctx: NnContext, v: Value | None, batch: int, hidden: int, dtype: str) -> Value:
    """An initial state input (any shape of Batch * H values, e.g. [1, Batch, H, 1, 1]) as
    ``[1, 1, Batch, H]``; zeros when absent."""
    if v is None:
        return ctx.const(np.zeros((1, 1, batch, hidden)), dtype)
    size = int(np.prod([d if isinstance(d, int) else -1 for d in v.shape]))
    if size != batch * hidden:
        raise ctx.error(
            f"an initial state has shape {list(v.shape)}, expected {batch * hidden} values "
            f"([1, {batch}, {hidden}, 1, 1])"
        )
    if v.dtype != dtype:
        raise ctx.error(f"an initial state has dtype {v.dtype}, the input {dtype}")
    return ctx.emit("reshape", v, shape=[1, 1, batch, hidden])


def _time_slice(ctx: NnContext, v: Value, axis: int, start: int, stop: int) -> Value:
    if start == 0 and v.shape[axis] == stop:
        return v
    return ctx.emit("slice", v, axes=[axis], starts=[start], ends=[stop], steps=[1])


def _reversed(ctx: NnContext, v: Value) -> Value:
    n = v.shape[0]
    if n == 1:
        return v
    return ctx.emit("slice", v, axes=[0], starts=[n - 1], ends=[-n - 1], steps=[-1])


def _concat(ctx: NnContext, parts: list[Value], axis: int) -> Value:
    return parts[0] if len(parts) == 1 else ctx.emit("concat", *parts, axis=axis)


def _recur(
    ctx: NnContext,
    kind: str,
    dirs: list[_Direction],
    acts: list[Activation],
    hidden: int,
    in_size: int,
    sequence_output: bool,
    cell_clip: float | None = None,
) -> list[Value]:
    """Run the directions over the sequence: ``[Y, final states of direction 0...,
    final states of direction 1...]``, all rank 5; ``Y`` is ``[Seq or 1, Batch, D*H, 1, 1]``.
    A static Seq is unrolled; a symbolic one becomes a ``loop`` of one step per iteration."""
    x_rows, steps, batch = _sequence(ctx, in_size)
    dtype = x_rows.dtype
    d = len(dirs)
    gh = dirs[0].w.shape[0]
    w_t = np.concatenate([k.w for k in dirs], axis=0).T
    xw = ctx.emit("matmul", x_rows, ctx.const(w_t, dtype))
    if any(k.bias is not None for k in dirs):
        bias = [np.zeros(gh, np.float32) if k.bias is None else k.bias for k in dirs]
        xw = ctx.emit("add", xw, ctx.const(np.concatenate(bias), dtype))
    xw = ctx.emit("reshape", xw, shape=[steps, batch, d, gh])
    xw = ctx.emit("transpose", xw, perm=[0, 2, 1, 3])  # [Seq, D, Batch, G*H]

    r_t = np.stack([k.r.T for k in dirs])  # [D, H, G*H]
    cell, weights = _cell(ctx, kind, dirs, acts, r_t, hidden, dtype, cell_clip)
    n_states = 2 if kind == "lstm" else 1
    state = tuple(
        _concat(ctx, [_initial_state(ctx, k.initial[s], batch, hidden, dtype) for k in dirs], 1)
        for s in range(n_states)
    )  # each [1, D, Batch, H]
    if unrolls(steps):
        y, state = _unrolled(ctx, xw, dirs, state, cell, weights, sequence_output)
    else:
        y, state = _in_loop(ctx, xw, dirs, state, cell, weights, sequence_output)
    y = ctx.emit("transpose", y, perm=[0, 2, 1, 3])
    results = [ctx.emit("reshape", y, shape=[y.shape[0], batch, d * hidden, 1, 1])]
    for j in range(d):
        for s in state:
            part = _time_slice(ctx, s, 1, j, j + 1)
            results.append(ctx.emit("reshape", part, shape=[1, batch, hidden, 1, 1]))
    return results


def _in_order(ctx: NnContext, y: Value, dirs: list[_Direction], flip: Any) -> Value:
    """The per-step outputs ``y`` ([Seq, D, Batch, H], in each direction's processing order)
    with a bidirectional layer's backward half put back in input order by ``flip``."""
    if len(dirs) == 1:
        return y
    parts = [_time_slice(ctx, y, 1, j, j + 1) for j in range(len(dirs))]
    return _concat(ctx, [flip(p) if k.reverse else p for p, k in zip(parts, dirs)], 1)


def _unrolled(
    ctx: NnContext,
    xw: Value,
    dirs: list[_Direction],
    state: tuple[Value, ...],
    cell: Any,
    weights: Any,
    sequence_output: bool,
) -> tuple[Value, tuple[Value, ...]]:
    """The recurrence over a static Seq, step by step: (Y [Seq or 1, D, Batch, H], final
    state). A reverse direction reads the projection ``xw`` backwards."""
    parts = [_time_slice(ctx, xw, 1, j, j + 1) for j in range(len(dirs))]
    xw = _concat(ctx, [_reversed(ctx, p) if k.reverse else p for p, k in zip(parts, dirs)], 1)
    outs = []
    for t in range(xw.shape[0]):
        state = cell(ctx, _time_slice(ctx, xw, 0, t, t + 1), state, weights)
        outs.append(state[0])
    if not sequence_output:
        return state[0], state
    return _in_order(ctx, _concat(ctx, outs, 0), dirs, lambda p: _reversed(ctx, p)), state


def _in_loop(
    ctx: NnContext,
    xw: Value,
    dirs: list[_Direction],
    state: tuple[Value, ...],
    cell: Any,
    weights: Any,
    sequence_output: bool,
) -> tuple[Value, tuple[Value, ...]]:
    """The recurrence over a symbolic Seq T as a ``loop`` whose body is one step: at
    iteration i a forward direction reads time i of ``xw``, a reverse one T - 1 - i."""
    parts = [_time_slice(ctx, xw, 1, j, j + 1) for j in range(len(dirs))]
    reverse = [d.reverse for d in dirs]
    run = recur_in_loop(ctx, parts, reverse, state, cell, weights, sequence_output)
    if run.y is None:
        return run.final[0], run.final
    return _in_order(
        ctx, run.y, dirs, lambda p: ctx.emit("gather", p, run.order, axis=0)
    ), run.final


def _cell(
    ctx: NnContext,
    kind: str,
    dirs: list[_Direction],
    acts: list[Activation],
    r_t: np.ndarray,
    hidden: int,
    dtype: str,
    cell_clip: float | None,
) -> tuple[Any, Any]:
    """The cell function and its weights (stacked over the directions)."""
    if kind == "rnn":
        return rnn_cell, RNNWeights(ctx.const(r_t, dtype), acts[0], clip=GATE_CLIP)
    if kind == "gru":
        # Core ML's candidate gate multiplies R_o with r (.) h: R^T splits in two.
        r_zr, r_h = (
            ctx.const(r_t[..., : 2 * hidden], dtype),
            ctx.const(r_t[..., 2 * hidden :], dtype),
        )
        return gru_cell, GRUWeights(r_zr, acts[0], acts[1], hidden, r_h_t=r_h, clip=GATE_CLIP)
    peep: list[Value | None] = [None, None, None]
    if dirs[0].peepholes is not None:
        peep = [
            ctx.const(np.stack([k.peepholes[g] for k in dirs])[:, None, :], dtype)  # type: ignore[index]
            for g in range(3)
        ]
    lp = ctx.params.params
    return lstm_cell, LSTMWeights(
        ctx.const(r_t, dtype),
        acts[0],
        acts[1],
        acts[2],
        hidden,
        p_i=peep[0],
        p_o=peep[1],
        p_f=peep[2],
        input_forget=bool(lp.coupledInputAndForgetGate),
        clip=GATE_CLIP,
        cell_clip=cell_clip,
    )


def _sizes(ctx: NnContext) -> tuple[int, int]:
    p = ctx.params
    hidden, in_size = int(p.outputVectorSize), int(p.inputVectorSize)
    if hidden <= 0 or in_size <= 0:
        raise ctx.error(f"inputVectorSize {in_size} and outputVectorSize {hidden} must be positive")
    return hidden, in_size


def _cell_clip(ctx: NnContext) -> float:
    threshold = float(ctx.params.params.cellClipThreshold) or DEFAULT_CELL_CLIP
    if threshold < 0:
        raise ctx.error(f"cellClipThreshold {threshold} is negative")
    return threshold


# -- the layers ------------------------------------------------------------------------------


@layer("simpleRecurrent")
def simple_recurrent(ctx: NnContext) -> list[Value]:
    """Outputs: Y, final h."""
    p = ctx.params
    n, i = _sizes(ctx)
    bias = ctx.weights(p.biasVector, [n], "biasVector") if p.hasBiasVector else None
    direction = _Direction(
        ctx.weights(p.weightMatrix, [n, i], "weightMatrix"),
        ctx.weights(p.recursionMatrix, [n, n], "recursionMatrix"),
        bias,
        None,
        p.reverseInput,
        _inputs(ctx, 1, 1),
    )
    acts = [_activation(ctx, p.activation)]
    return _recur(ctx, "rnn", [direction], acts, n, i, p.sequenceOutput)


@layer("gru")
def gru(ctx: NnContext) -> list[Value]:
    """Outputs: Y, final h. Gates z (update), r (reset), o (output: the candidate)."""
    p = ctx.params
    n, i = _sizes(ctx)
    gates = ["updateGate", "resetGate", "outputGate"]
    bias = _gates(ctx, p, gates, "BiasVector", [n]) if p.hasBiasVectors else None
    direction = _Direction(
        _gates(ctx, p, gates, "WeightMatrix", [n, i]),
        _gates(ctx, p, gates, "RecursionMatrix", [n, n]),
        bias,
        None,
        p.reverseInput,
        _inputs(ctx, 1, 1),
    )
    acts = _activations(ctx, p.activations, 2, "activations")
    return _recur(ctx, "gru", [direction], acts, n, i, p.sequenceOutput)


@layer("uniDirectionalLSTM")
def uni_lstm(ctx: NnContext) -> list[Value]:
    """Outputs: Y, final h, final c."""
    p = ctx.params
    size = _sizes(ctx)
    direction = _lstm_direction(
        ctx, p.weightParams, p.params, size, p.reverseInput, _inputs(ctx, 1, 2)
    )
    acts = _activations(ctx, p.activations, 3, "activations")
    return _recur(ctx, "lstm", [direction], acts, *size, p.params.sequenceOutput, _cell_clip(ctx))


@layer("biDirectionalLSTM")
def bi_lstm(ctx: NnContext) -> list[Value]:
    """Inputs: x, h and c of the forward, h and c of the backward LSTM; outputs: Y (forward
    and backward halves on the channel axis), then the final h and c of each direction."""
    p = ctx.params
    size = _sizes(ctx)
    if len(p.weightParams) != 2:
        raise ctx.error(f"weightParams has {len(p.weightParams)} entries, expected 2")
    forward = _activations(ctx, p.activationsForwardLSTM, 3, "activationsForwardLSTM")
    if p.activationsBackwardLSTM:
        backward = _activations(ctx, p.activationsBackwardLSTM, 3, "activationsBackwardLSTM")
        if backward != forward:
            raise ctx.error(
                "the backward LSTM's activations differ from the forward one's (Core ML "
                "requires them to be the same)"
            )
    dirs = [
        _lstm_direction(ctx, wp, p.params, size, rev, _inputs(ctx, 1 + 2 * k, 2))
        for k, (wp, rev) in enumerate(zip(p.weightParams, (False, True)))
    ]
    return _recur(ctx, "lstm", dirs, forward, *size, p.params.sequenceOutput, _cell_clip(ctx))
