"""The verifier: every structural and typing invariant of a graph, checked in one walk.

Passes may leave a graph broken in ways that only show up much later (in TVM, or as a wrong
number); the pass manager runs ``verify`` after each pass in tests and with ``--verify-each``
so the pass that broke it is named. All problems are collected, each naming its node, and
reported together. Regions are checked as scopes of their own: a node in a region reads only
the region's arguments, earlier values of the same region and constants; its owner's op
decides the argument types and checks what the region yields (count and types).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .builder import infer_node_types
from .graph import Block, Graph, Node, Value, walk
from .ops.registry import OPS, OpDef
from .types import OptionalType, SequenceType, TensorType, Type


class VerifyError(ValueError):
    """The graph breaks invariants; ``problems`` lists each one."""

    def __init__(self, graph_name: str, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(f"graph {graph_name!r} fails verification, {count}:\n{lines}")


def same_attr(a: Any, b: Any) -> bool:
    """Equal and of the same kind (1 is not 1.0, a tuple is not a list); nan equals nan."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same_attr(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


def _label(index: int, node: Node) -> str:
    name = f' "{node.name}"' if node.name else ""
    outs = ", ".join(f"%{v.name}" for v in node.outputs)
    return f"node {index} ({node.op}{name}{' -> ' + outs if outs else ''})"


def _check_value(v: Value, where: str, problems: list[str]) -> None:
    if not isinstance(v.type, TensorType | SequenceType | OptionalType):
        problems.append(f"{where}: %{v.name} has type {v.type!r}, not an IR type")
        return
    if v.const is not None:
        if not isinstance(v.const, np.ndarray):
            problems.append(f"{where}: constant %{v.name} holds a {type(v.const).__name__}")
            return
        try:
            actual = TensorType.of(v.const)
        except (TypeError, ValueError) as e:
            problems.append(f"{where}: constant %{v.name}: {e}")
            return
        if actual != v.type:
            problems.append(f"{where}: constant %{v.name} is typed {v.type} but holds {actual}")


def _check_attrs(op: OpDef, node: Node, in_types: list[Type | None]) -> str | None:
    """Why the stored attributes are not the op's canonical, normalized form (or None)."""
    try:
        canonical = op.check_attrs(node.attrs)
    except ValueError as e:
        return f"attributes: {e}"
    for key in canonical:
        if key not in node.attrs:
            return f"attribute {key!r} is missing (default {canonical[key]!r} not filled in)"
        if not same_attr(node.attrs[key], canonical[key]):
            return f"attribute {key}={node.attrs[key]!r} is not canonical: {canonical[key]!r}"
    if op.normalize is None or _lacks_required(op, in_types):
        return None
    try:
        normalized = op.prepare(in_types, node.attrs)
    except Exception as e:  # noqa: BLE001  (the op's own normalization refuses them)
        return f"attributes do not normalize: {e}"
    for key, value in normalized.items():
        if not same_attr(node.attrs.get(key), value):
            return f"attribute {key}={node.attrs.get(key)!r} is not normalized: {value!r}"
    return None


def _check_node(index: int, node: Node, problems: list[str], prefix: str = "") -> None:
    where = prefix + _label(index, node)
    op = OPS.get(node.op)
    if op is None:
        problems.append(f"{where}: unknown op {node.op!r}")
        return
    try:
        op.check_arity(len(node.inputs))
    except ValueError as e:
        problems.append(f"{where}: {e}")
        return
    in_types: list[Type | None] = []
    for i, v in enumerate(node.inputs):
        if v is None and not op.input_is_optional(i):
            problems.append(f"{where}: input {i} ({_input_name(op, i)}) is required but absent")
        in_types.append(None if v is None else v.type)
    if any(
        t is not None and not isinstance(t, TensorType | SequenceType | OptionalType)
        for t in in_types
    ):
        return  # reported with the value
    reason = _check_attrs(op, node, in_types)
    if reason is not None:
        problems.append(f"{where}: {reason}")
        return
    if op.num_outputs is not None and len(node.outputs) != op.num_outputs:
        problems.append(
            f"{where}: has {len(node.outputs)} outputs, {op.name} makes {op.num_outputs}"
        )
        return
    if _lacks_required(op, in_types):
        return
    try:
        inferred = infer_node_types(op, in_types, node.attrs, node.regions)
    except Exception as e:  # noqa: BLE001  (the op's inference refuses the input types)
        problems.append(f"{where}: type inference fails: {type(e).__name__}: {e}")
        return
    if len(inferred) != len(node.outputs):
        problems.append(
            f"{where}: has {len(node.outputs)} outputs, inference gives {len(inferred)}"
        )
        return
    for v, t in zip(node.outputs, inferred):
        if v.type != t:
            problems.append(f"{where}: output %{v.name} is typed {v.type}, inference gives {t}")


