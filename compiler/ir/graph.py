"""The graph: SSA values with types, nodes applying core ops, blocks that order them.

A value is produced once: as a graph input, as a region argument, as a constant (holding a
numpy array), or as one output of one node. A ``Block`` is an ordered list of nodes with its
inputs and outputs: the ``Graph`` is the outermost block, and a node of a control-flow op
(``if``, ``loop``) owns ``Region``s, nested blocks whose inputs are block arguments and whose
outputs are what the region yields. Regions are isolated: a node inside one reads only the
region's arguments, values made earlier in the same region, and constants (which belong to
no scope); values of an enclosing block enter as operands of the owning node. So every
dependency of a node is one of its operands, and passes that order, merge or drop nodes of a
block need not look inside the regions of others.

Nodes are kept in topological order; passes that insert nodes use ``Block.insert_before``/
``append`` or call ``Block.toposort`` when they are done. ``blocks(graph)`` visits every
block, innermost first: the one traversal passes use to work inside regions.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from .types import TensorType, Type


class Value:
    """One SSA value. ``const`` holds the data of a constant; ``producer`` the node making it."""

    __slots__ = ("name", "type", "producer", "const")

    def __init__(
        self,
        name: str,
        type: Type,
        producer: Node | None = None,
        const: np.ndarray | None = None,
    ) -> None:
        self.name = name
        self.type = type
        self.producer = producer
        self.const = const

    @property
    def is_constant(self) -> bool:
        return self.const is not None

    @property
    def dtype(self) -> str:
        return self.type.dtype

    @property
    def shape(self) -> tuple:
        return self.type.shape

    def __repr__(self) -> str:
        return f"%{self.name}: {self.type}"


class Node:
    """An application of a core op. ``inputs`` may hold None for an absent optional input;
    ``regions`` are the nested blocks a control-flow op owns, in the order its definition
    names them."""

    __slots__ = ("op", "inputs", "outputs", "attrs", "name", "regions")

    def __init__(
        self,
        op: str,
        inputs: Sequence[Value | None],
        outputs: Sequence[Value],
        attrs: dict[str, Any] | None = None,
        name: str = "",
        regions: Sequence[Region] = (),
    ) -> None:
        self.op = op
        self.inputs: list[Value | None] = list(inputs)
        self.outputs: list[Value] = list(outputs)
        self.attrs: dict[str, Any] = dict(attrs or {})
        self.name = name
        self.regions: list[Region] = list(regions)
        for v in self.outputs:
            v.producer = self

    def __repr__(self) -> str:
        ins = ", ".join("_" if v is None else f"%{v.name}" for v in self.inputs)
        outs = ", ".join(f"%{v.name}" for v in self.outputs)
        return f"{outs} = {self.op}({ins}) {self.attrs}"


class Block:
    """Nodes in topological order between ``inputs`` and ``outputs``: the graph itself, or a
    region (whose ``outputs`` are what it yields)."""

    def __init__(self) -> None:
        self.inputs: list[Value] = []
        self.outputs: list[Value] = []
        self.nodes: list[Node] = []

    def append(self, node: Node) -> Node:
        self.nodes.append(node)
        return node

    def insert_before(self, anchor: Node, node: Node) -> Node:
        self.nodes.insert(self.nodes.index(anchor), node)
        return node

    def remove_node(self, node: Node) -> None:
        self.nodes.remove(node)

    # -- queries ---------------------------------------------------------------------------
    def users(self) -> dict[Value, list[tuple[Node, int]]]:
        """For each value, the (node, input index) pairs of this block that read it."""
        uses: dict[Value, list[tuple[Node, int]]] = {}
        for node in self.nodes:
            for i, v in enumerate(node.inputs):
                if v is not None:
                    uses.setdefault(v, []).append((node, i))
        return uses

    # -- rewriting -------------------------------------------------------------------------
    def replace_all_uses(self, old: Value, new: Value) -> None:
        """Make every reader of ``old`` in this block (nodes and outputs) read ``new``."""
        for node in self.nodes:
            node.inputs = [new if v is old else v for v in node.inputs]
        self.outputs = [new if v is old else v for v in self.outputs]

    def toposort(self) -> None:
        """Reorder nodes so that each comes after the producers of its inputs.

        Stable: nodes already in order keep it. Iterative, so deep chains need no recursion.
        """
        members = {id(n) for n in self.nodes}
        state: dict[int, int] = {}  # 1: on the stack, 2: placed
        order: list[Node] = []
        for root in self.nodes:
            if id(root) in state:
                continue
            state[id(root)] = 1
            stack = [(root, iter(root.inputs))]
            while stack:
                node, pending = stack[-1]
                for v in pending:
                    p = v.producer if v is not None else None
                    if p is None or id(p) not in members:
                        continue
                    if state.get(id(p)) == 1:
                        raise ValueError(f"cycle through node {p.name or p.op}")
                    if id(p) not in state:
                        state[id(p)] = 1
                        stack.append((p, iter(p.inputs)))
                        break
                else:
                    stack.pop()
                    state[id(node)] = 2
                    order.append(node)
        self.nodes = order


class Region(Block):
    """A nested block owned by a control-flow node: ``inputs`` are its block arguments,
    ``outputs`` the values its terminator (``yield`` in the text form) hands back."""

    def __init__(self, args: Sequence[Value] = ()) -> None:
        super().__init__()
        self.inputs = list(args)

    def __repr__(self) -> str:
        return f"<Region: {len(self.inputs)} args, {len(self.nodes)} nodes>"


def walk(block: Block) -> Iterator[Node]:
    """Every node of ``block`` and of the regions nested in it, outer nodes before their
    regions' nodes. Iterative: nesting depth costs no recursion."""
    stack: list[Iterator[Node]] = [iter(block.nodes)]
    while stack:
        node = next(stack[-1], None)
        if node is None:
            stack.pop()
            continue
        yield node
        for region in reversed(node.regions):
            stack.append(iter(region.nodes))


