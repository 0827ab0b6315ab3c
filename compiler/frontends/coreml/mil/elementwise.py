"""Element-wise MIL ops: arithmetic and comparison (numpy broadcasting, as MIL defines it),
unary math, activations, ``cast``."""

from __future__ import annotations

from compiler.ir.graph import Value

from .registry import MilContext, mil_op

_BINARY = {
    "add": "add",
    "sub": "sub",
    "mul": "mul",
    "real_div": "div",
    "pow": "pow",
    "maximum": "maximum",
    "minimum": "minimum",
    "equal": "equal",
    "not_equal": None,
    "less": "less",
    "less_equal": "less_equal",
    "greater": "greater",
    "greater_equal": "greater_equal",
    "logical_and": "logical_and",
    "logical_or": "logical_or",
    "logical_xor": "logical_xor",
}
_UNARY = {
    "relu": "relu",
    "sigmoid": "sigmoid",
    "tanh": "tanh",
    "exp": "exp",
    "sqrt": "sqrt",
    "abs": "abs",
}


def _binary(core: str):
    def convert(ctx: MilContext) -> Value:
        return ctx.emit(core, ctx.x("x"), ctx.x("y"))

    return convert


def _unary(core: str):
    def convert(ctx: MilContext) -> Value:
        return ctx.emit(core, ctx.x("x"))

    return convert


for _name, _core in _BINARY.items():
    if _core is not None:
        mil_op(_name)(_binary(_core))
for _name, _core in _UNARY.items():
    mil_op(_name)(_unary(_core))


@mil_op("not_equal")
def not_equal(ctx: MilContext) -> Value:
    return ctx.emit("logical_not", ctx.emit("equal", ctx.x("x"), ctx.x("y")))


@mil_op("cast")
def cast(ctx: MilContext) -> Value:
    return ctx.emit("cast", ctx.x("x"), to=ctx.out_dtype())
