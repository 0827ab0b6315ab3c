"""cse: equal nodes (op, inputs, attributes) and equal small constants are merged."""

from __future__ import annotations

import numpy as np
from passcheck import check_pass


def test_equal_nodes_merge_transitively() -> None:
    check_pass(
        ["cse"],
        """
        graph main(%x: float32[2, 3]) {
          %1 = relu(%x)
          %2 = relu(%x)
          %3 = add(%1, %x)
          %4 = add(%2, %x)
          %5 = add(%3, %4)
          return %5
        }
        """,
        """
        graph main(%x: float32[2, 3]) {
          %1 = relu(%x)
          %3 = add(%1, %x)
          %5 = add(%3, %3)
          return %5
        }
        """,
        modified=True,
    )


def test_different_attributes_or_operand_order_do_not_merge() -> None:
    source = """
        graph main(%x: float32[2, 3], %y: float32[2, 3]) {
          %1 = transpose(%x) {perm = [1, 0]}
          %2 = transpose(%x) {perm = [0, 1]}
          %3 = cast(%x) {to = "float16"}
          %4 = sub(%x, %y)
          %5 = sub(%y, %x)
          %6 = clip(%x) {min = 0.0, max = 1.0}
          %7 = clip(%x) {min = -0.0, max = 1.0}
          return %1, %2, %3, %4, %5, %6, %7
        }
        """
    check_pass(["cse"], source, source, modified=False)


def test_equal_small_constants_merge_then_their_readers() -> None:
    check_pass(
        ["cse"],
        """
        graph main(%x: float32[3]) {
          %a = const float32[3] dense<[1.0, 2.0, 3.0]>
          %b = const float32[3] dense<[1.0, 2.0, 3.0]>
          %c = const int32[3] dense<[1, 2, 3]>
          %d = const float32[1, 3] dense<[[1.0, 2.0, 3.0]]>
          %1 = add(%x, %a)
          %2 = add(%x, %b)
          %3 = add(%x, %d)
          %4 = cast(%c) {to = "float32"}
          return %1, %2, %3, %4
        }
        """,
        """
        graph main(%x: float32[3]) {
          %a = const float32[3] dense<[1.0, 2.0, 3.0]>
          %d = const float32[1, 3] dense<[[1.0, 2.0, 3.0]]>
          %c = const int32[3] dense<[1, 2, 3]>
          %1 = add(%x, %a)
          %3 = add(%x, %d)
          %4 = cast(%c) {to = "float32"}
          return %1, %1 as "2", %3, %4
        }
        """,
    )


def test_large_constants_merge_only_when_identical_values() -> None:
    w = np.ones((64, 64), np.float32)
    source = """
        graph main(%x: float32[4, 64]) {
          %w1 = const float32[64, 64] @w1
          %w2 = const float32[64, 64] @w2
          %1 = matmul(%x, %w1)
          %2 = matmul(%x, %w2)
          %3 = matmul(%x, %w1)
          return %1, %2, %3
        }
        """
    check_pass(
        ["cse"],
        source,
        """
        graph main(%x: float32[4, 64]) {
          %w1 = const float32[64, 64] @w1
          %w2 = const float32[64, 64] @w2
          %1 = matmul(%x, %w1)
          %2 = matmul(%x, %w2)
          return %1, %2, %1 as "3"
        }
        """,
        constants={"w1": w, "w2": w.copy()},
    )


def test_multi_output_nodes_merge_output_by_output() -> None:
    check_pass(
        ["cse", "dce"],
        """
        graph main(%x: float32[4, 3]) {
          %a, %b = split(%x) {axis = 0, sizes = [1, 3]}
          %c, %d = split(%x) {axis = 0, sizes = [1, 3]}
          %1 = add(%b, %d)
          %2 = relu(%a)
          %3 = relu(%c)
          return %1, %2, %3
        }
        """,
        """
        graph main(%x: float32[4, 3]) {
          %a, %b = split(%x) {axis = 0, sizes = [1, 3]}
          %1 = add(%b, %b)
          %2 = relu(%a)
          return %1, %2, %2 as "3"
        }
        """,
    )


def test_regions_merge_inside_but_never_across_blocks() -> None:
    """Inside the first then-branch the muls (also the one reading an equal constant) merge;
    the same ``add(%k, %k)`` outside and in each branch stays apart: merging it would make a
    region read a value of another block."""
    check_pass(
        ["cse"],
        """
        graph main(%c: bool[], %x: float32[2]) {
          %k = const float32[2] dense<[1.0, 2.0]>
          %o = add(%k, %k)
          %r = if(%c, %x) : float32[2] {
            then(%a: float32[2]) {
              %t1 = mul(%a, %k)
              %t2 = mul(%a, %k)
              %k2 = const float32[2] dense<[1.0, 2.0]>
              %t3 = mul(%a, %k2)
              %kk = add(%k, %k)
              %t4 = add(%t1, %t2)
              %t5 = add(%t3, %t4)
              %t6 = add(%t5, %kk)
              yield %t6
            }
            else(%b: float32[2]) {
              %kk2 = add(%k, %k)
              %e1 = mul(%b, %kk2)
              yield %e1
            }
          }
          %r2 = if(%c, %x) : float32[2] {
            then(%a3: float32[2]) {
              %kk3 = add(%k, %k)
              %u1 = mul(%a3, %kk3)
              yield %u1
            }
            else(%b3: float32[2]) {
              %kk4 = add(%k, %k)
              %e3 = mul(%b3, %kk4)
              yield %e3
            }
          }
          %s = add(%r, %r2)
          %s2 = add(%s, %o)
          return %s2
        }
        """,
        """
        graph main(%c: bool[], %x: float32[2]) {
          %k = const float32[2] dense<[1.0, 2.0]>
          %o = add(%k, %k)
          %r = if(%c, %x) : float32[2] {
            then(%a: float32[2]) {
              %t1 = mul(%a, %k)
              %kk = add(%k, %k)
              %t4 = add(%t1, %t1)
              %t5 = add(%t1, %t4)
              %t6 = add(%t5, %kk)
              yield %t6
            }
            else(%b: float32[2]) {
              %kk2 = add(%k, %k)
              %e1 = mul(%b, %kk2)
              yield %e1
            }
          }
          %r2 = if(%c, %x) : float32[2] {
            then(%a3: float32[2]) {
              %kk3 = add(%k, %k)
              %u1 = mul(%a3, %kk3)
              yield %u1
            }
            else(%b3: float32[2]) {
              %kk4 = add(%k, %k)
              %e3 = mul(%b3, %kk4)
              yield %e3
            }
          }
          %s = add(%r, %r2)
          %s2 = add(%s, %o)
          return %s2
        }
        """,
        modified=True,
    )
