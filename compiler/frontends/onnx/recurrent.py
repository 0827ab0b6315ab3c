"""Converters of ONNX RNN, GRU and LSTM: the cells of ``recurrent_cells`` over time.

A static sequence length is unrolled; a symbolic one becomes a ``loop`` whose body is one
step of the same cell, so one compiled model runs any length. (Bidirectional LSTM, hidden
128, 32 steps, 2 threads: unrolled 0.51 ms against 1.31 ms as a loop, compiled in 4.8 s
against 1.2 s; the VM's calls per step cost more than the unrolled graph's size.)
The input projection ``X @ W^T`` (plus the biases that do not depend on the state) is one
matmul over all steps and directions before the recurrence; each step then does ``H @ R^T``
and the gate math.
The two directions of a bidirectional layer with the same activations run stacked on a
leading axis (one batched matmul per step): unrolled, the reverse one reads the projection
reversed in time and its outputs are reversed back at the end; in a loop it reads time
T - 1 - i. ``sequence_lens`` becomes a ``where`` per step: past its length an entry keeps
its state and its ``Y`` is zero; reverse directions start at each entry's own last step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from compiler.ir.builder import Emitter
from compiler.ir.graph import Value
from compiler.ir.types import FLOAT_DTYPES

from ..recurrent_cells import (
    Activation,
    GRUWeights,
    LSTMWeights,
    RNNWeights,
    activations_from,
    gru_cell,
    lstm_cell,
    masked,
    recur_in_loop,
    rnn_cell,
    unrolls,
)
from .registry import NodeContext, converter

CellFn = Callable[[Any, Value, tuple, Any], tuple]


@dataclass(frozen=True)
class _Kind:
    """The facts of one op type: gates per step, activations per direction, defaults."""

    op: str
    gates: int
    default_activations: tuple[str, ...]
    states: int  # 1 (H) or 2 (H, C)


_RNN = _Kind("RNN", 1, ("Tanh",), 1)
_GRU = _Kind("GRU", 3, ("Sigmoid", "Tanh"), 1)
_LSTM = _Kind("LSTM", 4, ("Sigmoid", "Tanh", "Tanh"), 2)


# -- small helpers -----------------------------------------------------------------------


def _take(ctx: NodeContext, v: Value, axis: int, start: int, stop: int) -> Value:
    """``v[start:stop]`` along ``axis``; ``v`` itself when that is all of it."""
    if start == 0 and v.shape[axis] == stop:
        return v
    return ctx.emit("slice", v, axes=[axis], starts=[start], ends=[stop], steps=[1])


def _reverse_time(ctx: NodeContext, v: Value) -> Value:
    """``v`` reversed along axis 0 (time)."""
    n = v.shape[0]
    return ctx.emit("slice", v, axes=[0], starts=[n - 1], ends=[-n - 1], steps=[-1])


def _is_zero(v: Value | None) -> bool:
    return v is None or (v.const is not None and not np.any(v.const))


def _check_shape(ctx: NodeContext, v: Value, what: str, want: Sequence[int | str]) -> None:
    """``v`` has rank len(want), ``v``'s dtype is checked by the caller; int dims must match
    where both are known."""
    shape = v.shape
    ok = len(shape) == len(want) and all(
        not (isinstance(a, int) and isinstance(b, int)) or a == b for a, b in zip(shape, want)
    )
    if not ok:
        raise ctx.error(f"{what} has shape {list(shape)}, expected {list(want)}")


@dataclass
class _Group:
    """Directions run together (stacked on a leading axis of size ``len(dirs)``)."""

    dirs: list[int]
    reverse: list[bool]
    acts: list[Activation]


# -- the converter -----------------------------------------------------------------------


def _activations(ctx: NodeContext, kind: _Kind, num_dirs: int) -> list[list[Activation]]:
    n = len(kind.default_activations)
    names = list(ctx.attr("activations", list(kind.default_activations) * num_dirs))
    if len(names) == n and num_dirs == 2:
        names = names * 2
    if len(names) != n * num_dirs:
        raise ctx.error(f"activations {names} must list {n} function(s) per direction ({num_dirs})")
    try:
        acts = activations_from(
            names, ctx.attr("activation_alpha", []), ctx.attr("activation_beta", [])
        )
    except ValueError as e:
        raise ctx.error(str(e)) from None
    return [acts[d * n : (d + 1) * n] for d in range(num_dirs)]


def _groups(ctx: NodeContext, kind: _Kind) -> tuple[int, list[_Group]]:
    direction = ctx.attr("direction", "forward")
    if direction not in ("forward", "reverse", "bidirectional"):
        raise ctx.error(f"direction {direction!r} is not forward, reverse or bidirectional")
    num_dirs = 2 if direction == "bidirectional" else 1
    acts = _activations(ctx, kind, num_dirs)
    if num_dirs == 1:
        return 1, [_Group([0], [direction == "reverse"], acts[0])]
    if acts[0] == acts[1]:
        return 2, [_Group([0, 1], [False, True], acts[0])]
    return 2, [_Group([0], [False], acts[0]), _Group([1], [True], acts[1])]


def _convert(ctx: NodeContext, kind: _Kind, layout: int) -> list[Value | None]:
    if layout not in (0, 1):
        raise ctx.error(f"layout {layout} is not 0 or 1")
    num_dirs, groups = _groups(ctx, kind)
    x, w, r = ctx.input(0), ctx.input(1), ctx.input(2)
    if x is None or w is None or r is None:
        raise ctx.error("inputs X, W and R are required")
    if x.dtype not in FLOAT_DTYPES:
        raise ctx.error(f"X must be a float tensor, got {x.type}")
    for name, v in (("W", w), ("R", r), ("B", ctx.input(3)), ("P", ctx.input(7))):
        if v is not None and v.dtype != x.dtype:
            raise ctx.error(f"{name} has dtype {v.dtype}, X has {x.dtype}")
    if x.type.rank != 3:
        raise ctx.error(f"X must have rank 3, got {x.type}")
    if layout == 1:
        x = ctx.emit("transpose", x, perm=[1, 0, 2])
    steps, batch, in_size = x.shape
    if steps == 0:
        raise ctx.error("the sequence length is 0")
    if r.type.rank != 3 or not isinstance(r.shape[2], int):
        raise ctx.error(f"R must have rank 3 with a static hidden size, got {r.type}")
    hidden = r.shape[2]
    if ctx.has_attr("hidden_size") and ctx.attr("hidden_size") != hidden:
        raise ctx.error(f"hidden_size={ctx.attr('hidden_size')} but R has shape {r.shape}")
    gh = kind.gates * hidden
    _check_shape(ctx, w, "W", [num_dirs, gh, in_size])
    _check_shape(ctx, r, "R", [num_dirs, gh, hidden])
    clip = ctx.attr("clip")
    clip = None if clip is None else float(clip)
    if clip is not None and not clip > 0:
        raise ctx.error(f"clip must be positive, got {clip}")

    # Input projection of every step and direction in one matmul, [T * batch, I] @ [I, D * G*H]
    # (the steps are rows, so that W is read once), then as [T, D, batch, G*H].
    w_all = ctx.emit("reshape", w, shape=[num_dirs * gh, in_size])
    static = isinstance(batch, int) and isinstance(steps, int)
    rows = [steps * batch] if static else [steps, batch]
    x_rows = ctx.emit("reshape", x, shape=[*rows, in_size])
    xw = ctx.emit("matmul", x_rows, ctx.emit("transpose", w_all, perm=[1, 0]))
    bias, rb_h = _biases(ctx, kind, num_dirs, hidden)
    if bias is not None:
        xw = ctx.emit("add", xw, ctx.emit("reshape", bias, shape=[num_dirs * gh]))
    xw = ctx.emit("reshape", xw, shape=[steps, batch, num_dirs, gh])
    xw = ctx.emit("transpose", xw, perm=[0, 2, 1, 3])
    r_t = ctx.emit("transpose", r, perm=[0, 2, 1])
    keep_at = _masks(ctx, batch, steps)
    initial = [_initial(ctx, i, layout, num_dirs, batch, hidden) for i in range(kind.states)]
    peepholes = _peepholes(ctx, num_dirs, hidden) if kind is _LSTM else None
    want = [i < ctx.num_outputs and bool(ctx.node.output[i]) for i in range(kind.states + 1)]

    ys, finals = [], []
    for grp in groups:
        lo, hi = grp.dirs[0], grp.dirs[-1] + 1
        d = len(grp.dirs)
        # The projection in this group's step order: reverse directions read it backwards.
        parts = [_take(ctx, xw, 1, j, j + 1) for j in grp.dirs]
        cell, weights = _cell(ctx, kind, grp, r_t, rb_h, peepholes, hidden, clip)
        # States carry a leading time axis of size 1 ([1, d, batch, H]), so that neither a
        # step's slice of the projection nor its Y needs a reshape.
        state_shape = [1, d, batch, hidden]
        state = tuple(
            ctx.emit("reshape", _take(ctx, s, 0, lo, hi), shape=state_shape) for s in initial
        )
        if not unrolls(steps):
            y_parts, state = _recur_in_loop(ctx, parts, state, cell, weights, grp, want[0])
            finals.append(tuple(ctx.emit("reshape", v, shape=state_shape[1:]) for v in state))
            ys.extend(y_parts)
            continue
        parts = [_reverse_time(ctx, p) if rev else p for p, rev in zip(parts, grp.reverse)]
        xw_g = parts[0] if d == 1 else ctx.emit("concat", *parts, axis=1)
        zero = ctx.const(np.zeros((), x.dtype))
        outs = []
        for s in range(steps):
            x_t = ctx.emit("slice", xw_g, axes=[0], starts=[s], ends=[s + 1], steps=[1])
            new = cell(ctx, x_t, state, weights)
            keep = keep_at([steps - 1 - s if rev else s for rev in grp.reverse])
            if want[0]:
                outs.append(new[0] if keep is None else ctx.emit("where", keep, new[0], zero))
            state = masked(ctx, keep, new, state)
        finals.append(tuple(ctx.emit("reshape", v, shape=state_shape[1:]) for v in state))
        if want[0]:
            y_g = outs[0] if steps == 1 else ctx.emit("concat", *outs, axis=0)
            parts = [_take(ctx, y_g, 1, k, k + 1) for k in range(d)]
            parts = [_reverse_time(ctx, p) if rev else p for p, rev in zip(parts, grp.reverse)]
            ys.extend(parts if any(grp.reverse) else [y_g])

    results: list[Value | None] = [None] * (kind.states + 1)
    if want[0]:
        y = ys[0] if len(ys) == 1 else ctx.emit("concat", *ys, axis=1)
        results[0] = ctx.emit("transpose", y, perm=[2, 0, 1, 3]) if layout == 1 else y
    for i in range(kind.states):
        if want[i + 1]:
            parts = [f[i] for f in finals]
            v = parts[0] if len(parts) == 1 else ctx.emit("concat", *parts, axis=0)
            results[i + 1] = ctx.emit("transpose", v, perm=[1, 0, 2]) if layout == 1 else v
    return results[: ctx.num_outputs]


def _biases(
    ctx: NodeContext, kind: _Kind, num_dirs: int, hidden: int
) -> tuple[Value | None, Value | None]:
    """The bias added to the projection, ``[D, G*H]``, and GRU's ``Rbh`` ``[D, 1, H]``
    when linear_before_reset keeps it in the step (None when absent or zero)."""
    b = ctx.input(3)
    gh = kind.gates * hidden
    if b is None:
        return None, None
    _check_shape(ctx, b, "B", [num_dirs, 2 * gh])
    wb, rb = _take(ctx, b, 1, 0, gh), _take(ctx, b, 1, gh, 2 * gh)
    rb_h = None
    if kind is _GRU and ctx.attr("linear_before_reset", 0):
        rb_h = _take(ctx, rb, 1, 2 * hidden, gh)
        zeros = ctx.const(np.zeros((num_dirs, hidden), b.dtype))
        rb = ctx.emit("concat", _take(ctx, rb, 1, 0, 2 * hidden), zeros, axis=1)
        rb_h = None if _is_zero(rb_h) else ctx.emit("reshape", rb_h, shape=[num_dirs, 1, hidden])
    bias = ctx.emit("add", wb, rb)
    if _is_zero(bias):
        return None, rb_h
    return bias, rb_h


def _peepholes(ctx: NodeContext, num_dirs: int, hidden: int) -> list[Value] | None:
    """LSTM's ``P`` as [Pi, Po, Pf], each ``[D, 1, H]``; None when absent or zero."""
    p = ctx.input(7)
    if p is None or _is_zero(p):
        return None
    _check_shape(ctx, p, "P", [num_dirs, 3 * hidden])
    return [
        ctx.emit(
            "reshape", _take(ctx, p, 1, k * hidden, (k + 1) * hidden), shape=[num_dirs, 1, hidden]
        )
        for k in range(3)
    ]


