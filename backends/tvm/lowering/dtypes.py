"""Casts between IR dtypes in Relax, including the dtypes TVM cannot compute with.

TVM 0.27's LLVM backend computes with bfloat16, but its float8 casts give wrong results (NaN,
overflow) and float4 / 4-bit / 2-bit types crash its codegen. Such a dtype (``DType.tvm`` is
None) is held in ``DType.storage``, uint8 with the element's bit pattern, and converted here:

* decoding (narrow -> anything native) is a gather from a constant table of the 2^bits
  values, computed by ml_dtypes at compile time: exact by construction;
* encoding (native -> narrow) is bit arithmetic in TE on the float32 (float64 for float64
  sources) pattern: round to nearest even at the target's precision (subnormals included),
  then overflow, NaN, infinities and saturation as compiler/ir/casting.py specifies.

Other ops on such dtypes (and on bfloat16, see ``widened``) decode their operands to float32
(int32 for ints), compute, and encode the result (see ``lower.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import ml_dtypes
import numpy as np
from tvm import relax, te, tirx

from compiler.ir.casting import SATURATING
from compiler.ir.types import DType, dtype

op = relax.op


@dataclass(frozen=True)
class _Float:
    """A small float format: exponent/mantissa bits, bias, and how it spells inf and NaN."""

    exp_bits: int
    man_bits: int
    bias: int
    style: str  # "ieee" (inf and NaNs), "fn" (NaN only, all ones), "fnuz" (NaN = -0), "none"

    @property
    def emin(self) -> int:
        return 1 - self.bias


_FLOATS = {
    "float8_e4m3fn": _Float(4, 3, 7, "fn"),
    "float8_e4m3fnuz": _Float(4, 3, 8, "fnuz"),
    "float8_e5m2": _Float(5, 2, 15, "ieee"),
    "float8_e5m2fnuz": _Float(5, 2, 16, "fnuz"),
    "float4_e2m1fn": _Float(2, 1, 1, "none"),
}


def widened(d: DType) -> bool:
    """Ops other than cast compute this dtype in ``compute_dtype``: the emulated dtypes, and
    bfloat16, whose casts TVM does right but whose vectorized kernels (matmul, softmax's
    isfinite) it fails to build."""
    return not d.is_native or d.name == "bfloat16"


def compute_dtype(d: DType) -> str:
    """The native dtype in which ops on an emulated dtype compute."""
    return "float32" if d.is_float else "int32"


def storage_const(array: np.ndarray, d: DType) -> relax.Constant:
    """A constant of IR dtype ``d`` as Relax holds it."""
    data = np.require(array, requirements="C")
    if not d.is_native:
        data = data.view(np.dtype(d.storage))
    return relax.const(data, d.storage)


def convert(
    bb: relax.BlockBuilder,
    x: relax.Expr,
    src: str,
    dst: str,
    saturate: bool = True,
    round_mode: str = "up",
) -> relax.Expr:
    """``x`` (IR dtype ``src``, in its storage) cast to ``dst`` (in its storage)."""
    s, d = dtype(src), dtype(dst)
    if s == d:
        return x
    if s.is_native and d.is_native:
        return op.astype(x, d.tvm)
    if not s.is_native:
        if d.is_native:
            return _decode(bb, x, s, d)
        x, s = bb.emit(_decode(bb, x, s, dtype("float32"))), dtype("float32")
    if d == "float8_e8m0fnu":
        return _encode_e8m0(bb, x, s, saturate, round_mode)
    if d.is_int:
        return _encode_int(bb, x, s, d)
    if s.is_bool or s.is_int or s.bits < 32:
        x, s = bb.emit(op.astype(x, "float32")), dtype("float32")
    sat = saturate or d not in SATURATING
    return bb.call_te(lambda t: _encode_float(t, s, d, sat), x)


def _decode(bb: relax.BlockBuilder, x: relax.Expr, s: DType, d: DType) -> relax.Expr:
    codes = np.arange(1 << s.bits, dtype=np.uint8).view(s.np)
    with np.errstate(all="ignore"):
        table = codes.astype(d.np)
    index = bb.emit(op.astype(x, "int32"))
    return op.take(relax.const(table, d.tvm), index, axis=0, mode="clip")


def _encode_int(bb: relax.BlockBuilder, x: relax.Expr, s: DType, d: DType) -> relax.Expr:
    """ml_dtypes' int4/int2 casts: ints wrap around; floats truncate, out of range is 0."""
    mask = (1 << d.bits) - 1
    if s.is_float:
        info = ml_dtypes.iinfo(d.np)
        if s.bits < 32:
            x, s = bb.emit(op.astype(x, "float32")), dtype("float32")

        def fn(t: te.Tensor) -> te.Tensor:
            def body(*i):
                v = tirx.trunc(t(*i))
                ok = tirx.all(v >= float(info.min), v <= float(info.max))
                n = tirx.Select(ok, v, tirx.const(0, s.tvm)).astype("int32")
                return (n & mask).astype("uint8")

            return te.compute(t.shape, body, name="to_" + d.name)

        return bb.call_te(fn, x)
    wide_dtype = "int64" if s.bits == 64 else "int32"
    wide = bb.emit(op.astype(x, wide_dtype))
    masked = bb.emit(op.bitwise_and(wide, relax.const(mask, wide_dtype)))
    return op.astype(masked, "uint8")


