"""Run-time checks in the generated code: indices in range, integer divisors non-zero.

TVM's kernels trust their operands: a gather reads ``data[i]`` for whatever ``i`` it is
given (TOPI's "fast" mode), and an integer division by zero traps (SIGFPE). Either kills the
process that runs the model. So where an operand is only known at run time, the rule passes
it through a small check kernel first: one serial loop over the index (or divisor) tensor
that asserts each element and writes it to a fresh tensor, shifting negative indices by the
size of their axis on the way (which the rules did with a ``where`` before). A failed
assertion returns an error from the kernel; the VM raises it as a Python exception whose
message starts with ``CHECK_MARK``, which ``compiler.runtime.Runtime.run`` turns into an
``InputError``. The process survives, and nothing of the failed run is kept.

The kernels read only the (small) index tensor, never the data it addresses, and are left
alone by fusion and scheduling (``op_pattern`` opaque, ``tirx.is_scheduled``). Indices that
are constants known to be in range need no kernel; float division needs none.

Only CPU builds get the kernels (they are host loops reading host memory); the driver turns
them off for CUDA targets (``lower_graph(..., runtime_checks=False)``).
"""

from __future__ import annotations

from typing import Any

from tvm import relax, tirx
from tvm.script.ir_builder import IRBuilder
from tvm.tirx.script.builder import ir as T

from compiler.runtime import CHECK_MARK

from .registry import LowerContext

_OPAQUE = 8  # relax's OpPatternKind.kOpaque: never fused with neighbours


def label(ctx: LowerContext) -> str:
    """``gather node 'gather_3'``: how a check's message names the model's node."""
    node = ctx.node
    name = node.name or (node.outputs[0].name if node.outputs else "")
    return f"{node.op} node {name!r}"


def _dim_text(d: Any) -> str:
    return str(d) if isinstance(d, int) else str(d.name)


def _kernel(
    shape: list[Any], dtype: str, n_sizes: int, condition: Any, message: str, kind: str
) -> tirx.PrimFunc:
    """A PrimFunc ``(x, size_0..size_{n-1}, out)``: for each element ``v`` of ``x`` (at
    position ``ivs``), assert ``condition(v, ivs, sizes)`` and store ``condition``'s second
    result in ``out``. ``condition`` returns (predicate, value to store)."""
    rank = len(shape)
    with IRBuilder() as ib:
        with T.prim_func(s_tir=True):
            dims = [tirx.Var(f"d{i}", "int64") for i in range(rank)]
            x = T.arg("x", T.buffer(dims, dtype))
            sizes = [T.arg(f"n{j}", tirx.Var(f"n{j}", "int64")) for j in range(n_sizes)]
            out = T.arg("out", T.buffer(dims, dtype))
            T.func_attr({"tirx.noalias": True, "tirx.is_scheduled": True, "op_pattern": _OPAQUE})
            with T.sblock("root"):
                if rank == 0:
                    ok, value = condition(tirx.BufferLoad(x, []), [], sizes)
                    with T.Assert(ok, [CHECK_MARK + message], kind):
                        pass
                    T.buffer_store(out, value, [])
                else:
                    with T.grid(*dims) as ivs:
                        ivs = [ivs] if isinstance(ivs, tirx.Var) else list(ivs)
                        ok, value = condition(tirx.BufferLoad(x, ivs), ivs, sizes)
                        with T.Assert(ok, [CHECK_MARK + message], kind):
                            pass
                        T.buffer_store(out, value, ivs)
    func = ib.get()
    # Private: the block builder names each kernel apart; a symbol would clash.
    return func.without_attr("global_symbol") if "global_symbol" in func.attrs else func


def _call(
    ctx: LowerContext,
    func: tirx.PrimFunc,
    x: relax.Expr,
    sizes: list[Any],
    shape: list[Any],
    dtype: str,
) -> relax.Expr:
    """``func`` applied to ``x`` and the axis sizes: a tensor like ``x``."""
    gv = ctx.bb.add_func(func, "runtime_check")
    prims = [relax.prim_value(tirx.IntImm("int64", s) if isinstance(s, int) else s) for s in sizes]
    return ctx.emit(relax.call_tir(gv, [x, *prims], relax.TensorType(shape, dtype)))


def checked_indices(
    ctx: LowerContext, index: int, x: relax.Expr, sizes: list[Any], scalar: bool, where: str
) -> relax.Expr:
    """The node's input ``index`` (the Relax expr ``x``) checked to lie in ``[-n, n)`` and
    shifted into ``[0, n)``. ``scalar``: every index addresses one axis of size
    ``sizes[0]``; else the last index dimension addresses ``len(sizes)`` axes (gather_nd).
    ``where`` names the axis (or axes) in the message."""
    value = ctx.node.inputs[index]
    dtype = str(value.type.dtype)
    shape = ctx.shape_of(value.type.shape)
    texts = [_dim_text(s) for s in sizes]
    if scalar:
        bounds = f"[-{texts[0]}, {texts[0]})"
    else:
        bounds = ", ".join(f"[-{t}, {t})" for t in texts)
    message = f"{label(ctx)}: an index is out of range {bounds} on {where}"

    def condition(v: Any, ivs: list[Any], ns: list[Any]) -> tuple[Any, Any]:
        if scalar:
            n = tirx.Cast(dtype, ns[0])
        else:  # the size of the axis this position of the last index dimension addresses
            n = tirx.Cast(dtype, ns[-1])
            for j in reversed(range(len(ns) - 1)):
                n = tirx.Select(ivs[-1] == j, tirx.Cast(dtype, ns[j]), n)
        ok = tirx.all(v >= -n, v < n)
        return ok, tirx.Select(v < tirx.const(0, dtype), v + n, v)

    func = _kernel(shape, dtype, len(sizes), condition, message, "IndexError")
    return _call(ctx, func, x, sizes, shape, dtype)


def checked_divisor(ctx: LowerContext, b: relax.Expr, minus_one_to_one: bool) -> relax.Expr:
    """The node's second input ``b`` (an integer divisor) checked to hold no zero; with
    ``minus_one_to_one``, -1 replaced by 1 (see ``elementwise._safe_divisor``)."""
    value = ctx.node.inputs[1]
    dtype = str(value.type.dtype)
    shape = ctx.shape_of(value.type.shape)
    message = f"{label(ctx)}: integer division by zero"

    def condition(v: Any, ivs: list[Any], ns: list[Any]) -> tuple[Any, Any]:
        value = v
        if minus_one_to_one:
            value = tirx.Select(v == tirx.const(-1, dtype), tirx.const(1, dtype), v)
        return v != tirx.const(0, dtype), value

    func = _kernel(shape, dtype, 0, condition, message, "ZeroDivisionError")
    return _call(ctx, func, b, [], shape, dtype)
