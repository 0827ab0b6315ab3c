"""Converters of ONNX sequence and optional ops onto ``sequence``/``sequence_at``/``optional``.

Sequences have a length known at compile time (``SequenceType``), so positions must be known
too and every rearrangement (insert, erase, split, map) becomes a new ``sequence`` of the
elements; a sequence whose length would depend on run-time data is refused by name.
"""

from __future__ import annotations

import numpy as np
import onnx

from compiler.ir.graph import Value
from compiler.ir.ops.sequence import position_in
from compiler.ir.types import OptionalType, SequenceType, TensorType

from .registry import NodeContext, converter, onnx_dtype


def elements(ctx: NodeContext, seq: Value | None) -> list[Value]:
    """The element values of a sequence: the construction's own operands when it is one."""
    if seq is None or not isinstance(seq.type, SequenceType):
        raise ctx.error(f"expects a sequence, got {None if seq is None else seq.type}")
    if seq.producer is not None and seq.producer.op == "sequence":
        return [v for v in seq.producer.inputs if v is not None]
    return [ctx.emit("sequence_at", seq, position=i) for i in range(len(seq.type))]


def _sequence(ctx: NodeContext, values: list[Value], dtype: str) -> Value:
    return ctx.emit("sequence", *values, dtype=dtype)


def _position(ctx: NodeContext, i: int, length: int, inserting: bool) -> int:
    if ctx.input(i) is None:
        return length if inserting else length - 1
    p = int(ctx.require_value(i, "position").reshape(-1)[0])
    try:
        return position_in(p, length, inserting=inserting)
    except ValueError as e:
        raise ctx.error(str(e)) from None


@converter("SequenceEmpty", since=11)
def sequence_empty(ctx: NodeContext):
    dtype = onnx_dtype(ctx.attr("dtype", onnx.TensorProto.FLOAT))
    return _sequence(ctx, [], dtype)


@converter("SequenceConstruct", since=11)
def sequence_construct(ctx: NodeContext):
    return ctx.emit("sequence", *ctx.inputs)


@converter("SequenceAt", since=11)
def sequence_at(ctx: NodeContext):
    items = elements(ctx, ctx.input(0))
    return items[_position(ctx, 1, len(items), inserting=False)]


@converter("SequenceInsert", since=11)
def sequence_insert(ctx: NodeContext):
    items = elements(ctx, ctx.input(0))
    items.insert(_position(ctx, 2, len(items), inserting=True), ctx.input(1))
    return _sequence(ctx, items, ctx.input(0).type.dtype)


@converter("SequenceErase", since=11)
def sequence_erase(ctx: NodeContext):
    items = elements(ctx, ctx.input(0))
    del items[_position(ctx, 1, len(items), inserting=False)]
    return _sequence(ctx, items, ctx.input(0).type.dtype)


@converter("SequenceLength", since=11)
def sequence_length(ctx: NodeContext):
    return ctx.const(np.array(len(elements(ctx, ctx.input(0))), np.int64))


