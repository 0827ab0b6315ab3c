"""Canonicalization: folding, simplification, CSE and DCE repeated until nothing changes.

Each of these passes can expose work for the others (a folded shape makes a reshape a
no-op; a removed identity makes two nodes equal for CSE), so one round is not always enough.
"""

from __future__ import annotations

from compiler.ir.graph import Graph

from .manager import function_pass, get_pass

ROUNDS = 8
"""Rounds at most; real graphs settle in two or three."""

_STEPS = ("constant_folding", "simplify", "cse", "dce")


@function_pass("canonicalize", "repeat constant_folding, simplify, cse, dce until a fixed point")
def canonicalize(graph: Graph) -> bool:
    changed = False
    for _ in range(ROUNDS):
        round_changed = False
        for name in _STEPS:
            round_changed |= get_pass(name).run(graph)
        if not round_changed:
            break
        changed = True
    return changed
