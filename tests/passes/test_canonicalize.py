"""canonicalize and the default pipeline: the passes together reach a fixed point."""

from __future__ import annotations

from passcheck import check_pass

import passes


def test_canonicalize_combines_folding_simplify_cse_and_dce() -> None:
    # simplify turns both reshape chains into reshape(%x), cse then merges them.
    check_pass(
        ["canonicalize"],
        """
        graph main(%x: float32[2, 6]) {
          %one = const float32[1] dense<1.0>
          %s = const int64[2] dense<[2, 6]>
          %1 = identity(%x)
          %2 = reshape(%1) {shape = [12]}
          %3 = reshape(%2) {shape = [3, 4]}
          %4 = reshape(%x) {shape = [12]}
          %5 = reshape(%4) {shape = [3, 4]}
          %6 = mul(%5, %one)
          %7 = add(%3, %6)
          %8 = shape(%7)
          %9 = cast(%8) {to = "int64"}
          return %7, %9
        }
        """,
        """
        graph main(%x: float32[2, 6]) {
          %9 = const int64[2] dense<[3, 4]>
          %3 = reshape(%x) {shape = [3, 4]}
          %7 = add(%3, %3)
          return %7, %9
        }
        """,
        modified=True,
    )


def test_default_pipeline_end_to_end() -> None:
    g = check_pass(
        passes.default_pipeline(),
        """
        graph main(%x: float32[batch, 3, 6, 6]) {
          %w = const float32[4, 3, 1, 1] dense<0.5>
          %s = const float32[4] dense<[1.0, 2.0, 3.0, 4.0]>
          %z = const float32[4] dense<0.0>
          %1 = conv(%x, %w, _)
          %2 = dropout(%1)
          %3 = batch_norm(%2, %s, %z, %z, %s) {epsilon = 0.0}
          %4 = relu(%3)
          %5 = relu(%3)
          %6 = add(%4, %5)
          %7 = transpose(%6) {perm = [0, 2, 3, 1]}
          %8 = transpose(%7) {perm = [0, 3, 1, 2]}
          return %8 as "out"
        }
        """,
        None,
        rtol=1e-5,
    )
    assert [n.op for n in g.nodes] == ["conv", "relu", "add"]
    assert g.output_names == ["out"]


def test_canonicalize_reports_no_change_on_a_canonical_graph() -> None:
    source = """
        graph main(%x: float32[2, 6]) {
          %1 = relu(%x)
          return %1
        }
        """
    check_pass(["canonicalize"], source, source, modified=False)


def test_canonicalize_reaches_a_fixed_point_inside_and_across_regions() -> None:
    """A known condition inlines its branch; what the branch computed from constants folds;
    the loop body's duplicate nodes merge and its dead ones go; all in one canonicalize."""
    check_pass(
        ["canonicalize"],
        """
        graph main(%n: int64[], %x: float32[2]) {
          %t = const bool[] dense<true>
          %one = const float32[2] dense<1.0>
          %r = if(%t, %x) : float32[2] {
            then(%a: float32[2]) {
              %b = add(%one, %one)
              %c = mul(%a, %b)
              yield %c
            }
            else(%a2: float32[2]) {
              yield %a2
            }
          }
          %l = loop(%n, _, %r) {num_carried = 1} : float32[2] {
            body(%i: int64[], %go: bool[], %v: float32[2]) {
              %e1 = exp(%v)
              %e2 = exp(%v)
              %dead = neg(%e1)
              %s = add(%e1, %e2)
              yield %go, %s
            }
          }
          return %l
        }
        """,
        """
        graph main(%n: int64[], %x: float32[2]) {
          %b = const float32[2] dense<[2.0, 2.0]>
          %1 = mul(%x, %b)
          %l = loop(%n, _, %1) {num_carried = 1} : float32[2] {
            body(%i: int64[], %go: bool[], %v: float32[2]) {
              %e1 = exp(%v)
              %s = add(%e1, %e1)
              yield %go, %s
            }
          }
          return %l
        }
        """,
        modified=True,
    )
