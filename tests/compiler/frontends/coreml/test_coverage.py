"""Every NeuralNetwork layer type and every MIL op of opsets iOS15-iOS18 is handled (a converter,
or a refusal with its reason), and docs/coreml.md shows the tables as the code has them."""

from __future__ import annotations

from pathlib import Path

from compiler.frontends.coreml.coverage import mil_ops, nn_layers, tables

DOC = Path(__file__).resolve().parents[4] / "docs" / "coreml.md"


def test_every_layer_type_of_the_proto_is_listed() -> None:
    layers = nn_layers()
    assert len(layers) == 158  # NeuralNetwork.proto's `layer` oneof (coremltools 9)
    assert [e.name for e in layers if e.handling == "missing"] == []


def test_no_mil_op_is_missing() -> None:
    ops = mil_ops()
    assert {"conv", "lstm", "while_loop", "scaled_dot_product_attention"} <= {e.name for e in ops}
    assert [e.name for e in ops if e.handling == "missing"] == []


def test_refusals_give_reasons() -> None:
    for entry in nn_layers() + mil_ops():
        if entry.handling.startswith("refused"):
            assert len(entry.handling) > len("refused: ") + 10, entry


def test_doc_tables_are_current() -> None:
    """Regenerate with ``python -m compiler.frontends.coreml.coverage`` when this fails."""
    assert tables() in DOC.read_text()
