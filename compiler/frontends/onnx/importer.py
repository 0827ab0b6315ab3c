"""ONNX model -> nnxc IR graph."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from compiler.errors import ConversionError, ModelLoadError
from compiler.ir.builder import Builder
from compiler.ir.graph import Graph, Region, Value
from compiler.ir.types import Dim, OptionalType, SequenceType, TensorType, Type
from compiler.limits import check_depth

from ..converters import report_unsupported, run_converter
from . import (  # noqa: F401  (registers the converters)
    attention,
    composite,
    control,
    elementwise,
    indexing,
    nn,
    quantize,
    random,
    recurrent,
    reduce,
    sequence,
    signal,
    tensor,
    vision,
)
from .loader import check_complete, check_total, load_model, tensor_to_array
from .registry import NodeContext, find_converter, onnx_dtype

InputShapes = Mapping[str, Any]
"""Input name -> a tensor's shape (sizes and dim names); for a sequence input, the list of its
elements' shapes; for an optional input, its element's (None: empty)."""
_UNBOUND = object()


MIN_OPSET = 7


def model_opset(model: onnx.ModelProto) -> int:
    """The default-domain opset to convert at, checked against what nnxc and onnx know.

    A model older than opset 7 is read as opset 7 when none of its ops changed meaning in
    between (``Not``-1 is ``Not``-7); otherwise it is refused.
    """
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            version = int(imp.version)
            newest = onnx.defs.onnx_opset_version()
            if version > newest:
                raise ModelLoadError(
                    f"the model uses ONNX opset {version}, newer than the installed onnx "
                    f"package knows ({newest}); upgrade onnx"
                )
            if version < MIN_OPSET:
                changed = sorted(_changed_since(model.graph, version))
                if changed:
                    raise ModelLoadError(
                        f"the model uses ONNX opset {version}; nnxc supports opsets {MIN_OPSET} "
                        f"to {newest}, and {', '.join(changed)} changed since (convert the model "
                        "with onnx.version_converter)"
                    )
                return MIN_OPSET
            return version
    raise ModelLoadError("the model imports no version of the default ONNX domain")


def _changed_since(g: onnx.GraphProto, version: int) -> set[str]:
    """Op types of ``g`` whose definition at MIN_OPSET is newer than ``version``."""
    changed = set()
    for node in g.node:
        if node.domain not in ("", "ai.onnx"):
            continue
        try:
            since = onnx.defs.get_schema(node.op_type, MIN_OPSET).since_version
        except onnx.defs.SchemaError:
            continue  # unknown op: reported with the other unsupported ops
        if since > version:
            changed.add(node.op_type)
    return changed


def import_onnx(
    model: onnx.ModelProto | str | Path,
    input_shapes: InputShapes | None = None,
    input_values: Mapping[str, np.ndarray] | None = None,
) -> Graph:
    """Convert an ONNX model (or the path of one) into a graph of core ops.

    ``input_shapes`` binds model inputs to concrete shapes (or renames dims); shape-computing
    subgraphs fold away while converting once shapes are known. ``input_values`` binds
    inputs to fixed data: they become constants (used to specialize on shape operands).
    """
    base: Path | None = None
    if not isinstance(model, onnx.ModelProto):
        base = Path(model).parent
        model = load_model(model)
    else:
        check_complete(model)
    opset = model_opset(model)
    g_onnx = model.graph
    check_depth(nesting_depth(g_onnx), f"graph {g_onnx.name or 'main'!r}")
    check_ops(g_onnx, opset)

    graph = Graph(re.sub(r"\W", "_", g_onnx.name) or "main")
    graph.metadata["source_format"] = "onnx"
    graph.metadata["opset"] = str(opset)
    builder = Builder(graph)
    env: dict[str, Value] = {}

    check_total(g_onnx.initializer)
    for init in g_onnx.initializer:
        env[init.name] = graph.constant(tensor_to_array(init, base), init.name)
    shapes = dict(input_shapes or {})
    values = dict(input_values or {})
    for vi in g_onnx.input:
        if vi.name in env:
            continue  # an initializer with a default; it stays a constant
        if vi.name in values:
            data = np.asarray(values.pop(vi.name), dtype=onnx_dtype(vi.type.tensor_type.elem_type))
            env[vi.name] = graph.constant(data, vi.name)
            continue
        spec = shapes.pop(vi.name, _UNBOUND)
        env[vi.name] = graph.add_input(vi.name, _value_type(vi.name, vi.type, spec))
    if values:
        raise ModelLoadError(f"input_values names unknown input(s) {', '.join(values)}")
    if shapes:
        known = [v.name for v in graph.inputs]
        raise ModelLoadError(
            f"--input-shape names unknown input(s) {', '.join(shapes)}; "
            f"the model's inputs are {', '.join(known)}"
        )

    _Scope(env, builder, opset, base).convert(g_onnx.node)

    outs = [env[o.name] for o in g_onnx.output]
    graph.set_outputs(outs, [o.name for o in g_onnx.output])
    return graph


def _all_nodes(g: onnx.GraphProto) -> list[onnx.NodeProto]:
    """The nodes of ``g`` and of every subgraph in its nodes' attributes (iteratively)."""
    out: list[onnx.NodeProto] = []
    pending = [g]
    while pending:
        graph = pending.pop()
        for node in graph.node:
            out.append(node)
            for a in node.attribute:
                pending.extend([a.g] if a.HasField("g") else [])
                pending.extend(a.graphs)
    return out