def _initial(
    ctx: NodeContext, which: int, layout: int, num_dirs: int, batch: Any, hidden: int
) -> Value:
    """initial_h (which=0) or initial_c (1) as ``[D, batch, H]``; zeros when absent."""
    v = ctx.input(5 + which)
    what = ("initial_h", "initial_c")[which]
    if v is None:
        if not isinstance(batch, int):
            raise ctx.error(f"without {what}, the batch size must be static, got {batch!r}")
        return ctx.const(np.zeros((num_dirs, batch, hidden), ctx.input(0).dtype))
    if v.dtype != ctx.input(0).dtype:
        raise ctx.error(f"{what} has dtype {v.dtype}, X has {ctx.input(0).dtype}")
    want = [batch, num_dirs, hidden] if layout == 1 else [num_dirs, batch, hidden]
    _check_shape(ctx, v, what, want)
    return ctx.emit("transpose", v, perm=[1, 0, 2]) if layout == 1 else v


def _recur_in_loop(
    ctx: NodeContext,
    parts: list[Value],
    state: tuple[Value, ...],
    cell: CellFn,
    weights: Any,
    grp: _Group,
    want_y: bool,
) -> tuple[list[Value], tuple[Value, ...]]:
    """The recurrence over a symbolic number of steps T (``recur_in_loop``), steps past a
    batch entry's ``sequence_lens`` leaving its state. Returns each direction's Y in time
    order ([T, 1, batch, H]; none unless ``want_y``) and the final state."""
    lens = ctx.input(4)

    def keep(b: Emitter, times: list[Value]) -> Value:
        stamps = [
            b.emit("reshape", b.emit("cast", t, to=lens.dtype), shape=[1, 1, 1]) for t in times
        ]
        stamp = stamps[0] if len(stamps) == 1 else b.emit("concat", *stamps, axis=0)
        return b.emit("less", stamp, b.emit("reshape", lens, shape=[1, lens.shape[0], 1]))

    run = recur_in_loop(
        ctx, parts, grp.reverse, state, cell, weights, want_y, keep if lens is not None else None
    )
    if run.y is None:
        return [], run.final
    ys = []
    for k, rev in enumerate(grp.reverse):
        part = _take(ctx, run.y, 1, k, k + 1)
        ys.append(ctx.emit("gather", part, run.order, axis=0) if rev else part)
    return ys, run.final


