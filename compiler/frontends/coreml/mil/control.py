"""MIL control flow and lists through IR regions: cond, while_loop, make_list/list_*, and
classify.

A block's ops convert into a region through a ``CapturingBuilder``: the outer values they read
become captures. ``cond`` with a known predicate converts only the chosen block, in place.
``while_loop`` becomes a core ``loop`` without a trip count: the cond block is converted once
before the loop (the first test) and once more at the end of the body (the next test).

A list of fixed length (``make_list(dynamic_length=False)`` with a static element shape) is a
tensor ``[length, *elem_shape]``: writes are ``scatter_nd``, reads ``gather``, so loops
carry it like any tensor. A list that may grow has no static type in nnxc and is refused.

``classify`` (classifier programs) hands the probabilities on as the dictionary output, flat
in class order, and its classes become the graph's labels; the label output is left to the
runtime (``nnxc run`` prints the top classes).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from compiler.ir.builder import CapturingBuilder
from compiler.ir.graph import Region, Value
from compiler.ir.ops.control import BOOL, INDEX
from compiler.ir.types import Type

from .registry import MilContext, mil_op


def _into_region(
    ctx: MilContext, block: Any, args: list[Value], lead: list[Type], names: list[str]
) -> tuple[Region, CapturingBuilder, list[Value]]:
    """A region whose arguments are values of types ``lead`` then ``args`` (bound to
    ``block.inputs``), the block's ops converted into it; returns the region, its builder and
    the block's outputs as the region sees them (outputs not yet set)."""
    graph = ctx.builder.graph
    region = graph.region([*lead, *(v.type for v in args)], names)
    b = CapturingBuilder(graph, region)
    inner = region.inputs[len(lead) :]
    env = dict(ctx._env)
    for var, value in zip(block.inputs, inner):
        env[var.name] = value
    ctx.importer.convert_ops(block.operations, env, b)
    outs = [b.read(ctx.importer.lookup(v, env)) for v in block.outputs]
    return region, b, outs


def _inline(ctx: MilContext, block: Any, args: list[Value]) -> list[Value]:
    """The block's ops converted in place, its inputs bound to ``args``; its outputs."""
    env = ctx._env
    for var, value in zip(block.inputs, args):
        env[var.name] = value
    ctx.importer.convert_ops(block.operations, env, ctx.builder)
    return [ctx.importer.lookup(v, env) for v in block.outputs]


@mil_op("cond")
def cond(ctx: MilContext) -> list[Value]:
    pred = ctx.x("pred")
    then_block, else_block = ctx.mil.blocks
    if pred.const is not None:
        return _inline(ctx, then_block if bool(pred.const.reshape(-1)[0]) else else_block, [])
    then, then_b, then_outs = _into_region(ctx, then_block, [], [], [])
    other, else_b, else_outs = _into_region(ctx, else_block, [], [], [])
    then.outputs, other.outputs = then_outs, else_outs
    # One capture list for both regions: each takes every capture as an argument.
    captures = list({id(v): v for v in then_b.captures + else_b.captures}.values())
    for region, caps in ((then, then_b.captures), (other, else_b.captures)):
        own = dict(zip(map(id, caps), region.inputs))
        region.inputs = [_argument(ctx, own.get(id(v)), v) for v in captures]
    return ctx.builder.op("if", [pred, *captures], {}, node_name=ctx.name, regions=[then, other])


def _argument(ctx: MilContext, arg: Value | None, capture: Value) -> Value:
    """A region's argument for ``capture``: its own, or an unused one of the same type."""
    if arg is not None:
        return arg
    return ctx.builder.graph.region([capture.type], ["unused"]).inputs[0]


