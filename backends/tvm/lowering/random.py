"""Lowering of the random ops: one TE kernel per node hashing each element's flat index.

The hash is the one of ``compiler.ir.ops.random``, written with int64 TIR arithmetic that
never overflows (each uint32 product by 16-bit halves, then masked), so a seeded node gives
the reference's samples. An unseeded node gets
a key drawn here, once per compiled kernel.
"""

from __future__ import annotations

import math
from typing import Any

import tvm
from tvm import relax, te

from compiler.ir.ops.random import (
    GOLDEN,
    M1,
    M2,
    NORMAL_STREAM,
    box_muller_dtype,
    seed_key,
    uniform_bits,
)

from .registry import LowerContext, lowers


def _i64(value: int) -> tvm.tirx.PrimExpr:
    return tvm.tirx.const(value, "int64")


_MASK = 0xFFFFFFFF


def _mul32(x: tvm.tirx.PrimExpr, m: int) -> tvm.tirx.PrimExpr:
    """x * m mod 2**32 for 0 <= x < 2**32, by 16-bit halves: no intermediate passes 2**49.

    uint32 TIR arithmetic would wrap in LLVM, but TVM's simplifier assumes integer ops do not
    overflow and folds wrapping products by their bounds; int64 without overflow is exact.
    """
    lo = (x & _i64(0xFFFF)) * _i64(m)
    hi = (((x >> _i64(16)) * _i64(m & 0xFFFF)) & _i64(0xFFFF)) << _i64(16)
    return (lo + hi) & _i64(_MASK)


def _lowbias32(x: tvm.tirx.PrimExpr) -> tvm.tirx.PrimExpr:
    x = _mul32(x ^ (x >> _i64(16)), M1)
    x = _mul32(x ^ (x >> _i64(15)), M2)
    return x ^ (x >> _i64(16))


def _unit_uniform(index: tvm.tirx.PrimExpr, key: int, dtype: str) -> tvm.tirx.PrimExpr:
    x = _mul32((index & _i64(_MASK)) ^ _i64(key), GOLDEN)
    h = _lowbias32((_lowbias32(x) + _i64(key)) & _i64(_MASK))
    bits = uniform_bits(dtype)
    return (h >> _i64(32 - bits)).astype(dtype) * tvm.tirx.const(2.0**-bits, dtype)


def _flat(shape: list[Any], idx: tuple) -> tvm.tirx.PrimExpr:
    flat: tvm.tirx.PrimExpr = tvm.tirx.const(0, "int64")
    for d, i in zip(shape, idx):
        flat = flat * tvm.tirx.IntImm("int64", d) if isinstance(d, int) else flat * d
        flat = flat + i.astype("int64")
    return flat


def _kernel(ctx: LowerContext, sample: Any, name: str) -> relax.Expr:
    shape = ctx.out_shape()
    dtype = ctx.out_types[0].dtype

    def compute() -> te.Tensor:
        return te.compute(shape, lambda *idx: sample(_flat(shape, idx)).astype(dtype), name=name)

    return ctx.bb.call_te(compute, primfunc_name_hint=name)


@lowers("random_uniform")
def _random_uniform(ctx: LowerContext, args: list) -> relax.Expr:
    a = ctx.attrs
    dtype = a["dtype"]
    key = seed_key(a["seed"])
    low, high = tvm.tirx.const(a["low"], dtype), tvm.tirx.const(a["high"], dtype)
    return _kernel(
        ctx, lambda i: low + (high - low) * _unit_uniform(i, key, dtype), "random_uniform"
    )


@lowers("random_normal")
def _random_normal(ctx: LowerContext, args: list) -> relax.Expr:
    a = ctx.attrs
    work = box_muller_dtype(a["dtype"])
    key = seed_key(a["seed"])

    def sample(i: tvm.tirx.PrimExpr) -> tvm.tirx.PrimExpr:
        u1 = _unit_uniform(i, key, work)
        u2 = _unit_uniform(i, key ^ NORMAL_STREAM, work)
        radius = te.sqrt(tvm.tirx.const(-2.0, work) * te.log(tvm.tirx.const(1.0, work) - u1))
        z = radius * te.cos(tvm.tirx.const(2 * math.pi, work) * u2)
        return tvm.tirx.const(a["mean"], work) + tvm.tirx.const(a["scale"], work) * z

    return _kernel(ctx, sample, "random_normal")
