"""nnxc's legalization: TVM's ``LegalizeOps`` with some ops lowered our way.

Per target (CPU only):

- conv2d / conv2d_transpose: weights packed at compile time for our CPU conv schedule rules
  (``schedules/cpu/conv_layout.py``). GPU builds keep TVM's NCHW conv, which dlight's
  ``Matmul`` rule schedules as an implicit GEMM.

Per target (CUDA only):

- float16 / bfloat16 fmod (``relax.mod``): computed in float32 and cast back, which is exact
  (the remainder is representable in the operands' type); CUDA has no half fmod, and TVM's
  CUDA code generation refuses it.

Shared by every target (the GPU rules schedule their fused kernels too:
``tests/backends/tvm/test_pipeline_cuda.py``):

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
  On GPUs the max reduces in the next wider float (float16 in float32, float32 in float64)
  from TVM's lowest finite identity instead, and casts back: an all -inf row then ends at the
  wide type's lowest value, which the cast rounds to -inf; any other max is exact. (dlight's
  cross-thread reductions match only the reducers in TVM's registry, whose float max starts
  at the lowest finite value; registering ours from Python crashes the process at exit.)
  float64 has no wider type and keeps TVM's max on GPUs.
- take (gather) in "fast" mode: a plain TE gather, as TOPI's fast mode computes, without its
  build-time warning that out-of-range indices segfault: the lowering checks indices known
  only at run time before they reach the gather (``lowering/checks.py``), unless the model
  was compiled without run-time checks.
"""

from __future__ import annotations

import functools
import math

import tvm
from tvm import relax, te, tirx, topi

from .schedules.cpu.conv_layout import legalize_map as conv_legalize_map


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


_WIDER = {"float16": "float32", "bfloat16": "float32", "float32": "float64"}
"""The float a GPU max reduces in (see module doc)."""


def _reduce_max(x: te.Tensor, shape: list, load, axes: list, gpu: bool, name: str) -> te.Tensor:
    """``max(load(*idx))`` over ``axes`` for each index of ``shape``: an all -inf row gives
    -inf (see module doc for how on GPUs)."""
    dtype = str(x.dtype)
    if gpu and dtype in _WIDER:
        wide = _WIDER[dtype]
        red = te.compute(shape, lambda *i: te.max(load(*i).astype(wide), axis=axes), name=name)
        return te.compute(shape, lambda *i: red[i].astype(dtype), name=f"{name}_cast")
    reducer = _float_max if dtype.startswith("float") and not gpu else te.max
    return te.compute(shape, lambda *i: reducer(load(*i), axis=axes), name=name)


def max_te(x: te.Tensor, axis: list | None, keepdims: bool, gpu: bool = False) -> te.Tensor:
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

    def load(*idx):
        at = iter(idx)
        full = []
        for i in range(nd):
            if i in red:
                if keepdims:
                    next(at)
                full.append(red[i])
            else:
                full.append(next(at))
        return x[tuple(full)]

    return _reduce_max(x, out_shape, load, [red[a] for a in axes], gpu, "max_red")


def _legalize_max(bb: relax.BlockBuilder, call: relax.Call, gpu: bool) -> relax.Expr:
    x = call.args[0]
    shape = x.ty.shape
    empty = isinstance(shape, relax.ShapeExpr) and any(
        isinstance(d, tirx.IntImm) and d.value == 0 for d in shape.values
    )
    if str(x.ty.dtype).startswith("float") and x.ty.ndim > 0 and not empty:
        return bb.call_te(
            max_te, x, call.attrs.axis, bool(call.attrs.keepdims), gpu, primfunc_name_hint="max"
        )
    default = tvm.ir.Op.get("relax.max").get_attr("FLegalize")
    return default(bb, call)


