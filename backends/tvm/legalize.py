"""nnxc's legalization for CPUs: TVM's ``LegalizeOps`` with some ops lowered our way.

- conv2d / conv2d_transpose: weights packed at compile time for our conv schedule rules
  (``schedules/conv_layout.py``);
- float32 erf: TVM's rational approximation (``topi.fast_erf``, max error 4.2e-7 on
  [-6, 6] against ``math.erf``) instead of a scalar libm call per element, which cannot be
  vectorized and made a transformer's GELU epilogue 3x slower than its matmul. (TVM's float16
  version is off by 3.6e-2; float16 keeps TVM's lowering.)
"""

from __future__ import annotations

import tvm
from tvm import relax, topi

from .schedules.conv_layout import legalize_map as conv_legalize_map


def _legalize_erf(bb: relax.BlockBuilder, call: relax.Call) -> relax.Expr:
    x = call.args[0]
    if x.ty.dtype == "float32":
        return bb.call_te(topi.fast_erf, x, primfunc_name_hint="erf")
    default = tvm.ir.Op.get("relax.erf").get_attr("FLegalize")
    return default(bb, call)


def legalize_ops(target: tvm.target.Target | None = None) -> tvm.transform.Pass:
    """``LegalizeOps`` with nnxc's rules (see module doc); every other op as TVM lowers it."""
    rules = {**conv_legalize_map(target), "relax.erf": _legalize_erf}
    return relax.transform.LegalizeOps(customize_legalize_map=rules)