@converter("SplitToSequence", since=11)
def split_to_sequence(ctx: NodeContext):
    x = ctx.input(0)
    rank = x.type.rank
    axis = ctx.attr("axis", 0)
    if not -rank <= axis < rank:
        raise ctx.error(f"axis {axis} is out of range for rank {rank}")
    axis %= rank
    dim = x.type.shape[axis]
    if not isinstance(dim, int):
        raise ctx.error(f"the split axis has symbolic size {dim!r}: the sequence length is unknown")
    if ctx.input(1) is None:
        parts = ctx.op("split", [x], axis=axis, sizes=[1] * dim) if dim else []
        if ctx.attr("keepdims", 1) == 0:
            shape = [d for i, d in enumerate(x.type.shape) if i != axis]
            parts = [ctx.emit("reshape", p, shape=shape) for p in parts]
        return _sequence(ctx, parts, x.type.dtype)
    split = ctx.require_value(1, "split").astype(np.int64)
    if split.ndim == 0:
        size = int(split)
        if size <= 0:
            raise ctx.error(f"split size {size} must be positive")
        sizes = [size] * (dim // size) + ([dim % size] if dim % size else [])
    else:
        sizes = [int(s) for s in split]
        if sum(sizes) != dim or any(s < 0 for s in sizes):
            raise ctx.error(f"split sizes {sizes} do not add up to the axis size {dim}")
    parts = ctx.op("split", [x], axis=axis, sizes=sizes) if sizes else []
    return _sequence(ctx, parts, x.type.dtype)


@converter("ConcatFromSequence", since=11)
def concat_from_sequence(ctx: NodeContext):
    items = elements(ctx, ctx.input(0))
    if not items:
        raise ctx.error("cannot concatenate an empty sequence")
    rank = items[0].type.rank
    new_axis = ctx.attr("new_axis", 0)
    axis = ctx.attr("axis")
    limit = rank + 1 if new_axis else rank
    if axis is None or not -limit <= axis < limit:
        raise ctx.error(f"axis {axis} is out of range for rank {rank} (new_axis={new_axis})")
    axis %= limit
    if new_axis:
        items = [
            ctx.emit("reshape", v, shape=[*v.type.shape[:axis], 1, *v.type.shape[axis:]])
            for v in items
        ]
    return items[0] if len(items) == 1 else ctx.emit("concat", *items, axis=axis)


@converter("SequenceMap", since=17)
def sequence_map(ctx: NodeContext):
    """The body applied to each position, converted once per element."""
    body = ctx.attr("body")
    first = elements(ctx, ctx.input(0))
    per_input = []
    for i, v in enumerate(ctx.inputs):
        if isinstance(v.type, SequenceType):
            items = first if i == 0 else elements(ctx, v)
            if len(items) != len(first):
                raise ctx.error(f"input {i} has {len(items)} elements, input 0 {len(first)}")
            per_input.append(items)
        else:
            per_input.append([v] * len(first))
    assert ctx.subgraphs is not None
    results = [ctx.subgraphs.inline(body, [xs[n] for xs in per_input]) for n in range(len(first))]
    outs = []
    for j, out in enumerate(body.output):
        dtype = onnx_dtype(out.type.tensor_type.elem_type)
        outs.append(_sequence(ctx, [r[j] for r in results], dtype))
    return outs


# -- optionals -----------------------------------------------------------------------------
@converter("Optional", since=15)
def optional(ctx: NodeContext):
    if ctx.input(0) is not None:
        return ctx.emit("optional", ctx.input(0))
    t = ctx.attr("type")
    if t is None:
        raise ctx.error("an empty Optional needs the 'type' attribute")
    kind = t.WhichOneof("value")
    if kind == "sequence_type":
        dtype = onnx_dtype(t.sequence_type.elem_type.tensor_type.elem_type)
        return ctx.emit("optional", None, dtype=dtype, sequence=True)
    if kind != "tensor_type":
        raise ctx.error(f"an empty optional of {kind} is not supported")
    dims = [d.dim_value if d.HasField("dim_value") else 0 for d in t.tensor_type.shape.dim]
    return ctx.emit("optional", None, dtype=onnx_dtype(t.tensor_type.elem_type), shape=dims)


@converter("OptionalHasElement", since=15)
def optional_has_element(ctx: NodeContext):
    v = ctx.input(0)
    present = v is not None and (not isinstance(v.type, OptionalType) or v.type.present)
    return ctx.const(np.array(present))


@converter("OptionalGetElement", since=15)
def optional_get_element(ctx: NodeContext):
    v = ctx.input(0)
    if isinstance(v.type, TensorType | SequenceType):
        return v
    if v.producer is not None and v.producer.op == "optional" and v.producer.inputs[0]:
        return v.producer.inputs[0]
    return ctx.emit("optional_get", v)
