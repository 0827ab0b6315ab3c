"""dce: nodes whose outputs nothing reads are dropped; inputs and outputs are kept."""

from __future__ import annotations

from passcheck import check_pass


def test_dead_chain_is_dropped_and_unused_inputs_stay() -> None:
    check_pass(
        ["dce"],
        """
        graph main(%x: float32[2, 3], %unused: float32[4]) {
          %1 = relu(%x)
          %2 = add(%1, %x)
          %3 = relu(%2)
          %4 = add(%x, %x)
          return %4
        }
        """,
        """
        graph main(%x: float32[2, 3], %unused: float32[4]) {
          %4 = add(%x, %x)
          return %4
        }
        """,
        modified=True,
    )


def test_multi_output_node_stays_when_one_output_is_read() -> None:
    source = """
        graph main(%x: float32[4, 3]) {
          %a, %b = split(%x) {axis = 0, sizes = [1, 3]}
          return %b
        }
        """
    check_pass(["dce"], source, source, modified=False)


def test_every_output_and_its_producers_are_live() -> None:
    source = """
        graph main(%x: float32[2]) {
          %1 = relu(%x)
          %2 = add(%1, %1)
          return %2, %1 as "again", %x
        }
        """
    check_pass(["dce"], source, source, modified=False)


def test_dead_nodes_inside_regions_go_and_values_read_only_by_regions_stay() -> None:
    """%a is read only as a capture of the loop, %c only as an operand of the inner if: both
    stay; dead chains in the body and in a branch go, and so does the unused outer %dead."""
    check_pass(
        ["dce"],
        """
        graph main(%n: int64[], %x: float32[2], %y: float32[2]) {
          %a = relu(%y)
          %dead = neg(%x)
          %r = loop(%n, _, %x, %a) {num_carried = 1} : float32[2] {
            body(%i: int64[], %go: bool[], %v: float32[2], %w: float32[2]) {
              %d1 = exp(%v)
              %d2 = neg(%d1)
              %c = sigmoid(%w)
              %s = if(%go, %v, %c) : float32[2] {
                then(%p: float32[2], %q: float32[2]) {
                  %unused = exp(%q)
                  %m = mul(%p, %q)
                  yield %m
                }
                else(%p2: float32[2], %q2: float32[2]) {
                  yield %p2
                }
              }
              yield %go, %s
            }
          }
          return %r
        }
        """,
        """
        graph main(%n: int64[], %x: float32[2], %y: float32[2]) {
          %a = relu(%y)
          %r = loop(%n, _, %x, %a) {num_carried = 1} : float32[2] {
            body(%i: int64[], %go: bool[], %v: float32[2], %w: float32[2]) {
              %c = sigmoid(%w)
              %s = if(%go, %v, %c) : float32[2] {
                then(%p: float32[2], %q: float32[2]) {
                  %m = mul(%p, %q)
                  yield %m
                }
                else(%p2: float32[2], %q2: float32[2]) {
                  yield %p2
                }
              }
              yield %go, %s
            }
          }
          return %r
        }
        """,
        modified=True,
    )
