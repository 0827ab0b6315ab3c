"""Dead-code elimination: nodes whose outputs nothing reads (graph outputs count) go away."""

from __future__ import annotations

from compiler.ir.graph import Block, Graph

from .manager import block_pass
from .rewrite import remove_dead_nodes


@block_pass("dce", "drop nodes whose outputs no node and no graph output reads")
def dce(graph: Graph, block: Block) -> bool:
    # Graph inputs stay even when unused: they are the compiled function's signature; so do
    # region arguments (their owner's op fixes them).
    return remove_dead_nodes(block)