@mil_op("while_loop")
def while_loop(ctx: MilContext) -> list[Value]:
    state = ctx.xs("loop_vars")
    cond_block, body_block = ctx.mil.blocks
    (go,) = _inline(ctx, cond_block, state)
    if go.const is not None and not bool(go.const.reshape(-1)[0]):
        return state  # the loop runs no iteration
    region, b, new = _into_region(ctx, body_block, state, [INDEX, BOOL], ["i", "go"])
    env = dict(ctx._env)
    for var, value in zip(cond_block.inputs, new):
        env[var.name] = value
    ctx.importer.convert_ops(cond_block.operations, env, b)
    (again,) = [b.read(ctx.importer.lookup(v, env)) for v in cond_block.outputs]
    region.outputs = [again, *new]
    return ctx.builder.op(
        "loop",
        [None, go, *state, *b.captures],
        {"num_carried": len(state)},
        node_name=ctx.name,
        regions=[region],
    )


# -- lists ---------------------------------------------------------------------------------


@mil_op("make_list")
def make_list(ctx: MilContext) -> Value:
    if ctx.attr("dynamic_length", True):
        raise ctx.error(
            "a list that may grow (dynamic_length=True) has no static element count; nnxc "
            "takes lists of fixed length only"
        )
    dims = ctx.mil.inputs.get("elem_shape")
    if isinstance(dims, tuple | list):  # a tuple of scalar variables
        shape = [None if d.val is None else d.val for d in dims]
    else:
        shape = None if dims is None or dims.val is None else list(np.asarray(dims.val).reshape(-1))
    if shape is not None:
        shape = [int(d) if isinstance(d, int | np.integer) else d for d in shape]
    if shape is None or not all(isinstance(d, int) for d in shape):
        raise ctx.error(f"the element shape {shape!r} must be static")
    length = int(ctx.attr("init_length", 1))
    dtype = {"fp16": "float16", "fp32": "float32", "int32": "int32", "bool": "bool"}.get(
        ctx.attr("dtype", "fp32")
    )
    if dtype is None:
        raise ctx.error(f"element dtype {ctx.attr('dtype')!r} is not fp16, fp32, int32 or bool")
    return ctx.const(np.zeros((length, *shape), dtype))


def _list(ctx: MilContext) -> Value:
    """The ``ls`` input: a fixed-length list, as its stacked tensor."""
    return ctx.x("ls")


@mil_op("list_length")
def list_length(ctx: MilContext) -> Value:
    return ctx.const(np.array(_list(ctx).shape[0], np.int32))


@mil_op("list_read")
def list_read(ctx: MilContext) -> Value:
    return ctx.emit("gather", _list(ctx), ctx.x("index"), axis=0)


@mil_op("list_gather")
def list_gather(ctx: MilContext) -> Value:
    return ctx.emit("gather", _list(ctx), ctx.x("indices"), axis=0)


@mil_op("list_write")
def list_write(ctx: MilContext) -> Value:
    ls = _list(ctx)
    value = ctx.x("value")
    row = ctx.emit("reshape", value, shape=[1, *value.shape])
    index = ctx.emit("reshape", ctx.x("index"), shape=[1, 1])
    return ctx.emit("scatter_nd", ls, index, row)


@mil_op("list_scatter")
def list_scatter(ctx: MilContext) -> Value:
    ls = _list(ctx)
    indices = ctx.x("indices")
    index = ctx.emit("reshape", indices, shape=[*indices.shape, 1])
    return ctx.emit("scatter_nd", ls, index, ctx.x("value"))


# -- classifiers ---------------------------------------------------------------------------


@mil_op("classify")
def classify(ctx: MilContext) -> list[Value | None]:
    probs = ctx.x("probabilities")
    classes = ctx.mil.inputs["classes"].val
    labels = [c.decode() if isinstance(c, bytes) else c for c in list(classes)]
    labels = [int(c) if isinstance(c, np.integer) else c for c in labels]
    if not all(isinstance(d, int) for d in probs.shape):
        raise ctx.error(f"the probabilities' shape {list(probs.shape)} must be static")
    size = int(np.prod(probs.shape))
    if size != len(labels):
        raise ctx.error(f"{len(labels)} classes for {size} probabilities")
    ctx.importer.labels = labels
    ctx.importer.labels_for.add(ctx.mil.outputs[0].name)
    return [None, ctx.emit("reshape", probs, shape=[size])]
