"""The pass registry and the pass manager.

A pass is a small named object that rewrites a graph in place and says whether it changed
anything. The manager owns everything around the passes (verification between them,
printing the IR after them, timing them, naming the culprit when one fails), so that passes
stay plain rewrites.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, TextIO

from compiler.errors import NnxcError
from compiler.ir.graph import Block, Graph, blocks, walk


class Pass:
    """A named in-place rewrite of a graph; ``run`` returns True when it changed the graph."""

    name: str = ""
    description: str = ""

    def run(self, graph: Graph) -> bool:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<pass {self.name}>"


class FunctionPass(Pass):
    """A pass made from a function ``graph -> bool``."""

    def __init__(self, name: str, description: str, fn: Callable[[Graph], bool]) -> None:
        self.name = name
        self.description = description
        self._fn = fn

    def run(self, graph: Graph) -> bool:
        return bool(self._fn(graph))


class PassError(NnxcError):
    """A pass failed, or the graph did not verify after it; names the passes run before."""

    def __init__(self, message: str, pass_name: str | None, previous: Sequence[str]) -> None:
        super().__init__(message)
        self.pass_name = pass_name
        self.previous = list(previous)


_REGISTRY: dict[str, Pass] = {}


def register(p: Pass) -> Pass:
    """Make ``p`` available by its name; each name is registered once."""
    if not p.name or not p.name.isidentifier():
        raise ValueError(f"pass name {p.name!r} must be an identifier")
    if p.name in _REGISTRY:
        raise ValueError(f"pass {p.name!r} is registered twice")
    _REGISTRY[p.name] = p
    return p


def function_pass(name: str, description: str) -> Callable[[Callable[[Graph], bool]], Pass]:
    """Decorator registering a function ``graph -> bool`` as the pass ``name``."""

    def wrap(fn: Callable[[Graph], bool]) -> Pass:
        return register(FunctionPass(name, description, fn))

    return wrap


def _count(graph: Graph) -> int:
    """Nodes in the graph, regions included."""
    return sum(1 for _ in walk(graph))


def block_pass(name: str, description: str) -> Callable[[Callable[[Graph, Block], bool]], Pass]:
    """Decorator registering a function ``(graph, block) -> bool`` as the pass ``name``, run
    on every block of the graph, innermost regions first (``compiler.ir.graph.blocks``): the
    one traversal by which passes work inside regions. ``graph`` names new values."""

    def wrap(fn: Callable[[Graph, Block], bool]) -> Pass:
        def run(graph: Graph) -> bool:
            changed = False
            for block in blocks(graph):
                changed |= bool(fn(graph, block))
            return changed

        return register(FunctionPass(name, description, run))

    return wrap


def get_pass(name: str) -> Pass:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise PassError(f"unknown pass {name!r}; available: {known}", None, []) from None


def registered_passes() -> dict[str, Pass]:
    """Name -> pass, in registration order."""
    return dict(_REGISTRY)


@dataclass
class PassRecord:
    """What one pass did in one run of the manager."""

    name: str
    seconds: float
    modified: bool
    nodes_before: int
    nodes_after: int


PrintAfter = set[str] | frozenset[str] | Literal["all"] | None


@dataclass
class PassManager:
    """Runs passes in order over a graph.

    ``verify_each`` verifies the input graph and the graph after every pass;
    ``print_after`` names the passes after which the IR is printed to ``out`` (or "all");
    ``time_passes`` prints a table of the time each pass took once all ran.
    """

    passes: Sequence[str | Pass]
    verify_each: bool = False
    print_after: PrintAfter = None
    time_passes: bool = False
    out: TextIO | None = None
    records: list[PassRecord] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self._passes = [get_pass(p) if isinstance(p, str) else p for p in self.passes]
        if self.print_after not in (None, "all"):
            unknown = set(self.print_after) - {p.name for p in self._passes}
            if unknown:
                raise PassError(
                    f"print_after names passes not in the pipeline: {', '.join(sorted(unknown))}",
                    None,
                    [],
                )

    @property
    def names(self) -> list[str]:
        return [p.name for p in self._passes]

    def run(self, graph: Graph) -> bool:
        """Run every pass once, in order; True when any of them changed the graph."""
        self.records = []
        done: list[str] = []
        if self.verify_each:
            self._verify(graph, None, done)
        modified = False
        for p in self._passes:
            before = _count(graph)
            start = time.perf_counter()
            try:
                changed = bool(p.run(graph))
            except PassError:
                raise
            except Exception as e:  # noqa: BLE001 - re-raised naming the pass
                raise PassError(
                    f"pass {p.name!r} failed: {type(e).__name__}: {e}{_after(done)}",
                    p.name,
                    done,
                ) from e
            seconds = time.perf_counter() - start
            self.records.append(PassRecord(p.name, seconds, changed, before, _count(graph)))
            modified |= changed
            done.append(p.name)
            if self.verify_each:
                self._verify(graph, p.name, done[:-1])
            if self.print_after == "all" or (self.print_after and p.name in self.print_after):
                self._print(graph, p.name, changed)
        if self.time_passes:
            self._stream().write(self.report())
        return modified

    def report(self) -> str:
        """A table of the last run: pass, time, node counts, whether it changed the graph."""
        total = sum(r.seconds for r in self.records) or 1e-12
        width = max([len("pass"), *(len(r.name) for r in self.records)])
        lines = [f"{'pass':<{width}}  {'time (ms)':>10}  {'share':>6}  {'nodes':>13}  changed"]
        for r in self.records:
            nodes = f"{r.nodes_before} -> {r.nodes_after}"
            lines.append(
                f"{r.name:<{width}}  {r.seconds * 1e3:>10.3f}  {r.seconds / total:>6.1%}"
                f"  {nodes:>13}  {'yes' if r.modified else 'no'}"
            )
        lines.append(f"{'total':<{width}}  {sum(r.seconds for r in self.records) * 1e3:>10.3f}")
        return "\n".join(lines) + "\n"

    # -- helpers ---------------------------------------------------------------------------
    def _stream(self) -> TextIO:
        return self.out if self.out is not None else sys.stderr

    def _verify(self, graph: Graph, name: str | None, previous: list[str]) -> None:
        from compiler.ir.verify import verify  # lazy: the verifier imports every op family

        try:
            verify(graph)
        except Exception as e:  # noqa: BLE001 - re-raised naming the pass
            if name is None:
                where = "the input graph does not verify (before any pass)"
            else:
                where = f"the graph does not verify after pass {name!r}{_after(previous)}"
            raise PassError(f"{where}:\n{e}", name, previous) from e

    def _print(self, graph: Graph, name: str, changed: bool) -> None:
        from compiler.ir.text import print_graph

        note = "" if changed else " (unchanged)"
        stream = self._stream()
        stream.write(f"// -----// IR after {name}{note} //----- //\n")
        text = print_graph(graph, large_constants="elide")
        stream.write(text if text.endswith("\n") else text + "\n")


def _after(previous: Iterable[str]) -> str:
    previous = list(previous)
    if not previous:
        return " (it ran first)"
    return f" (passes run before it: {', '.join(previous)})"