def blocks(block: Block) -> list[Block]:
    """``block`` and every region nested in it, innermost first: a pass that rewrites each
    block in this order sees a region already rewritten when it reaches its owner."""
    order: list[Block] = [block]
    for node in walk(block):
        order.extend(node.regions)
    # walk gives parents before children; reversed, children come before their parents.
    return order[::-1]


class Graph(Block):
    """A function from ``inputs`` to ``outputs`` over nodes in topological order.

    Constants are values without a producer that are not graph inputs; the graph does not
    list them separately, they are reached through node inputs (and ``outputs``).
    """

    def __init__(self, name: str = "main") -> None:
        super().__init__()
        self.name = name
        self.output_names: list[str] = []
        """The user-visible name of each output; a pass that replaces an output value keeps
        its name here, so renaming values never renames the model's outputs."""
        self._names: set[str] = set()
        self._counter = 0
        self.metadata: dict[str, str] = {}
        """Facts about the model for the artifact, as strings (structured ones as JSON text):
        source format, class labels, bounds of symbolic dims, precision."""

    # -- naming ----------------------------------------------------------------------------
    def unique_name(self, hint: str = "") -> str:
        """A value name not used yet in this graph: ``hint`` itself when free, else numbered."""
        name = hint
        while not name or name in self._names:
            self._counter += 1
            name = f"{hint}_{self._counter}" if hint else str(self._counter)
        self._names.add(name)
        return name

    def claim_name(self, name: str) -> None:
        self._names.add(name)

    # -- construction ----------------------------------------------------------------------
    def add_input(self, name: str, type: Type) -> Value:
        v = Value(self.unique_name(name), type)
        self.inputs.append(v)
        return v

    def constant(self, array: np.ndarray, name: str = "") -> Value:
        """A constant value; the array is kept as given (memory maps stay maps)."""
        array = np.asanyarray(array)
        return Value(self.unique_name(name or "c"), TensorType.of(array), const=array)

    def make_node(
        self,
        op: str,
        inputs: Sequence[Value | None],
        output_types: Sequence[Type],
        attrs: dict[str, Any] | None = None,
        name: str = "",
        output_names: Sequence[str] = (),
        regions: Sequence[Region] = (),
    ) -> Node:
        """A node with fresh output values; not yet placed in any block."""
        hints = list(output_names) + [""] * (len(output_types) - len(output_names))
        outs = [Value(self.unique_name(h), t) for h, t in zip(hints, output_types, strict=True)]
        return Node(op, inputs, outs, attrs, name, regions)

    def region(self, arg_types: Sequence[Type], arg_names: Sequence[str] = ()) -> Region:
        """An empty region whose block arguments are fresh values of this graph's namespace
        (one namespace for the whole graph keeps value names unique in the text form)."""
        hints = list(arg_names) + ["arg"] * (len(arg_types) - len(arg_names))
        return Region([Value(self.unique_name(h), t) for h, t in zip(hints, arg_types)])

    def set_outputs(self, values: Sequence[Value], names: Sequence[str] | None = None) -> None:
        self.outputs = list(values)
        self.output_names = list(names) if names is not None else [v.name for v in values]
        if len(self.output_names) != len(self.outputs):
            raise ValueError("one name per output is needed")

    # -- queries ---------------------------------------------------------------------------
    def values(self) -> Iterator[Value]:
        """Every value reachable in the graph, regions included: inputs, block arguments,
        constants, node outputs (each once)."""
        seen: set[int] = set()
        for v in self._all_values():
            if id(v) not in seen:
                seen.add(id(v))
                yield v

    def _all_values(self) -> Iterable[Value]:
        yield from self.inputs
        for node in walk(self):
            yield from (v for v in node.inputs if v is not None)
            for region in node.regions:
                yield from region.inputs
                yield from region.outputs
            yield from node.outputs
        yield from self.outputs

    def constants(self) -> list[Value]:
        return [v for v in self.values() if v.is_constant]

    def __repr__(self) -> str:
        return f"<Graph {self.name}: {len(self.nodes)} nodes>"
