"""Dead-code elimination: nodes whose outputs nothing reads (graph outputs count) go away."""

from __future__ import annotations

from compiler.ir.graph import Graph

from .manager import function_pass
from .rewrite import remove_dead_nodes


@function_pass("dce", "drop nodes whose outputs no node and no graph output reads")
def dce(graph: Graph) -> bool:
    # Graph inputs stay even when unused: they are the compiled function's signature.
    return remove_dead_nodes(graph)