def _masks(ctx: NodeContext, batch: Any, steps: int | str) -> Callable[[list[int]], Value | None]:
    """A function from the time index of each stacked direction to the ``[d, batch, 1]``
    mask of the entries still within their length (None where all are, or no lengths)."""
    lens = ctx.input(4)
    if lens is None:
        return lambda times: None
    if lens.dtype not in ("int32", "int64"):
        raise ctx.error(f"sequence_lens must be int32, got {lens.type}")
    _check_shape(ctx, lens, "sequence_lens", [batch])
    if lens.const is not None and isinstance(steps, int):
        if np.any(lens.const < 0) or np.any(lens.const > steps):
            raise ctx.error(f"sequence_lens {lens.const.tolist()} must lie in [0, {steps}]")
        if np.all(lens.const == steps):
            return lambda times: None
    lens_b = ctx.emit("reshape", lens, shape=[1, lens.shape[0], 1])

    def keep(times: list[int]) -> Value | None:
        t = ctx.const(np.array(times, lens.dtype).reshape(-1, 1, 1))
        mask = ctx.emit("less", t, lens_b)
        return None if mask.const is not None and mask.const.all() else mask

    return keep


def _cell(
    ctx: NodeContext,
    kind: _Kind,
    grp: _Group,
    r_t: Value,
    rb_h: Value | None,
    peepholes: Sequence[Value] | None,
    hidden: int,
    clip: float | None,
) -> tuple[CellFn, Any]:
    """The cell function and its weights for the directions of ``grp``."""
    lo, hi = grp.dirs[0], grp.dirs[-1] + 1
    r_t = _take(ctx, r_t, 0, lo, hi)
    acts = grp.acts
    if kind is _RNN:
        return rnn_cell, RNNWeights(r_t=r_t, f=acts[0], clip=clip)
    if kind is _GRU:
        n = hidden
        if ctx.attr("linear_before_reset", 0):
            rb = None if rb_h is None else _take(ctx, rb_h, 0, lo, hi)
            return gru_cell, GRUWeights(
                r_t, acts[0], acts[1], n, linear_before_reset=True, rb_h=rb, clip=clip
            )
        # Without linear_before_reset, Rh^T multiplies r (.) H: R^T splits in two.
        r_zr, r_h = _take(ctx, r_t, 2, 0, 2 * n), _take(ctx, r_t, 2, 2 * n, 3 * n)
        return gru_cell, GRUWeights(r_zr, acts[0], acts[1], n, r_h_t=r_h, clip=clip)
    p_i = p_o = p_f = None
    if peepholes is not None:
        p_i, p_o, p_f = (_take(ctx, p, 0, lo, hi) for p in peepholes)
    return lstm_cell, LSTMWeights(
        r_t,
        acts[0],
        acts[1],
        acts[2],
        hidden,
        p_i=p_i,
        p_o=p_o,
        p_f=p_f,
        input_forget=bool(ctx.attr("input_forget", 0)),
        clip=clip,
    )


# -- registration ------------------------------------------------------------------------


def _register(kind: _Kind) -> None:
    def v7(ctx: NodeContext) -> list[Value | None]:
        return _convert(ctx, kind, 0)

    def v14(ctx: NodeContext) -> list[Value | None]:
        """Opset 14 adds ``layout``: 1 puts the batch first in X, Y and the states."""
        return _convert(ctx, kind, int(ctx.attr("layout", 0)))

    def v22(ctx: NodeContext) -> list[Value | None]:
        """Opset 22 only adds bfloat16, which the IR does not have."""
        return _convert(ctx, kind, int(ctx.attr("layout", 0)))

    for since, fn in ((7, v7), (14, v14), (22, v22)):
        fn.__name__ = f"{kind.op.lower()}_{since}"
        converter(kind.op, since=since)(fn)


for _kind in (_RNN, _GRU, _LSTM):
    _register(_kind)