def _encode_float(t: te.Tensor, s: DType, d: DType, saturate: bool) -> te.Tensor:
    """Round-to-nearest-even encoding of float32/float64 ``t`` into float ``d`` (uint8)."""
    f = _FLOATS[d.name]
    wide = s.bits == 64
    ftype, itype = ("float64", "int64") if wide else ("float32", "int32")
    src_man, src_bias = (52, 1023) if wide else (23, 127)
    width = 1 + f.exp_bits + f.man_bits
    man_mask = (1 << f.man_bits) - 1
    max_code = ((1 << (f.exp_bits + f.man_bits)) - 1) - (1 if f.style == "fn" else 0)
    if f.style == "ieee":
        max_code = (((1 << f.exp_bits) - 2) << f.man_bits) | man_mask
    max_value = float(np.uint8(max_code).view(d.np).astype(np.float64))
    nan_code = {"fn": (1 << (width - 1)) - 1, "ieee": ((1 << f.exp_bits) - 1) << f.man_bits | 2}
    inf_code = ((1 << f.exp_bits) - 1) << f.man_bits

    def c(v: int | float, dt: str) -> tirx.PrimExpr:
        return tirx.const(v, dt)

    def body(*i):
        v = t(*i)
        bits = tirx.reinterpret(itype, v)
        negative = bits < c(0, itype)
        a = tirx.abs(v)
        is_nan = tirx.isnan(v)
        e = ((tirx.reinterpret(itype, a) >> c(src_man, itype)) - c(src_bias, itype)).astype("int32")
        q = tirx.max(e, c(f.emin, "int32")) - c(f.man_bits, "int32")
        # 2^q; building it by shifting q into the exponent field and reinterpreting it
        # miscompiles once vectorized (LLVM "invalid bitcast"), ldexp does not
        step = tirx.ldexp(c(1.0, ftype), q)
        r = tirx.round(a / step) * step  # exact scaling by powers of two; round half even
        rb = tirx.reinterpret(itype, r)
        re = ((rb >> c(src_man, itype)) - c(src_bias, itype)).astype("int32")
        normal_code = ((re + c(f.bias, "int32")) << c(f.man_bits, "int32")) | (
            (rb >> c(src_man - f.man_bits, itype)).astype("int32") & c(man_mask, "int32")
        )
        sub_code = (r * c(2.0 ** (f.man_bits - f.emin), ftype)).astype("int32")
        code = tirx.Select(r >= c(2.0**f.emin, ftype), normal_code, sub_code)
        too_big = r > c(max_value, ftype)
        if saturate or f.style == "none":
            over = max_code
        else:  # the fnuz types' NaN (0x80) is set below, after the sign
            over = {"ieee": inf_code, "fn": nan_code["fn"], "fnuz": 0}[f.style]
        code = tirx.Select(too_big, c(over, "int32"), code)
        sign = c(1 << (width - 1), "int32")
        if f.style == "fnuz":  # no negative zero
            signed = tirx.Select(tirx.all(negative, code != c(0, "int32")), code | sign, code)
            if not saturate:
                signed = tirx.Select(too_big, sign, signed)
            nan = sign
        else:
            signed = tirx.Select(negative, code | sign, code)
            if f.style == "none":  # no NaN: ml_dtypes gives a zero of the opposite sign
                nan = tirx.Select(negative, c(0, "int32"), sign)
            else:
                quiet = c(nan_code[f.style], "int32")
                nan = tirx.Select(negative, quiet | sign, quiet)
        return tirx.Select(is_nan, nan, signed).astype("uint8")

    return te.compute(t.shape, body, name="to_small_float")


def _encode_e8m0(
    bb: relax.BlockBuilder, x: relax.Expr, s: DType, saturate: bool, round_mode: str
) -> relax.Expr:
    """ONNX's float8_e8m0fnu: the float32 exponent field, rounded as ``round_mode`` says."""
    if s != "float32":
        x = bb.emit(op.astype(x, "float32"))

    def fn(t: te.Tensor) -> te.Tensor:
        def body(*i):
            bits = tirx.reinterpret("uint32", t(*i))
            e = (bits >> tirx.const(23, "uint32")) & tirx.const(0xFF, "uint32")
            special = e == tirx.const(0xFF, "uint32")
            if round_mode == "up":
                bump = (bits & tirx.const(0x7FFFFF, "uint32")) != tirx.const(0, "uint32")
            elif round_mode == "nearest":
                guard = (bits & tirx.const(0x400000, "uint32")) != tirx.const(0, "uint32")
                rest = (bits & tirx.const(0x3FFFFF, "uint32")) != tirx.const(0, "uint32")
                bump = tirx.all(guard, tirx.any(rest, e > tirx.const(0, "uint32")))
            else:
                bump = tirx.const(False, "bool")
            if saturate:
                bump = tirx.all(bump, e != tirx.const(0xFE, "uint32"))
            up = tirx.Select(bump, e + tirx.const(1, "uint32"), e) & tirx.const(0xFF, "uint32")
            return tirx.Select(special, tirx.const(0xFF, "uint32"), up).astype("uint8")

        return te.compute(t.shape, body, name="to_e8m0")

    return bb.call_te(fn, x)
