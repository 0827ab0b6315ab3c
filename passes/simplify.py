"""Algebraic simplification: local rewrites that remove work without changing results.

Each rule looks at one node (after its inputs were simplified) and either returns the value
that replaces the node's single output, or rewires the node in place (returning None), or
does nothing. Nodes rewired away from an inner node leave it for ``dce`` to drop when
nothing else reads it. A replacement always has exactly the replaced value's type.

Rules: ``identity``/``dropout`` removal; ``reshape`` of a ``reshape`` reads the inner input;
``transpose`` of a ``transpose`` composes the permutations; no-op ``reshape``, ``transpose``
(identity perm), ``cast`` (same dtype), ``broadcast_to``/``tile``/``pad``/``slice``/``concat``
whose result is their input; ``x * 1``, ``1 * x``, ``x / 1``, ``x + 0``, ``0 + x``, ``x - 0``
with constant ones/zeros that do not broadcast ``x`` to a larger shape.
"""

from __future__ import annotations

from collections.abc import Callable

from compiler.ir.graph import Block, Graph, Node, Value

from .manager import block_pass
from .rewrite import is_constant_all, rewire, substitute

Rule = Callable[[Node], "Value | None"]
RULES: dict[str, list[Rule]] = {}


def rule(*ops: str) -> Callable[[Rule], Rule]:
    def wrap(fn: Rule) -> Rule:
        for op in ops:
            RULES.setdefault(op, []).append(fn)
        return fn

    return wrap


def _same_as_input(node: Node, index: int = 0) -> Value | None:
    """The input at ``index`` when the node's single output has exactly its type."""
    x = node.inputs[index] if index < len(node.inputs) else None
    if x is not None and len(node.outputs) == 1 and x.type == node.outputs[0].type:
        return x
    return None


@rule("identity", "dropout")
def _pass_through(node: Node) -> Value | None:
    # dropout is inference-time identity; a variant with a mask output is left alone.
    return _same_as_input(node)


@rule("reshape")
def _reshape_chain(node: Node) -> Value | None:
    inner = node.inputs[0].producer if node.inputs[0] is not None else None
    if inner is not None and inner.op == "reshape":
        rewire(node, [inner.inputs[0]])
    return None


@rule("transpose")
def _transpose_chain(node: Node) -> Value | None:
    inner = node.inputs[0].producer if node.inputs[0] is not None else None
    if inner is not None and inner.op == "transpose":
        p1, p2 = inner.attrs["perm"], node.attrs["perm"]
        rewire(node, [inner.inputs[0]], {**node.attrs, "perm": [p1[i] for i in p2]})
    return None


@rule("transpose")
def _identity_perm(node: Node) -> Value | None:
    if list(node.attrs["perm"]) == list(range(len(node.attrs["perm"]))):
        return _same_as_input(node)
    return None


@rule("reshape", "cast", "broadcast_to", "tile")
def _no_op_by_type(node: Node) -> Value | None:
    # Same type in and out: same shape means same elements in the same order for these.
    return _same_as_input(node)


@rule("concat")
def _single_concat(node: Node) -> Value | None:
    return _same_as_input(node) if len(node.inputs) == 1 else None


@rule("pad")
def _zero_pad(node: Node) -> Value | None:
    if all(p == 0 for p in node.attrs.get("pads", [1])):
        return _same_as_input(node)
    return None


@rule("slice")
def _full_slice(node: Node) -> Value | None:
    # With unit steps, a slice as large as its input starts at 0: it is the input.
    if all(s == 1 for s in node.attrs.get("steps", [0])):
        return _same_as_input(node)
    return None


@rule("mul")
def _mul_one(node: Node) -> Value | None:
    a, b = node.inputs
    if is_constant_all(b, 1):
        return _same_as_input(node, 0)
    if is_constant_all(a, 1):
        return _same_as_input(node, 1)
    return None


@rule("div")
def _div_one(node: Node) -> Value | None:
    return _same_as_input(node, 0) if is_constant_all(node.inputs[1], 1) else None


@rule("add")
def _add_zero(node: Node) -> Value | None:
    # x + 0 turns -0.0 into +0.0; the two compare equal, which is all the IR promises.
    a, b = node.inputs
    if is_constant_all(b, 0):
        return _same_as_input(node, 0)
    if is_constant_all(a, 0):
        return _same_as_input(node, 1)
    return None


@rule("sub")
def _sub_zero(node: Node) -> Value | None:
    return _same_as_input(node, 0) if is_constant_all(node.inputs[1], 0) else None


def simplify_node(node: Node) -> Value | None:
    """Apply the rules of ``node.op`` until one replaces the node or none changes it."""
    for _ in range(16):
        before = (list(node.inputs), dict(node.attrs))
        for fn in RULES.get(node.op, ()):
            replacement = fn(node)
            if replacement is not None:
                return replacement
        if (list(node.inputs), dict(node.attrs)) == before:
            break
    return None


@block_pass("simplify", "remove identities and no-op data movement, compose reshape/transpose")
def simplify(graph: Graph, block: Block) -> bool:
    mapping: dict[Value, Value] = {}
    kept: list[Node] = []
    changed = False
    for node in block.nodes:
        if any(v in mapping for v in node.inputs if v is not None):
            node.inputs = [_resolve(v, mapping) for v in node.inputs]
        before = (list(node.inputs), dict(node.attrs))
        replacement = simplify_node(node)
        if replacement is not None:
            mapping[node.outputs[0]] = replacement
            changed = True
            continue
        changed |= (node.inputs, node.attrs) != before
        kept.append(node)
    block.nodes = kept
    substitute(block, mapping)
    return changed


def _resolve(v: Value | None, mapping: dict[Value, Value]) -> Value | None:
    while v is not None and v in mapping:
        v = mapping[v]
    return v
