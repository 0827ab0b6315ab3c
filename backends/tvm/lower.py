"""IR graph -> Relax IRModule with one function ``main`` returning a tuple of the outputs."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import numpy as np
import tvm
from tvm import relax, tirx

from compiler.errors import NnxcError
from compiler.ir.graph import Graph, Node, Value
from compiler.ir.types import Dim, DType

from .lowering import RULES, LowerContext
from .lowering.dtypes import compute_dtype, convert, storage_const, widened


class LoweringError(NnxcError):
    """The graph holds ops the TVM backend has no rule for, or a rule failed on a node."""


_IDENT = re.compile(r"[^A-Za-z0-9_]")


def sanitize(name: str, taken: set[str]) -> str:
    """A C identifier close to ``name`` (``gpu_0/data_0`` -> ``gpu_0_data_0``), not in taken."""
    base = _IDENT.sub("_", name) or "v"
    if not (base[0].isalpha() or base[0] == "_"):
        base = "v_" + base
    ident, n = base, 0
    while ident in taken:
        n += 1
        ident = f"{base}_{n}"
    taken.add(ident)
    return ident


def check_supported(graph: Graph) -> None:
    """Raise one error naming every op without a lowering rule, with counts and nodes."""
    missing = Counter(n.op for n in graph.nodes if n.op not in RULES)
    if missing:
        parts = []
        for op, count in missing.most_common():
            names = [n.name or n.outputs[0].name for n in graph.nodes if n.op == op][:3]
            parts.append(f"{op} x{count} (e.g. {', '.join(names)})")
        raise LoweringError("the TVM backend cannot lower these ops: " + "; ".join(parts))


def lower_graph(graph: Graph) -> tvm.IRModule:
    check_supported(graph)
    taken: set[str] = set()
    dim_vars: dict[str, tirx.Var] = {}

    def shape_of(shape: tuple[Dim, ...] | list[Dim]) -> list[Any]:
        out: list[Any] = []
        for d in shape:
            if isinstance(d, str):
                if d not in dim_vars:
                    dim_vars[d] = tirx.Var(sanitize(d, taken), "int64")
                out.append(dim_vars[d])
            else:
                out.append(int(d))
        return out

    bb = relax.BlockBuilder()
    params = [
        relax.Var(sanitize(v.name, taken), relax.TensorType(shape_of(v.shape), v.dtype.storage))
        for v in graph.inputs
    ]
    env: dict[int, relax.Expr] = {id(v): p for v, p in zip(graph.inputs, params)}
    consts: dict[int, relax.Expr] = {}

    def read(v: Value | None) -> relax.Expr | None:
        if v is None:
            return None
        if v.const is not None:
            if id(v) not in consts:
                consts[id(v)] = storage_const(v.const, v.type.dtype)
            return consts[id(v)]
        return env[id(v)]

    with bb.function("main", params):
        with bb.dataflow():
            for node in graph.nodes:
                try:
                    if node.op != "cast" and _emulated(node):
                        result = _lower_widened(bb, node, shape_of, read)
                    else:
                        ctx = LowerContext(bb, node, shape_of)
                        result = RULES[node.op](ctx, [read(v) for v in node.inputs])
                except Exception as e:  # noqa: BLE001 - re-raised with the node named
                    raise LoweringError(
                        f"lowering {node.op} node {node.name or node.outputs[0].name!r}: {e}"
                    ) from e
                results = result if isinstance(result, list | tuple) else [result]
                if len(results) != len(node.outputs):
                    raise LoweringError(f"rule for {node.op} gave {len(results)} results")
                for out, expr in zip(node.outputs, results):
                    env[id(out)] = bb.emit(expr, name_hint=sanitize(out.name, taken))
            outs = [read(v) for v in graph.outputs]
            result = bb.emit_output(relax.Tuple(outs))
        bb.emit_func_output(result)
    return bb.get()


def _emulated(node: Node) -> bool:
    """The node reads or makes a dtype TVM cannot compute with (see ``widened``)."""
    values = [v for v in node.inputs if v is not None] + node.outputs
    return any(widened(v.type.dtype) for v in values)


def _lower_widened(
    bb: relax.BlockBuilder,
    node: Node,
    shape_of: Any,
    read: Any,
) -> list[relax.Expr]:
    """Lower ``node`` as if its emulated dtypes were float32 (int32 for ints): operands are
    decoded, the op's own rule runs on a copy of the node retyped that way, and each result
    is encoded back (rounding to nearest even, saturating)."""

    def widen(v: Value) -> Value:
        d = v.type.dtype
        if not widened(d):
            return v
        wide = compute_dtype(d)
        const = None if v.const is None else v.const.astype(wide)
        return Value(v.name, v.type.with_dtype(wide), const=const)

    inputs = [None if v is None else widen(v) for v in node.inputs]
    outputs = [widen(v) for v in node.outputs]
    attrs = {
        k: compute_dtype(a) if isinstance(a, DType) and widened(a) else a
        for k, a in node.attrs.items()
    }
    shadow = Node(node.op, inputs, outputs, attrs, node.name)
    args = []
    for v, w in zip(node.inputs, inputs):
        if v is None or w is None:
            args.append(None)
        elif w is v or w.const is not None:
            args.append(read(v) if w is v else relax.const(np.require(w.const, requirements="C")))
        else:
            args.append(bb.emit(convert(bb, read(v), v.dtype, w.dtype)))
    result = RULES[node.op](LowerContext(bb, shadow, shape_of), args)
    results = list(result) if isinstance(result, list | tuple) else [result]
    if len(results) != len(node.outputs):
        raise LoweringError(f"rule for {node.op} gave {len(results)} results")
    return [
        r if not widened(o.type.dtype) else convert(bb, bb.emit(r), w.dtype, o.dtype)
        for r, o, w in zip(results, node.outputs, outputs)
    ]
