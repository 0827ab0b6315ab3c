"""Relax-level conv2d rewrite: constant OIHW weights pre-packed at compile time.

``relax.nn.conv2d`` (NCHW data, OIHW constant weight, float32, static shapes) is legalized
into nnxc's own TE compute whose weight is packed as ``[O // bn, I / groups, KH, KW, bn]``
(``bn`` output channels contiguous, ``bn`` = the target's float32 vector lanes, or twice that),
so ``conv.py`` can vectorize over output channels with contiguous weight loads. Data and
output stay NCHW, so the rest of the graph (bias, ReLU, residual adds) fuses as before.
The packing is done in numpy here: the packed weight is a constant of the built module.

Depthwise convolutions (one input channel per group) keep TVM's legalization (``conv.py``
schedules them in NCHW directly); anything else that does not fit falls back to it too.

Pipeline use: ``pack_conv_weights(target)`` is a module pass to run just before
``cpu.legalize_passes(target)``; it legalizes every op (conv2d ours, the rest TVM's).
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax, te, topi

CONV_BLOCK = "nnxc_conv2d_packed"
"""Name of the TE compute (and so of the reduction block) ``conv.py`` looks for."""

CONV_ATTR = "nnxc.conv2d_packed"
"""Block annotation carrying the output-channel block size ``bn``."""


def vector_lanes(target: tvm.target.Target | None, dtype_bits: int = 32) -> int:
    """Lanes of the target's widest vector register (8 float32 with AVX2).

    ``llvm_get_vector_width`` answers 512 for AVX2-only x86 CPUs, so x86 is asked by feature.
    """
    from tvm.target import codegen

    try:
        if codegen.target_has_features("avx512f", target):
            bits = 512
        elif codegen.target_has_features("avx", target):
            bits = 256
        else:
            bits = min(max(int(codegen.llvm_get_vector_width(target)), 128), 128)
    except Exception:  # noqa: BLE001 - not an LLVM target or no LLVM
        bits = 128
    return max(1, bits // dtype_bits)


def oc_block(out_per_group: int, lanes: int) -> int | None:
    """Output-channel block: two vectors when they divide the group's channels, else one."""
    for bn in (2 * lanes, lanes):
        if out_per_group % bn == 0:
            return bn
    return None


def pack_weight(w: np.ndarray, bn: int) -> np.ndarray:
    """OIHW -> [O // bn, I, KH, KW, bn]."""
    o, i, kh, kw = w.shape
    return np.ascontiguousarray(w.reshape(o // bn, bn, i, kh, kw).transpose(0, 2, 3, 4, 1))


def conv2d_packed_te(
    x: te.Tensor,
    wp: te.Tensor,
    strides: tuple[int, int],
    padding: tuple[int, int, int, int],
    dilation: tuple[int, int],
    groups: int,
) -> te.Tensor:
    """NCHW conv2d with a packed weight ``[O // bn, I / groups, KH, KW, bn]``."""
    n, c, h, w = (int(d) for d in x.shape)
    ob, icg, kh, kw, bn = (int(d) for d in wp.shape)
    out_c = ob * bn
    sh, sw = strides
    dh, dw = dilation
    pt, pl, pb, pr = padding
    oh = (h + pt + pb - (kh - 1) * dh - 1) // sh + 1
    ow = (w + pl + pr - (kw - 1) * dw - 1) // sw + 1
    if any(padding):
        xp = topi.nn.pad(x, [0, 0, pt, pl], [0, 0, pb, pr], name="pad_temp")
    else:
        xp = x
    rc = te.reduce_axis((0, icg), name="rc")
    ry = te.reduce_axis((0, kh), name="ry")
    rx = te.reduce_axis((0, kw), name="rx")
    per_group = out_c // groups

    def body(nn, oc, yy, xx):
        ch = rc if groups == 1 else (oc // per_group) * icg + rc
        return te.sum(
            xp[nn, ch, yy * sh + ry * dh, xx * sw + rx * dw] * wp[oc // bn, rc, ry, rx, oc % bn],
            axis=[rc, ry, rx],
        )

    return te.compute(
        (n, out_c, oh, ow), body, name=CONV_BLOCK, tag="conv2d_nchw", attrs={CONV_ATTR: bn}
    )


def _static_shape(expr: relax.Expr) -> list[int] | None:
    ty = expr.ty
    if not isinstance(ty, relax.TensorType) or not isinstance(ty.shape, relax.ShapeExpr):
        return None
    dims = []
    for d in ty.shape.values:
        if not isinstance(d, tvm.tirx.IntImm):
            return None
        dims.append(int(d))
    return dims


def _legalize_conv2d(lanes: int):
    default = tvm.ir.Op.get("relax.nn.conv2d").get_attr("FLegalize")

    def legalize(bb: relax.BlockBuilder, call: relax.Call) -> relax.Expr:
        a = call.attrs
        x, w = call.args
        xs, ws = _static_shape(x), _static_shape(w)
        ok = (
            isinstance(w, tvm.ir.expr.Constant)
            and xs is not None
            and ws is not None
            and len(xs) == 4
            and a.data_layout == "NCHW"
            and a.kernel_layout == "OIHW"
            and a.out_layout == "NCHW"
            and x.ty.dtype == "float32"
            and w.ty.dtype == "float32"
            and (a.out_dtype is None or str(a.out_dtype) in ("", "float32"))
        )
        groups = int(a.groups)
        if ok:
            out_c, icg = ws[0], ws[1]
            ok = xs[1] == icg * groups and out_c % groups == 0 and not (icg == 1 and groups > 1)
        bn = oc_block(ws[0] // groups, lanes) if ok else None
        if bn is None:
            return default(bb, call)
        wp = relax.const(pack_weight(w.value.numpy(), bn), "float32")
        return bb.call_te(
            conv2d_packed_te,
            x,
            wp,
            strides=tuple(int(s) for s in a.strides),
            padding=tuple(int(p) for p in a.padding),
            dilation=tuple(int(d) for d in a.dilation),
            groups=groups,
            primfunc_name_hint="conv2d_packed",
        )

    return legalize


def pack_conv_weights(target: tvm.target.Target | None = None) -> tvm.transform.Pass:
    """LegalizeOps with conv2d legalized into the packed-weight form (see module doc)."""
    return relax.transform.LegalizeOps(
        customize_legalize_map={"relax.nn.conv2d": _legalize_conv2d(vector_lanes(target))}
    )
