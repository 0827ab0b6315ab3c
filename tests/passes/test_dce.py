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