def nesting_depth(g: onnx.GraphProto) -> int:
    """How many levels of subgraphs ``g`` nests (0: none), counted without recursion."""
    deepest = 0
    pending = [(g, 0)]
    while pending:
        graph, depth = pending.pop()
        deepest = max(deepest, depth)
        for node in graph.node:
            for a in node.attribute:
                subs = ([a.g] if a.HasField("g") else []) + list(a.graphs)
                pending.extend((sub, depth + 1) for sub in subs)
    return deepest


def check_ops(g: onnx.GraphProto, opset: int) -> None:
    """One error listing every op type without a converter (subgraphs included): count and
    first node names."""
    missing = [
        (f"{node.domain}.{node.op_type}".lstrip("."), node.name or node.output[0])
        for node in _all_nodes(g)
        if find_converter(node.domain, node.op_type, opset) is None
    ]
    report_unsupported(missing, f"at opset {opset}")


def _value_type(name: str, t: onnx.TypeProto, spec: Any) -> Type:
    """The IR type of a graph input of ONNX type ``t`` bound by ``spec`` (``InputShapes``)."""
    kind = t.WhichOneof("value")
    if kind == "tensor_type":
        return _input_type(name, t.tensor_type, None if spec is _UNBOUND else spec)
    if kind == "sequence_type":
        inner = t.sequence_type.elem_type
        if inner.WhichOneof("value") != "tensor_type":
            raise ConversionError(f"input {name!r}: only sequences of tensors are supported")
        if spec is _UNBOUND or spec is None:
            raise ModelLoadError(
                f"input {name!r} is a sequence: nnxc needs its length and element shapes at "
                "compile time (input_shapes: a list of shapes)"
            )
        elements = [_input_type(name, inner.tensor_type, s) for s in spec]
        return SequenceType(onnx_dtype(inner.tensor_type.elem_type), tuple(elements))
    if kind == "optional_type":
        if spec is _UNBOUND:
            raise ModelLoadError(
                f"input {name!r} is an optional: nnxc needs to know at compile time whether it "
                "holds a value (input_shapes: its shape, or None when empty)"
            )
        inner = t.optional_type.elem_type
        if spec is None:
            empty = _value_type(name, inner, [] if inner.HasField("sequence_type") else _UNBOUND)
            return OptionalType(empty, False)
        return OptionalType(_value_type(name, inner, spec), True)  # type: ignore[arg-type]
    raise ConversionError(f"input {name!r} has type {kind}, which nnxc does not support")


def _check_required_inputs(ctx: NodeContext, node: onnx.NodeProto, opset: int) -> None:
    """Every input the op's schema requires is given (converters read them unchecked)."""
    try:
        schema = onnx.defs.get_schema(node.op_type, opset, node.domain)
    except onnx.defs.SchemaError:
        return  # an op of a domain onnx does not describe: its converter checks
    single = onnx.defs.OpSchema.FormalParameterOption.Single
    for i, formal in enumerate(schema.inputs):
        if formal.option == single and (i >= len(node.input) or not node.input[i]):
            raise ctx.error(f"required input {i} ({formal.name}) is missing")


