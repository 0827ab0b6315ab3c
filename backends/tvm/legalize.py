"""nnxc's legalization for CPUs: TVM's ``LegalizeOps`` with some ops lowered our way.

- conv2d / conv2d_transpose: weights packed at compile time for our conv schedule rules
  (``schedules/conv_layout.py``);
- float32 erf: TVM's rational approximation (``topi.fast_erf``, max error 4.2e-7 on
  [-6, 6] against ``math.erf``) instead of a scalar libm call per element, which cannot be
  vectorized and made a transformer's GELU epilogue 3x slower than its matmul. (TVM's float16
  version is off by 3.6e-2; float16 keeps TVM's lowering.)
- float32 softmax: the same four stages as TVM's (row max, exp of the shifted input, row sum,
  division) with ``topi.fast_exp`` (relative error <= 7e-8 on [-1, 1], 4e-6 near underflow;
  its inputs here are <= 0) instead of an ``expf`` call per element; the ``Rows`` schedule
  rule then vectorizes every stage. float16 softmax sums in float32 (as numpy's pairwise sum
  of float16 does), its other stages stay float16.
- float max (``relax.max`` and softmax's row max): the reduction starts at -inf, not TVM's
  lowest finite value, so a row that is all -inf has max -inf as in numpy (an attention
  row masked everywhere is detected by comparing its max with -inf). Same loop, same speed.
"""

from __future__ import annotations

import math

import tvm
from tvm import relax, te, tirx, topi

from .schedules.conv_layout import legalize_map as conv_legalize_map


def _legalize_erf(bb: relax.BlockBuilder, call: relax.Call) -> relax.Expr:
    x = call.args[0]
    if x.ty.dtype == "float32":
        return bb.call_te(topi.fast_erf, x, primfunc_name_hint="erf")
    default = tvm.ir.Op.get("relax.erf").get_attr("FLegalize")
    return default(bb, call)


_float_max = te.comm_reducer(
    lambda a, b: tirx.Max(a, b), lambda t: tirx.const(-math.inf, t), name="max"
)
"""``te.max`` with -inf as identity (``te.max`` starts at the lowest finite value)."""


def _max(dtype: str):
    return _float_max if str(dtype).startswith("float") else te.max


def max_te(x: te.Tensor, axis: list | None, keepdims: bool) -> te.Tensor:
    """max over ``axis`` (None: all), an all -inf row giving -inf."""
    nd = len(x.shape)
    axes = sorted({int(a) % nd for a in axis} if axis is not None else range(nd))
    red = {a: te.reduce_axis((0, x.shape[a]), name=f"k{a}") for a in axes}
    kept = [i for i in range(nd) if i not in red]
    out_shape = (
        [1 if i in red else x.shape[i] for i in range(nd)]
        if keepdims
        else [x.shape[i] for i in kept]
    )
    reducer = _max(x.dtype)

    def body(*idx):
        at = iter(idx)
        full = []
        for i in range(nd):
            if i in red:
                if keepdims:
                    next(at)
                full.append(red[i])
            else:
                full.append(next(at))
        return reducer(x[tuple(full)], axis=[red[a] for a in axes])

    return te.compute(out_shape, body, name="max_red")


def _legalize_max(bb: relax.BlockBuilder, call: relax.Call) -> relax.Expr:
    x = call.args[0]
    shape = x.ty.shape
    empty = isinstance(shape, relax.ShapeExpr) and any(
        isinstance(d, tirx.IntImm) and d.value == 0 for d in shape.values
    )
    if str(x.ty.dtype).startswith("float") and x.ty.ndim > 0 and not empty:
        return bb.call_te(
            max_te, x, call.attrs.axis, bool(call.attrs.keepdims), primfunc_name_hint="max"
        )
    default = tvm.ir.Op.get("relax.max").get_attr("FLegalize")
    return default(bb, call)


def softmax_te(x: te.Tensor, axis: int) -> te.Tensor:
    """Softmax over ``axis``: ``fast_exp`` in float32; float16 sums in float32."""
    nd = len(x.shape)
    axis %= nd
    rows = [d for i, d in enumerate(x.shape) if i != axis]

    def row(i):
        return (*i[:axis], *i[axis + 1 :])

    def along(r, j):
        return (*r[:axis], j, *r[axis:])

    k = te.reduce_axis((0, x.shape[axis]), name="k")
    peak = te.compute(rows, lambda *r: _float_max(x[along(r, k)], axis=k), name="softmax_max")
    shifted = te.compute(x.shape, lambda *i: x[i] - peak[row(i)], name="softmax_shift")
    e = topi.fast_exp(shifted) if str(x.dtype) == "float32" else topi.exp(shifted)
    acc = "float32" if str(x.dtype) == "float16" else str(x.dtype)
    k2 = te.reduce_axis((0, x.shape[axis]), name="k2")
    total = te.compute(
        rows, lambda *r: te.sum(e[along(r, k2)].astype(acc), axis=k2), name="softmax_sum"
    )
    return te.compute(x.shape, lambda *i: e[i] / total[row(i)].astype(x.dtype), name="softmax_norm")


def _legalize_softmax(bb: relax.BlockBuilder, call: relax.Call) -> relax.Expr:
    x = call.args[0]
    if x.ty.dtype in ("float32", "float16") and x.ty.ndim > 0:
        return bb.call_te(softmax_te, x, int(call.attrs.axis), primfunc_name_hint="softmax")
    default = tvm.ir.Op.get("relax.nn.softmax").get_attr("FLegalize")
    return default(bb, call)


def legalize_ops(target: tvm.target.Target | None = None) -> tvm.transform.Pass:
    """``LegalizeOps`` with nnxc's rules (see module doc); every other op as TVM lowers it."""
    rules = {
        **conv_legalize_map(target),
        "relax.erf": _legalize_erf,
        "relax.nn.softmax": _legalize_softmax,
        "relax.max": _legalize_max,
    }
    return relax.transform.LegalizeOps(customize_legalize_map=rules)
