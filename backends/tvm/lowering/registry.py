"""Lowering rules: one function per core op, turning a node into Relax expressions."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tvm import relax

from compiler.ir.graph import Node
from compiler.ir.types import TensorType


@dataclass
class LowerContext:
    """What a rule may use beyond its operands: the builder, the node, its output types."""

    bb: relax.BlockBuilder
    node: Node
    shape_of: Callable[[Sequence[int | str]], list[Any]]
    """IR shape -> Relax shape entries (ints and the tir.Var of each named dim)."""
    checks: bool = True
    """Whether rules guard operands known only at run time (``checks.py``)."""

    @property
    def attrs(self) -> dict[str, Any]:
        return self.node.attrs

    @property
    def out_types(self) -> list[TensorType]:
        return [v.type for v in self.node.outputs]

    def out_shape(self, i: int = 0) -> list[Any]:
        return self.shape_of(self.node.outputs[i].type.shape)

    def emit(self, expr: relax.Expr) -> relax.Expr:
        """Bind an intermediate result (rules that build several Relax calls use this)."""
        return self.bb.emit(expr)


Rule = Callable[[LowerContext, list[Any]], Any]
"""(context, operands with None for absent optional inputs) -> one Relax expr, or a list of
them for a multi-output op."""

RULES: dict[str, Rule] = {}


def lowers(*ops: str) -> Callable[[Rule], Rule]:
    """Register ``fn`` as the lowering rule of each named core op."""

    def register(fn: Rule) -> Rule:
        for op in ops:
            if op in RULES:
                raise ValueError(f"lowering rule for {op!r} defined twice")
            RULES[op] = fn
        return fn

    return register
