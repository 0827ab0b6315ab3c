"""ONNX model -> nnxc IR graph."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx

from compiler.errors import ConversionError, ModelLoadError, UnsupportedOpsError
from compiler.ir.builder import Builder
from compiler.ir.graph import Graph, Value
from compiler.ir.types import Dim, TensorType

from . import (  # noqa: F401  (registers the converters)
    attention,
    composite,
    elementwise,
    indexing,
    nn,
    quantize,
    recurrent,
    reduce,
    tensor,
)
from .loader import check_complete, load_model, tensor_to_array
from .registry import NodeContext, find_converter, onnx_dtype

InputShapes = Mapping[str, Sequence[int | str]]


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
    check_ops(g_onnx, opset)

    graph = Graph(re.sub(r"\W", "_", g_onnx.name) or "main")
    graph.metadata["source_format"] = "onnx"
    graph.metadata["opset"] = str(opset)
    builder = Builder(graph)
    env: dict[str, Value] = {}

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
        env[vi.name] = graph.add_input(vi.name, _input_type(vi, shapes.pop(vi.name, None)))
    if values:
        raise ModelLoadError(f"input_values names unknown input(s) {', '.join(values)}")
    if shapes:
        known = [v.name for v in graph.inputs]
        raise ModelLoadError(
            f"--input-shape names unknown input(s) {', '.join(shapes)}; "
            f"the model's inputs are {', '.join(known)}"
        )

    for node in g_onnx.node:
        _convert_node(node, env, builder, opset)

    outs = [env[o.name] for o in g_onnx.output]
    graph.set_outputs(outs, [o.name for o in g_onnx.output])
    return graph


def check_ops(g: onnx.GraphProto, opset: int) -> None:
    """One error listing every op type without a converter: count and first node names."""
    missing: Counter[str] = Counter()
    examples: dict[str, list[str]] = {}
    for node in g.node:
        if find_converter(node.domain, node.op_type, opset) is None:
            key = f"{node.domain + '.' if node.domain else ''}{node.op_type}"
            missing[key] += 1
            examples.setdefault(key, []).append(node.name or node.output[0])
    if missing:
        parts = [
            f"{op} x{n} (e.g. {', '.join(examples[op][:3])})" for op, n in missing.most_common()
        ]
        raise UnsupportedOpsError(
            f"{len(missing)} unsupported op type(s) at opset {opset}: " + "; ".join(parts)
        )


def _input_type(vi: onnx.ValueInfoProto, bound: Sequence[int | str] | None) -> TensorType:
    t = vi.type.tensor_type
    if not vi.type.HasField("tensor_type"):
        raise ConversionError(
            f"input {vi.name!r} is not a tensor; only tensor inputs are supported"
        )
    dtype = onnx_dtype(t.elem_type)
    dims: list[Dim] = []
    for i, d in enumerate(t.shape.dim):
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        else:
            param = re.sub(r"\W", "_", d.dim_param) if d.dim_param else f"{vi.name}_d{i}"
            dims.append(param if param.isidentifier() else f"d_{param}")
    if bound is not None:
        if t.HasField("shape") and len(bound) != len(dims):
            raise ModelLoadError(
                f"--input-shape for {vi.name!r} has rank {len(bound)}, the model says {len(dims)}"
            )
        for want, have in zip(bound, dims):
            if isinstance(have, int) and isinstance(want, int) and want != have:
                raise ModelLoadError(
                    f"--input-shape {vi.name}: dim {want} contradicts the model's {have}"
                )
        dims = list(bound)
    return TensorType(dtype, tuple(dims))


def _convert_node(
    node: onnx.NodeProto, env: dict[str, Value], builder: Builder, opset: int
) -> None:
    inputs = [env[name] if name else None for name in node.input]
    ctx = NodeContext(node, inputs, builder, opset)
    fn = find_converter(node.domain, node.op_type, opset)
    assert fn is not None  # check_ops ran first
    try:
        result = fn(ctx)
    except ConversionError:
        raise
    except Exception as e:  # noqa: BLE001 - shape/attr errors become node-named errors
        raise ctx.error(f"{type(e).__name__}: {e}") from e
    results = [result] if isinstance(result, Value) else list(result)
    for name, v in zip(node.output, results):
        if name and v is not None:
            env[name] = v
    missing = [n for n in node.output[len(results) :] if n]
    if missing:
        raise ctx.error(f"outputs {missing} are not produced by the converter")
