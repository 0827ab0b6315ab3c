"""Lowering of sequences and optionals: Relax tuples (an optional holds zero or one item)."""

from __future__ import annotations

from tvm import relax

from compiler.ir.types import OptionalType

from .registry import LowerContext, lowers


@lowers("sequence")
def _sequence(ctx: LowerContext, args: list) -> relax.Expr:
    return relax.Tuple(list(args))


@lowers("sequence_at")
def _sequence_at(ctx: LowerContext, args: list) -> relax.Expr:
    return relax.TupleGetItem(args[0], ctx.attrs["position"])


@lowers("optional")
def _optional(ctx: LowerContext, args: list) -> relax.Expr:
    return relax.Tuple([] if args[0] is None else [args[0]])


@lowers("optional_get")
def _optional_get(ctx: LowerContext, args: list) -> relax.Expr:
    if isinstance(ctx.node.inputs[0].type, OptionalType):
        return relax.TupleGetItem(args[0], 0)
    return args[0]