def _lacks_required(op: OpDef, in_types: list[Type | None]) -> bool:
    return any(t is None and not op.input_is_optional(i) for i, t in enumerate(in_types))


def _input_name(op: OpDef, i: int) -> str:
    names = op.inputs
    if i < len(names):
        return names[i].rstrip("?*")
    return names[-1].rstrip("?*") if names else str(i)


def problems(graph: Graph) -> list[str]:
    """Every broken invariant of ``graph``, in graph order; empty when it is valid."""
    out: list[str] = []
    owner: dict[int, str] = {}  # id of value -> where it was defined
    by_name: dict[str, tuple[int, str]] = {}  # name -> (id of value, where)
    home: dict[int, int] = {}  # id of node -> id of the block holding it
    for block in [graph, *(r for n in walk(graph) for r in n.regions)]:
        for node in block.nodes:
            home.setdefault(id(node), id(block))

    def define(v: Value, where: str, scope: set[int]) -> None:
        if id(v) in owner:
            out.append(f"%{v.name} is defined twice: by {owner[id(v)]} and by {where}")
            return
        owner[id(v)] = where
        scope.add(id(v))
        first = by_name.get(v.name)
        if first is not None and first[0] != id(v):
            out.append(f"name %{v.name} is used by two values: {first[1]} and {where}")
        else:
            by_name[v.name] = (id(v), where)
        _check_value(v, where, out)

    def use(v: Value, where: str, scope: set[int], block: Block) -> None:
        if id(v) in scope:
            return
        if v.const is not None and v.producer is None:
            if id(v) not in owner:  # constants belong to no scope
                define(v, f"constant %{v.name}", set())
            return
        if id(v) in owner:
            producer = v.producer
            if producer is not None and home.get(id(producer)) == id(block):
                out.append(f"{where}: %{v.name} is used before the node that produces it")
            else:
                out.append(
                    f"{where}: reads %{v.name} from another block ({owner[id(v)]}); a region "
                    "reads outer values only through operands of its node"
                )
        elif v.producer is not None and id(v.producer) in home:
            out.append(f"{where}: %{v.name} is used before the node that produces it")
        elif v.producer is not None:
            out.append(f"{where}: %{v.name} comes from a node that is not in the graph")
        else:
            out.append(f"{where}: %{v.name} is neither a graph input, a constant nor a node output")

    seen_nodes: set[int] = set()

    def check_block(block: Block, scope: set[int], prefix: str) -> None:
        for index, node in enumerate(block.nodes):
            where = prefix + _label(index, node)
            if id(node) in seen_nodes:
                out.append(f"{where}: the node appears twice in the node list")
                continue
            seen_nodes.add(id(node))
            for v in node.inputs:
                if v is not None:
                    use(v, where, scope, block)
            op = OPS.get(node.op)
            names = op.regions if op is not None else ()
            for r, region in enumerate(node.regions):
                label = names[r] if r < len(names) else str(r)
                inner_prefix = f"{where}, region {label}: "
                inner: set[int] = set()
                for a, arg in enumerate(region.inputs):
                    if arg.producer is not None or arg.const is not None:
                        out.append(
                            f"{inner_prefix}argument %{arg.name} is a node output or constant"
                        )
                    define(arg, f"{inner_prefix}argument {a}", inner)
                check_block(region, inner, inner_prefix)
                for y, v in enumerate(region.outputs):
                    use(v, f"{inner_prefix}yield {y}", inner, region)
            for v in node.outputs:
                if v.producer is not node:
                    out.append(f"{where}: output %{v.name} names another producer")
                if v.const is not None:
                    out.append(f"{where}: output %{v.name} also holds constant data")
                define(v, where, scope)
            _check_node(index, node, out, prefix)

    top: set[int] = set()
    for i, v in enumerate(graph.inputs):
        where = f"graph input {i}"
        if v.producer is not None or v.const is not None:
            out.append(f"{where}: %{v.name} is a node output or a constant")
        define(v, where, top)
    check_block(graph, top, "")

    if len(graph.output_names) != len(graph.outputs):
        out.append(
            f"graph has {len(graph.outputs)} outputs but {len(graph.output_names)} output names"
        )
    names_seen: set[str] = set()
    for i, (v, name) in enumerate(zip(graph.outputs, graph.output_names)):
        where = f"graph output {i} ({name!r})"
        use(v, where, top, graph)
        if not name:
            out.append(f"{where}: empty output name")
        elif name in names_seen:
            out.append(f"{where}: output name {name!r} is used twice")
        names_seen.add(name)
    return out


def verify(graph: Graph) -> None:
    """Raise ``VerifyError`` listing every problem of ``graph``; return None when valid."""
    found = problems(graph)
    if found:
        raise VerifyError(graph.name, found)