def softmax_te(x: te.Tensor, axis: int, gpu: bool = False) -> te.Tensor:
    """Softmax over ``axis``: ``fast_exp`` in float32; float16 sums in float32."""
    nd = len(x.shape)
    axis %= nd
    rows = [d for i, d in enumerate(x.shape) if i != axis]

    def row(i):
        return (*i[:axis], *i[axis + 1 :])

    def along(r, j):
        return (*r[:axis], j, *r[axis:])

    k = te.reduce_axis((0, x.shape[axis]), name="k")
    peak = _reduce_max(x, rows, lambda *r: x[along(r, k)], [k], gpu, "softmax_max")
    shifted = te.compute(x.shape, lambda *i: x[i] - peak[row(i)], name="softmax_shift")
    e = topi.fast_exp(shifted) if str(x.dtype) == "float32" else topi.exp(shifted)
    acc = "float32" if str(x.dtype) == "float16" else str(x.dtype)
    k2 = te.reduce_axis((0, x.shape[axis]), name="k2")
    total = te.compute(
        rows, lambda *r: te.sum(e[along(r, k2)].astype(acc), axis=k2), name="softmax_sum"
    )
    return te.compute(x.shape, lambda *i: e[i] / total[row(i)].astype(x.dtype), name="softmax_norm")


def _legalize_softmax(bb: relax.BlockBuilder, call: relax.Call, gpu: bool) -> relax.Expr:
    x = call.args[0]
    if x.ty.dtype in ("float32", "float16") and x.ty.ndim > 0:
        return bb.call_te(softmax_te, x, int(call.attrs.axis), gpu, primfunc_name_hint="softmax")
    default = tvm.ir.Op.get("relax.nn.softmax").get_attr("FLegalize")
    return default(bb, call)


def _legalize_half_mod(bb: relax.BlockBuilder, call: relax.Call) -> relax.Expr:
    dtype = str(call.ty.dtype)
    if dtype in ("float16", "bfloat16"):

        def mod(a: te.Tensor, b: te.Tensor) -> te.Tensor:
            wide = topi.mod(topi.cast(a, "float32"), topi.cast(b, "float32"))
            return topi.cast(wide, dtype)

        return bb.call_te(mod, *call.args, primfunc_name_hint="mod")
    default = tvm.ir.Op.get("relax.mod").get_attr("FLegalize")
    return default(bb, call)


def take_te(data: te.Tensor, indices: te.Tensor, axis: int) -> te.Tensor:
    """``data`` gathered along ``axis`` at ``indices`` (all in range, none negative)."""
    axis %= len(data.shape)
    r = len(indices.shape)
    shape = [*data.shape[:axis], *indices.shape, *data.shape[axis + 1 :]]

    def at(*i):
        index = indices[i[axis : axis + r]].astype("int64")
        return data[(*i[:axis], index, *i[axis + r :])]

    return te.compute(shape, at, name="take")


def _legalize_take(bb: relax.BlockBuilder, call: relax.Call) -> relax.Expr:
    if call.attrs.mode == "fast" and call.attrs.axis is not None:
        return bb.call_te(take_te, *call.args, int(call.attrs.axis), primfunc_name_hint="take")
    default = tvm.ir.Op.get("relax.take").get_attr("FLegalize")
    return default(bb, call)


def legalize_ops(target: tvm.target.Target | None = None) -> tvm.transform.Pass:
    """``LegalizeOps`` with nnxc's rules for ``target`` (see module doc; None: the CPU's);
    every other op as TVM lowers it."""
    gpu = target is not None and target.kind.name == "cuda"
    rules: dict = {}
    if target is None or target.kind.name == "llvm":
        rules.update(conv_legalize_map(target))
    if gpu:
        rules["relax.mod"] = _legalize_half_mod
    rules |= {
        "relax.erf": _legalize_erf,
        "relax.nn.softmax": functools.partial(_legalize_softmax, gpu=gpu),
        "relax.max": functools.partial(_legalize_max, gpu=gpu),
        "relax.take": _legalize_take,
    }
    return relax.transform.LegalizeOps(customize_legalize_map=rules)
