"""Lowering of elementwise ops."""

from __future__ import annotations

from tvm import relax

from .registry import LowerContext, lowers


@lowers("relu")
def _relu(ctx: LowerContext, args: list) -> relax.Expr:
    return relax.op.nn.relu(args[0])


@lowers("add")
def _add(ctx: LowerContext, args: list) -> relax.Expr:
    return relax.op.add(args[0], args[1])
