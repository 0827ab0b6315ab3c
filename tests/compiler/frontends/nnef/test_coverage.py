"""Every NNEF 1.0.5 standard fragment is handled (a converter, an expansion by the parser, or a
refusal with a reason), and docs/nnef.md shows the table as the code has it."""

from __future__ import annotations

from pathlib import Path

from compiler.frontends.nnef.coverage import coverage, standard_fragments, table

DOC = Path(__file__).resolve().parents[4] / "docs" / "nnef.md"


def test_the_standard_library_is_nnef_1_0_5() -> None:
    fragments = standard_fragments()
    assert len(fragments) == 119
    assert sum(not compound for _, compound in fragments) == 73


def test_no_fragment_is_missing() -> None:
    missing = [f.name for f in coverage() if f.handling == "missing"]
    assert missing == []


def test_design_doc_table_is_current() -> None:
    """Regenerate with ``python -m compiler.frontends.nnef.coverage`` when this fails."""
    assert table() in DOC.read_text()
