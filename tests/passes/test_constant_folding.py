"""constant_folding: nodes over constants (and shapes of static values) become constants."""

from __future__ import annotations

import numpy as np
from passcheck import check_pass

from compiler.ir import fold
from compiler.ir import inline as fold_inline
from compiler.limits import memory_limit


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


def test_results_over_the_memory_limit_stay_computed() -> None:
    source = """
        graph main() {
          %c = const float32[4] dense<1.0>
          %1 = add(%c, %c)
          return %1
        }
        """
    with memory_limit(15):  # the 16-byte result does not fit; its operand alone would
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


def test_folds_inside_a_region() -> None:
    check_pass(
        ["constant_folding"],
        """
        graph main(%c: bool[], %x: float32[2]) {
          %k = const float32[2] dense<[1.0, 2.0]>
          %r = if(%c, %x) : float32[2] {
            then(%a: float32[2]) {
              %kk = add(%k, %k)
              %t = mul(%a, %kk)
              yield %t
            }
            else(%b: float32[2]) {
              yield %b
            }
          }
          return %r
        }
        """,
        """
        graph main(%c: bool[], %x: float32[2]) {
          %kk = const float32[2] dense<[2.0, 4.0]>
          %r = if(%c, %x) : float32[2] {
            then(%a: float32[2]) {
              %t = mul(%a, %kk)
              yield %t
            }
            else(%b: float32[2]) {
              yield %b
            }
          }
          return %r
        }
        """,
        modified=True,
    )


IF_ON = """
        graph main(%x: float32[2]) {
          %cond = const bool[] dense<COND>
          %r = if(%cond, %x) : float32[2] {
            then(%a: float32[2]) {
              %t = neg(%a)
              yield %t
            }
            else(%b: float32[2]) {
              %e = exp(%b)
              yield %e
            }
          }
          return %r
        }
        """


def test_an_if_with_a_constant_condition_is_inlined() -> None:
    for cond, op in (("true", "neg"), ("false", "exp")):
        check_pass(
            ["constant_folding", "dce"],
            IF_ON.replace("COND", cond),
            f"""
            graph main(%x: float32[2]) {{
              %1 = {op}(%x)
              return %1 as "r"
            }}
            """,
            modified=True,
        )


LOOP_OF = """
        graph main(%x: float32[2]) {
          %n = const int64[] dense<N>
          %r, %ys = loop(%n, _, %x) {iterations = N, num_carried = 1} : float32[2], float32[N, 2] {
            body(%i: int64[], %go: bool[], %v: float32[2]) {
              %f = cast(%i) {to = "float32"}
              %w = add(%v, %f)
              yield %go, %w, %v
            }
          }
          return %r, %ys
        }
        """


def test_a_loop_with_a_short_known_trip_count_is_unrolled() -> None:
    g = check_pass(
        ["constant_folding", "dce"],
        LOOP_OF.replace("N", "3"),
        """
        graph main(%x: float32[2]) {
          %c_2 = const float32[] dense<0.0>
          %c_6 = const float32[] dense<1.0>
          %c_10 = const float32[] dense<2.0>
          %3 = add(%x, %c_2)
          %7 = add(%3, %c_6)
          %11 = add(%7, %c_10)
          %12 = reshape(%x) {shape = [1, 2]}
          %13 = reshape(%3) {shape = [1, 2]}
          %14 = reshape(%7) {shape = [1, 2]}
          %15 = concat(%12, %13, %14) {axis = 0}
          return %11 as "r", %15 as "ys"
        }
        """,
        modified=True,
    )
    assert not any(n.regions for n in g.nodes)


def test_loops_over_the_unroll_limit_or_with_a_data_dependent_condition_stay() -> None:
    assert fold_inline.UNROLL_MAX_TRIPS == 16
    source = LOOP_OF.replace("N", "17")
    check_pass(["constant_folding", "dce"], source, source, modified=False)
    source = """
        graph main(%x: float32[2]) {
          %n = const int64[] dense<4>
          %go0 = const bool[] dense<true>
          %lim = const float32[] dense<10.0>
          %r = loop(%n, %go0, %x, %lim) {num_carried = 1} : float32[2] {
            body(%i: int64[], %go: bool[], %v: float32[2], %l: float32[]) {
              %w = add(%v, %v)
              %s = reduce_sum(%w) {axes = [0], keepdims = false}
              %c = less(%s, %l)
              yield %c, %w
            }
          }
          return %r
        }
        """
    check_pass(["constant_folding", "dce"], source, source, modified=False)


def test_a_loop_whose_known_condition_is_false_runs_no_iteration() -> None:
    check_pass(
        ["constant_folding", "dce"],
        """
        graph main(%x: float32[2]) {
          %n = const int64[] dense<5>
          %no = const bool[] dense<false>
          %r = loop(%n, %no, %x) {num_carried = 1} : float32[2] {
            body(%i: int64[], %go: bool[], %v: float32[2]) {
              %w = neg(%v)
              yield %go, %w
            }
          }
          return %r
        }
        """,
        """
        graph main(%x: float32[2]) {
          return %x as "r"
        }
        """,
        modified=True,
    )


def test_unrolling_inlines_nested_regions_and_known_ifs_fold_on_the_next_run() -> None:
    """A loop of 4 whose body picks, by ``i % 2``, between a nested loop (data-dependent trip
    count, so it stays) and a subtraction: unrolled, the copies' ifs get constant conditions
    that a second folding run inlines, cloning the nested loop's body each time."""
    source = """
        graph main(%x: float32[2], %m: int64[]) {
          %n = const int64[] dense<4>
          %two = const int64[] dense<2>
          %zero = const int64[] dense<0>
          %r, %ys = loop(%n, _, %x, %two, %zero, %m) {iterations = 4, num_carried = 1} : float32[2], float32[4, 2] {
            body(%i: int64[], %go: bool[], %v: float32[2], %t: int64[], %z: int64[], %mm: int64[]) {
              %md = mod(%i, %t)
              %even = equal(%md, %z)
              %w = if(%even, %v, %i, %mm) : float32[2] {
                then(%a: float32[2], %ia: int64[], %ma: int64[]) {
                  %inner = loop(%ma, _, %a) {num_carried = 1} : float32[2] {
                    body(%j: int64[], %g2: bool[], %u: float32[2]) {
                      %u2 = add(%u, %u)
                      yield %g2, %u2
                    }
                  }
                  yield %inner
                }
                else(%b: float32[2], %ib: int64[], %mb: int64[]) {
                  %f = cast(%ib) {to = "float32"}
                  %e = sub(%b, %f)
                  yield %e
                }
              }
              yield %go, %w, %w
            }
          }
          return %r, %ys
        }
        """  # noqa: E501
    g = check_pass(["constant_folding", "dce"], source, None, modified=True)
    assert [n.op for n in g.nodes].count("if") == 4 and "loop" not in [
        n.op for n in g.nodes if n.op != "if"
    ]
    g = check_pass(["constant_folding", "constant_folding", "dce"], source, None, modified=True)
    ops = [n.op for n in g.nodes]
    assert "if" not in ops and ops.count("loop") == 2
    first, second = (n for n in g.nodes if n.op == "loop")
    assert first.regions[0] is not second.regions[0]
    assert first.regions[0].inputs[0] is not second.regions[0].inputs[0]
