"""IR graph -> Relax IRModule with one function ``main`` returning a tuple of the outputs."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import numpy as np
import tvm
from tvm import relax, tirx

from compiler.errors import NnxcError
from compiler.ir.graph import Graph, Value
from compiler.ir.types import Dim

from .lowering import RULES, LowerContext


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
        relax.Var(sanitize(v.name, taken), relax.TensorType(shape_of(v.shape), v.dtype))
        for v in graph.inputs
    ]
    env: dict[int, relax.Expr] = {id(v): p for v, p in zip(graph.inputs, params)}
    consts: dict[int, relax.Expr] = {}

    def read(v: Value | None) -> relax.Expr | None:
        if v is None:
            return None
        if v.const is not None:
            if id(v) not in consts:
                consts[id(v)] = relax.const(np.require(v.const, requirements="C"), v.dtype)
            return consts[id(v)]
        return env[id(v)]

    with bb.function("main", params):
        with bb.dataflow():
            for node in graph.nodes:
                ctx = LowerContext(bb, node, shape_of)
                try:
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