def _input_type(
    name: str, t: onnx.TypeProto.Tensor, bound: Sequence[int | str] | None
) -> TensorType:
    dtype = onnx_dtype(t.elem_type)
    dims: list[Dim] = []
    for i, d in enumerate(t.shape.dim):
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        else:
            param = re.sub(r"\W", "_", d.dim_param) if d.dim_param else f"{name}_d{i}"
            dims.append(param if param.isidentifier() else f"d_{param}")
    if bound is not None:
        if t.HasField("shape") and len(bound) != len(dims):
            raise ModelLoadError(
                f"--input-shape for {name!r} has rank {len(bound)}, the model says {len(dims)}"
            )
        for want, have in zip(bound, dims):
            if isinstance(have, int) and isinstance(want, int) and want != have:
                raise ModelLoadError(
                    f"--input-shape {name}: dim {want} contradicts the model's {have}"
                )
        dims = list(bound)
    negative = [d for d in dims if isinstance(d, int) and d < 0]
    if negative:
        raise ModelLoadError(f"input {name!r}: negative size {negative[0]} in its shape {dims}")
    return TensorType(dtype, tuple(dims))


def free_names(g: onnx.GraphProto) -> list[str]:
    """Names ``g`` (or a subgraph nested in it) reads without defining them, in order of
    first use: the outer-scope values ONNX lets a subgraph read implicitly."""
    defined = {v.name for v in g.input} | {t.name for t in g.initializer}
    defined |= {t.values.name for t in g.sparse_initializer}
    order: dict[str, None] = {}
    for node in g.node:
        for name in node.input:
            if name and name not in defined:
                order.setdefault(name)
        for a in node.attribute:
            for sub in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                for name in free_names(sub):
                    if name not in defined:
                        order.setdefault(name)
        defined.update(node.output)
    for o in g.output:
        if o.name not in defined:
            order.setdefault(o.name)
    return list(order)


class _Scope:
    """The names visible while converting one (sub)graph, and where its nodes go.

    Implements ``SubgraphConverter`` for the control-flow converters: a subgraph either
    converts into the current block (a branch known at compile time, an unrolled loop) or
    into a region, whose outer reads become explicit captures.
    """

    def __init__(
        self, env: dict[str, Value], builder: Builder, opset: int, base: Path | None
    ) -> None:
        self.env = env
        self.builder = builder
        self.opset = opset
        self.base = base

    def convert(self, nodes: Sequence[onnx.NodeProto]) -> None:
        for node in nodes:
            self._node(node)

    def _node(self, node: onnx.NodeProto) -> None:
        inputs = [self.env[name] if name else None for name in node.input]
        ctx = NodeContext(node, inputs, self.builder, self.opset, self)
        _check_required_inputs(ctx, node, self.opset)
        fn = find_converter(node.domain, node.op_type, self.opset)
        assert fn is not None  # check_ops ran first
        results = run_converter(ctx, fn)
        for name, v in zip(node.output, results):
            if name and v is not None:
                self.env[name] = v
        missing = [n for n in node.output[len(results) :] if n]
        if missing:
            raise ctx.error(f"outputs {missing} are not produced by the converter")

    def _child(self, g: onnx.GraphProto, env: dict[str, Value], builder: Builder, args) -> list:
        if len(args) != len(g.input):
            raise ConversionError(
                f"subgraph {g.name!r} takes {len(g.input)} inputs, the node gives {len(args)}"
            )
        env.update((vi.name, v) for vi, v in zip(g.input, args))
        for init in g.initializer:
            env[init.name] = builder.graph.constant(tensor_to_array(init, self.base), init.name)
        _Scope(env, builder, self.opset, self.base).convert(g.node)
        undefined = [o.name for o in g.output if o.name not in env]
        if undefined:
            raise ConversionError(f"subgraph {g.name!r} never defines output(s) {undefined}")
        return [env[o.name] for o in g.output]

    def inline(self, graph: onnx.GraphProto, bindings: Sequence[Value]) -> list[Value]:
        return self._child(graph, dict(self.env), self.builder, list(bindings))

    def region(self, graph, leading: Sequence[Type], prologue=None) -> tuple[Region, list[Value]]:
        names = free_names(graph)
        undefined = [n for n in names if n not in self.env]
        if undefined:
            raise ConversionError(
                f"subgraph {graph.name!r} reads {', '.join(map(repr, undefined))}, which no "
                "enclosing graph defines"
            )
        captured = [n for n in names if self.env[n].const is None]
        values = [self.env[n] for n in captured]
        region = self.builder.graph.region(
            [*leading, *(v.type for v in values)], ["arg"] * len(leading) + captured
        )
        inner = self.builder.nested(region)
        env = {n: v for n, v in self.env.items() if v.const is not None}
        env.update(zip(captured, region.inputs[len(leading) :]))
        args = region.inputs[: len(leading)]
        region.outputs = self._child(graph, env, inner, prologue(inner, args) if prologue else args)
        return region, values
