"""Golden and numerical checks of passes: IR text in, one pipeline run, IR text out.

``check_pass`` parses the input text, runs the named passes with verification after each,
and compares the printed result with the expected text (itself parsed and printed again, so
it may leave out default attributes and inferable types). It then runs the reference
interpreter on the graph before and after with the same random inputs: a pass must never
change what the graph computes, nor the names or types of its outputs.
"""

from __future__ import annotations

import difflib
import textwrap
from collections.abc import Mapping, Sequence

import numpy as np

from backends.reference import run_graph
from compiler.ir.graph import Graph
from compiler.ir.text import graph_constants, parse_graph, print_graph
from passes import Pass, PassManager


def random_inputs(graph: Graph, seed: int = 0, dim: int = 3) -> dict[str, np.ndarray]:
    """Random feeds for every graph input; each dim name gets size ``dim``."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for v in graph.inputs:
        shape = [d if isinstance(d, int) else dim for d in v.shape]
        if v.dtype == "bool":
            feeds[v.name] = rng.random(shape) < 0.5
        elif v.dtype.startswith(("int", "uint")):
            feeds[v.name] = rng.integers(0, 5, shape).astype(v.dtype)
        else:
            feeds[v.name] = rng.standard_normal(shape).astype(v.dtype)
    return feeds


def assert_same_outputs(
    before: Graph, after: Graph, feeds: Mapping[str, np.ndarray], rtol: float, atol: float
) -> None:
    want = run_graph(before, feeds)
    got = run_graph(after, feeds)
    assert list(got) == list(want), f"output names changed: {list(want)} -> {list(got)}"
    for name in want:
        assert got[name].dtype == want[name].dtype, name
        assert got[name].shape == want[name].shape, name
        np.testing.assert_allclose(got[name], want[name], rtol=rtol, atol=atol, err_msg=name)


def assert_text(got: str, want: str) -> None:
    if got != want:
        diff = difflib.unified_diff(
            want.splitlines(), got.splitlines(), "expected", "got", lineterm=""
        )
        raise AssertionError("IR differs from the expected text:\n" + "\n".join(diff))


def check_pass(
    passes: str | Pass | Sequence[str | Pass],
    before: str,
    expected: str | None,
    *,
    constants: Mapping[str, np.ndarray] | None = None,
    modified: bool | None = None,
    feeds: Mapping[str, np.ndarray] | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-6,
) -> Graph:
    """Run ``passes`` on the graph ``before``; compare with ``expected`` and numerically."""
    names = [passes] if isinstance(passes, str | Pass) else list(passes)
    source = textwrap.dedent(before)
    graph = parse_graph(source, constants)
    original = parse_graph(source, constants)
    changed = PassManager(names, verify_each=True).run(graph)
    if modified is not None:
        assert changed == modified, f"the pipeline reported modified={changed}"
    if expected is not None:
        got = print_graph(graph)
        want = print_graph(parse_graph(textwrap.dedent(expected), graph_constants(graph)))
        assert_text(got, want)
    if feeds is None:
        feeds = random_inputs(graph)  # the inputs after: a binding makes them more specific
    assert_same_outputs(original, graph, feeds, rtol, atol)
    return graph
