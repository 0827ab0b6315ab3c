"""constant_folding: nodes over constants (and shapes of static values) become constants."""

from __future__ import annotations

import numpy as np
from passcheck import check_pass

from compiler.ir import fold


def test_constant_subgraph_folds_keeping_value_names() -> None:
    g = check_pass(
        ["constant_folding"],
        """
        graph main(%x: float32[2, 2]) {
          %a = const float32[2, 2] dense<[[1.0, -2.0], [3.0, -4.0]]>
          %b = const float32[2] dense<[10.0, 20.0]>
          %1 = relu(%a)
          %2 = add(%1, %b)
          %3 = add(%x, %2)
          return %3
        }
        """,
        """
        graph main(%x: float32[2, 2]) {
          %2 = const float32[2, 2] dense<[[11.0, 20.0], [13.0, 20.0]]>
          %3 = add(%x, %2)
          return %3
        }
        """,
        modified=True,
    )
    assert g.nodes[0].inputs[1].const is not None


def test_shape_of_a_static_value_folds() -> None:
    # shape reads only the type: it folds although %x is not a constant.
    check_pass(
        ["constant_folding"],
        """
        graph main(%x: float32[2, 3, 4], %d: float32[batch, 3]) {
          %1 = shape(%x) {start = 1}
          %2 = relu(%x)
          %3 = shape(%d)
          %4 = shape(%d) {start = 1}
          return %1, %2, %3, %4
        }
        """,
        """
        graph main(%x: float32[2, 3, 4], %d: float32[batch, 3]) {
          %1 = const int64[2] dense<[3, 4]>
          %4 = const int64[1] dense<[3]>
          %2 = relu(%x)
          %3 = shape(%d)
          return %1, %2, %3, %4
        }
        """,
    )


def test_graph_output_that_folds_stays_an_output_under_its_name() -> None:
    g = check_pass(
        ["constant_folding"],
        """
        graph main(%x: float32[2]) {
          %c = const float32[2] dense<[1.0, 2.0]>
          %y = add(%c, %c)
          %z = add(%x, %y)
          return %y as "doubled", %z
        }
        """,
        """
        graph main(%x: float32[2]) {
          %y = const float32[2] dense<[2.0, 4.0]>
          %z = add(%x, %y)
          return %y as "doubled", %z
        }
        """,
    )
    assert g.output_names == ["doubled", "z"]


def test_results_over_the_fold_limit_stay_computed(monkeypatch) -> None:
    monkeypatch.setattr(fold, "FOLD_LIMIT", 3)
    source = """
        graph main() {
          %c = const float32[4] dense<1.0>
          %1 = add(%c, %c)
          return %1
        }
        """
    check_pass(["constant_folding"], source, source, modified=False, feeds={})


def test_nothing_to_fold() -> None:
    source = """
        graph main(%x: float32[2]) {
          %1 = relu(%x)
          return %1
        }
        """
    g = check_pass(["constant_folding"], source, source, modified=False)
    assert not any(v.const is not None for v in g.values())
    assert np.dtype(g.outputs[0].type.np_dtype) == np.float32
