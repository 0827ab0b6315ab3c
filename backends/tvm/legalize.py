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
  rule then vectorizes every stage.
"""

from __future__ import annotations

import tvm
from tvm import relax, te, topi

from .schedules.conv_layout import legalize_map as conv_legalize_map


def _legalize_erf(bb: relax.BlockBuilder, call: relax.Call) -> relax.Expr:
    x = call.args[0]
    if x.ty.dtype == "float32":
        return bb.call_te(topi.fast_erf, x, primfunc_name_hint="erf")
    default = tvm.ir.Op.get("relax.erf").get_attr("FLegalize")
    return default(bb, call)


def softmax_te(x: te.Tensor, axis: int) -> te.Tensor:
    """Softmax over ``axis`` with the vectorizable ``fast_exp``."""
    nd = len(x.shape)
    axis %= nd
    rows = [d for i, d in enumerate(x.shape) if i != axis]

    def row(i):
        return (*i[:axis], *i[axis + 1 :])

    def along(r, j):
        return (*r[:axis], j, *r[axis:])

    k = te.reduce_axis((0, x.shape[axis]), name="k")
    peak = te.compute(rows, lambda *r: te.max(x[along(r, k)], axis=k), name="softmax_max")
    shifted = te.compute(x.shape, lambda *i: x[i] - peak[row(i)], name="softmax_shift")
    e = topi.fast_exp(shifted)
    k2 = te.reduce_axis((0, x.shape[axis]), name="k2")
    total = te.compute(rows, lambda *r: te.sum(e[along(r, k2)], axis=k2), name="softmax_sum")
    return te.compute(x.shape, lambda *i: e[i] / total[row(i)], name="softmax_norm")


def _legalize_softmax(bb: relax.BlockBuilder, call: relax.Call) -> relax.Expr:
    x = call.args[0]
    if x.ty.dtype == "float32" and x.ty.ndim > 0:
        return bb.call_te(softmax_te, x, int(call.attrs.axis), primfunc_name_hint="softmax")
    default = tvm.ir.Op.get("relax.nn.softmax").get_attr("FLegalize")
    return default(bb, call)


def legalize_ops(target: tvm.target.Target | None = None) -> tvm.transform.Pass:
    """``LegalizeOps`` with nnxc's rules (see module doc); every other op as TVM lowers it."""
    rules = {
        **conv_legalize_map(target),
        "relax.erf": _legalize_erf,
        "relax.nn.softmax": _legalize_softmax,
    }
    return relax.transform.LegalizeOps(customize_legalize_map=rules)
