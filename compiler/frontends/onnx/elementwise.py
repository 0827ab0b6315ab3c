"""Converters of ONNX elementwise ops: math, activations, comparisons, logic, Cast, Where."""

from __future__ import annotations

from .registry import NodeContext, converter


@converter("Relu", since=6)
def relu(ctx: NodeContext):
    return ctx.emit("relu", ctx.input(0))


@converter("Add", since=7)
def add(ctx: NodeContext):
    return ctx.emit("add", ctx.input(0), ctx.input(1))
