"""The pass manager: registry, verification between passes, printing, timing, errors."""

from __future__ import annotations

import io
import textwrap

import pytest

import passes
from compiler.ir.graph import Graph
from compiler.ir.text import parse_graph
from passes import FunctionPass, PassError, PassManager

SOURCE = textwrap.dedent(
    """\
    graph main(%x: float32[2, 3]) {
      %1 = identity(%x)
      %2 = relu(%1)
      %3 = relu(%x)
      return %2 as "y"
    }
    """
)


def graph() -> Graph:
    return parse_graph(SOURCE)


def _drop_first_node(g: Graph) -> bool:
    """A broken pass: removes a node whose output is still read."""
    del g.nodes[0]
    return True


def _explode(g: Graph) -> bool:
    raise RuntimeError("boom")


BREAK = FunctionPass("break_graph", "drops a node that is still read", _drop_first_node)
EXPLODE = FunctionPass("explode", "raises", _explode)


def test_standard_passes_are_registered() -> None:
    names = passes.available_passes()
    for name in passes.default_pipeline():
        assert name in names and names[name]
    standard = {"shape_inference", "constant_folding", "dce", "cse", "simplify", "fold_batchnorm"}
    assert standard <= set(names)


def test_unknown_pass_lists_the_available_ones() -> None:
    with pytest.raises(PassError, match=r"unknown pass 'nope'; available: .*dce"):
        PassManager(["nope"])


def test_passes_run_in_order_and_report_modification() -> None:
    g = graph()
    pm = PassManager(["simplify", "dce", "dce"], verify_each=True)
    assert pm.run(g)
    assert [(r.name, r.modified) for r in pm.records] == [
        ("simplify", True),
        ("dce", True),
        ("dce", False),
    ]
    assert [n.op for n in g.nodes] == ["relu"]
    assert g.outputs[0].producer is g.nodes[0] and g.output_names == ["y"]
    assert not PassManager(["simplify", "dce"]).run(g)


def test_verify_each_names_the_breaking_pass_and_those_before() -> None:
    g = graph()
    with pytest.raises(PassError) as info:
        PassManager(["dce", BREAK, "cse"], verify_each=True).run(g)
    err = info.value
    assert err.pass_name == "break_graph" and err.previous == ["dce"]
    assert "does not verify after pass 'break_graph' (passes run before it: dce)" in str(err)


def test_without_verify_each_the_break_goes_unnoticed() -> None:
    g = graph()
    PassManager([BREAK]).run(g)  # no error: verification is what catches it


def test_verify_each_checks_the_input_first() -> None:
    g = graph()
    del g.nodes[0]
    with pytest.raises(PassError, match=r"input graph does not verify \(before any pass\)"):
        PassManager(["dce"], verify_each=True).run(g)


def test_a_failing_pass_is_named_with_its_predecessors() -> None:
    with pytest.raises(PassError) as info:
        PassManager(["simplify", "dce", EXPLODE]).run(graph())
    assert str(info.value).startswith("pass 'explode' failed: RuntimeError: boom")
    assert "(passes run before it: simplify, dce)" in str(info.value)
    assert isinstance(info.value.__cause__, RuntimeError)
    with pytest.raises(PassError, match=r"\(it ran first\)"):
        PassManager([EXPLODE]).run(graph())


def test_print_after_named_passes() -> None:
    out = io.StringIO()
    PassManager(["simplify", "dce", "cse"], print_after={"dce", "cse"}, out=out).run(graph())
    text = out.getvalue()
    assert "IR after simplify" not in text
    assert "// -----// IR after dce //----- //\ngraph main(%x: float32[2, 3]) {" in text
    assert "IR after cse (unchanged)" in text
    assert text.count('return %2 as "y"') == 2


def test_print_after_all() -> None:
    out = io.StringIO()
    PassManager(["simplify", "dce"], print_after="all", out=out).run(graph())
    assert out.getvalue().count("IR after") == 2


def test_print_after_a_pass_not_in_the_pipeline_is_an_error() -> None:
    with pytest.raises(PassError, match="not in the pipeline: fold_batchnorm"):
        PassManager(["dce"], print_after={"fold_batchnorm"})


def test_time_passes_prints_a_table() -> None:
    out = io.StringIO()
    pm = PassManager(["simplify", "dce"], time_passes=True, out=out)
    pm.run(graph())
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["pass", "time", "(ms)", "share", "nodes", "changed"]
    assert lines[1].split()[0] == "simplify" and lines[1].split()[-4:] == ["3", "->", "2", "yes"]
    assert lines[2].split()[0] == "dce" and lines[2].split()[-4:] == ["2", "->", "1", "yes"]
    assert lines[3].startswith("total")
    assert all(r.seconds >= 0 for r in pm.records)
    assert out.getvalue() == pm.report()


def test_run_passes_default_pipeline() -> None:
    g = graph()
    pm = passes.run_passes(g, verify_each=True)
    assert pm.names == passes.default_pipeline()
    assert [n.op for n in g.nodes] == ["relu"]


def test_registering_a_name_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        passes.register(FunctionPass("dce", "again", lambda g: False))
